"""The Qt-free worker pool: one supervised subprocess per role, driven from an asyncio loop.

Nothing in this package imports PySide6; the tray app and the headless daemon both run it on the
loop they own (qasync's in the tray app).
"""

from hivetray.pool.pool import WorkerPool
from hivetray.pool.states import RoleState

__all__ = ["RoleState", "WorkerPool"]
