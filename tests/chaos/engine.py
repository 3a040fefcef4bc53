"""The chaos runner: pick a fault with a seeded generator, inject it into a real daemon, then
check every invariant; a violation is recorded (fault, seed, step, details) and the run goes on.

The seed fixes the sequence of faults and of their random choices; what the machine's timing
then does is part of the experiment, so a replay reproduces the sequence, not the nanoseconds.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from tests.chaos import checks
from tests.chaos.harness import (
    CRASH_NOTICE_S,
    LAUNCH_DEADLINE_S,
    ROLES,
    STATUS_DEADLINE_S,
    ChaosEnv,
    CliOutcome,
    Exchange,
    Launcher,
    chat_request,
    exchange,
    launch_daemon,
    run_cli,
)
from tests.chaos.invariants import (
    BreakerLedger,
    Crash,
    ProcessTracker,
    Recorder,
    cli_failure_problem,
    error_reply_problem,
)

Fault = Callable[["ChaosRun"], tuple[str, ...]]
PR_SET_CHILD_SUBREAPER = 36


class ChaosRun:
    """One daemon (relaunched as faults demand), one seeded generator, one report."""

    def __init__(self, env: ChaosEnv, seed: int, *, launcher: Launcher | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.env = env
        self.settings = env.settings
        self.seed = seed
        self.rng = random.Random(seed)
        self.rec = Recorder(seed)
        self.launcher: Launcher = launcher or (
            lambda e: launch_daemon(e, env.root / "daemon-logs"))
        self.progress = progress or (lambda _line: None)
        self.socket = env.socket_path
        self.ledgers = {role: self._new_ledger() for role in ROLES}
        self.tracker = ProcessTracker([env.paths().log_dir,
                                       env.paths(env.private_home).log_dir])
        self.daemon: subprocess.Popen[bytes] | None = None
        self.launches = 0
        self.faults: Counter[str] = Counter()
        self.sequence: list[str] = []
        self.recoveries: list[dict[str, Any]] = []
        self.kinds: list[str] = []
        #: when the current fault struck (a kill, a freeze, a relaunch, a fixed model file);
        #: recovery is timed from here (default: when the fault's clients were done)
        self.fault_at: float | None = None
        self._reaping = threading.Event()
        self._reaping.set()
        self.started_at = time.monotonic()

    def _new_ledger(self) -> BreakerLedger:
        s = self.settings
        return BreakerLedger(s.restart_budget, s.restart_window_s, s.cooldown_s)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.env.write_configs()
        _set_subreaper(True)
        self._reaping.clear()
        threading.Thread(target=self._reap_adopted, name="chaos-reaper", daemon=True).start()
        self.launch()
        self.wait_row("rerank", lambda r: r["state"] == "ready", LAUNCH_DEADLINE_S,
                      "the pinned rerank role ready after launch")

    def launch(self) -> float:
        """(Re)launch the daemon; every breaker starts fresh with the new instance."""
        started = time.monotonic()
        self.daemon = self.launcher(self.env.env())
        took = time.monotonic() - started
        self.launches += 1
        self.tracker.add_app(self.daemon.pid, f"daemon #{self.launches}")
        for ledger in self.ledgers.values():
            ledger.reset()
        self.rec.figure("launch_s", took)
        return took

    @property
    def daemon_pid(self) -> int:
        assert self.daemon is not None
        return self.daemon.pid

    def close(self) -> None:
        """``hivetray quit``: the daemon exits and leaves no worker behind (idempotent)."""
        if self._reaping.is_set():
            return
        self.rec.fault, self.rec.step = "quit", self.rec.step + 1
        if self.daemon is not None and self.daemon.poll() is None:
            started = time.monotonic()
            budget = self.settings.shutdown_grace_s + 15.0
            self.cli("quit", expect="ok", timeout=budget)
            try:
                self.daemon.wait(budget)
            except subprocess.TimeoutExpired:
                self.rec.violate("deadline", f"the daemon still ran {budget:g} s after quit")
                self.daemon.kill()
                self.daemon.wait(5)
            self.tracker.app_died(self.daemon.pid, time.monotonic())
            self.rec.figure("quit_s", time.monotonic() - started)
            checks.check_orphans(self)
        self.tracker.kill_everything()
        self._reaping.set()
        deadline = time.monotonic() + 2.0
        while self.tracker.reap_adopted() and time.monotonic() < deadline:
            time.sleep(0.02)  # the last adopted orphans: reaped, not left as zombies
        _set_subreaper(False)

    def _reap_adopted(self) -> None:
        while not self._reaping.wait(0.02):
            self.tracker.reap_adopted()

    # -- observing --------------------------------------------------------------------------
    def status(self) -> tuple[dict[str, Any] | None, float, float]:
        """The instance's status over its socket, timed: it must answer within 1 s."""
        asked = time.monotonic()
        reply = exchange(self.socket, {"cmd": "status"}, timeout=5.0)
        answered = time.monotonic()
        self.rec.figure("status_s", answered - asked)
        if not isinstance(reply.result, dict):
            self.rec.violate("status", f"no status answer in {answered - asked:.2f} s "
                             f"(closed={reply.closed}, error={reply.error}, "
                             f"oserror={reply.oserror})")
            return None, asked, answered
        if answered - asked > STATUS_DEADLINE_S:
            self.rec.violate("status", f"status took {answered - asked:.2f} s "
                             f"(> {STATUS_DEADLINE_S:g} s)")
        return reply.result, asked, answered

    def row(self, role: str) -> dict[str, Any] | None:
        doc, _, _ = self.status()
        return _row(doc, role)

    def wait_row(self, role: str, cond: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str) -> dict[str, Any] | None:
        """Poll status until ``cond(row)``; past the deadline it is a hang (violation)."""
        deadline = time.monotonic() + timeout
        row: dict[str, Any] | None = None
        while True:
            row = self.row(role)
            if row is not None and cond(row):
                return row
            if time.monotonic() >= deadline:
                self.rec.violate("deadline", f"{what}: not within {timeout:g} s "
                                 f"(last row {_short(row)})")
                return None
            time.sleep(0.02)

    # -- acting ---------------------------------------------------------------------------
    def cli(self, *args: str, expect: str = "any", env: dict[str, str] | None = None,
            timeout: float = 30.0, stdin: str | None = None) -> CliOutcome:
        """Run ``hivetray ARGS``: never a hang, every failure typed, and as expected."""
        out = run_cli(args, env or self.env.env(), timeout, stdin)
        self.judge_cli(out, expect, timeout)
        return out

    def judge_cli(self, out: CliOutcome, expect: str, timeout: float) -> None:
        if out.returncode is None:
            self.rec.violate("deadline", f"{out.brief()}: still running after {timeout:g} s")
        elif (problem := cli_failure_problem(out)) is not None:
            self.rec.violate("typed_failure", problem)
        elif expect == "ok" and out.returncode != 0:
            self.rec.violate("unexpected_failure", out.brief())
        elif expect == "fail" and out.returncode == 0:
            self.rec.violate("unexpected_success", out.brief())

    def request(self, request: dict[str, Any] | bytes, *, what: str, expect: str = "any",
                allowed: frozenset[str] = frozenset(), timeout: float = 30.0) -> Exchange:
        reply = exchange(self.socket, request, timeout=timeout)
        self.judge(reply, what=what, expect=expect, allowed=allowed, timeout=timeout)
        return reply

    def judge(self, reply: Exchange, *, what: str, expect: str = "any",
              allowed: frozenset[str] = frozenset(), timeout: float = 30.0) -> None:
        """``expect``: ok (an error in ``allowed`` is fine too), fail, or any."""
        if reply.timed_out:
            self.rec.violate("deadline", f"{what}: no final reply within {timeout:g} s")
        elif (problem := error_reply_problem(reply)) is not None:
            self.rec.violate("typed_failure", f"{what}: {problem}")
        elif reply.bad_lines or reply.extra_lines:
            self.rec.violate("typed_failure", f"{what}: reply lines that are not the protocol's"
                             f" ({reply.bad_lines[:2]}, {reply.extra_lines} after the end)")
        elif expect == "ok" and not (reply.final and reply.error is None) \
                and (reply.error or {}).get("type") not in allowed:
            self.rec.violate("unexpected_failure", f"{what}: {_reply_brief(reply)}")
        elif expect == "fail" and reply.final and reply.error is None:
            self.rec.violate("unexpected_success", what)

    def probe_request(self, role: str) -> dict[str, Any]:
        if role == "chat":
            return chat_request("ping", 2)
        if role == "vision":
            return chat_request("what colour?", 2, self.env.models["image"])
        if role == "embed":
            return {"cmd": "embed", "texts": ["probe"]}
        return {"cmd": "rerank", "query": "probe", "documents": ["a", "b"]}

    def probe(self, role: str, *, expect: str = "ok") -> Exchange:
        return self.request(self.probe_request(role), what=f"{role} probe", expect=expect)

    def live_worker(self, role: str) -> int | None:
        """Make sure the role has a ready worker; its pid (None: cooling down, or the probe
        failed)."""
        row = self.row(role)
        if row is None or row["state"] == "cooling_down" or not self.probe(role).final:
            return None
        row = self.row(role)
        return row["pid"] if row is not None and row["state"] in ("ready", "busy") else None

    def signal_worker(self, pid: int, sig: signal.Signals) -> bool:
        """Signal ``pid`` only if it is a worker of the live daemon (pids get reused)."""
        try:
            if psutil.Process(pid).ppid() != self.daemon_pid:
                return False
            os.kill(pid, sig)
        except (psutil.Error, OSError):
            return False
        if sig == signal.SIGSTOP:
            self.tracker.scan()  # it may have spawned since we last looked
            self.tracker.set_frozen(pid, True)
        elif sig == signal.SIGCONT:
            self.tracker.set_frozen(pid, False)
        return True

    def await_crash(self, role: str, pid: int, since: float, *, timeout: float,
                    notice: bool) -> None:
        """Wait until status no longer shows ``pid``, and count the crash we caused.
        ``notice``: the death was instant (SIGKILL), so the 1 s notice promise applies."""
        row = self.wait_row(role, lambda r: r["pid"] != pid, timeout,
                            f"the crash of {role} worker {pid} seen in status")
        seen = time.monotonic()
        self.tracker.set_frozen(pid, False)  # the instance killed it
        if row is None:
            return
        self.ledgers[role].record(Crash(since, seen))
        if notice:
            self.rec.figure("crash_notice_s", seen - since)
            if seen - since > CRASH_NOTICE_S + 0.05:  # + one status poll
                self.rec.violate("crash_notice", f"{role} worker {pid} killed; status showed "
                                 f"it gone only after {seen - since:.2f} s")

    def retry(self, role: str) -> None:
        self.cli("retry", role, expect="ok")
        self.ledgers[role].reset()

    # -- one step -------------------------------------------------------------------------
    def run(self, count: int, kinds: Sequence[str] | None = None) -> None:
        self.kinds = list(kinds or ())
        for _ in range(count):
            self.step(kinds=kinds)

    def step(self, kind: str | None = None, kinds: Sequence[str] | None = None) -> None:
        from tests.chaos.catalogue import FAULTS, WEIGHTS

        pool = list(kinds or FAULTS)
        chosen = kind or self.rng.choices(pool, [WEIGHTS[k] for k in pool])[0]
        self.rec.step += 1
        self.rec.fault = chosen
        self.faults[chosen] += 1
        self.sequence.append(chosen)
        self.progress(f"step {self.rec.step} {chosen}")
        before = len(self.rec.violations)
        checks.check_daemon_alive(self)
        self.fault_at = None
        try:
            affected = FAULTS[chosen](self)
        except Exception as exc:  # an unexpected behaviour: recorded, and the run goes on
            self.rec.violate("fault_aborted", f"{type(exc).__name__}: {exc}")
            affected = ROLES
        checks.check_after(self, affected, self.fault_at or time.monotonic())
        for violation in self.rec.violations[before:]:
            self.progress(f"  violation [{violation.invariant}] {violation.details}")

    def mark(self) -> None:
        """The fault strikes now (recovery is timed from here)."""
        self.fault_at = time.monotonic()

    # -- the report -----------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        slowest = max(self.recoveries, key=lambda r: float(r["seconds"]), default=None)
        return {
            "seed": self.seed,
            "faults_injected": sum(self.faults.values()),
            "faults_by_kind": dict(sorted(self.faults.items())),
            "violation_count": len(self.rec.violations),
            "violations": [v.to_dict() for v in self.rec.violations],
            "slowest_recovery": slowest,
            "recoveries_measured": len(self.recoveries),
            "maxima_s": dict(sorted(self.rec.maxima.items())),
            "daemon_launches": self.launches,
            "total_s": round(time.monotonic() - self.started_at, 2),
            "replay": f"{sys.executable} bench/chaos.py --seed {self.seed} "
                      f"--faults {sum(self.faults.values())}"
                      + (f" --kinds {','.join(self.kinds)}" if self.kinds else ""),
            "sequence": self.sequence,
        }


def _set_subreaper(on: bool) -> None:
    """Adopt orphaned descendants (see :class:`ProcessTracker`); Linux only."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _row(doc: dict[str, Any] | None, role: str) -> dict[str, Any] | None:
    for row in (doc or {}).get("roles", []):
        if row.get("role") == role:
            return dict(row)
    return None


def _short(row: dict[str, Any] | None) -> str:
    if row is None:
        return "none"
    keep = ("state", "pid", "in_flight", "crashes_in_window", "last_error")
    return str({k: row.get(k) for k in keep})


def _reply_brief(reply: Exchange) -> str:
    if reply.error is not None:
        return f"{reply.error.get('type')}: {str(reply.error.get('message'))[:300]}"
    return (f"no final line (closed={reply.closed}, oserror={reply.oserror}, "
            f"chunks={reply.chunks})")


def verdict(run: ChaosRun) -> str:
    """The failure message of a chaos test: the seed to replay, and what broke."""
    lines = [f"chaos seed {run.seed}: {len(run.rec.violations)} violation(s) in "
             f"{run.sequence}"]
    lines += [f"  step {v.step} {v.fault} [{v.invariant}] {v.details}"
              for v in run.rec.violations]
    return "\n".join(lines)
