"""Supervisor behaviour over fake workers: single-flight spawn, reaping and its races, health
pings, the breaker as seen by callers, stop escalation and cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hivetray.config import PoolConfig, RoleConfig
from hivetray.errors import CircuitOpen, RequestCancelled, RoleUnconfigured, WorkerCrashed
from hivetray.pool.events import EventKind
from hivetray.pool.states import RoleState
from tests.pool.harness import (
    SCENARIO_DEADLINE_S,
    make_rig,
    open_request,
    settle,
    start_ready,
)

# a scenario runs on fakes in milliseconds: one still running at the deadline waits for
# something that never comes (a broken stop escalation, say)
pytestmark = pytest.mark.timeout(SCENARIO_DEADLINE_S)

S = RoleState


@pytest.mark.asyncio
async def test_concurrent_first_callers_share_one_spawn(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    waiters = [asyncio.ensure_future(rig.role.ensure_ready()) for _ in range(10)]
    await settle()
    assert len(rig.spawner.links) == 1
    rig.spawner.last.ready()
    await asyncio.gather(*waiters)
    assert rig.role.state is S.READY
    assert len(rig.kinds(EventKind.SPAWN)) == 1


@pytest.mark.asyncio
async def test_unconfigured_role_fails_without_spawning(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, model=None)
    with pytest.raises(RoleUnconfigured, match="no model is set for the chat role"):
        await rig.role.ensure_ready()
    assert rig.spawner.links == []


@pytest.mark.asyncio
async def test_spawn_failure_is_an_error_not_a_crash_loop(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.spawner.fail_next = OSError("out of file descriptors")
    with pytest.raises(Exception, match="out of file descriptors"):
        await rig.role.ensure_ready()
    assert rig.role.state is S.ERROR


@pytest.mark.asyncio
async def test_idle_worker_is_reaped_after_its_timeout(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, idle_timeout_s=300)
    await start_ready(rig)
    rig.clock.advance(299)
    assert rig.role.reap_if_idle() is False
    rig.clock.advance(1)
    assert rig.role.reap_if_idle() is True
    assert rig.role.state is S.STOPPING
    await settle(10)
    assert rig.role.state is S.STOPPED
    assert rig.role.breaker.crashes_in_window() == 0  # a reap is not a crash
    assert len(rig.kinds(EventKind.REAP)) == 1


@pytest.mark.parametrize(("pinned", "timeout"), [(True, 300.0), (False, 0.0)])
@pytest.mark.asyncio
async def test_pinned_or_zero_timeout_is_never_reaped(tmp_path: Path, pinned: bool,
                                                timeout: float) -> None:
    rig = make_rig(tmp_path, pinned=pinned, idle_timeout_s=timeout)
    await start_ready(rig)
    rig.clock.advance(10_000)
    assert rig.role.reap_if_idle() is False


@pytest.mark.asyncio
async def test_request_in_flight_is_never_reaped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, idle_timeout_s=300)
    await start_ready(rig)
    async with open_request(rig) as (task, rid):
        rig.clock.advance(1000)
        assert rig.role.reap_if_idle() is False
        rig.spawner.last.result(rid)
        await task
    # the finished request counts as use: the idle clock restarts
    assert rig.role.reap_if_idle() is False


@pytest.mark.asyncio
async def test_call_arriving_during_a_reap_waits_and_respawns(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, idle_timeout_s=300)
    await start_ready(rig)
    rig.clock.advance(300)
    assert rig.role.reap_if_idle() is True
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle(10)
    assert len(rig.spawner.links) == 2  # waited for the stop, then spawned afresh
    rig.spawner.last.ready()
    await waiter
    assert rig.role.state is S.READY


@pytest.mark.asyncio
async def test_ping_timeout_kills_the_hung_worker_and_counts_a_crash(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset({"sigkill"}))
    await start_ready(rig)
    rig.clock.advance(10)
    rig.role.health_tick()
    assert rig.spawner.last.control[-1]["op"] == "ping"
    rig.clock.advance(4.9)
    rig.role.health_tick()
    assert rig.spawner.last.signals == []
    rig.clock.advance(0.1)
    rig.role.health_tick()
    assert rig.spawner.last.signals == ["SIGKILL"]
    await settle()
    assert rig.role.state is S.STOPPED
    assert rig.role.breaker.crashes_in_window() == 1
    assert rig.role.last_error is not None and "health ping" in rig.role.last_error


@pytest.mark.asyncio
async def test_pong_in_time_keeps_the_worker(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    rig.clock.advance(10)
    rig.role.health_tick()
    rig.spawner.last.pong(rig.spawner.last.control[-1]["seq"])
    rig.clock.advance(5)
    rig.role.health_tick()
    assert rig.spawner.last.signals == []


def test_pings_never_spawn(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.clock.advance(100)
    rig.role.health_tick()
    assert rig.spawner.links == []


@pytest.mark.asyncio
async def test_fourth_crash_opens_breaker_and_calls_fail_fast_with_the_countdown(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    for _ in range(4):
        await start_ready(rig)
        rig.spawner.last.exit(-9)
        rig.clock.advance(1)
    assert rig.role.state is S.COOLING_DOWN
    rig.clock.advance(14)
    with pytest.raises(CircuitOpen) as info:
        await rig.role.ensure_ready()
    assert "the chat worker crashed 4 times in 60 s; retrying in 45 s" in str(info.value)
    assert len(rig.spawner.links) == 4


@pytest.mark.asyncio
async def test_half_open_success_closes_the_breaker(tmp_path: Path) -> None:
    # a cooldown shorter than the crash window: the crash is still in the window when the
    # half-open success has to clear it (with equal ones it would expire by itself)
    rig = make_rig(tmp_path, pool=PoolConfig(restart_budget=0, cooldown_s=10,
                                             restart_window_s=60))
    await start_ready(rig)
    rig.spawner.last.exit(-9)
    rig.clock.advance(10)
    assert rig.role.breaker.crashes_in_window() == 1
    await start_ready(rig)  # the half-open attempt
    async with open_request(rig) as (task, rid):
        rig.spawner.last.result(rid)
        await task
    assert rig.role.breaker.crashes_in_window() == 0
    assert len(rig.kinds(EventKind.BREAKER_CLOSED)) == 1


@pytest.mark.asyncio
async def test_half_open_crash_reopens(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, pool=PoolConfig(restart_budget=0, cooldown_s=60))
    await start_ready(rig)
    rig.spawner.last.exit(-9)
    rig.clock.advance(60)
    await start_ready(rig)
    rig.spawner.last.exit(-9)
    assert rig.role.state is S.COOLING_DOWN
    assert rig.role.breaker.retry_in_s() == 60


@pytest.mark.asyncio
async def test_retry_resets_the_breaker_at_once(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, pool=PoolConfig(restart_budget=0))
    await start_ready(rig)
    rig.spawner.last.exit(-9)
    rig.role.retry()
    assert rig.role.state is S.STOPPED
    await start_ready(rig)
    assert rig.role.state is S.READY


@pytest.mark.asyncio
async def test_pinned_role_restarts_after_a_crash(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, pinned=True)
    await start_ready(rig)
    rig.spawner.last.exit(-11)
    assert rig.role.state is S.STARTING
    await settle()  # the respawn follows the file check
    assert len(rig.spawner.links) == 2


@pytest.mark.asyncio
async def test_crash_fails_in_flight_requests_with_the_log_tail(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "worker-chat.log").write_text("an older worker's line\n")
    await start_ready(rig)
    with open(tmp_path / "worker-chat.log", "a") as log:  # this worker's last words
        log.write("loading\nGGML_ASSERT(x) failed\n")
    async with open_request(rig) as (task, _rid):
        rig.spawner.last.exit(-6)
        with pytest.raises(WorkerCrashed) as info:
            await task
    message = str(info.value)
    assert "the chat worker was killed by SIGABRT" in message
    assert str(tmp_path / "worker-chat.log") in message
    assert info.value.log_tail.endswith("GGML_ASSERT(x) failed")
    assert "older worker" not in info.value.log_tail  # only this worker's lifetime
    assert rig.role.in_flight.__len__() == 0


@pytest.mark.asyncio
async def test_leaving_a_stream_early_cancels_in_the_worker_and_keeps_it_in_flight(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    async with open_request(rig) as (task, rid):
        rig.spawner.last.chunk(rid, "a")
        await settle()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert rig.spawner.last.aborted == [rid]
        assert len(rig.role.in_flight) == 1 and rig.role.state is S.BUSY
        rig.spawner.last.cancelled(rid)
    assert len(rig.role.in_flight) == 0 and rig.role.state is S.READY


@pytest.mark.asyncio
async def test_worker_cancelled_reply_raises_request_cancelled(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    async with open_request(rig) as (task, rid):
        rig.spawner.last.cancelled(rid)
        with pytest.raises(RequestCancelled):
            await task


@pytest.mark.parametrize(("exits_on", "signals"), [
    (frozenset({"shutdown"}), []),
    (frozenset({"sigterm"}), ["SIGTERM"]),
    (frozenset({"sigkill"}), ["SIGTERM", "SIGKILL"]),
])
@pytest.mark.asyncio
async def test_stop_escalates_until_the_worker_is_gone(tmp_path: Path, exits_on: frozenset[str],
                                                 signals: list[str]) -> None:
    rig = make_rig(tmp_path, exits_on=exits_on)
    await start_ready(rig)
    link = rig.spawner.last
    task = rig.role.stop("quit")
    assert task is not None
    await task
    assert link.signals == signals
    assert link.closed and rig.role.state is S.STOPPED and rig.role.pid is None
    assert rig.role.breaker.crashes_in_window() == 0


@pytest.mark.asyncio
async def test_stop_completes_even_when_its_awaiter_is_cancelled(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset({"sigkill"}))
    await start_ready(rig)
    task = rig.role.stop("quit")
    assert task is not None
    awaiting = asyncio.ensure_future(asyncio.shield(task))
    await settle()
    awaiting.cancel()
    await asyncio.gather(awaiting, return_exceptions=True)
    await task
    assert rig.role.state is S.STOPPED and rig.spawner.last.signals[-1] == "SIGKILL"


@pytest.mark.asyncio
async def test_model_change_respawns_with_the_new_model(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    task = rig.role.reconfigure(RoleConfig(model="/models/other.gguf"))
    assert task is not None
    await task
    assert rig.role.state is S.STOPPED
    await start_ready(rig)
    assert rig.spawner.last.spec.model == "/models/other.gguf"


@pytest.mark.asyncio
async def test_settings_that_do_not_touch_the_model_keep_the_worker(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    assert rig.role.reconfigure(RoleConfig(model="/models/m.gguf", pinned=True,
                                           idle_timeout_s=5)) is None
    assert rig.role.state is S.READY


@pytest.mark.asyncio
async def test_a_process_that_cannot_be_started_is_an_error(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.role.on_spawn_failed("Cannot allocate memory")  # reported by the spawn thread
    with pytest.raises(Exception, match="could not start the worker process: Cannot"):
        await waiter
    assert rig.role.state is S.ERROR and rig.role.pid is None
    assert rig.spawner.last.closed  # its pipes are released


@pytest.mark.asyncio
async def test_a_start_reported_from_the_spawn_thread_is_announced_once(tmp_path: Path) -> None:
    """The real link knows its pid before its report reaches the loop; one spawn, one event."""
    rig = make_rig(tmp_path)
    rig.spawner.report_start_later = True
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.spawner.last.ready()
    await waiter
    assert [e.data["pid"] for e in rig.kinds(EventKind.SPAWN)] == [rig.role.pid]
