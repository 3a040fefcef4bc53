"""The Local / Remote switch of one role in Settings, the remote engine's fields, and the
"Test connection" button.

The test runs in a worker thread with its own event loop (the dialog may be open while the
app's loop serves a stream; a slow or unreachable engine must never freeze the window), and
its answer comes back to the GUI thread through a queued signal.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from hivetray.config import RoleConfig
from hivetray.errors import first_line
from hivetray.pool.remote.probe import check_connection

ENGINES = (("Local (a model file on this computer)", "local"),
           ("Remote (llama-server, vLLM, Ollama, another Hivetray)", "remote"))


class _Reply(QObject):
    done = Signal(bool, str)  # ok, one line for the user


class RemoteFields:
    """Rows added to a role's form; ``local_rows`` are hidden while the role is remote."""

    def __init__(self, role: str, form: QFormLayout) -> None:
        self.role = role
        self.form = form
        self.engine = QComboBox()
        for label, value in ENGINES:
            self.engine.addItem(label, value)
        form.insertRow(0, "Engine", self.engine)
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://gpu-box:8080")
        self.model = QLineEdit()
        self.model.setPlaceholderText("the engine's model id (empty: its first model)")
        self.key_env = QLineEdit()
        self.key_env.setPlaceholderText("name of the environment variable holding the key")
        self.key_env.setToolTip("The key itself is never saved in config.toml: Hivetray reads "
                                "it from this variable (or the OS keyring, when installed)")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 3600)
        self.timeout.setSuffix(" s")
        self.test = QPushButton("Test connection")
        self.result = QLabel()
        self.result.setWordWrap(True)
        test_row = QWidget()
        row = QHBoxLayout(test_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.test)
        row.addWidget(self.result, 1)
        self.remote_rows: list[QWidget] = [self.url, self.model, self.key_env, self.timeout,
                                           test_row]
        for label, widget in zip(("Engine URL", "Remote model", "Key variable", "Timeout", ""),
                                 self.remote_rows, strict=True):
            form.insertRow(form.rowCount(), label, widget)
        self.local_rows: list[QWidget] = []
        self._reply = _Reply()
        self._reply.done.connect(self._show_result)
        self.test.clicked.connect(self.start_test)
        self.engine.currentIndexChanged.connect(lambda _index: self.sync())
        self._thread: threading.Thread | None = None

    @property
    def remote(self) -> bool:
        return bool(self.engine.currentData() == "remote")

    def sync(self) -> None:
        for widget in self.remote_rows:
            self.form.setRowVisible(widget, self.remote)
        for widget in self.local_rows:
            self.form.setRowVisible(widget, not self.remote)

    def load(self, cfg: RoleConfig) -> None:
        self.engine.setCurrentIndex(1 if cfg.remote else 0)
        self.url.setText(cfg.url or "")
        self.model.setText(cfg.model if cfg.remote and cfg.model else "")
        self.key_env.setText(cfg.api_key_env or "")
        self.timeout.setValue(cfg.timeout_s)
        self.result.clear()
        self.sync()

    def value(self, cfg: RoleConfig) -> RoleConfig:
        """``cfg`` with the engine settings; for a remote role, ``model`` is the remote id."""
        url = self.url.text().strip().rstrip("/") or None
        common = replace(cfg, engine=str(self.engine.currentData()),
                         url=url,
                         api_key_env=self.key_env.text().strip() or None,
                         timeout_s=float(self.timeout.value()))
        if self.remote:
            return replace(common, model=self.model.text().strip() or None)
        return common

    def problem(self) -> str | None:
        url = self.url.text().strip()
        if self.remote and not url.startswith(("http://", "https://")):
            return f"the {self.role} role's engine URL must start with http:// or https://"
        return None

    def start_test(self) -> None:
        """Ask the engine in a worker thread; the answer shows in ``result``."""
        if self._thread is not None and self._thread.is_alive():
            return
        cfg = self.value(RoleConfig(engine="remote"))
        self.test.setEnabled(False)
        self.result.setText("Connecting…")

        role, reply = self.role, self._reply

        def run() -> None:  # not `self`: see below
            try:
                report = asyncio.run(check_connection(role, cfg))
            except Exception as exc:
                reply.done.emit(False, first_line(exc))
            else:
                reply.done.emit(True, report.describe())

        # asyncio's failures keep their frames, and this one through its caller chain: had it
        # held the form, the whole dialog would be garbage in a reference cycle, destroyed by
        # the collector of whatever thread runs next, while Qt widgets must die in theirs

        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"test-connection-{self.role}")
        self._thread.start()

    def _show_result(self, ok: bool, text: str) -> None:
        self.test.setEnabled(True)
        self.result.setText(("✓ " if ok else "✗ ") + text)
        self.result.setStyleSheet("" if ok else "color: #e5484d;")
