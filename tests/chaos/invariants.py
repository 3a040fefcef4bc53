"""What must hold after every fault, and the bookkeeping that lets us check it from outside.

- :class:`Recorder` collects violations (fault, seed, step, details); a run goes on after one.
- :class:`BreakerLedger` is our own count of the crashes we caused per role, with the
  breaker's rules (sliding window, budget, cooldown), so ``crashes_in_window`` and
  ``cooling_down`` can be compared with what the instance reports. Our clock only brackets a
  crash (sent the signal / saw it in ``status``), so the ledger answers with bounds; a crash
  whose age is right at the window's edge may count either way, nothing else may.
- :class:`ProcessTracker` knows every worker process of every app (daemon incarnations,
  private CLI pools) and says which ones outlived their app past the deadline.
- :func:`cli_failure_problem` / :func:`error_reply_problem`: every failure must be typed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.chaos.harness import ORPHAN_DEADLINE_S, CliOutcome, Exchange

#: error types that mean "a bug leaked" rather than a failure Hivetray understood
UNTYPED_ERRORS = frozenset({"RemoteError", "InternalError", None})


@dataclass
class Violation:
    invariant: str
    fault: str
    step: int
    seed: int
    details: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recorder:
    """Where the current step is, what went wrong, and the figures of the run."""

    seed: int
    step: int = 0
    fault: str = "start"
    violations: list[Violation] = field(default_factory=list)
    maxima: dict[str, float] = field(default_factory=dict)

    def violate(self, invariant: str, details: str) -> None:
        self.violations.append(Violation(invariant, self.fault, self.step, self.seed, details))

    def figure(self, name: str, value: float) -> None:
        """Keep the largest value seen of a timing figure."""
        self.maxima[name] = max(self.maxima.get(name, 0.0), round(value, 4))


# -- typed failures -------------------------------------------------------------------------
def cli_failure_problem(outcome: CliOutcome) -> str | None:
    """Why a failed CLI run is not a typed failure (None when it is, or when it succeeded):
    exit code 1, 2 or 3, and exactly one line on stderr, never a traceback."""
    if outcome.returncode is None or outcome.returncode == 0:
        return None
    if outcome.returncode not in (1, 2, 3):
        return f"exit code {outcome.returncode}: {outcome.brief()}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if "Traceback" in outcome.stderr:
        return f"a traceback on stderr: {outcome.brief()}"
    warnings = [line for line in lines if line.startswith("hivetray: warning:")]
    if len(lines) - len(warnings) != 1:
        return f"{len(lines)} lines on stderr, not one: {outcome.brief()}"
    return None


def error_reply_problem(reply: Exchange) -> str | None:
    """Why a socket error reply is not typed (None when it is): a Hivetray error type, a
    message, no server traceback. (A crash's message goes on, after its first line, with the
    tail of the worker's log, which may hold the worker's own tracebacks: that is by design.)"""
    error = reply.error
    if error is None:
        return None
    kind = error.get("type")
    message = error.get("message")
    if not isinstance(kind, str) or kind in UNTYPED_ERRORS:
        return f"error type {kind!r}: {str(message)[:300]!r}"
    if "traceback" in error or (isinstance(message, str)
                                and "Traceback" in message.split("\n", 1)[0]):
        return f"{kind} reply carries a traceback"
    if not isinstance(message, str) or not message.strip():
        return f"{kind} reply has no message"
    return None


# -- the breaker, counted from outside ------------------------------------------------------
@dataclass(frozen=True)
class Crash:
    """A crash we caused: it happened after ``lo`` (the signal) and before ``hi`` (seen)."""

    lo: float
    hi: float


@dataclass
class BreakerLedger:
    budget: int
    window_s: float
    cooldown_s: float
    crashes: list[Crash] = field(default_factory=list)
    #: the crash that opened the breaker (None: closed); ``open_unknown``: an edge case
    opened_by: Crash | None = None
    open_unknown: bool = False

    def record(self, crash: Crash) -> None:
        """Count a crash and decide, as the breaker does, whether it opens."""
        self.crashes.append(crash)
        if self.opened_by is not None:  # after a cooldown: the half-open attempt failed
            self.opened_by = crash
            return
        surely = sum(1 for c in self.crashes if c.lo > crash.hi - self.window_s)
        maybe = sum(1 for c in self.crashes if c.hi > crash.lo - self.window_s)
        if surely > self.budget:
            self.opened_by = crash
        elif maybe > self.budget:
            self.open_unknown = True

    def expected_in_window(self, asked: float, answered: float) -> tuple[int, int]:
        """Bounds on ``crashes_in_window`` for a status asked/answered at these times."""
        lo = sum(1 for c in self.crashes if c.lo > answered - self.window_s)
        hi = sum(1 for c in self.crashes if c.hi > asked - self.window_s)
        return lo, hi

    def must_be_cooling(self, answered: float) -> bool:
        return self.opened_by is not None and answered < self.opened_by.lo + self.cooldown_s

    def sync_open(self, cooling: bool) -> None:
        """Settle an edge case with what the instance says (both answers were correct)."""
        if self.open_unknown:
            self.open_unknown = False
            if cooling:
                self.opened_by = self.crashes[-1]

    def reset(self) -> None:
        """retry / restart / a changed model / a closed half-open breaker / a new instance."""
        self.crashes.clear()
        self.opened_by = None
        self.open_unknown = False


def breaker_problem(ledger: BreakerLedger, row: dict[str, Any], asked: float,
                    answered: float) -> str | None:
    """Compare one status row with the ledger; None when they agree."""
    lo, hi = ledger.expected_in_window(asked, answered)
    got = row.get("crashes_in_window")
    if not isinstance(got, int) or not lo <= got <= hi:
        return (f"{row['role']}: crashes_in_window is {got}, we caused "
                f"{lo if lo == hi else f'{lo}..{hi}'} in the last {ledger.window_s:g} s")
    cooling = row.get("state") == "cooling_down"
    if ledger.must_be_cooling(answered) and not cooling:
        return (f"{row['role']}: {len(ledger.crashes)} crashes exceed the budget of "
                f"{ledger.budget}, but the state is {row.get('state')}, not cooling_down")
    if cooling and ledger.opened_by is None and not ledger.open_unknown:
        return (f"{row['role']}: cooling_down after {got} crashes in the window (budget "
                f"{ledger.budget})")
    return None


# -- processes --------------------------------------------------------------------------------
_STARTING = re.compile(rb"worker pid (\d+) starting")


@dataclass
class WorkerInfo:
    pid: int
    create_time: float | None
    app: int | None
    frozen: bool = False
    reported: bool = False


@dataclass
class AppInfo:
    pid: int
    label: str
    died_at: float | None = None


class ProcessTracker:
    """Every worker any app of the run started, and whose child it was.

    The runner is the workers' subreaper (Linux): a worker orphaned by its app's SIGKILL is
    re-parented to us, in our session. Re-parented to init instead, its process group would be
    orphaned and the kernel would SIGCONT a frozen worker (whose watchdog then ends it), so a
    leftover that only the next launch's sweep can end (a worker stuck in a stalled disk read)
    could not be staged with SIGSTOP.

    Workers are found two ways: as children of a live app whose command line marks a
    ``multiprocessing`` spawn child, and from the ``worker pid N starting`` lines of the
    homes' worker logs (short-lived workers an app reaped before we looked).
    """

    def __init__(self, log_dirs: list[Path]) -> None:
        self.apps: dict[int, AppInfo] = {}
        self.workers: dict[int, WorkerInfo] = {}
        self.log_dirs = log_dirs
        self._offsets: dict[Path, int] = {}
        #: the apps' multiprocessing resource trackers: not workers, but adopted too
        self.helpers: set[int] = set()

    def add_app(self, pid: int, label: str) -> None:
        self.apps[pid] = AppInfo(pid, label)
        self.scan()

    def app_died(self, pid: int, at: float) -> None:
        if pid in self.apps and self.apps[pid].died_at is None:
            self.apps[pid].died_at = at

    def live_apps(self) -> list[int]:
        return [a.pid for a in self.apps.values() if a.died_at is None]

    def scan(self) -> None:
        for app in self.live_apps():
            try:
                children = psutil.Process(app).children()
            except psutil.Error:
                continue
            for child in children:
                with contextlib.suppress(psutil.Error):
                    cmdline = child.cmdline()
                    if "--multiprocessing-fork" in cmdline:
                        self._register(child.pid, app)
                    elif "resource_tracker" in " ".join(cmdline):
                        self.helpers.add(child.pid)
        for folder in self.log_dirs:
            for log in sorted(folder.glob("worker-*.log*")):
                for pid in self._new_pids(log):
                    self._register(pid, None)

    def _new_pids(self, log: Path) -> list[int]:
        try:
            size = log.stat().st_size
            start = self._offsets.get(log, 0)
            if size < start:  # rotated: read it again from the top
                start = 0
            with open(log, "rb") as handle:
                handle.seek(start)
                data = handle.read(size - start)
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        self._offsets[log] = start + cut
        return [int(m) for m in _STARTING.findall(data[:cut])]

    def _register(self, pid: int, app: int | None) -> None:
        info = self.workers.get(pid)
        created = _create_time(pid)
        if info is not None and (created is None or info.create_time in (None, created)):
            if info.app is None and app is not None:
                info.app = app
            return
        if app is None and created is not None:
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(pid).ppid()
                app = parent if parent in self.apps else None
        self.workers[pid] = WorkerInfo(pid, created, app)

    def alive(self, info: WorkerInfo) -> bool:
        """Still running (a zombie nobody reaps is gone; so is a reused pid)."""
        try:
            proc = psutil.Process(info.pid)
            if info.create_time is not None and abs(proc.create_time() - info.create_time) > 0.01:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def children_of(self, app: int) -> list[int]:
        self.scan()
        return [w.pid for w in self.workers.values() if w.app == app and self.alive(w)]

    def set_frozen(self, pid: int, frozen: bool) -> None:
        if pid in self.workers:
            self.workers[pid].frozen = frozen

    def overdue(self, now: float) -> tuple[list[WorkerInfo], list[WorkerInfo]]:
        """(orphans past their deadline, orphans still within it). A frozen worker cannot
        run its watchdog: it is the next launch's sweep that must end it (checked there)."""
        late: list[WorkerInfo] = []
        pending: list[WorkerInfo] = []
        for info in self.workers.values():
            if info.reported or info.frozen or not self.alive(info):
                continue
            app = self.apps.get(info.app) if info.app is not None else None
            if app is not None and app.died_at is None:
                continue
            died = app.died_at if app is not None else None
            if died is None:  # its app is not one we know: it is an orphan since we saw it
                died = time.monotonic()
                info.app = -1
                self.apps.setdefault(-1, AppInfo(-1, "unknown app", died))
            (late if now - died > ORPHAN_DEADLINE_S else pending).append(info)
        return late, pending

    def frozen_leftovers(self) -> list[WorkerInfo]:
        """Frozen workers of dead apps that are still there (after a relaunch: not swept)."""
        return [w for w in self.workers.values() if w.frozen and not w.reported
                and self.alive(w) and w.app is not None
                and (self.apps.get(w.app) is None or self.apps[w.app].died_at is not None)]

    def describe(self, info: WorkerInfo) -> str:
        app = self.apps.get(info.app) if info.app is not None else None
        cmd = ""
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(info.pid)
            cmd = f", ppid {proc.ppid()}, status {proc.status()}"
        return (f"worker pid {info.pid} of {app.label if app else 'an unknown app'} "
                f"(pid {info.app}){cmd}")

    def put_down(self, info: WorkerInfo) -> None:
        """Reported: kill it so one violation does not cascade into the next steps."""
        info.reported = True
        with contextlib.suppress(OSError):
            os.kill(info.pid, signal.SIGKILL)

    def reap_adopted(self) -> int:
        """Reap the workers we adopted as subreaper (only those: never the Popen children,
        whose exit codes the CLI checks need); return how many adopted ones still run."""
        running = 0
        for pid in [*self.workers.copy(), *self.helpers.copy()]:  # registered meanwhile
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except OSError:  # not our child (its app still runs, or it is gone)
                continue
            running += done == 0
        return running

    def kill_everything(self) -> None:
        """End of run: nothing of ours may survive, whatever happened."""
        self.scan()
        for info in self.workers.values():
            if self.alive(info):
                with contextlib.suppress(OSError):
                    os.kill(info.pid, signal.SIGKILL)


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
