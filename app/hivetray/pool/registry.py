"""Where a pool records its live workers: the home's worker record, or nowhere."""

from __future__ import annotations

from typing import Protocol


class WorkerRegistry(Protocol):
    """Live worker pids, so the owner's next launch can sweep what a crash left behind
    (``pool.sweep.WorkerRecord`` is the real one)."""

    def add(self, role: str, pid: int) -> None: ...

    def remove(self, pid: int) -> None: ...


class NoRegistry:
    """A private pool records nothing: the shared record belongs to the home's owner."""

    def add(self, role: str, pid: int) -> None:
        return None

    def remove(self, pid: int) -> None:
        return None
