"""Memory admission: know what a worker will need before it is spawned, and make room for it.

Why: a model that does not fit makes the machine swap for minutes or gets the worker OOM-killed
mid-load (a crash that then counts against the restart budget). Before a role's worker is
spawned its need is estimated from the GGUF header; if the memory available now (minus a safety
margin) cannot hold it, idle unpinned roles are stopped least-recently-used first, and if even
that is not enough the start is refused with :class:`InsufficientMemory` saying the numbers and
what to do.

Everything here is a pure function or a plain measurement, so each rule is a unit test with
made-up numbers; the pool gathers the facts (its roles, their RSS, a memory probe) and carries
out the plan (``WorkerPool._admit``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import psutil

from hivetray.errors import InsufficientMemory
from hivetray.models.gguf_types import GGUFInfo
from hivetray.wording import Fix, Remedy


class MemoryProbe(Protocol):
    """Where the pool learns about memory: :class:`SystemMemory` in production, numbers in
    logic tests (so admission is tested without loading anything)."""

    def available(self) -> int:
        """Bytes the system can hand out now without swapping."""

    def rss(self, pid: int) -> int | None:
        """A worker's resident memory (None when it cannot be read: gone, not ours)."""


#: the pool's admission step as a role sees it: (role, bytes needed) → returns once the worker
#: may be spawned, or raises InsufficientMemory
Admit = Callable[[str, int], Awaitable[None]]

#: memory never planned for: the last 256 MiB stay for the desktop and the page cache. A fixed
#: amount, not a share: 5% of a 64 GiB machine (3.2 GiB) would refuse models that fit easily,
#: and the estimate below already errs on the high side.
SAFETY_MARGIN_BYTES = 256 << 20
#: a worker's own cost with any model: the Python interpreter, llama.cpp's libraries, the
#: request handling. Measured: 53-62 MiB RSS for the tiny test models once loaded (their files,
#: cache and buffers are under 3 MiB); see docs/architecture.md, "Memory admission"
RUNTIME_OVERHEAD_BYTES = 64 << 20
#: llama.cpp keeps every token's text, score and lookup entries: ~190 B each measured (Gemma 3,
#: 262k tokens: +48 MiB over the tiny model at load); rounded up
VOCAB_BYTES_PER_TOKEN = 256
#: llama-cpp-python's default batch; the chat and vision workers keep it
DEFAULT_N_BATCH = 512
#: per attention score of one batch against the context: f32 scores (softmax in place) plus
#: the f16 copy ggml's CPU backend makes of them to multiply by the f16 V cache
SCORE_BYTES = 4 + 2
#: per mask entry (f32), one mask per attention kind (two with sliding-window layers)
MASK_BYTES = 4
#: roles whose worker uses the role's n_ctx as is; the embedding roles cap it at the model's
#: trained context and decode a whole context in one batch (``hivetray.workers.embed``)
_EMBEDDING_ROLES = frozenset({"embed", "rerank"})


@dataclass(frozen=True)
class MemoryEstimate:
    """What a worker for a role's files and settings will hold in memory, in parts."""

    files: int
    kv_cache: int
    compute: int
    runtime: int

    @property
    def total(self) -> int:
        return self.files + self.kv_cache + self.compute + self.runtime


def effective_context(role: str, n_ctx: int, trained: int | None) -> int:
    """The context the worker will really allocate: 0 means the model's trained length; the
    embedding roles never go beyond it (as ``hivetray.workers.embed.usable_context``)."""
    wanted = n_ctx or trained or 512
    if role in _EMBEDDING_ROLES and trained:
        return min(wanted, trained)
    return wanted


def estimate_worker_memory(role: str, info: GGUFInfo | None, n_ctx: int,
                           files_bytes: int) -> MemoryEstimate:
    """The estimate for a worker loading files of ``files_bytes`` (model + projector) whose
    header is ``info`` (None when unknown: files and runtime only).

    - the files: llama.cpp maps them, and every weight is read (resident) during inference;
    - the KV cache: f16 K and V for the whole context, every layer (``GGUFInfo.kv_cache_bytes``);
    - the compute buffers: without flash attention llama.cpp holds the attention scores of one
      batch against the whole context (batch × context × heads, f32 and an f16 copy) and the
      attention mask(s) (batch × context, f32); a prompt that fills the context touches all of
      it. This is what grows with n_ctx besides the cache (SmolLM2 135M at n_ctx 8192: +213 MiB
      RSS after a 7400-token prompt; the formula says 232 MiB);
    - the runtime: a fixed overhead plus the vocabulary's bookkeeping.
    """
    if info is None:
        return MemoryEstimate(files_bytes, 0, 0, RUNTIME_OVERHEAD_BYTES)
    context = effective_context(role, n_ctx, info.context_length)
    batch = context if role in _EMBEDDING_ROLES else min(DEFAULT_N_BATCH, context)
    heads = info.head_count
    n_head = max(heads, default=0) if isinstance(heads, list) else heads or 0
    masks = 2 if info.sliding_window else 1
    return MemoryEstimate(
        files=files_bytes,
        kv_cache=info.kv_cache_bytes(context) or 0,
        compute=batch * context * (n_head * SCORE_BYTES + masks * MASK_BYTES),
        runtime=RUNTIME_OVERHEAD_BYTES + (info.vocab_size or 0) * VOCAB_BYTES_PER_TOKEN)


