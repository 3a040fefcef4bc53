"""The instance holds the API: it starts it after the pool when ``[api] enabled`` (or
``daemon --api``), follows config reloads (Settings' Save, ``hivetray reload``), stops it
before the pool, and a private pool (a CLI command) never serves it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hivetray.api_control import ApiOverride, ApiState
from hivetray.config import ApiConfig, Config, save_config
from hivetray.instance import Instance
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.waiting import until


def config_with(api: ApiConfig, tiny_models: dict[str, Path]) -> Config:
    return replace(make_config(tiny_models["chat"]), api=api)


async def health(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/health") as response:
        return response.status


@pytest.mark.asyncio
async def test_a_reload_starts_restarts_and_stops_the_api(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    instance = Instance(home, config_with(ApiConfig(), tiny_models))
    await instance.start()
    try:
        assert instance.api.state is ApiState.OFF
        save_config(home.config_file, config_with(ApiConfig(enabled=True, port=0), tiny_models))
        instance.reload_config()  # what Settings' Save and `hivetray reload` do
        await until(lambda: instance.api.state is ApiState.LISTENING, 5.0)
        first = instance.api.url
        assert first is not None and await health(first) == 200

        save_config(home.config_file, config_with(
            ApiConfig(enabled=True, port=0, cors_origins=("http://localhost:1",)), tiny_models))
        instance.reload_config()
        await until(lambda: instance.api.url not in (None, first), 5.0)  # restarted

        save_config(home.config_file, config_with(ApiConfig(), tiny_models))
        instance.reload_config()
        await until(lambda: instance.api.state is ApiState.OFF, 5.0)
    finally:
        await instance.close()


@pytest.mark.asyncio
async def test_close_stops_the_api_before_the_pool(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    instance = Instance(home, config_with(ApiConfig(), tiny_models),
                        api=ApiOverride(enabled=True, port=0))  # `daemon --api --port 0`
    order: list[str] = []
    shutdown = instance.pool.shutdown

    def pool_shutdown() -> Any:
        order.append(f"pool (api {instance.api.state})")
        return shutdown()

    instance.pool.shutdown = pool_shutdown  # type: ignore[method-assign]
    await instance.start()
    url = instance.api.url
    assert url is not None and await health(url) == 200
    await instance.close()
    assert order[0] == "pool (api off)"
    with pytest.raises(aiohttp.ClientConnectionError):
        await health(url)


@pytest.mark.asyncio
async def test_a_private_pool_never_serves_the_api(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    instance = Instance(home, config_with(ApiConfig(enabled=True, port=0), tiny_models),
                        private=True)
    await instance.start()
    try:
        assert instance.api.state is ApiState.OFF and instance.api.url is None
        instance.reload_config()
        assert instance.api.state is ApiState.OFF
    finally:
        await instance.close()
