"""One quick-chat conversation's requests: send, stream, stop, and keep history in step.

The window stays thin: it turns keys into ``send``/``stop`` and paints what this object emits.
Every chunk is committed to the history *before* it is emitted for painting, so nothing the
user has seen can be lost by a crash.

The conversation the model gets is kept here in memory (loaded from the history when one is
opened), not re-read from the database on every send: a history that is locked, full or could
not be opened at all then costs the user the saving of their words, reported once through
``notice``, but never the chat itself. A failed history write never ends a streaming reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal

from hivetray.errors import HivetrayError, InternalError, first_line
from hivetray.history import STREAMING, History, HistoryError

log = logging.getLogger(__name__)

StreamFn = Callable[[str, str, dict[str, Any]], AsyncGenerator[dict[str, Any], None]]
T = TypeVar("T")


@dataclass
class Turn:
    """One message of the conversation as the model will see it (text only)."""

    role: str
    content: str


@dataclass
class _Reply:
    """The assistant turn being streamed, and where it is stored (None: it could not be)."""

    turn: Turn
    message_id: int | None = None
    #: set by the request's first step; a task cancelled before it never runs its handlers
    started: bool = False


def model_messages(turns: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """The conversation as sent to the model: user and assistant turns strictly alternating.

    A stopped or failed reply may have no text, which would leave two user turns in a row;
    the chat templates of Gemma, Mistral and Llama 2 reject that, and would keep rejecting the
    conversation from then on. So a user turn that got no (non-blank) reply is left out of what
    is sent (it stays in the history and on screen), while a stopped reply with partial text is
    kept as the assistant's turn. An assistant turn with no user turn before it is left out too,
    so the result starts with the user and, when ``turns`` ends with the new user turn, ends
    with it.
    """
    sent: list[dict[str, str]] = []
    for role, content in turns:
        if role == "user":
            if sent and sent[-1]["role"] == "user":
                sent.pop()  # it got no reply: the newer question replaces it
            sent.append({"role": "user", "content": content})
        elif role == "assistant" and content.strip() and sent and sent[-1]["role"] == "user":
            sent.append({"role": "assistant", "content": content})
    return sent


class ChatSession(QObject):
    #: text appended to the streaming reply
    chunk = Signal(str)
    #: the reply ended: finish_reason ("stop", "length", "cancelled"), usage
    finished = Signal(dict)
    #: the reply failed: the typed error (a HivetrayError; InternalError for a bug of ours),
    #: so the window can offer the right action with isinstance and the error's fields
    failed = Signal(object)
    busy_changed = Signal(bool)
    #: the history could not be read or saved (one line for a banner); the chat goes on. Sent
    #: once per run of failures: again only after a history write has succeeded in between.
    notice = Signal(str)

    def __init__(self, stream: StreamFn, history: History) -> None:
        super().__init__()
        self._stream = stream
        self.history = history
        self._conversation_id: int | None = None
        self._turns: list[Turn] = []
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._history_failing = False

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def conversation_id(self) -> int | None:
        return self._conversation_id

    @conversation_id.setter
    def conversation_id(self, conversation_id: int | None) -> None:
        """Setting it (None: a new, not yet stored chat) switches conversation."""
        self.open_conversation(conversation_id)

    def new_conversation(self) -> int:
        """Start a stored, empty conversation; raises :class:`HistoryError` if it cannot be."""
        conversation = self.history.new_conversation()
        self._conversation_id, self._turns = conversation, []
        return conversation

    def open_conversation(self, conversation_id: int | None) -> None:
        """Continue a stored conversation: its turns are read once, here."""
        self._conversation_id, self._turns = conversation_id, []
        if conversation_id is not None:
            stored = self._history_call(lambda: self.history.messages(conversation_id))
            self._turns = [Turn(m.role, m.content) for m in stored or []]

    def send(self, text: str, image: tuple[str, bytes] | None = None) -> None:
        """Store the user's message, then stream the reply (vision when there is an image)."""
        if self.busy:
            raise RuntimeError("a reply is still streaming; stop it first")
        first_turn = not self._turns
        self._turns.append(Turn("user", text))
        params: dict[str, Any] = {"messages": model_messages(
            (turn.role, turn.content) for turn in self._turns)}
        reply = _Reply(Turn("assistant", ""))
        self._turns.append(reply.turn)
        reply.message_id = self._history_call(
            lambda: self._store_exchange(text, image, first_turn))
        role = "chat"
        if image is not None:
            role, params["images"] = "vision", [{"name": image[0], "data": image[1]}]
        self._busy = True
        task = asyncio.ensure_future(self._run(role, params, reply))
        task.add_done_callback(functools.partial(self._on_task_done, reply))
        self._task = task
        self.busy_changed.emit(True)

    def stop(self) -> bool:
        """Cancel the streaming reply (the worker stops within a token); False if idle."""
        if self._task is None or self._task.done():
            return False
        return self._task.cancel()

    def _store_exchange(self, text: str, image: tuple[str, bytes] | None,
                        first_turn: bool) -> int:
        """Store the user's message and an empty reply marked streaming; the reply's id."""
        if self._conversation_id is None:
            self._conversation_id = self.history.new_conversation(_title(text))
        elif first_turn:
            self.history.rename(self._conversation_id, _title(text))
        self.history.add_message(self._conversation_id, "user", text,
                                 image=image[1] if image else None,
                                 image_name=image[0] if image else None)
        return self.history.add_message(self._conversation_id, "assistant", "",
                                        status=STREAMING)

    async def _run(self, role: str, params: dict[str, Any], reply: _Reply) -> None:
        reply.started = True
        try:
            async with contextlib.aclosing(self._stream(role, "chat", params)) as chunks:
                async for chunk in chunks:
                    if chunk.get("done"):
                        self._store_reply(reply, status="complete")
                        self.finished.emit({k: v for k, v in chunk.items() if k != "done"})
                        return
                    piece = str(chunk.get("text", ""))
                    reply.turn.content += piece
                    self._store_reply(reply)  # committed before painted
                    self.chunk.emit(piece)
        except asyncio.CancelledError:
            self._store_reply(reply, status="stopped")
            self.finished.emit({"finish_reason": "cancelled"})
            raise
        except HivetrayError as exc:
            message = first_line(exc)
            self._store_reply(reply, status="failed", error=message)
            self.failed.emit(exc)
        except Exception as exc:  # a bug of ours: keep the text, tell the user, log the details
            log.error("a quick-chat reply failed with %s", type(exc).__name__, exc_info=exc)
            message = f"the reply failed ({type(exc).__name__}); the details are in the app log"
            self._store_reply(reply, status="failed", error=message)
            self.failed.emit(InternalError(message))

    def _on_task_done(self, reply: _Reply, task: asyncio.Task[None]) -> None:
        """The one place busy ends, however the request ended, even if it never started.

        ``task.cancel()`` before the coroutine's first step means none of its code runs (not
        even ``finally``), so a Stop pressed right after Send is finished here.
        """
        if not reply.started:
            self._store_reply(reply, status="stopped")
            self.finished.emit({"finish_reason": "cancelled"})
        if self._task is task:
            self._task = None
        self._busy = False
        self.busy_changed.emit(False)

    def _store_reply(self, reply: _Reply, *, status: str | None = None,
                     error: str | None = None) -> None:
        """Write the whole reply so far: a write that failed is caught up by the next one."""
        message_id = reply.message_id
        if message_id is None:  # its row could not be stored when sent; that was reported
            return
        self._history_call(lambda: self.history.update_message(
            message_id, reply.turn.content, status=status, error=error))

    def _history_call(self, call: Callable[[], T]) -> T | None:
        """Run a history read or write; on failure report it once and go on without it."""
        try:
            result = call()
        except HistoryError as exc:
            if not self._history_failing:
                self._history_failing = True
                log.warning("%s", exc)  # a path and SQLite's reason: no chat text
                self.notice.emit(first_line(exc))
            return None
        self._history_failing = False
        return result


def _title(text: str) -> str:
    first = " ".join(text.split())
    return first[:60] + ("…" if len(first) > 60 else "") or "New chat"
