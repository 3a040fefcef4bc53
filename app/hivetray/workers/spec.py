"""What the parent hands a worker process at spawn: small, picklable, explicit."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

#: requests and replies bigger than this are refused with a typed error, never sent
MAX_PAYLOAD_BYTES = 32 * 2**20
#: worker logs are rotated past this size (one backup is kept)
MAX_LOG_BYTES = 2 * 2**20
#: signals a terminal (Ctrl-C) or a service manager sends to a whole process group; a worker
#: must not take them (the app stops its workers): the app blocks them while it creates a
#: worker, the worker ignores SIGINT/SIGHUP in a group of its own, then unblocks them
GROUP_SIGNALS = frozenset(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                          if hasattr(signal, name))


@dataclass(frozen=True)
class WorkerSpec:
    role: str
    model: str
    mmproj: str | None
    n_ctx: int
    n_threads: int
    log_path: str
    #: test-only fault injection ("ignore_shutdown", "ignore_sigterm", "hang_load"); empty in
    #: production
    faults: frozenset[str] = field(default_factory=frozenset)
