"""Memory admission: the decision edge by edge (made-up numbers), the estimate on a real tiny
GGUF, and the pool carrying a plan out over fake workers with an injected memory probe."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from hivetray.config import Config, PoolConfig, RoleConfig, default_config
from hivetray.devtools import tinymodels
from hivetray.errors import InsufficientMemory, RoleInError
from hivetray.models.gguf import GGUFInfo, read_header
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.events import EventKind
from hivetray.pool.memory import (
    RUNTIME_OVERHEAD_BYTES,
    SAFETY_MARGIN_BYTES,
    Candidate,
    estimate_worker_memory,
    human_bytes,
    plan_admission,
    refusal,
)
from hivetray.pool.states import RoleState
from tests.conftest import make_config
from tests.pool.fakes import FakeClock, FakeSpawner
from tests.pool.harness import SCENARIO_DEADLINE_S, inline, settle

MiB, GiB = 1 << 20, 1 << 30
S = RoleState


def idle(role: str, rss: int, last_used: float, *, pinned: bool = False,
         is_idle: bool = True) -> Candidate:
    return Candidate(role, rss, last_used, pinned, is_idle)


# -- the decision ----------------------------------------------------------------------------------
def test_it_fits_without_stopping_anything() -> None:
    plan = plan_admission(1 * GiB, 2 * GiB, [idle("embed", 500 * MiB, 1.0)])
    assert plan.fits and plan.stop == ()
    assert plan.usable_bytes == 2 * GiB - SAFETY_MARGIN_BYTES


def test_the_safety_margin_is_not_counted_as_free() -> None:
    available = 1 * GiB
    assert plan_admission(available - SAFETY_MARGIN_BYTES, available, []).fits
    assert not plan_admission(available - SAFETY_MARGIN_BYTES + 1, available, []).fits


def test_it_fits_after_stopping_the_least_recently_used_idle_role() -> None:
    candidates = [idle("vision", 600 * MiB, last_used=50.0), idle("embed", 600 * MiB, 10.0)]
    plan = plan_admission(1 * GiB, 1 * GiB, candidates)
    assert plan.fits and plan.stop == ("embed",)  # used longest ago; one is enough
    assert plan.usable_bytes == 1 * GiB - SAFETY_MARGIN_BYTES + 600 * MiB


def test_two_idle_roles_are_stopped_least_recently_used_first_when_both_are_needed() -> None:
    candidates = [idle("rerank", 300 * MiB, last_used=30.0), idle("vision", 300 * MiB, 20.0),
                  idle("embed", 300 * MiB, 40.0)]
    plan = plan_admission(1 * GiB, 800 * MiB, candidates)
    assert plan.fits and plan.stop == ("vision", "rerank")


@pytest.mark.parametrize("kept", [
    idle("vision", 4 * GiB, 1.0, pinned=True),
    idle("vision", 4 * GiB, 1.0, is_idle=False),  # busy, starting or stopping
    idle("vision", 0, 1.0),  # its RSS could not be read: stopping it frees nothing known
])
def test_pinned_busy_and_unmeasured_roles_are_never_stopped(kept: Candidate) -> None:
    plan = plan_admission(1 * GiB, 512 * MiB, [kept])
    assert not plan.fits and plan.stop == ()


def test_nothing_is_stopped_when_even_every_idle_role_would_not_be_enough() -> None:
    candidates = [idle("embed", 200 * MiB, 1.0), idle("rerank", 200 * MiB, 2.0)]
    plan = plan_admission(2 * GiB, 1 * GiB, candidates)
    assert not plan.fits and plan.stop == ()  # stopping them would only lose warm workers
    assert plan.usable_bytes == 1 * GiB - SAFETY_MARGIN_BYTES


def test_memory_promised_to_a_role_still_loading_is_not_counted_twice() -> None:
    assert plan_admission(1 * GiB, 2 * GiB, []).fits
    plan = plan_admission(1 * GiB, 2 * GiB, [], reserved=900 * MiB)
    assert not plan.fits and plan.usable_bytes == 2 * GiB - SAFETY_MARGIN_BYTES - 900 * MiB


def test_the_refusal_says_the_numbers_and_what_to_do_in_one_line() -> None:
    plan = plan_admission(int(1.4 * GiB), 1 * GiB + SAFETY_MARGIN_BYTES - 100 * MiB, [])
    error = refusal("chat", plan, {"embed": 300 * MiB, "vision": 2 * GiB}, n_ctx=4096)
    assert isinstance(error, InsufficientMemory)
    assert str(error) == ("chat needs ~1.4 GiB of memory, 924 MiB free; stop vision (2.0 GiB) "
                          "or embed (300 MiB) or lower n_ctx (4096) in Settings, then: "
                          "hivetray retry chat")
    assert (error.role, error.needed_bytes) == ("chat", int(1.4 * GiB))
    assert error.available_bytes == plan.available_bytes  # what the probe said
    alone = refusal("chat", plan, {}, n_ctx=0)
    assert "close other programs or set a smaller n_ctx in Settings" in str(alone)
    assert "\n" not in str(error) + str(alone)


def test_human_bytes() -> None:
    assert (human_bytes(212 * MiB), human_bytes(1536 * MiB)) == ("212 MiB", "1.5 GiB")


# -- the estimate ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tinymodels.write_chat_model(tmp_path_factory.mktemp("mem") / "chat.gguf",
                                       n_ctx=4096)


def test_the_estimate_on_a_real_tiny_model_grows_with_n_ctx(tiny_chat: Path) -> None:
    info = read_header(tiny_chat)
    size = tiny_chat.stat().st_size
    small = estimate_worker_memory("chat", info, 1024, size)
    big = estimate_worker_memory("chat", info, 2048, size)
    assert small.files == big.files == size
    # 2 layers × 2048 tokens × 4 KV heads × (16 + 16) K and V widths × 2 bytes (f16)
    assert big.kv_cache == 2 * small.kv_cache == 2 * 2048 * 4 * (16 + 16) * 2
    assert big.compute == 2 * small.compute  # one 512-token batch against the whole context
    assert small.runtime == big.runtime >= RUNTIME_OVERHEAD_BYTES
    assert big.total > small.total > size + RUNTIME_OVERHEAD_BYTES


def test_the_estimate_follows_the_context_the_worker_really_allocates(tiny_chat: Path) -> None:
    info = read_header(tiny_chat)  # trained context 4096
    auto = estimate_worker_memory("chat", info, 0, 1)
    assert auto.kv_cache == info.kv_cache_bytes(4096)  # 0 = the model's trained context
    # the embedding roles never go past the trained context, and decode it in one batch
    embed = estimate_worker_memory("embed", info, 8192, 1)
    assert embed.kv_cache == info.kv_cache_bytes(4096)
    assert embed.compute == 4096 * 4096 * (4 * (4 + 2) + 4)  # scores f32 + f16, one f32 mask
    assert estimate_worker_memory("chat", None, 4096, 123).total == 123 + RUNTIME_OVERHEAD_BYTES


def test_sliding_window_models_hold_a_second_attention_mask() -> None:
    metadata: dict[str, object] = {
        "general.architecture": "gemma3", "gemma3.context_length": 32768,
        "gemma3.block_count": 18, "gemma3.embedding_length": 640,
        "gemma3.attention.head_count": 4, "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 256, "gemma3.attention.value_length": 256}
    full = GGUFInfo("g.gguf", 0, 3, metadata, [], 0, 0)
    windowed = GGUFInfo("g.gguf", 0, 3, {**metadata, "gemma3.attention.sliding_window": 512},
                        [], 0, 0)
    assert windowed.sliding_window == 512 and full.sliding_window is None
    one_mask = estimate_worker_memory("chat", full, 4096, 0)
    two_masks = estimate_worker_memory("chat", windowed, 4096, 0)
    assert two_masks.compute - one_mask.compute == 512 * 4096 * 4
    assert two_masks.kv_cache == one_mask.kv_cache == 18 * 4096 * 1 * (256 + 256) * 2


# -- the pool carrying it out (fake workers, injected memory) -------------------------------------
class FakeMemory:
    """The pool's memory probe, with numbers the test sets."""

    def __init__(self, available: int) -> None:
        self.available_bytes = available
        self.rss_by_pid: dict[int, int] = {}
        self.asked = 0

    def available(self) -> int:
        self.asked += 1
        return self.available_bytes

    def rss(self, pid: int) -> int | None:
        return self.rss_by_pid.get(pid)


