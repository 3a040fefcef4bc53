"""Faults on processes: workers killed or frozen mid-stream and mid-load, crash bursts that
open the breaker, and the app itself SIGKILLed with a frozen worker, then relaunched.

Each fault returns the roles it hit; the runner then checks the invariants and times their
recovery. Crashes we cause are counted in the run's ledgers as soon as status shows them.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from tests.chaos import checks
from tests.chaos.harness import (
    ROLES,
    Streamer,
    chat_request,
    finish_cli,
    spawn_cli,
)

if TYPE_CHECKING:
    from tests.chaos.engine import ChaosRun

STREAM_DEADLINE_S = 30.0


def _stream(run: ChaosRun, role: str) -> Streamer:
    """A generation long enough to be hit in its middle (chat: 400-900 tokens, ~0.5 s)."""
    if role == "vision":
        request = chat_request("describe it at length", 200, run.env.models["image"])
    else:
        request = chat_request("tell me a long story", run.rng.randint(400, 900))
    streamer = Streamer(run.socket, request, STREAM_DEADLINE_S)
    streamer.start()
    if not streamer.first_chunk.wait(STREAM_DEADLINE_S):
        run.rec.violate("deadline", f"no first {role} chunk within {STREAM_DEADLINE_S:g} s")
    return streamer


def _finish(run: ChaosRun, streamer: Streamer, what: str, expect: str = "crash") -> None:
    """Join a client; ``crash``: it may have finished first, but an error must say crash."""
    streamer.join(STREAM_DEADLINE_S + 5.0)
    if streamer.is_alive() or streamer.outcome is None:
        run.rec.violate("deadline", f"{what}: the client never finished")
        return
    run.judge(streamer.outcome, what=what, expect="any" if expect == "crash" else expect,
              timeout=STREAM_DEADLINE_S)
    error = streamer.outcome.error
    if error is not None and expect == "crash" and error.get("type") != "WorkerCrashed":
        run.rec.violate("typed_failure", f"{what}: the stream of a killed worker ended with "
                        f"{error.get('type')}, not WorkerCrashed")


def worker_sigkill_streaming(run: ChaosRun) -> tuple[str, ...]:
    role = "vision" if run.rng.random() < 0.2 else "chat"
    pid = run.live_worker(role)
    if pid is None:
        return (role,)
    streamer = _stream(run, role)
    since = time.monotonic()
    run.mark()
    killed = run.signal_worker(pid, signal.SIGKILL)
    _finish(run, streamer, f"{role} stream whose worker was SIGKILLed")
    if killed:
        run.await_crash(role, pid, since, timeout=5.0, notice=True)
    return (role,)


def _spawn_seen(run: ChaosRun, role: str) -> tuple[Streamer, int | None]:
    """Stop the role (gracefully: not a crash), ask it something, and return as soon as
    status shows the new worker's pid (usually while it loads its model)."""
    run.request({"cmd": "stop", "role": role}, what=f"stop {role}", expect="ok")
    streamer = Streamer(run.socket, run.probe_request(role), STREAM_DEADLINE_S)
    streamer.start()
    row = run.wait_row(role, lambda r: r["pid"] is not None, 10.0, f"{role} spawn seen")
    return streamer, (row["pid"] if row is not None else None)


def worker_sigkill_loading(run: ChaosRun) -> tuple[str, ...]:
    """A SIGKILL while loading (what the OOM killer sends) is a crash within the budget."""
    role = run.rng.choice(ROLES)
    streamer, pid = _spawn_seen(run, role)
    since = time.monotonic()
    run.mark()
    killed = pid is not None and run.signal_worker(pid, signal.SIGKILL)
    _finish(run, streamer, f"{role} request whose new worker was SIGKILLed")
    if killed and pid is not None:
        run.await_crash(role, pid, since, timeout=5.0, notice=True)
    return (role,)


