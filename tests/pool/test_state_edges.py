"""One test per edge of the role state machine, driven through the supervisor's real code
paths over a fake worker; plus a check that every legal edge is covered and illegal ones are
refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hivetray.config import PoolConfig, RoleConfig
from hivetray.errors import RoleInError, WorkerCrashed
from hivetray.pool.states import LEGAL_TRANSITIONS, IllegalTransition, RoleState
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
COVERED: set[tuple[RoleState, RoleState]] = set()


def edge(old: RoleState, new: RoleState):  # type: ignore[no-untyped-def]
    COVERED.add((old, new))

    def check(transitions: list[tuple[str, str]]) -> None:
        assert (str(old), str(new)) in transitions, transitions

    return check


@pytest.mark.asyncio
async def test_unconfigured_to_stopped_when_a_model_is_set(tmp_path: Path) -> None:
    check = edge(S.UNCONFIGURED, S.STOPPED)
    rig = make_rig(tmp_path, model=None)
    assert rig.role.state is S.UNCONFIGURED
    task = rig.role.reconfigure(RoleConfig(model="/m.gguf"))
    assert task is not None
    await task
    assert rig.role.state is S.STOPPED
    check(rig.transitions)


@pytest.mark.asyncio
async def test_stopped_to_unconfigured_when_the_model_is_removed(tmp_path: Path) -> None:
    check = edge(S.STOPPED, S.UNCONFIGURED)
    rig = make_rig(tmp_path)
    task = rig.role.reconfigure(RoleConfig(model=None))
    assert task is not None
    await task
    assert rig.role.state is S.UNCONFIGURED
    check(rig.transitions)


@pytest.mark.asyncio
async def test_stopped_to_starting_to_ready_on_first_use(tmp_path: Path) -> None:
    check_start = edge(S.STOPPED, S.STARTING)
    check_ready = edge(S.STARTING, S.READY)
    rig = make_rig(tmp_path)
    await start_ready(rig)
    assert rig.role.state is S.READY
    check_start(rig.transitions)
    check_ready(rig.transitions)


@pytest.mark.asyncio
async def test_starting_to_error_when_the_model_fails_to_load(tmp_path: Path) -> None:
    check = edge(S.STARTING, S.ERROR)
    rig = make_rig(tmp_path)
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.spawner.last.load_error("llama.cpp could not load /m.gguf: bad magic")
    with pytest.raises(Exception, match="bad magic"):
        await waiter
    assert rig.role.state is S.ERROR
    assert rig.role.last_error is not None and "bad magic" in rig.role.last_error
    rig.spawner.last.exit(0)  # the worker exits by itself after reporting
    assert rig.role.state is S.ERROR
    with pytest.raises(RoleInError):  # no crash loop: calls fail fast, no new spawn
        await rig.role.ensure_ready()
    assert len(rig.spawner.links) == 1
    check(rig.transitions)


@pytest.mark.asyncio
async def test_starting_to_stopping_when_stopped_while_loading(tmp_path: Path) -> None:
    check = edge(S.STARTING, S.STOPPING)
    rig = make_rig(tmp_path)
    rig.role.begin_start()
    task = rig.role.stop("stop asked")
    assert task is not None
    await task
    assert rig.role.state is S.STOPPED
    check(rig.transitions)


@pytest.mark.asyncio
async def test_ready_to_busy_to_ready_around_a_request(tmp_path: Path) -> None:
    check_busy = edge(S.READY, S.BUSY)
    check_idle = edge(S.BUSY, S.READY)
    rig = make_rig(tmp_path)
    await start_ready(rig)
    async with open_request(rig) as (task, rid):
        assert rig.role.state is S.BUSY
        rig.spawner.last.chunk(rid, "hi")
        rig.spawner.last.result(rid)
        chunks = await task
    assert chunks[0] == {"text": "hi"} and chunks[-1]["done"] is True
    assert rig.role.state is S.READY
    check_busy(rig.transitions)
    check_idle(rig.transitions)


@pytest.mark.parametrize("busy", [False, True])
@pytest.mark.asyncio
async def test_ready_or_busy_to_stopping_to_stopped_on_stop(tmp_path: Path, busy: bool) -> None:
    old = S.BUSY if busy else S.READY
    check = edge(old, S.STOPPING)
    check_done = edge(S.STOPPING, S.STOPPED)
    rig = make_rig(tmp_path)
    await start_ready(rig)
    async with open_request(rig) as (task, _rid):
        if not busy:
            rig.spawner.last.result(_rid)
            await task
        stopping = rig.role.stop("stop asked")
        assert stopping is not None
        await stopping
    assert rig.role.state is S.STOPPED
    check(rig.transitions)
    check_done(rig.transitions)


@pytest.mark.parametrize("busy", [False, True])
@pytest.mark.asyncio
async def test_ready_or_busy_to_stopped_on_a_crash_within_budget(tmp_path: Path,
                                                                  busy: bool) -> None:
    check = edge(S.BUSY if busy else S.READY, S.STOPPED)
    rig = make_rig(tmp_path)
    await start_ready(rig)
    async with open_request(rig) as (task, rid):
        if not busy:
            rig.spawner.last.result(rid)
            await task
        rig.spawner.last.exit(-9)
    assert rig.role.state is S.STOPPED
    assert rig.role.breaker.crashes_in_window() == 1
    check(rig.transitions)


@pytest.mark.parametrize("busy", [False, True])
@pytest.mark.asyncio
async def test_ready_or_busy_to_cooling_down_on_the_crash_over_budget(tmp_path: Path,
                                                               busy: bool) -> None:
    check = edge(S.BUSY if busy else S.READY, S.COOLING_DOWN)
    rig = make_rig(tmp_path, pool=PoolConfig(restart_budget=0, shutdown_grace_s=0.05))
    await start_ready(rig)
    async with open_request(rig) as (task, rid):
        if not busy:
            rig.spawner.last.result(rid)
            await task
        rig.spawner.last.exit(-9)
    assert rig.role.state is S.COOLING_DOWN
    check(rig.transitions)


@pytest.mark.asyncio
async def test_starting_to_stopped_when_killed_from_outside_while_loading(tmp_path: Path) -> None:
    """SIGKILL while loading (what the OOM killer sends): a crash within the restart budget,
    not a load error; the waiting caller gets the crash, the next call tries again."""
    check = edge(S.STARTING, S.STOPPED)
    rig = make_rig(tmp_path)
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.spawner.last.exit(-9)
    with pytest.raises(WorkerCrashed, match="killed by SIGKILL"):
        await waiter
    assert rig.role.state is S.STOPPED and rig.role.breaker.crashes_in_window() == 1
    check(rig.transitions)
    await start_ready(rig)  # a fresh worker, no retry needed
    assert len(rig.spawner.links) == 2


@pytest.mark.asyncio
async def test_starting_to_cooling_down_when_loads_keep_being_killed(tmp_path: Path) -> None:
    check = edge(S.STARTING, S.COOLING_DOWN)
    rig = make_rig(tmp_path, pool=PoolConfig(restart_budget=0, shutdown_grace_s=0.05))
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.spawner.last.exit(-15)
    with pytest.raises(WorkerCrashed):
        await waiter
    assert rig.role.state is S.COOLING_DOWN
    check(rig.transitions)


@pytest.mark.asyncio
async def test_cooling_down_to_stopped_when_the_cooldown_ends(tmp_path: Path) -> None:
    check = edge(S.COOLING_DOWN, S.STOPPED)
    rig = make_rig(tmp_path, pool=PoolConfig(restart_budget=0, cooldown_s=30))
    await start_ready(rig)
    rig.spawner.last.exit(-9)
    assert rig.role.state is S.COOLING_DOWN
    rig.clock.advance(29)
    assert rig.role.expire_cooldown() is False
    rig.clock.advance(1)
    assert rig.role.expire_cooldown() is True
    assert rig.role.state is S.STOPPED
    check(rig.transitions)


@pytest.mark.asyncio
async def test_error_to_stopped_on_retry(tmp_path: Path) -> None:
    check = edge(S.ERROR, S.STOPPED)
    rig = make_rig(tmp_path)
    rig.role.begin_start()
    await settle()
    rig.spawner.last.load_error()
    assert rig.role.state is S.ERROR
    rig.role.retry()
    assert rig.role.state is S.STOPPED and rig.role.last_error is None
    check(rig.transitions)


def test_illegal_transitions_are_refused(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    with pytest.raises(IllegalTransition, match="stopped -> busy"):
        rig.role._set_state(S.BUSY)
    assert rig.role.state is S.STOPPED


def test_every_legal_edge_has_a_test() -> None:
    """Runs last in this module (pytest keeps file order): all edges above were exercised."""
    legal = {(old, new) for old, targets in LEGAL_TRANSITIONS.items() for new in targets}
    assert legal - COVERED == set(), "edges without a test"
    assert COVERED - legal == set(), "tests for edges the table does not allow"
