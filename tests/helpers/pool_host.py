"""A stand-in app for parent-death tests: run a WorkerPool with the chat model in
``HIVETRAY_HOME``, make one call so the worker exists, print
``{"host": pid, "workers": [pid, ...]}`` on stdout, then wait forever (until killed).

Usage: python pool_host.py MODEL.gguf
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from hivetray.config import Config, RoleConfig
from hivetray.paths import app_paths
from hivetray.pool import WorkerPool


async def host(model: str) -> None:
    config = Config(roles={"chat": RoleConfig(model=model, n_ctx=256, n_threads=1)})
    pool = WorkerPool(config, app_paths())
    await pool.start()
    await pool.call("chat", "chat", {"messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 2})
    workers = [role.pid for role in pool.roles.values() if role.pid is not None]
    print(json.dumps({"host": os.getpid(), "workers": workers}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":  # the guard matters: spawned workers re-import this module
    asyncio.run(host(sys.argv[1]))