def two_role_pool(home: AppPaths, memory: FakeMemory, **chat: object) -> tuple[
        WorkerPool, FakeSpawner, FakeClock]:
    base = default_config()
    roles = dict(base.roles)
    roles["chat"] = RoleConfig(model="/models/chat.gguf", n_ctx=256, **chat)  # type: ignore[arg-type]
    roles["embed"] = RoleConfig(model="/models/embed.gguf", n_ctx=256)
    config = Config(roles=roles, pool=PoolConfig(shutdown_grace_s=0.05), hotkeys=base.hotkeys)
    spawner, clock = FakeSpawner(), FakeClock()
    pool = WorkerPool(config, home, spawner=spawner, clock=clock, memory=memory,
                      validate_model=lambda role, model, mmproj: None, run_blocking=inline)
    return pool, spawner, clock


async def make_ready(pool: WorkerPool, spawner: FakeSpawner, role: str) -> None:
    """Start ``role`` through a real ``ensure_ready`` and play its worker becoming ready."""
    waiter = asyncio.ensure_future(pool.roles[role].ensure_ready())
    for _ in range(100):  # loop turns, not time: admission may stop another worker first
        if spawner.links and spawner.last.spec.role == role and spawner.last.sink:
            break
        await settle(1)
    spawner.last.ready()
    await waiter


