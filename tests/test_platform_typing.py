"""The Windows and macOS code type-checks as those systems see it.

Nobody runs the app on Windows or macOS here, so the type checker is the only reader of the
code behind ``sys.platform`` guards there (AF_UNIX, uids, signal masks, unix-socket servers).
mypy follows such guards per ``--platform``; code hidden behind checks it cannot follow (a
``hasattr``, a ``use_tcp()`` flag) would be read as running everywhere and reported.

Each platform gets its own cache folder: mypy's cache is valid for one platform only, and
sharing the default one would make every run (and the next plain ``mypy``) a cold one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)  # a cold cache on a busy 2-core machine takes well over the default
@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_package_type_checks_clean_as_seen_on(platform: str) -> None:
    cache_dir = ROOT / ".mypy_cache" / f"platform-{platform}"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--platform", platform, "--cache-dir", str(cache_dir)],
        cwd=ROOT, capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "Success" in result.stdout, report
