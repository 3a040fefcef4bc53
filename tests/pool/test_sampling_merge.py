"""A chat request reaches the worker with the role's sampling defaults filled in, read at the
time of the request (Settings change them without a restart); what the request sets wins."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hivetray.sampling import DEFAULT_SAMPLING
from tests.pool.harness import SCENARIO_DEADLINE_S, make_rig, settle, start_ready

pytestmark = pytest.mark.timeout(SCENARIO_DEADLINE_S)


async def _sent_params(rig: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    async def consume() -> None:
        async for _ in rig.role.stream(method, params):
            pass

    task = asyncio.ensure_future(consume())
    await settle()
    sent = rig.spawner.last.sent[-1]
    rig.spawner.last.result(sent["id"])
    await task
    return dict(sent["params"])


@pytest.mark.asyncio
async def test_chat_requests_get_the_roles_defaults_and_keep_their_own(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    sent = await _sent_params(rig, "chat", {"messages": [], "top_p": 0.5, "seed": None})
    assert sent == {**DEFAULT_SAMPLING.to_params(), "messages": [], "top_p": 0.5}

    assert rig.role.reconfigure(replace(rig.role.config, temperature=0.0, seed=11)) is None
    assert len(rig.spawner.links) == 1  # sampling is not a reason to respawn
    sent = await _sent_params(rig, "chat", {"messages": []})
    assert sent["temperature"] == 0.0 and sent["seed"] == 11


@pytest.mark.asyncio
async def test_other_methods_get_no_sampling(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    await start_ready(rig)
    assert await _sent_params(rig, "embed", {"texts": ["a"]}) == {"texts": ["a"]}
