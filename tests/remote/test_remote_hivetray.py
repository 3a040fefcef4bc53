"""Hivetray as the remote engine of another Hivetray: one home runs ``hivetray daemon --api``
on the tiny models, a second home's chat, embed and rerank roles point at its API (the key read
from an environment variable), driven through the second home's command line."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hivetray.config import RoleConfig, default_config, save_config
from hivetray.paths import AppPaths
from tests.helpers.api import all_roles_config, start_api
from tests.helpers.daemon import StartDaemon, cli

KEY_ENV = "HIVETRAY_UPSTREAM_KEY"


def test_a_second_hivetray_uses_the_first_as_its_remote_engine(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        tmp_path: Path, home: AppPaths) -> None:
    write_config(all_roles_config(tiny_models))
    upstream = start_api(start_daemon)
    other = tmp_path / "other-home"
    env = {**os.environ, "HIVETRAY_HOME": str(other), KEY_ENV: upstream.key}
    config = default_config()
    roles = {name: RoleConfig(engine="remote", url=upstream.url, model=name,
                              api_key_env=KEY_ENV, timeout_s=20.0)
             for name in ("chat", "embed", "rerank")}
    (other / "config").mkdir(parents=True)
    path = other / "config" / "config.toml"
    save_config(path, replace(config, roles={**config.roles, **roles}))
    assert upstream.key not in path.read_text()

    status = cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    rows = {row["role"]: row for row in json.loads(status.stdout)["roles"]}
    assert (rows["chat"]["engine"], rows["chat"]["url"]) == ("remote", upstream.url)
    assert rows["chat"]["state"] == "stopped" and rows["vision"]["engine"] == "local"
    text = cli("status", env=env)
    assert f"chat @ {upstream.url}" in text.stdout

    chat = cli("chat", "hello", "--max-tokens", "5", "--json", env=env, timeout=60)
    assert chat.returncode == 0, chat.stderr
    lines = [json.loads(line) for line in chat.stdout.splitlines()]
    assert lines[-1]["done"] and lines[-1]["usage"]["completion_tokens"] == 5
    assert "".join(line.get("text", "") for line in lines[:-1])

    embed = cli("embed", "one", "two", env=env, timeout=60)
    assert embed.returncode == 0, embed.stderr
    assert len(json.loads(embed.stdout)["embeddings"]) == 2
    rerank = cli("rerank", "query", "a", "bb", env=env, timeout=60)
    assert rerank.returncode == 0, rerank.stderr
    assert sorted(r["index"] for r in json.loads(rerank.stdout)["results"]) == [0, 1]

    wrong = cli("chat", "hello", "--max-tokens", "2", env={**env, KEY_ENV: "wrong"}, timeout=60)
    assert wrong.returncode != 0
    assert "refused the key (HTTP 401)" in wrong.stderr and KEY_ENV in wrong.stderr
    assert "wrong" not in wrong.stderr  # the key itself is never echoed
