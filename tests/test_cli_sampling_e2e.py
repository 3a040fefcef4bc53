"""Sampling through the real thing: a real daemon, a real worker, the tiny chat model.

Reproducible on request: the same seed gives the same reply, another seed another; the role's
defaults in config.toml apply when the request sets nothing (a greedy default gives the same
reply every time) and a request's flag overrides them — with no worker restart between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from tests.helpers.daemon import StartDaemon, cli, role_row

pytestmark = pytest.mark.real
#: sampling wide open, so a seed visibly matters even on the tiny random-weights model
WIDE = ("--temperature", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0")


def reply(*args: str) -> str:
    result = cli("chat", "--max-tokens", "24", *args, "hello")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seeded_and_greedy_replies_are_reproducible_through_the_pool(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"], temperature=0.0))
    start_daemon()
    greedy = reply()
    pid = role_row("chat")["pid"]
    assert reply() == greedy  # the config's greedy default applies to a request without flags
    seeded = reply(*WIDE, "--seed", "7")
    assert reply(*WIDE, "--seed", "7") == seeded
    assert reply(*WIDE, "--seed", "8") != seeded
    assert seeded != greedy  # the request's flags overrode the role's greedy default
    assert role_row("chat")["pid"] == pid  # one worker served every setting
