"""One quick-chat conversation's requests: send, stream, stop, and keep history in step.

The window stays thin: it turns keys into ``send``/``stop`` and paints what this object emits.
Every chunk is committed to the history *before* it is emitted for painting, so nothing the
user has seen can be lost by a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from hivetray.errors import HivetrayError
from hivetray.history import STREAMING, History

StreamFn = Callable[[str, str, dict[str, Any]], AsyncGenerator[dict[str, Any], None]]


class ChatSession(QObject):
    #: text appended to the streaming reply
    chunk = Signal(str)
    #: the reply ended: finish_reason ("stop", "length", "cancelled"), usage
    finished = Signal(dict)
    #: the reply failed: a message for the user, and the error's type name (RoleUnconfigured, …)
    failed = Signal(str, str)
    busy_changed = Signal(bool)

    def __init__(self, stream: StreamFn, history: History,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self._stream = stream
        self.history = history
        self.clock = clock
        self.conversation_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.stop_requested_at: float | None = None
        self.last_chunk_at: float | None = None

    @property
    def busy(self) -> bool:
        return self._busy

    def new_conversation(self) -> int:
        self.conversation_id = self.history.new_conversation()
        return self.conversation_id

    def open_conversation(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id

    def send(self, text: str, image: tuple[str, bytes] | None = None) -> None:
        """Store the user's message, then stream the reply (vision when there is an image)."""
        if self.busy:
            raise RuntimeError("a reply is still streaming; stop it first")
        if self.conversation_id is None:
            self.new_conversation()
        conversation = self.conversation_id
        assert conversation is not None
        if not self.history.messages(conversation):
            self.history.rename(conversation, _title(text))
        self.history.add_message(conversation, "user", text,
                                 image=image[1] if image else None,
                                 image_name=image[0] if image else None)
        messages = [{"role": m.role, "content": m.content}
                    for m in self.history.messages(conversation) if m.content or m.role == "user"]
        reply_id = self.history.add_message(conversation, "assistant", "", status=STREAMING)
        params: dict[str, Any] = {"messages": messages}
        role = "chat"
        if image is not None:
            role, params["images"] = "vision", [{"name": image[0], "data": image[1]}]
        self.stop_requested_at = self.last_chunk_at = None
        self._busy = True
        self._task = asyncio.ensure_future(self._run(role, params, reply_id))
        self.busy_changed.emit(True)

    def stop(self) -> bool:
        """Cancel the streaming reply (the worker stops within a token); False if idle."""
        if not self.busy:
            return False
        assert self._task is not None
        self.stop_requested_at = self.clock()
        self._task.cancel()
        return True

    async def _run(self, role: str, params: dict[str, Any], reply_id: int) -> None:
        text = ""
        try:
            async with contextlib.aclosing(self._stream(role, "chat", params)) as chunks:
                async for chunk in chunks:
                    if chunk.get("done"):
                        self.history.update_message(reply_id, text, status="complete")
                        self.finished.emit({k: v for k, v in chunk.items() if k != "done"})
                        return
                    piece = str(chunk.get("text", ""))
                    text += piece
                    self.history.update_message(reply_id, text)  # committed before painted
                    self.last_chunk_at = self.clock()
                    self.chunk.emit(piece)
        except asyncio.CancelledError:
            self.history.update_message(reply_id, text, status="stopped")
            self.finished.emit({"finish_reason": "cancelled"})
        except HivetrayError as exc:
            message = str(exc).split("\n", 1)[0]
            self.history.update_message(reply_id, text, status="failed", error=message)
            self.failed.emit(message, type(exc).__name__)
        finally:
            self._busy = False
            self.busy_changed.emit(False)


def _title(text: str) -> str:
    first = " ".join(text.split())
    return first[:60] + ("…" if len(first) > 60 else "") or "New chat"