# -- the decision ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """Another role with a live worker, as admission sees it."""

    role: str
    #: its worker's measured resident memory (0 when it could not be read)
    rss_bytes: int
    #: when its last request finished, or it became ready (the pool's clock)
    last_used: float
    pinned: bool
    #: ready with no request in flight (not starting, not busy, not stopping)
    idle: bool

    @property
    def stoppable(self) -> bool:
        return self.idle and not self.pinned and self.rss_bytes > 0


@dataclass(frozen=True)
class AdmissionPlan:
    needed_bytes: int
    #: what the probe said, before the margin and the reservations
    available_bytes: int
    #: what this role may use: available − margin − memory promised to roles still loading,
    #: plus the RSS of the roles in ``stop``
    usable_bytes: int
    #: roles to stop first, least recently used first (empty when it does not fit anyway)
    stop: tuple[str, ...]
    fits: bool


def plan_admission(needed: int, available: int, candidates: Iterable[Candidate], *,
                   reserved: int = 0, margin: int = SAFETY_MARGIN_BYTES) -> AdmissionPlan:
    """Decide whether a worker needing ``needed`` bytes may start, and what to stop first.

    ``reserved`` is memory already promised to other roles' workers that are still loading
    (their estimate minus what they hold so far), so two roles starting at once do not both
    count the same free memory. Idle, unpinned roles are stopped in least-recently-used order,
    only as many as needed; their RSS counts as freed. Busy, starting and pinned roles are never
    stopped, and when stopping every idle one would still not be enough, nothing is stopped.
    """
    usable = available - margin - reserved
    if needed <= usable:
        return AdmissionPlan(needed, available, usable, (), True)
    chosen: list[str] = []
    for candidate in sorted((c for c in candidates if c.stoppable), key=lambda c: c.last_used):
        chosen.append(candidate.role)
        usable += candidate.rss_bytes
        if needed <= usable:
            return AdmissionPlan(needed, available, usable, tuple(chosen), True)
    return AdmissionPlan(needed, available, available - margin - reserved, (), False)


def refusal(role: str, plan: AdmissionPlan, running: dict[str, int],
            n_ctx: int) -> InsufficientMemory:
    """The one-line error for a start that does not fit: the numbers, and what to do as a
    typed remedy (the CLI names ``hivetray retry``, a window the Retry button).

    ``running`` maps the other roles that hold a worker (busy or pinned ones, typically) to
    their RSS: stopping them is the first remedy, biggest first.
    """
    biggest = sorted(running, key=lambda name: -running[name])
    stop = tuple(f"{name} ({human_bytes(running[name])})" if running[name] else name
                 for name in biggest)
    problem = (f"{role} needs ~{human_bytes(plan.needed_bytes)} of memory, "
               f"{human_bytes(max(0, plan.usable_bytes))} free")
    return InsufficientMemory(problem, role, plan.needed_bytes, plan.available_bytes,
                              Remedy(Fix.FREE_MEMORY, role, stop=stop, n_ctx=n_ctx))


def human_bytes(n: int) -> str:
    """'212 MiB', '1.4 GiB': what the status and the errors show."""
    if n >= 1 << 40:
        return f"{n / 2**40:.1f} TiB"
    if n >= 1 << 30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB"


def memory_text(rss: int | None, estimate: int | None, unknown: str = "—") -> str:
    """A role's memory for people: '212 MiB (est. 240 MiB)' — the measured RSS next to what
    was estimated before its worker started, so a wrong estimate is visible at a glance;
    'est. 240 MiB' with no worker running (e.g. refused for lack of memory)."""
    if estimate is None:
        return human_bytes(rss) if rss else unknown
    return f"{human_bytes(rss)} (est. {human_bytes(estimate)})" if rss else \
        f"est. {human_bytes(estimate)}"


# -- measurements (blocking: /proc reads; the pool runs them off the loop) ------------------------
class SystemMemory:
    """The production probe, through psutil."""

    def available(self) -> int:
        """``MemAvailable``: free memory plus the page cache the kernel can reclaim (a model
        file read recently is in it, and loading it again reuses those pages)."""
        return int(psutil.virtual_memory().available)

    def rss(self, pid: int) -> int | None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None


def measure(probe: MemoryProbe, pids: Iterable[int]) -> tuple[int, dict[int, int]]:
    """The memory available now and each live worker's RSS (0 when it cannot be read)."""
    return probe.available(), {pid: probe.rss(pid) or 0 for pid in pids}


async def admit_always(role: str, needed: int) -> None:
    """No admission (a supervisor on its own, in unit tests): every start may go ahead."""
