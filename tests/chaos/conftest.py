"""The ``chaos`` fixture: a seeded :class:`ChaosRun` against a real daemon in the test's home,
started through ``start_daemon`` (whose teardown is the last net for stray processes)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hivetray.paths import AppPaths
from tests.chaos.engine import ChaosRun, verdict
from tests.chaos.harness import ChaosEnv, ChaosSettings
from tests.helpers.daemon import StartDaemon

MakeRun = Callable[[int], ChaosRun]


def finish(run: ChaosRun) -> None:
    """Quit the daemon (its own checks: nothing left behind), then fail on any violation, with
    the seed to replay."""
    run.close()
    assert not run.rec.violations, verdict(run)


@pytest.fixture
def chaos(start_daemon: StartDaemon, home: AppPaths, tmp_path: Path) -> Iterator[MakeRun]:
    runs: list[ChaosRun] = []

    def make(seed: int) -> ChaosRun:
        env = ChaosEnv(tmp_path / "c", ChaosSettings(), home=Path(os.environ["HIVETRAY_HOME"]),
                       runtime=Path(os.environ["XDG_RUNTIME_DIR"]))
        run = ChaosRun(env, seed, launcher=lambda e: start_daemon(env=e).proc)
        runs.append(run)
        run.start()
        return run

    yield make
    for run in runs:
        run.close()
