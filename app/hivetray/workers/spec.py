"""What the parent hands a worker process at spawn: small, picklable, explicit."""

from __future__ import annotations

from dataclasses import dataclass, field

#: requests and replies bigger than this are refused with a typed error, never sent
MAX_PAYLOAD_BYTES = 32 * 2**20
#: worker logs are rotated past this size (one backup is kept)
MAX_LOG_BYTES = 2 * 2**20


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
