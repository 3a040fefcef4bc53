"""The quick-chat window: built at start-up and kept hidden, so the hotkey only has to show it.

Frameless, centred on the screen under the pointer, always on top, input focused. Streaming
text is painted at most once per frame (a 16 ms single-shot timer coalesces chunks), so a fast
model never floods the event loop. Requests and history live in :class:`ChatSession`; this
class only paints and turns keys into intents.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import (
    QCursor,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from hivetray.errors import HivetrayError
from hivetray.history import HistoryError, Message
from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus
from hivetray.ui.a11y import FOCUS_STYLE, describe, text_size
from hivetray.ui.chat_session import ChatSession
from hivetray.ui.chat_widgets import Attachment, ChatInput, MessageView
from hivetray.ui.error_text import ErrorText
from hivetray.wording import Act, Button, Fix, Remedy, Wording, button_for, sentence, window_text

WINDOW_TITLE = "Hivetray — Quick chat"
STYLE = """
#quickChat { border: 1px solid palette(mid); border-radius: 8px; }
#userMessage { background: palette(alternate-base); border-radius: 6px; }
#assistantMessage { background: palette(base); border-radius: 6px; }
#banner { color: #b54708; }
#demoNotice { color: palette(placeholder-text); }
#messageStatus { color: palette(placeholder-text); font-style: italic; }
"""
FRAME_MS = 16
STATUS_TEXT = {"stopped": "stopped", "interrupted": "interrupted (the app closed)",
               "failed": "failed"}
GET_MODEL = "Get a better model…"
#: the banner's action when the chat role has no model at all: the welcome window
GET_FIRST_MODEL = "Get a model…"
#: with no chat model at all, the banner's button opens the welcome window (not Settings)
GET_FIRST_MODEL_BUTTON = Button(GET_FIRST_MODEL, Act.OPEN_WELCOME, "chat")


class QuickChatWindow(QWidget):
    retry = Signal(str)
    open_settings = Signal()
    #: "Get a better model…": open the catalog download for this role
    get_model = Signal(str)
    #: "Get a model…" (no chat model at all): the welcome window, with every way to one
    open_welcome = Signal()
    hidden = Signal()

    def __init__(self, session: ChatSession) -> None:
        super().__init__(None, Qt.WindowType.Tool | Qt.WindowType.FramelessWindowHint
                         | Qt.WindowType.WindowStaysOnTopHint)
        self.setWindowTitle(WINDOW_TITLE)
        self.setObjectName("quickChat")
        self.setAcceptDrops(True)
        self.setStyleSheet(STYLE + FOCUS_STYLE)
        self.resize(text_size(self, 104, 36))
        self.session = session
        self.reply: MessageView | None = None
        self._build()
        self._paint = QTimer(self)
        self._paint.setSingleShot(True)
        self._paint.setInterval(FRAME_MS)
        self._paint.timeout.connect(self._paint_reply)
        session.chunk.connect(self._on_chunk)
        session.finished.connect(self._on_finished)
        session.failed.connect(self._on_failed)
        session.busy_changed.connect(self._on_busy)
        session.notice.connect(self.show_banner)  # the history could not be written
        self.reload_conversations()
        self._on_busy(False)

    def _build(self) -> None:
        self.conversations = QComboBox()
        self.conversations.setToolTip("Earlier conversations")
        describe(self.conversations, "Earlier conversations")
        self.conversations.activated.connect(self._open_selected)
        new_chat = QPushButton("New chat")
        new_chat.setToolTip("Start a new conversation (Ctrl+N)")
        new_chat.clicked.connect(self.new_chat)
        header = QHBoxLayout()
        header.addWidget(QLabel("<b>Hivetray</b>"))
        header.addWidget(self.conversations, 1)
        header.addWidget(new_chat)
        self.banner = ErrorText("Problem", "banner")
        self.banner_button = QPushButton()
        self.banner_button.clicked.connect(self._banner_action)
        #: what the banner's button does (its remedy), and the role whose state it is about
        self._banner_remedy: Button | None = None
        self._banner_about: str | None = None
        banner_row = QHBoxLayout()
        banner_row.addWidget(self.banner, 1)
        banner_row.addWidget(self.banner_button, 0, Qt.AlignmentFlag.AlignTop)
        self.banner_box = QWidget()
        self.banner_box.setLayout(banner_row)
        self.banner_box.hide()
        # one quiet line while the chat role runs a built-in demo model: what it is, and the
        # way to a real one (the first impression of a tiny model should not read as "broken")
        self.demo_notice = QLabel()
        self.demo_notice.setObjectName("demoNotice")
        self.demo_button = QPushButton(GET_MODEL)
        self.demo_button.setToolTip("Download a stronger chat model from the catalog; it "
                                    "replaces the demo model as soon as it is in")
        self.demo_button.clicked.connect(lambda: self.get_model.emit("chat"))
        demo_row = QHBoxLayout()
        demo_row.setContentsMargins(0, 0, 0, 0)
        demo_row.addWidget(self.demo_notice, 1)
        demo_row.addWidget(self.demo_button)
        self.demo_box = QWidget()
        self.demo_box.setLayout(demo_row)
        self.demo_box.hide()
        self.messages_box = QWidget()
        self.messages_layout = QVBoxLayout(self.messages_box)
        self.messages_layout.addStretch(1)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setWidget(self.messages_box)
        describe(self.scroll_area, "Conversation", "The messages of this conversation, oldest "
                 "first; each says who wrote it")
        self.attachment = Attachment()
        self.input = ChatInput()
        describe(self.input, "Message", "Enter sends, Shift+Enter starts a new line, Esc stops "
                 "the reply or hides the window, Ctrl+V pastes an image")
        self.input.submit.connect(self.send)
        self.input.image_pasted.connect(self.attach)
        attach = QPushButton("Attach image…")
        attach.setToolTip("Attach an image for the vision model (Ctrl+O)")
        attach.clicked.connect(self.choose_image)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.session.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(attach)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.demo_box)
        layout.addWidget(self.banner_box)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.attachment)
        layout.addWidget(self.input)
        layout.addLayout(buttons)
        QShortcut(QKeySequence("Escape"), self, self.escape)
        QShortcut(QKeySequence("Ctrl+N"), self, self.new_chat)
        QShortcut(QKeySequence("Ctrl+O"), self, self.choose_image)

    # -- showing -------------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.isVisible() and self.isActiveWindow():
            self.hide()
        else:
            self.present()

    def present(self) -> None:
        screen = QGuiApplication.screenAt(QCursor.pos()) or QGuiApplication.primaryScreen()
        area = screen.availableGeometry()
        self.move(area.center() - self.rect().center())
        self.show()
        self.raise_()
        self.activateWindow()
        self.input.setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    def escape(self) -> None:
        """Esc stops a running reply; otherwise it hides the window."""
        if not self.session.stop():
            self.hide()

    def hideEvent(self, event: Any) -> None:
        super().hideEvent(event)
        self.hidden.emit()

    # -- conversations -------------------------------------------------------------------------
    def reload_conversations(self) -> None:
        self.conversations.clear()
        try:
            conversations = self.session.history.conversations()
        except HistoryError as exc:  # the chat goes on; earlier conversations cannot be listed
            self.show_banner(str(exc))
            conversations = []
        for conversation in conversations:
            self.conversations.addItem(conversation.title, conversation.id)
        current = self.session.conversation_id
        if current is not None:
            self.conversations.setCurrentIndex(self.conversations.findData(current))

    def _open_selected(self, index: int) -> None:
        conversation_id = self.conversations.itemData(index)
        if conversation_id is None or self.session.busy:
            return
        try:
            messages = self.session.history.messages(int(conversation_id))
        except HistoryError as exc:
            self.show_banner(str(exc))
            return
        self.session.open_conversation(int(conversation_id))
        self.show_messages(messages)

    def new_chat(self) -> None:
        if self.session.busy:
            self.session.stop()
        self.session.conversation_id = None
        self.show_messages([])
        self.input.setFocus()

    def show_messages(self, messages: list[Message]) -> None:
        while self.messages_layout.count() > 1:
            item = self.messages_layout.takeAt(0)
            if item is not None and (widget := item.widget()) is not None:
                widget.deleteLater()
        for message in messages:
            view = self._add_view(message.role, message.content, message.image)
            view.set_status(STATUS_TEXT.get(message.status, ""))
        self.reply = None

    def _add_view(self, role: str, text: str = "", image: bytes | None = None) -> MessageView:
        view = MessageView(role, text, image)
        self.messages_layout.insertWidget(self.messages_layout.count() - 1, view)
        QTimer.singleShot(0, self._scroll_to_end)
        return view

    def _scroll_to_end(self) -> None:
        bar = self.scroll_area.verticalScrollBar()
        bar.setValue(bar.maximum())

    # -- sending and streaming ---------------------------------------------------------------------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.session.busy:
            return
        image = self.attachment.take()
        self._add_view("user", text, image[1] if image else None)
        self.reply = self._add_view("assistant")
        self.input.clear()
        self.session.send(text, image)
        self.reload_conversations()

    def attach(self, name: str, data: bytes) -> None:
        problem = self.attachment.set_image(name, data)
        if problem:
            self.show_banner(problem)

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Attach an image", "",
                                              "Images (*.png *.jpg *.jpeg *.webp *.gif *.bmp)")
        if path:
            self.attach(Path(path).name, Path(path).read_bytes())

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasImage() or any(url.isLocalFile() for url in mime.urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                self.attach(path.name, path.read_bytes())
                event.acceptProposedAction()
                return

    def _on_chunk(self, piece: str) -> None:
        if self.reply is not None:
            self.reply.append(piece)
            if not self._paint.isActive():
                self._paint.start()

    def _paint_reply(self) -> None:
        if self.reply is not None:
            self.reply.repaint_text()
            self._scroll_to_end()

    def _on_finished(self, result: dict[str, Any]) -> None:
        self._paint_reply()
        if self.reply is not None:
            self.reply.settle()
            if result.get("finish_reason") == "cancelled":
                self.reply.set_status("stopped")

    def _on_failed(self, error: HivetrayError) -> None:
        """The reply says it failed and why; the banner offers the remedy as its button (Set
        one… for a role with no model, Retry for a role in error or cooling down)."""
        self._paint_reply()
        if self.reply is not None:
            self.reply.settle()
            self.reply.set_status(f"failed: {window_text(error)}")
        self.show_problem(error.wording)

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.send_button.setEnabled(not busy)

    # -- role problems ---------------------------------------------------------------------------
    def show_banner(self, text: str, button: Button | None = None,
                    about: str | None = None) -> None:
        """``text`` in the banner ("" hides it) with ``button`` beside it; ``about`` is the role
        whose state it reports, so the banner goes when that role is well again."""
        self.banner.set_text(text)
        self.banner_button.setText(button.label if button else "")
        self.banner_button.setVisible(button is not None)
        self._banner_remedy, self._banner_about = button, about
        self.banner_box.setVisible(bool(text))

    def show_problem(self, wording: Wording, about: str | None = None) -> None:
        """A failure in the window's words: the problem, and its remedy as the button when a
        button here can carry it out (Retry, Set one…); else the remedy in words."""
        button = button_for(wording.remedy)
        if button is not None and button.act is Act.DOWNLOAD:  # that button lives in Settings
            button = None
        remedy = wording.remedy
        if remedy is not None and remedy.fix is Fix.SET_MODEL and remedy.role == "chat":
            button = GET_FIRST_MODEL_BUTTON  # no chat model at all: the welcome gets one
        if about is None and button is not None and button.act is Act.RETRY:
            about = button.role
        self.show_banner(sentence(wording.beside(button)), button, about)

    def update_roles(self, roles: Sequence[RoleStatus]) -> None:
        """Say so when the chat worker cannot answer right now, with a countdown and Retry;
        and, in one line, when it runs the built-in demo model (its ``model_label``)."""
        chat = next((r for r in roles if r.role == "chat"), None)
        if chat is None:
            return
        self.demo_notice.setText(f"{chat.model_label}." if chat.model_label else "")
        self.demo_box.setVisible(bool(chat.model_label))
        if chat.state is RoleState.COOLING_DOWN:
            seconds = round(chat.retry_in_s or 0)
            crash = sentence(chat.error_for_window or "")
            self.show_banner(f"The chat worker keeps crashing; retrying in {seconds} s. {crash}",
                             button_for(Remedy(Fix.RETRY_NOW, "chat")), "chat")
        elif chat.state is RoleState.ERROR:
            failure = chat.last_failure or Wording(chat.last_error or "unknown error")
            self.show_problem(Wording(f"the chat model could not load: {failure.problem}",
                                      failure.remedy or Remedy(Fix.RETRY, "chat")), "chat")
        elif not chat.configured:
            self.show_banner("No chat model is set yet.", GET_FIRST_MODEL_BUTTON, "chat")
        elif self._banner_about == "chat":
            self.show_banner("")

    def _banner_action(self) -> None:
        """The banner's button carries out its remedy."""
        button = self._banner_remedy
        if button is None:
            return
        if button.act is Act.RETRY and button.role is not None:
            self.retry.emit(button.role)
        elif button.act is Act.OPEN_WELCOME:
            self.open_welcome.emit()
        else:
            self.open_settings.emit()
