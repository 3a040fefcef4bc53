"""The Qt-free worker pool: one supervised subprocess per role, driven from an asyncio loop.

Nothing in this package imports PySide6; the tray app and the headless daemon both run it on the
loop they own (qasync's in the tray app).
"""

from typing import TYPE_CHECKING, Any

from hivetray.pool.states import RoleState

if TYPE_CHECKING:
    from hivetray.pool.pool import WorkerPool

__all__ = ["RoleState", "WorkerPool"]


def __getattr__(name: str) -> Any:
    # lazy, so light modules (events, states) can be imported without the whole pool: the tray
    # icon is shown before the pool is even imported
    if name == "WorkerPool":
        from hivetray.pool.pool import WorkerPool

        return WorkerPool
    raise AttributeError(name)
