"""``hivetray daemon``: the instance without widgets, on a plain asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from hivetray.api_control import ApiOverride
from hivetray.config import load_config
from hivetray.errors import AlreadyRunning, HivetrayError
from hivetray.homelock import HomeLock
from hivetray.instance import Instance
from hivetray.logsetup import setup_logging
from hivetray.paths import AppPaths

log = logging.getLogger(__name__)


def run_daemon(paths: AppPaths, api: ApiOverride | None = None) -> int:
    """``api``: ``--api [--port N]``, the HTTP API for this run whatever config.toml says."""
    # first of all, before the log, the config or any worker: is the home someone else's?
    lock = HomeLock(paths)
    try:
        lock.acquire(paths.socket_path)
    except AlreadyRunning as exc:
        print(f"hivetray: {exc}", file=sys.stderr)
        return 1
    setup_logging(paths, to_stderr=True)
    loaded = load_config(paths.config_file)
    for warning in loaded.warnings:
        print(f"hivetray: warning: {warning}", file=sys.stderr)
    return asyncio.run(_serve(Instance(paths, loaded.config, lock=lock, api=api)))


def install_quit_signals(loop: asyncio.AbstractEventLoop, instance: Instance) -> None:
    """First SIGINT/SIGTERM: graceful quit. Second: kill every worker now and exit."""
    def on_signal() -> None:
        if instance.quit_requested.is_set():
            instance.kill_all_now()
            os._exit(1)
        instance.request_quit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def _serve(instance: Instance) -> int:
    try:
        await instance.start()
    except HivetrayError as exc:
        print(f"hivetray: {exc}", file=sys.stderr)
        await instance.close()
        return 1
    try:
        install_quit_signals(asyncio.get_running_loop(), instance)
    except NotImplementedError:  # Windows' loops have no signal handlers: Ctrl-C ends the loop
        log.info("no loop signal handlers on this platform")
    print(f"hivetray daemon: pid {os.getpid()}, socket {instance.paths.socket_path}",
          flush=True)
    if instance.api.url is not None:
        print(f"hivetray daemon: HTTP API on {instance.api.url} (its key: `hivetray api key`)",
              flush=True)
    await instance.quit_requested.wait()
    await instance.close()
    log.info("quit: all workers stopped")
    return 0
