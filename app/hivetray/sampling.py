"""How a chat or vision reply is sampled: the settings, their defaults and their checks.

Why its own module: the same seven settings are a role's defaults in ``config.toml`` (and
Settings), per-request overrides on the socket, the CLI and the quick chat, and the sampler chain
a worker builds; one set of names, ranges and messages serves all of them. Pure Python, importable
on both sides of the process boundary.

The defaults follow llama-server and Ollama (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05),
with Ollama's repeat penalty of 1.1 over the last 64 tokens: llama-cpp-python leaves the penalty
at 1.0, and small models then loop ("course course course …"). ``seed=None`` draws a fresh seed
per request; a fixed seed, or ``temperature=0`` (greedy), makes a reply reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from hivetray.errors import InvalidRequest

#: the roles whose requests are sampled (the others embed or score)
SAMPLED_ROLES = ("chat", "vision")
#: largest seed the sampler takes (llama.cpp's seeds are uint32; 0xFFFFFFFF means "random")
MAX_SEED = 2**32 - 2


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def to_params(self) -> dict[str, Any]:
        """The request parameters these settings stand for (``seed`` only when fixed)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def merged(self, params: dict[str, Any]) -> Sampling:
        """These settings overridden by a request's (already checked) sampling parameters."""
        overrides = {key: params[key] for key in SAMPLING_KEYS if params.get(key) is not None}
        return Sampling(**{**asdict(self), **overrides})

    def describe(self) -> str:
        """One line for people (the status window, ``hivetray status``)."""
        if self.greedy:
            head = "greedy (temperature 0)"
        else:
            head = (f"temperature {self.temperature:g}, top-k {self.top_k}, "
                    f"top-p {self.top_p:g}, min-p {self.min_p:g}")
        seed = "random seed" if self.seed is None else f"seed {self.seed}"
        return (f"{head}, repeat penalty {self.repeat_penalty:g} over {self.repeat_last_n} "
                f"tokens, {seed}")


SAMPLING_KEYS = tuple(f.name for f in fields(Sampling))
DEFAULT_SAMPLING = Sampling()

_RULES: dict[str, str] = {
    "temperature": "a number from 0 to 5 (0 = always the likeliest token)",
    "top_k": "a whole number of 0 or more (0 = off)",
    "top_p": "a number above 0 and at most 1 (1 = off)",
    "min_p": "a number from 0 to 1 (0 = off)",
    "repeat_penalty": "a number above 0 and at most 5 (1 = off)",
    "repeat_last_n": "a whole number of 0 or more (0 = off)",
    "seed": f"a whole number from 0 to {MAX_SEED}",
}


def sampling_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the sampling setting ``key`` (None when it is fine)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{key!r} must be {_RULES[key]}"
    whole = isinstance(value, int)
    ok = {
        "temperature": 0 <= value <= 5,
        "top_k": whole and value >= 0,
        "top_p": 0 < value <= 1,
        "min_p": 0 <= value <= 1,
        "repeat_penalty": 0 < value <= 5,
        "repeat_last_n": whole and value >= 0,
        "seed": whole and 0 <= value <= MAX_SEED,
    }[key]
    return None if ok else f"{key!r} must be {_RULES[key]}"


def check_sampling_params(params: dict[str, Any]) -> None:
    """Raise InvalidRequest for the first bad sampling parameter of a request (None = unset)."""
    for key in SAMPLING_KEYS:
        value = params.get(key)
        if value is not None and (problem := sampling_problem(key, value)):
            raise InvalidRequest(problem)
