"""The checks after every fault, in order: the daemon lives, nothing stays in flight, the
breaker agrees with our ledger, each role hit recovers (timed), no worker outlived its app.

A role left cooling down is resolved on purpose, half the time by ``hivetray retry`` and half
the time by waiting out the cooldown for the half-open attempt, so both exits are exercised.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.chaos.harness import ORPHAN_DEADLINE_S
from tests.chaos.invariants import breaker_problem

if TYPE_CHECKING:
    from tests.chaos.engine import ChaosRun

#: a role in one of these states serves the next request (stopped: it spawns on demand)
USABLE = frozenset({"ready", "busy", "stopped"})
#: clients are done when a fault returns: their requests end (crash) or are cancelled (hang-up;
#: promised within 100 ms, while a generation left running would take seconds)
IN_FLIGHT_DEADLINE_S = 1.0


def check_after(run: ChaosRun, affected: tuple[str, ...], struck: float) -> None:
    check_daemon_alive(run)
    check_in_flight(run)
    check_breakers(run)
    for role in affected:
        recover(run, role, struck)
    check_orphans(run)


def check_daemon_alive(run: ChaosRun) -> None:
    """Only our own SIGKILL may end the daemon; a death by itself is reported (relaunched)."""
    if run.daemon is not None and run.daemon.poll() is None:
        return
    code = run.daemon.returncode if run.daemon is not None else None
    run.rec.violate("daemon_died", f"the daemon exited with {code} by itself")
    if run.daemon is not None:
        run.tracker.app_died(run.daemon.pid, time.monotonic())
    run.launch()


def check_in_flight(run: ChaosRun) -> None:
    deadline = time.monotonic() + IN_FLIGHT_DEADLINE_S
    while True:
        doc, _, _ = run.status()
        busy = {r["role"]: r["in_flight"] for r in (doc or {}).get("roles", [])
                if r["in_flight"]}
        if doc is not None and not busy:
            return
        if time.monotonic() >= deadline:
            run.rec.violate("in_flight", f"still in flight {IN_FLIGHT_DEADLINE_S:g} s after "
                            f"the clients were done: {busy}")
            return
        time.sleep(0.02)


def check_breakers(run: ChaosRun) -> None:
    doc, asked, answered = run.status()
    for row in (doc or {}).get("roles", []):
        ledger = run.ledgers[row["role"]]
        cooling = row["state"] == "cooling_down"
        ledger.sync_open(cooling)
        if ledger.opened_by is not None and not cooling and row["crashes_in_window"] == 0 \
                and not ledger.must_be_cooling(answered):
            ledger.reset()  # the cooldown ended and a half-open attempt proved healthy
        problem = breaker_problem(ledger, row, asked, answered)
        if problem is not None:
            run.rec.violate("breaker", problem)
            run.retry(row["role"])  # a clean slate, so one mismatch is reported once


def recover(run: ChaosRun, role: str, struck: float) -> None:
    """Bring ``role`` back (resolving an open breaker), then time the first good reply."""
    row = run.row(role)
    if row is not None and row["state"] == "cooling_down":
        resolve_open_breaker(run, role)
    elif row is not None and row["state"] == "error":
        run.rec.violate("stuck", f"{role} left in error: {row['last_error']}")
        run.retry(role)
    s = run.settings
    if run.wait_row(role, lambda r: r["state"] in USABLE, s.start_timeout_s + s.cooldown_s + 5.0,
                    f"{role} usable again") is None:
        return
    if run.probe(role).error is None:
        if run.ledgers[role].opened_by is not None:
            run.ledgers[role].reset()  # after an open breaker, a success is the half-open one
        run.recoveries.append({"fault": run.rec.fault, "step": run.rec.step, "role": role,
                               "seconds": round(time.monotonic() - struck, 3)})


def resolve_open_breaker(run: ChaosRun, role: str) -> None:
    """A call fails fast with CircuitOpen; then either retry now, or wait out the cooldown and
    let the half-open attempt succeed (which clears the history)."""
    ledger = run.ledgers[role]
    reply = run.probe(role, expect="any")
    if reply.error is None:  # the cooldown ended meanwhile: that was the half-open success
        ledger.reset()
        return
    if reply.error.get("type") != "CircuitOpen":
        run.rec.violate("breaker", f"{role}: a call while cooling down failed with "
                        f"{reply.error.get('type')}, not CircuitOpen")
    if run.rng.random() < 0.5:
        run.retry(role)
        return
    run.wait_row(role, lambda r: r["state"] != "cooling_down", run.settings.cooldown_s + 3.0,
                 f"{role} cooldown over")
    if run.probe(role).error is None:
        ledger.reset()
    else:
        run.retry(role)


def check_orphans(run: ChaosRun) -> None:
    """Workers of a dead app are gone within 2 s of its death (frozen ones: see relaunch)."""
    while True:
        run.tracker.scan()
        late, pending = run.tracker.overdue(time.monotonic())
        for info in late:
            run.rec.violate("orphan", f"{run.tracker.describe(info)} outlived its app by "
                            f"more than {ORPHAN_DEADLINE_S:g} s")
            run.tracker.put_down(info)
        if not pending:
            return
        time.sleep(0.02)
