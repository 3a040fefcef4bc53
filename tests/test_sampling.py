"""The sampling settings: defaults in line with llama-server/Ollama, overrides, and checks."""

from __future__ import annotations

from typing import Any

import pytest

from hivetray.errors import InvalidRequest
from hivetray.sampling import (
    DEFAULT_SAMPLING,
    MAX_SEED,
    SAMPLING_KEYS,
    Sampling,
    check_sampling_params,
    sampling_problem,
)


def test_defaults_penalise_repeats_and_draw_a_fresh_seed() -> None:
    expected = Sampling(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                        repeat_penalty=1.1, repeat_last_n=64, seed=None)
    assert expected == DEFAULT_SAMPLING
    assert DEFAULT_SAMPLING.repeat_penalty > 1  # llama-cpp-python's 1.0 lets small models loop
    assert "seed" not in DEFAULT_SAMPLING.to_params()


def test_a_request_overrides_only_what_it_sets() -> None:
    merged = DEFAULT_SAMPLING.merged({"temperature": 0, "seed": 7, "top_p": None, "other": 1})
    assert merged == Sampling(temperature=0, top_k=40, top_p=0.95, min_p=0.05,
                              repeat_penalty=1.1, repeat_last_n=64, seed=7)
    assert merged.greedy and not DEFAULT_SAMPLING.greedy


def test_describe_says_greedy_or_the_settings() -> None:
    assert DEFAULT_SAMPLING.describe() == ("temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, "
                                           "repeat penalty 1.1 over 64 tokens, random seed")
    assert Sampling(temperature=0, seed=3).describe().startswith("greedy (temperature 0)")
    assert Sampling(seed=3).describe().endswith("seed 3")


@pytest.mark.parametrize(("key", "good", "bad"), [
    ("temperature", [0, 0.7, 5], [-0.1, 5.1, "hot", True, None]),
    ("top_k", [0, 40, 10_000], [-1, 4.0, "40"]),
    ("top_p", [0.01, 1], [0, 1.01, -1]),
    ("min_p", [0, 0.05, 1], [-0.01, 1.5]),
    ("repeat_penalty", [0.5, 1, 5], [0, 5.5, -1]),
    ("repeat_last_n", [0, 64], [-1, 64.0]),
    ("seed", [0, 42, MAX_SEED], [-1, MAX_SEED + 1, 1.5, False]),
])
def test_each_setting_has_its_range(key: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert sampling_problem(key, value) is None, (key, value)
    for value in bad:
        problem = sampling_problem(key, value)
        assert problem is not None and problem.startswith(f"{key!r} must be"), (key, value)


def test_a_request_with_a_bad_setting_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidRequest, match="'top_p' must be a number above 0") as caught:
        check_sampling_params({"top_p": 3, "temperature": 0.2})
    assert "\n" not in str(caught.value)
    check_sampling_params({key: None for key in SAMPLING_KEYS})  # unset = the role's default