#: what a worker with no header and no file costs in the estimate (the fakes' case)
NEED = RUNTIME_OVERHEAD_BYTES
NEED_MIB = NEED >> 20


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_admission_stops_an_idle_role_to_make_room(home: AppPaths) -> None:
    memory = FakeMemory(available=10 * GiB)
    pool, spawner, clock = two_role_pool(home, memory)
    await make_ready(pool, spawner, "embed")
    embed_link = spawner.last
    assert embed_link.pid is not None
    memory.rss_by_pid[embed_link.pid] = 400 * MiB
    clock.advance(60)
    # chat fits only once embed's 400 MiB are back
    memory.available_bytes = SAFETY_MARGIN_BYTES + NEED - 300 * MiB
    await make_ready(pool, spawner, "chat")
    assert embed_link.control[-1] == {"op": "shutdown"} and embed_link.exited
    assert pool.roles["embed"].state is S.STOPPED and pool.roles["chat"].state is S.READY
    stops = [e for e in pool.events.recent() if e.kind is EventKind.STOP]
    assert [e.data["reason"] for e in stops] == ["making room for chat"]
    assert pool.role_snapshot(pool.roles["chat"]).mem_estimate_bytes == NEED
    await pool.shutdown()


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_a_busy_role_is_never_stopped_and_the_start_is_refused(home: AppPaths) -> None:
    memory = FakeMemory(available=10 * GiB)
    pool, spawner, _clock = two_role_pool(home, memory)
    await make_ready(pool, spawner, "embed")
    embed_link = spawner.last
    assert embed_link.pid is not None
    memory.rss_by_pid[embed_link.pid] = 2 * GiB

    async def embed_request() -> list[dict[str, object]]:
        return [chunk async for chunk in pool.stream("embed", "embed", {"texts": ["x"]})]

    request = asyncio.ensure_future(embed_request())
    await settle()
    assert pool.roles["embed"].state is S.BUSY
    memory.available_bytes = 1 * MiB
    with pytest.raises(InsufficientMemory, match=rf"^chat needs ~{NEED_MIB} MiB of memory, 0 MiB "
                       r"free; stop embed \(2\.0 GiB\)"):
        await pool.roles["chat"].ensure_ready()
    chat = pool.roles["chat"]
    assert chat.state is S.ERROR and chat.last_error is not None
    assert chat.last_error.startswith(f"chat needs ~{NEED_MIB} MiB")
    assert embed_link.control == [] and pool.roles["embed"].state is S.BUSY
    assert [link.spec.role for link in spawner.links] == ["embed"]  # chat never spawned
    snapshot = pool.role_snapshot(chat)
    assert snapshot.mem_estimate_bytes == NEED and snapshot.last_error == chat.last_error
    assert snapshot.rss_bytes is None
    assert pool.role_snapshot(pool.roles["embed"]).rss_bytes == 2 * GiB
    with pytest.raises(RoleInError, match="hivetray retry chat"):
        await chat.ensure_ready()  # error until retried
    embed_link.result(embed_link.last_request_id)
    await request
    await pool.shutdown()


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_retry_checks_the_memory_again(home: AppPaths) -> None:
    memory = FakeMemory(available=1 * MiB)
    pool, spawner, _clock = two_role_pool(home, memory)
    chat = pool.roles["chat"]
    with pytest.raises(InsufficientMemory):
        await chat.ensure_ready()
    asked = memory.asked
    memory.available_bytes = 10 * GiB
    pool.retry("chat")
    await make_ready(pool, spawner, "chat")
    assert memory.asked == asked + 1 and chat.state is S.READY
    await pool.shutdown()


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_two_roles_starting_at_once_do_not_share_the_same_free_memory(
        home: AppPaths) -> None:
    memory = FakeMemory(available=SAFETY_MARGIN_BYTES + NEED + NEED // 2)  # room for one
    pool, spawner, _clock = two_role_pool(home, memory)
    first = asyncio.ensure_future(pool.roles["chat"].ensure_ready())
    second = asyncio.ensure_future(pool.roles["embed"].ensure_ready())
    await settle()
    assert [link.spec.role for link in spawner.links] == ["chat"]
    with pytest.raises(InsufficientMemory,
                       match=rf"^embed needs ~{NEED_MIB} MiB of memory, {NEED_MIB // 2} MiB free"):
        await second
    spawner.last.ready()
    await first
    await pool.shutdown()


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_the_estimate_is_shown_once_checked_and_forgotten_when_the_model_changes(
        home: AppPaths) -> None:
    pool, spawner, _clock = two_role_pool(home, FakeMemory(available=10 * GiB))
    chat = pool.roles["chat"]
    assert pool.role_snapshot(chat).mem_estimate_bytes is None  # before any check
    await make_ready(pool, spawner, "chat")
    assert pool.role_snapshot(chat).mem_estimate_bytes == NEED
    assert pool.snapshot().status_json()["roles"][0]["mem_estimate_bytes"] == NEED
    pool.apply_config(replace(pool.config, roles={
        **pool.config.roles, "chat": replace(chat.config, model="/models/other.gguf")}))
    assert pool.role_snapshot(chat).mem_estimate_bytes is None
    await pool.shutdown()


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_a_failing_memory_probe_does_not_keep_roles_from_starting(
        home: AppPaths) -> None:
    class BrokenMemory(FakeMemory):
        def available(self) -> int:
            raise OSError("no /proc")

    pool, spawner, _clock = two_role_pool(home, BrokenMemory(0))
    await make_ready(pool, spawner, "chat")
    failed = [e for e in pool.events.recent() if e.kind is EventKind.TASK_FAILED]
    assert len(failed) == 1 and "the memory check failed (no /proc)" in failed[0].message
    await pool.shutdown()


@pytest.mark.asyncio
@pytest.mark.timeout(SCENARIO_DEADLINE_S)
async def test_a_real_pool_refuses_a_real_model_when_1_mib_is_free(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    """The real check (the GGUF header, in a thread) and the real spawner: nothing spawns."""
    config = make_config(tiny_models["chat"])
    pool = WorkerPool(config, home, memory=FakeMemory(available=1 * MiB), private=True)
    await pool.start()
    try:
        with pytest.raises(InsufficientMemory) as refused:
            await pool.call("chat", "chat", {"messages": [{"role": "user", "content": "hi"}]})
        info = read_header(tiny_models["chat"])
        expected = estimate_worker_memory("chat", info, 256, tiny_models["chat"].stat().st_size)
        assert refused.value.needed_bytes == expected.total
        assert refused.value.available_bytes == 1 * MiB
        assert pool.role_snapshot(pool.roles["chat"]).mem_estimate_bytes == expected.total
        assert not [e for e in pool.events.recent() if e.kind is EventKind.SPAWN]
    finally:
        await pool.shutdown()
