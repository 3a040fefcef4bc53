"""A stand-in app for parent-death tests: run a WorkerPool with the chat model in
``HIVETRAY_HOME``, make one call so the worker exists, print
``{"host": pid, "workers": [pid, ...]}`` on stdout, then wait forever (until killed).

With ``--hang-load`` the worker freezes while loading (silent on its pipes): the host prints
as soon as the worker process exists.

Usage: python pool_host.py MODEL.gguf [--hang-load]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from hivetray.config import Config, RoleConfig
from hivetray.paths import app_paths
from hivetray.pool import WorkerPool


async def host(model: str, hang_load: bool) -> None:
    config = Config(roles={"chat": RoleConfig(model=model, n_ctx=256, n_threads=1)})
    pool = WorkerPool(config, app_paths(),
                      faults=frozenset({"hang_load"}) if hang_load else frozenset())
    await pool.start()
    chat = pool.role("chat")
    if hang_load:
        chat.begin_start()
        while chat.pid is None:
            await asyncio.sleep(0.01)
    else:
        await pool.call("chat", "chat", {"messages": [{"role": "user", "content": "hi"}],
                                         "max_tokens": 2})
    workers = [role.pid for role in pool.roles.values() if role.pid is not None]
    print(json.dumps({"host": os.getpid(), "workers": workers}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":  # the guard matters: spawned workers re-import this module
    asyncio.run(host(sys.argv[1], "--hang-load" in sys.argv[2:]))