def worker_sigstop_streaming(run: ChaosRun) -> tuple[str, ...]:
    """Frozen mid-stream (or idle): continued soon it finishes its stream; left frozen, the
    health ping must kill it (a crash) and fail its request."""
    role = "chat"
    pid = run.live_worker(role)
    if pid is None:
        return (role,)
    streamer = _stream(run, role) if run.rng.random() < 0.7 else None
    since = time.monotonic()
    run.mark()
    if not run.signal_worker(pid, signal.SIGSTOP):
        if streamer is not None:
            _finish(run, streamer, f"{role} stream", expect="any")
        return (role,)
    if run.rng.random() < 0.5:
        # a pause well inside the ping timeout: a fault parameter, not a wait for a result
        time.sleep(run.rng.uniform(0.05, run.settings.ping_timeout_s * 0.3))
        run.signal_worker(pid, signal.SIGCONT)
        if streamer is not None:
            _finish(run, streamer, f"{role} stream frozen briefly", expect="ok")
        return (role,)
    s = run.settings
    run.await_crash(role, pid, since, notice=False,
                    timeout=s.health_interval_s + s.ping_timeout_s + 3.0)
    if streamer is not None:
        _finish(run, streamer, f"{role} stream of a worker left frozen")
    return (role,)


def worker_sigstop_loading(run: ChaosRun) -> tuple[str, ...]:
    """Frozen while loading: continued soon, it finishes loading and serves; left frozen, the
    start deadline (or, if it made it to ready, the health ping) kills it and counts a crash,
    and the request waiting on it fails, typed."""
    role = run.rng.choice(ROLES)
    streamer, pid = _spawn_seen(run, role)
    since = time.monotonic()
    run.mark()
    if pid is None or not run.signal_worker(pid, signal.SIGSTOP):
        _finish(run, streamer, f"{role} request", expect="any")
        return (role,)
    s = run.settings
    if run.rng.random() < 0.4:
        # a stall well inside every deadline: a fault parameter, not a wait for a result
        time.sleep(run.rng.uniform(0.05, s.ping_timeout_s * 0.3))
        run.signal_worker(pid, signal.SIGCONT)
        _finish(run, streamer, f"{role} request whose new worker stalled briefly", expect="ok")
        return (role,)
    run.await_crash(role, pid, since, notice=False,
                    timeout=s.start_timeout_s + s.health_interval_s + s.ping_timeout_s + 3.0)
    _finish(run, streamer, f"{role} request whose new worker was frozen")
    return (role,)


def crash_burst(run: ChaosRun) -> tuple[str, ...]:
    """Kill a role's worker one more time than the budget allows: the breaker must open
    (cooling_down, CircuitOpen); the runner then resolves it by retry or by cooldown."""
    role = run.rng.choice(("chat", "embed", "rerank"))
    for _ in range(run.settings.restart_budget + 1):
        if run.ledgers[role].opened_by is not None:  # older crashes were in the window too
            break
        pid = run.live_worker(role)
        if pid is None:
            break
        since = time.monotonic()
        run.mark()  # the last kill of the burst
        if run.signal_worker(pid, signal.SIGKILL):
            run.await_crash(role, pid, since, timeout=5.0, notice=True)
    return (role,)


def app_sigkill_frozen_worker(run: ChaosRun) -> tuple[str, ...]:
    """SIGKILL the daemon while one of its workers is frozen (its watchdog cannot run) and
    a CLI chat streams: live workers are gone within 2 s, the CLI fails in one line, and the
    next launch sweeps the frozen leftover."""
    roles = run.rng.sample(["chat", "embed", "vision"], run.rng.randint(1, 3))
    pids = {role: run.live_worker(role) for role in roles}
    cli = None
    if run.rng.random() < 0.5:
        args = ("chat", "tell me a long story", "--max-tokens", "900")
        cli = (spawn_cli(args, run.env.env()), args, time.monotonic())
        run.wait_row("chat", lambda r: r["in_flight"] > 0, 10.0, "the CLI chat in flight")
    frozen = [pid for role, pid in pids.items() if pid is not None and run.rng.random() < 0.7]
    for pid in frozen[:1]:
        run.signal_worker(pid, signal.SIGSTOP)
    run.tracker.scan()
    daemon = run.daemon
    assert daemon is not None
    killed_at = time.monotonic()
    run.mark()
    daemon.kill()
    daemon.wait(10)
    run.tracker.app_died(daemon.pid, killed_at)
    if cli is not None:
        proc, args, started = cli
        run.judge_cli(finish_cli(proc, args, started, 30.0), "any", 30.0)
    checks.check_orphans(run)  # everything but the frozen one: gone within 2 s
    run.launch()
    for info in run.tracker.frozen_leftovers():
        run.rec.violate("orphan", f"{run.tracker.describe(info)} was frozen when its app "
                        "died and is still there after the next launch (not swept)")
        run.tracker.put_down(info)
    run.wait_row("rerank", lambda r: r["state"] == "ready", 10.0,
                 "the pinned rerank role ready after the relaunch")
    return (*roles, "rerank")
