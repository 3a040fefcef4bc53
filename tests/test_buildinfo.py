"""Build provenance (``hivetray.buildinfo``): llama.cpp's build read from llama-cpp-python's CMake
file, the git commit of a real temporary repository, reproducible build dates, and a packaged
build's build_info.json (whole, and damaged)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from hivetray import __version__, buildinfo
from hivetray.buildinfo import BuildInfo

#: the head of llama-cpp-python 0.3.36's installed lib/cmake/llama/llama-config.cmake
REAL_CMAKE = """\
set(LLAMA_VERSION      0.5.0-dev)
set(LLAMA_BUILD_COMMIT 0c1e570)
set(LLAMA_BUILD_NUMBER 1)
set(LLAMA_SHARED_LIB   On)


####### Expanded from @PACKAGE_INIT@ by configure_package_config_file() #######
get_filename_component(PACKAGE_PREFIX_DIR "${CMAKE_CURRENT_LIST_DIR}/../../../" ABSOLUTE)

set_and_check(LLAMA_INCLUDE_DIR "${PACKAGE_PREFIX_DIR}/include")
find_package(ggml REQUIRED HINTS ${LLAMA_LIB_DIR}/cmake)
"""

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A source checkout's shape: ``<repo>/.git`` next to ``<repo>/app/hivetray``, one commit."""
    root = tmp_path / "repo"
    (root / "app" / "hivetray").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    git(root, "config", "user.email", "test@example.invalid")
    git(root, "config", "user.name", "Test")
    git(root, "config", "commit.gpgsign", "false")
    (root / "app" / "hivetray" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def packaged(**fields: object) -> BuildInfo:
    values: dict[str, object] = {
        "version": __version__, "commit": "748f278abcd1", "build_date": "2026-11-30T01:50:00Z",
        "llama_cpp_python": "0.3.36", "llama_cpp_commit": "0c1e570",
        "llama_cpp_version": "0.5.0-dev", "llama_cpp_build_number": 1, "packaged": True,
        **fields}
    return BuildInfo(**values)  # type: ignore[arg-type]


# -- llama.cpp's build -------------------------------------------------------------------------
def test_a_real_llama_config_cmake_is_parsed() -> None:
    build = buildinfo.parse_llama_cmake(REAL_CMAKE)
    assert (build.commit, build.version, build.build_number) == ("0c1e570", "0.5.0-dev", 1)


def test_a_missing_or_damaged_cmake_file_gives_unknown_values(tmp_path: Path) -> None:
    assert buildinfo.read_llama_cmake(tmp_path / "missing.cmake") == buildinfo.LlamaBuild()
    garbage = tmp_path / "llama-config.cmake"
    garbage.write_bytes(b"\xff\xfe\x00\nset(LLAMA_BUILD_NUMBER abc)\nset(LLAMA_VERSION)\n")
    assert buildinfo.read_llama_cmake(garbage) == buildinfo.LlamaBuild()
    # what is readable is kept
    garbage.write_text("set(LLAMA_BUILD_COMMIT deadbee)\nset(LLAMA_BUILD_NUMBER x1)\n")
    assert buildinfo.read_llama_cmake(garbage) == buildinfo.LlamaBuild(commit="deadbee")


def test_the_installed_llama_cpp_python_is_read_without_importing_it() -> None:
    """In a fresh interpreter: the build info names the installed llama-cpp-python and its
    llama.cpp commit, and ``llama_cpp`` (the native library) was never imported."""
    code = ("import json, sys; from hivetray import buildinfo; "
            "info = buildinfo.current(); "
            "print(json.dumps([info.llama_cpp_python, info.llama_cpp_commit, "
            "'llama_cpp' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    from importlib.metadata import version

    expected = buildinfo.llama_build()
    assert json.loads(out) == [version("llama_cpp_python"), expected.commit, False]
    assert expected.commit  # this environment's llama-cpp-python ships its llama-config.cmake


def test_no_llama_cpp_python_installed_is_unknown() -> None:
    assert buildinfo.llama_build("no_such_distribution_hivetray") == buildinfo.LlamaBuild()


# -- the git commit ----------------------------------------------------------------------------
@needs_git
def test_the_commit_of_a_git_checkout_and_dirty_when_tracked_files_changed(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert buildinfo.git_commit(repo) == head[:12]
    (repo / "notes.txt").write_text("untracked files do not make a build dirty\n")
    assert buildinfo.git_commit(repo) == head[:12]
    (repo / "app" / "hivetray" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    assert buildinfo.git_commit(repo) == head[:12] + "+dirty"


@needs_git
def test_a_source_checkout_reports_its_commit_and_no_build_date(repo: Path) -> None:
    info = buildinfo.detect(repo / "app" / "hivetray")
    assert info.commit == git(repo, "rev-parse", "HEAD")[:12]
    assert info.packaged is False and info.build_date is None and info.problem is None
    lines = info.lines()
    assert lines[0] == f"hivetray {__version__}"
    assert f"commit     {info.commit}" in lines
    assert "built      not built (source checkout)" in lines and "packaged   no" in lines


def test_no_git_or_not_a_repository_gives_no_commit(tmp_path: Path, repo: Path) -> None:
    assert buildinfo.git_commit(repo, git=str(tmp_path / "no-such-git")) is None
    assert buildinfo.git_commit(tmp_path / "elsewhere") is None
    installed = tmp_path / "site-packages" / "hivetray"  # a pip install: no repository
    installed.mkdir(parents=True)
    assert buildinfo.source_repo(installed) is None
    assert buildinfo.detect(installed).commit is None


# -- build time ------------------------------------------------------------------------------
@needs_git
def test_source_date_epoch_is_honoured(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    info = buildinfo.collect_for_build(repo, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert info.build_date == "2023-11-14T22:13:20Z"
    assert info.packaged is True and info.commit == git(repo, "rev-parse", "HEAD")[:12]
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    local = timezone(timedelta(hours=2))
    info = buildinfo.collect_for_build(repo, now=datetime(2026, 11, 30, 3, 50, tzinfo=local))
    assert info.build_date == "2026-11-30T01:50:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        buildinfo.collect_for_build(repo)


# -- a packaged build's build_info.json ------------------------------------------------------
def test_a_packaged_build_reads_its_build_info_json(tmp_path: Path) -> None:
    bundle = tmp_path / "_internal" / "hivetray"
    written = packaged()
    buildinfo.write_json(written, bundle / buildinfo.BUILD_INFO_FILE)
    file = bundle / buildinfo.BUILD_INFO_FILE
    assert stat.S_IMODE(file.stat().st_mode) == 0o644  # every user of a /usr/lib install reads it
    assert os.listdir(bundle) == [buildinfo.BUILD_INFO_FILE]  # no temp file left behind
    assert set(json.loads(file.read_text())) == set(buildinfo.KEYS)
    info = buildinfo.detect(bundle)
    assert info == written
    assert info.lines() == [
        f"hivetray {__version__}",
        "commit     748f278abcd1",
        "built      2026-11-30T01:50:00Z",
        "llama.cpp  0c1e570 (0.5.0-dev, build 1) via llama-cpp-python 0.3.36",
        "packaged   yes",
    ]
    assert info.one_line() == (
        f"Hivetray {__version__} · commit 748f278abcd1 · built 2026-11-30 · "
        "llama.cpp 0c1e570 (llama-cpp-python 0.3.36) · packaged")


@pytest.mark.parametrize(("content", "kept"), [
    (b'{"version": "0.1.0", "commit": "748f278ab', {}),
    (b"\xff\xfe garbage", {}),
    (b'["not", "an", "object"]', {}),
    (b'{"commit": 42, "build_date": "2026-11-30T01:50:00Z", "llama_cpp_build_number": "one",'
     b' "llama_cpp_commit": "0c1e570"}',
     {"build_date": "2026-11-30T01:50:00Z", "llama_cpp_commit": "0c1e570"}),
])
def test_a_damaged_build_info_json_is_reported_not_fatal(
        tmp_path: Path, content: bytes, kept: dict[str, str]) -> None:
    (tmp_path / buildinfo.BUILD_INFO_FILE).write_bytes(content)
    info = buildinfo.detect(tmp_path)
    assert info.packaged is True and info.version == __version__
    assert info.problem is not None and "is damaged" in info.problem
    for key in ("commit", "build_date", "llama_cpp_commit", "llama_cpp_build_number"):
        assert getattr(info, key) == kept.get(key), key
    lines = info.lines()
    assert lines[0] == f"hivetray {__version__}" and lines[-1].startswith("warning    ")
    assert "build info incomplete" in info.one_line()


def test_a_frozen_build_without_its_file_says_so(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    info = buildinfo.detect(tmp_path / "_internal" / "hivetray")
    assert info.packaged is True and info.commit is None and info.llama_cpp_python is None
    assert info.problem is not None and "build_info.json is missing" in info.problem
    assert info.lines()[-1].startswith("warning    ")


def test_a_build_info_json_of_another_version_is_flagged(tmp_path: Path) -> None:
    buildinfo.write_json(packaged(version="0.0.1"), tmp_path / buildinfo.BUILD_INFO_FILE)
    info = buildinfo.detect(tmp_path)
    assert info.version == __version__ and info.commit == "748f278abcd1"
    assert info.problem is not None and "names version 0.0.1" in info.problem


def test_unknown_values_are_said_plainly() -> None:
    info = packaged(commit=None, build_date=None, llama_cpp_python=None, llama_cpp_commit=None,
                    llama_cpp_version=None, llama_cpp_build_number=None)
    assert info.lines()[1:4] == ["commit     unknown", "built      unknown",
                                 "llama.cpp  unknown (llama-cpp-python not found)"]


# -- python -m hivetray.buildinfo (for the build scripts) ------------------------------------
def test_the_module_prints_a_bundles_values_for_shell_and_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / buildinfo.BUILD_INFO_FILE
    buildinfo.write_json(packaged(commit="748f278abcd1+dirty"), file)
    assert buildinfo.main(["--shell", "--file", str(file)]) == 0
    out = capsys.readouterr().out
    script = out + 'printf "%s|%s|%s|%s" "$HIVETRAY_COMMIT" "$HIVETRAY_BUILD_DATE" ' \
        '"$HIVETRAY_LLAMA_CPP_COMMIT" "$HIVETRAY_PACKAGED"'
    evaluated = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert evaluated.stdout == "748f278abcd1+dirty|2026-11-30T01:50:00Z|0c1e570|yes"
    assert buildinfo.main(["--json", "--file", str(file)]) == 0
    assert json.loads(capsys.readouterr().out)["llama_cpp_build_number"] == 1
    assert buildinfo.main(["--file", str(tmp_path / "missing.json")]) == 1
