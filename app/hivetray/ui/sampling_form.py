"""The sampling defaults of the chat and vision roles, as form rows in their Settings tabs.

Why its own widget: seven fields with ranges, "off" values and a reset button would crowd the
role tab's file handling; and the ranges come from :mod:`hivetray.sampling`, so Settings can
never save a value the request check would refuse. A value the user wrote by hand with more
precision than a spin box shows (top_p = 0.925) is kept when its field was not touched.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QPushButton, QSpinBox

from hivetray.config import RoleConfig
from hivetray.sampling import DEFAULT_SAMPLING, MAX_SEED, Sampling

#: QSpinBox holds a signed 32-bit int: larger seeds (hand-written) are kept, not offered
_SEED_BOX_MAX = 2**31 - 1
_RANDOM_SEED = -1


def _float_box(low: float, high: float, step: float, off: str | None = None) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(2)
    box.setSingleStep(step)
    if off:
        box.setSpecialValueText(off)  # shown at the minimum
    return box


def _int_box(low: int, high: int, off: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    if off:
        box.setSpecialValueText(off)
    return box


class SamplingForm:
    """Adds the sampling rows to a role tab's form; ``load`` / ``value`` mirror the tab's."""

    def __init__(self, form: QFormLayout) -> None:
        self.temperature = _float_box(0.0, 5.0, 0.05, "0 (greedy: always the likeliest token)")
        self.top_k = _int_box(0, 1000, "off")
        self.top_p = _float_box(0.01, 1.0, 0.01)
        self.min_p = _float_box(0.0, 1.0, 0.01, "off")
        self.repeat_penalty = _float_box(0.05, 5.0, 0.05)
        self.repeat_last_n = _int_box(0, 65_536, "off")
        self.seed = _int_box(_RANDOM_SEED, _SEED_BOX_MAX, "random")
        self.seed.setToolTip("A fixed seed (with the same prompt and settings) gives the same "
                             "reply every time")
        self.repeat_penalty.setToolTip("1 = off; above 1 discourages repeating the last tokens")
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Min-p", self.min_p)
        form.addRow("Repeat penalty", self.repeat_penalty)
        form.addRow("…over the last (tokens)", self.repeat_last_n)
        form.addRow("Seed", self.seed)
        reset = QPushButton("Reset sampling to defaults")
        reset.clicked.connect(lambda: self.show(DEFAULT_SAMPLING))
        form.addRow("", reset)
        self._loaded = DEFAULT_SAMPLING

    def show(self, sampling: Sampling) -> None:
        self.temperature.setValue(sampling.temperature)
        self.top_k.setValue(sampling.top_k)
        self.top_p.setValue(sampling.top_p)
        self.min_p.setValue(sampling.min_p)
        self.repeat_penalty.setValue(sampling.repeat_penalty)
        self.repeat_last_n.setValue(sampling.repeat_last_n)
        seed = sampling.seed
        self.seed.setValue(_RANDOM_SEED if seed is None else min(seed, _SEED_BOX_MAX))

    def load(self, config: RoleConfig) -> None:
        self._loaded = config.sampling
        self.show(self._loaded)

    def _shown(self) -> dict[str, Any]:
        seed = self.seed.value()
        return {"temperature": self.temperature.value(), "top_k": self.top_k.value(),
                "top_p": self.top_p.value(), "min_p": self.min_p.value(),
                "repeat_penalty": self.repeat_penalty.value(),
                "repeat_last_n": self.repeat_last_n.value(),
                "seed": None if seed == _RANDOM_SEED else seed}

    def value(self, old: RoleConfig) -> RoleConfig:
        """``old`` with the fields' values; a field still showing what was loaded keeps the
        loaded value exactly (extra decimals, a seed above the box's range)."""
        loaded = self._loaded
        before = _rounded(loaded)
        values = {key: getattr(loaded, key) if shown == before[key] else shown
                  for key, shown in self._shown().items()}
        if values["seed"] is not None:
            values["seed"] = min(int(values["seed"]), MAX_SEED)
        return replace(old, **values)


def _rounded(sampling: Sampling) -> dict[str, Any]:
    """What the fields show for ``sampling`` (2 decimals, the seed box's range)."""
    seed = sampling.seed
    shown = replace(sampling, seed=None if seed is None else min(seed, _SEED_BOX_MAX))
    return {key: round(value, 2) if isinstance(value, float) else value
            for key, value in shown.to_params().items()} | {"seed": shown.seed}
