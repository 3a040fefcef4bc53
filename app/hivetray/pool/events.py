"""Typed, timestamped, JSON-serialisable pool events kept in a ring buffer.

Every state change, spawn, crash, cooldown and reap becomes an :class:`Event`; subscribers (the
UI's table model, the app log, the instance socket) get them as plain callbacks on the loop
thread, so the pool never knows who listens.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hivetray.wording import Wording

log = logging.getLogger("hivetray.events")


class EventKind(StrEnum):
    STATE = "state"
    SPAWN = "spawn"
    READY = "ready"
    LOAD_ERROR = "load_error"
    CRASH = "crash"
    BREAKER_OPEN = "breaker_open"
    BREAKER_CLOSED = "breaker_closed"
    PING_TIMEOUT = "ping_timeout"
    START_TIMEOUT = "start_timeout"
    REAP = "reap"
    STOP = "stop"
    ESCALATE = "escalate"
    SWEEP = "sweep"
    #: a settings problem (a bad value, a malformed file) or a change applied
    CONFIG = "config"
    #: a background task of the pool or a click's work failed
    TASK_FAILED = "task_failed"
    #: the quick-chat shortcut was registered, or could not be
    HOTKEY = "hotkey"
    #: the chat history could not be read or written
    HISTORY = "history"
    #: the HTTP API started, stopped, or could not start (hivetray.api_control)
    API = "api"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    role: str | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    level: str = "info"
    #: a failure's problem and typed remedy, for windows and notifications to word their way
    #: (``hivetray.wording.notification_text``); ``message`` is the CLI's and the log's text
    wording: Wording | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = str(self.kind)
        if self.wording is None:  # only failures have one: other events keep their shape
            del out["wording"]
        return out


Subscriber = Callable[[Event], None]


class EventLog:
    def __init__(self, capacity: int = 5000) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: Event) -> None:
        self._events.append(event)
        level = logging.WARNING if event.level in ("warning", "error") else logging.INFO
        log.log(level, "%s", json.dumps(event.to_dict(), default=str))
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken listener must not break the pool
                log.exception("event subscriber failed")

    def recent(self, limit: int | None = None, role: str | None = None) -> list[Event]:
        events = [e for e in self._events if role is None or e.role == role]
        return events[-limit:] if limit else events
