"""The installer workflow stays supply-chain clean: zizmor (offline) finds nothing of medium
severity or higher in it, and would find the regressions the issue named (a tag-pinned action, a
restored cache in a tag-triggered build, persisted checkout credentials) if they came back.

.ci/run runs zizmor over .github/workflows/ as well; this test makes the README's test command
check it too, and proves the linter is not silently passing everything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "installers.yml"
ZIZMOR = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")


def zizmor(folder: Path) -> subprocess.CompletedProcess[str]:
    assert ZIZMOR is not None, "zizmor is missing: pip install -e '.[dev]'"
    return subprocess.run([ZIZMOR, "--offline", "--min-severity", "medium", "--no-progress",
                           str(folder)], capture_output=True, text=True, timeout=60)


def test_installer_workflow_has_no_medium_or_higher_finding() -> None:
    result = zizmor(WORKFLOW.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("regression", "audit"), [
    (("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2",
      "actions/checkout@v4"), "unpinned-uses"),
    (("        with:\n          persist-credentials: false\n", ""), "artipacked"),
])
def test_zizmor_catches_a_regression(tmp_path: Path, regression: tuple[str, str],
                                     audit: str) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    old, new = regression
    assert old in text
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "installers.yml").write_text(text.replace(old, new, 1), encoding="utf-8")
    result = zizmor(folder)
    assert result.returncode != 0
    assert audit in result.stdout + result.stderr


def test_a_restored_cache_in_the_tag_build_is_caught(tmp_path: Path) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    anchor = "      # ---------------------------------------------------------------- Linux\n"
    cache = ("      - uses: actions/cache@5a3ec84eff668545956fd18022155c47e93e2684  # v4.2.3\n"
             "        with:\n          path: ~/.cache/pip\n          key: pip\n\n")
    assert anchor in text
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "installers.yml").write_text(text.replace(anchor, cache + anchor, 1),
                                           encoding="utf-8")
    result = zizmor(folder)
    assert "cache-poisoning" in result.stdout + result.stderr
