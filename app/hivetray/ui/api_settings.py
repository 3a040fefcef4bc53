"""Settings → API: the switch for the local OpenAI-compatible HTTP API, its port, the address
other apps use, and the key (shown masked, copied whole, replaced on demand).

The rarer settings (host, CORS origins, remote access, no key) stay in ``config.toml``'s
``[api]``: each weakens who can reach the workers, which a checkbox should not make easy.
Only the tiny key module of ``hivetray.api`` is imported here, never the server (aiohttp).
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QWidget,
)

from hivetray.api.keys import ApiKey, mask
from hivetray.config import ApiConfig
from hivetray.paths import AppPaths


class ApiTab(QWidget):
    def __init__(self, paths: AppPaths) -> None:
        super().__init__()
        self.key_store = ApiKey(paths.api_key_file)
        self._host = ApiConfig().host
        form = QFormLayout(self)
        self.enabled = QCheckBox("Serve an OpenAI-compatible API on this computer")
        self.enabled.setToolTip("Editors, notebooks and RAG tools that speak the OpenAI API can "
                                "then use Hivetray's warm models")
        form.addRow("", self.enabled)
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        form.addRow("Port", self.port)
        self.address = QLabel()
        self.address.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Base URL", self.address)
        self.key_field = QLineEdit()
        self.key_field.setReadOnly(True)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the whole key (it is made now if there is none yet)")
        self.copy_button.clicked.connect(self.copy_key)
        self.new_button = QPushButton("New key")
        self.new_button.setToolTip("Replace the key: apps using the old one stop working")
        self.new_button.clicked.connect(self.new_key)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.key_field, 1)
        layout.addWidget(self.copy_button)
        layout.addWidget(self.new_button)
        form.addRow("API key", row)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form.addRow("", self.status)
        note = QLabel("Host, CORS origins and remote access are set in config.toml ([api]).")
        note.setWordWrap(True)
        form.addRow("", note)
        self.port.valueChanged.connect(self._show_address)

    def load(self, config: ApiConfig) -> None:
        self._host = config.host
        self.enabled.setChecked(config.enabled)
        self.port.setValue(config.port)
        self._show_address()
        self._show_key()

    def value(self, old: ApiConfig) -> ApiConfig:
        return replace(old, enabled=self.enabled.isChecked(), port=self.port.value())

    def set_status(self, text: str) -> None:
        """What the running app says about the API (listening, off, or why it is not)."""
        self.status.setText(text)

    def copy_key(self) -> None:
        try:
            key = self.key_store.ensure()
        except OSError as exc:
            self.set_status(f"The key could not be written ({exc.strerror or exc}).")
            return
        QGuiApplication.clipboard().setText(key)
        self._show_key()

    def new_key(self) -> None:
        answer = QMessageBox.question(
            self, "Replace the API key?",
            "Apps using the current key will be refused until they are given the new one.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.key_store.replace()
        except OSError as exc:
            self.set_status(f"The key could not be written ({exc.strerror or exc}).")
            return
        self._show_key()
        self.set_status("A new key was made: copy it into the apps that use the API.")

    def _show_key(self) -> None:
        key = self.key_store.read()
        self.key_field.setText(mask(key) if key else "")
        self.key_field.setPlaceholderText("made when the API is first enabled (or on Copy)")

    def _show_address(self) -> None:
        host = self._host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address in a URL
        port = str(self.port.value()) if self.port.value() else "<chosen at start>"
        self.address.setText(f"http://{host}:{port}/v1")
