"""Build provenance: which version, git commit, build date and llama.cpp build this Hivetray is.

Why: a user holding an installer, or a bug report saying "it crashed", must be able to tell
which commit and which llama.cpp build it came from. ``hivetray --version``, ``self-test`` and
the Settings window's About line all show :func:`current`.

Where each value comes from:

- a packaged build (PyInstaller, then .deb / AppImage / installers) carries
  ``hivetray/build_info.json``, written by ``packaging/hivetray.spec`` with
  :func:`collect_for_build` at build time: the source tree and git are gone by then;
- a source checkout asks git (``<repo>/.git`` next to ``app/``), and has no build date;
- the llama.cpp build is read from llama-cpp-python's installed CMake package file
  (``lib/cmake/llama/llama-config.cmake``) through ``importlib.metadata``: importing
  ``llama_cpp`` would load the native library into the app process, which only workers may do.

Qt-free and cheap: the CLI's ``--version`` imports it. ``python -m hivetray.buildinfo
[--json | --shell] [--file build_info.json]`` prints the values for build scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hivetray
from hivetray import __version__

#: the file a packaged build carries beside the package's modules (``<bundle>/hivetray/``)
BUILD_INFO_FILE = "build_info.json"
#: where the frozen app and a source checkout both find that file (PyInstaller sets
#: ``__file__`` of a frozen module to its would-be path inside the bundle)
PACKAGE_DIR = Path(hivetray.__file__).resolve().parent
LLAMA_DISTRIBUTION = "llama_cpp_python"
LLAMA_CMAKE_FILE = "lib/cmake/llama/llama-config.cmake"
COMMIT_CHARS = 12
GIT_TIMEOUT_S = 5.0
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_CMAKE_SET = re.compile(
    r"^\s*set\(\s*(LLAMA_VERSION|LLAMA_BUILD_COMMIT|LLAMA_BUILD_NUMBER)\s+([^\s)]+)\s*\)",
    re.MULTILINE)
#: the JSON keys of a build (``--version``'s data, ``self-test --json``'s ``"build"``)
KEYS = ("version", "commit", "build_date", "llama_cpp_python", "llama_cpp_commit",
        "llama_cpp_version", "llama_cpp_build_number", "packaged")


@dataclass(frozen=True)
class LlamaBuild:
    """The llama.cpp build that llama-cpp-python was compiled with (None where unknown)."""

    python_package: str | None = None
    commit: str | None = None
    version: str | None = None
    build_number: int | None = None


@dataclass(frozen=True)
class BuildInfo:
    version: str
    commit: str | None
    build_date: str | None
    llama_cpp_python: str | None
    llama_cpp_commit: str | None
    llama_cpp_version: str | None
    llama_cpp_build_number: int | None
    packaged: bool
    #: why a packaged build's build_info.json could not be read whole (None: it was fine)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: :data:`KEYS`, plus ``problem`` (null unless build_info.json is
        damaged)."""
        data: dict[str, Any] = {key: getattr(self, key) for key in KEYS}
        data["problem"] = self.problem
        return data

    def built_text(self) -> str:
        if self.build_date:
            return self.build_date
        return "unknown" if self.packaged else "not built (source checkout)"

    def llama_text(self) -> str:
        """``0c1e570 (0.5.0-dev, build 1) via llama-cpp-python 0.3.36``, as much as is known."""
        details = [part for part in (
            self.llama_cpp_version,
            None if self.llama_cpp_build_number is None else f"build {self.llama_cpp_build_number}",
        ) if part]
        text = self.llama_cpp_commit or "unknown"
        if details:
            text += f" ({', '.join(details)})"
        if self.llama_cpp_python:
            text += f" via llama-cpp-python {self.llama_cpp_python}"
        elif not self.llama_cpp_commit:
            text += " (llama-cpp-python not found)"
        return text

    def lines(self) -> list[str]:
        """The human text of ``hivetray --version``; the first line is exactly
        ``hivetray <version>`` (scripts read it)."""
        lines = [f"hivetray {self.version}",
                 f"commit     {self.commit or 'unknown'}",
                 f"built      {self.built_text()}",
                 f"llama.cpp  {self.llama_text()}",
                 f"packaged   {'yes' if self.packaged else 'no'}"]
        if self.problem:
            lines.append(f"warning    {self.problem}")
        return lines

    def one_line(self) -> str:
        """The About line: ``Hivetray 0.1.0 · commit 748f278abcd1 · built 2026-11-30 ·
        llama.cpp 0c1e570 (llama-cpp-python 0.3.36) · packaged``."""
        parts = [f"Hivetray {self.version}", f"commit {self.commit or 'unknown'}"]
        if self.build_date:
            parts.append(f"built {self.build_date[:10]}")
        llama = f"llama.cpp {self.llama_cpp_commit or 'unknown'}"
        if self.llama_cpp_python:
            llama += f" (llama-cpp-python {self.llama_cpp_python})"
        parts.append(llama)
        parts.append("packaged" if self.packaged else "source checkout, not packaged")
        if self.problem:
            parts.append("build info incomplete (see hivetray --version)")
        return " · ".join(parts)


# -- llama.cpp's build, without importing llama_cpp --------------------------------------------
def parse_llama_cmake(text: str) -> LlamaBuild:
    """The ``set(LLAMA_VERSION ...)``, ``LLAMA_BUILD_COMMIT`` and ``LLAMA_BUILD_NUMBER`` lines of
    llama.cpp's ``llama-config.cmake``; a missing or unreadable value is None."""
    found = dict(_CMAKE_SET.findall(text))
    number: int | None = None
    with contextlib.suppress(ValueError):
        number = int(found.get("LLAMA_BUILD_NUMBER", ""))
    return LlamaBuild(commit=found.get("LLAMA_BUILD_COMMIT") or None,
                      version=found.get("LLAMA_VERSION") or None, build_number=number)


def read_llama_cmake(path: Path) -> LlamaBuild:
    """:func:`parse_llama_cmake` of a file; a missing or unreadable file gives None fields."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return LlamaBuild()
    return parse_llama_cmake(text)


def llama_build(distribution: str = LLAMA_DISTRIBUTION) -> LlamaBuild:
    """The installed llama-cpp-python's version and the llama.cpp build it was compiled from."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return LlamaBuild()
    listed = [Path(str(dist.locate_file(f))) for f in dist.files or ()
              if str(f).replace("\\", "/").endswith(LLAMA_CMAKE_FILE)]
    cmake = listed[0] if listed else Path(str(dist.locate_file(LLAMA_CMAKE_FILE)))
    return replace(read_llama_cmake(cmake), python_package=dist.version)


# -- the git commit --------------------------------------------------------------------------
def _git(repo_root: Path, git: str, *args: str) -> str | None:
    # a GIT_DIR inherited from a git hook would point git at another repository
    env = {k: v for k, v in os.environ.items()
           if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    try:
        proc = subprocess.run([git, "--no-optional-locks", "-C", str(repo_root), *args],
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              env=env, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_commit(repo_root: Path, *, git: str = "git") -> str | None:
    """HEAD's first 12 hex digits, ``+dirty`` when tracked files differ from it; None when git
    is missing or fails (not a repository, not trusted, ...).

    ``--no-optional-locks``: reading the commit must never take the index lock from someone
    committing at the same time.
    """
    head = _git(repo_root, git, "rev-parse", "HEAD")
    if head is None or not re.fullmatch(r"[0-9a-f]{40,64}", head.strip()):
        return None
    status = _git(repo_root, git, "status", "--porcelain", "--untracked-files=no")
    if status is None:
        return None
    return head.strip()[:COMMIT_CHARS] + ("+dirty" if status.strip() else "")


def source_repo(package_dir: Path) -> Path | None:
    """The repository root when the package runs from a checkout (``<repo>/app/hivetray`` with
    ``<repo>/.git``); None for an installed or frozen package."""
    root = package_dir.parent.parent
    if package_dir.parent.name == "app" and (root / ".git").exists():
        return root
    return None


# -- a packaged build's file -------------------------------------------------------------------
def read_build_file(path: Path) -> BuildInfo:
    """A packaged build's build_info.json; never raises.

    A damaged file must not break ``--version`` (the one command a user runs to report a bug):
    every value that can be read is kept, the others are None, and ``problem`` says what is
    wrong. The version is always the running code's.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"unreadable ({type(exc).__name__}: {exc})")
    else:
        if isinstance(loaded, dict):
            data = loaded
        else:
            problems.append(f"not a JSON object but {type(loaded).__name__}")

    def text(key: str) -> str | None:
        value = data.get(key)
        if value is None or isinstance(value, str):
            return value
        problems.append(f"{key} is {type(value).__name__}, not text")
        return None

    number = data.get("llama_cpp_build_number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
        problems.append("llama_cpp_build_number is not a whole number")
        number = None
    recorded = text("version")
    if recorded is not None and recorded != __version__:
        problems.append(f"it names version {recorded}")
    info = BuildInfo(
        version=__version__, commit=text("commit"), build_date=text("build_date"),
        llama_cpp_python=text("llama_cpp_python"), llama_cpp_commit=text("llama_cpp_commit"),
        llama_cpp_version=text("llama_cpp_version"), llama_cpp_build_number=number,
        packaged=True)
    if problems:
        return replace(info, problem=f"{path} is damaged: {'; '.join(problems)}")
    return info


def detect(package_dir: Path = PACKAGE_DIR) -> BuildInfo:
    """This installation's build: the bundled build_info.json when there is one, else the
    source checkout's git commit (or none) and the installed llama-cpp-python."""
    bundled = package_dir / BUILD_INFO_FILE
    if bundled.exists():
        return read_build_file(bundled)
    if getattr(sys, "frozen", False):  # a bundle built without it: say so, guess nothing
        return BuildInfo(__version__, None, None, None, None, None, None, packaged=True,
                         problem=f"{bundled} is missing: this build did not record its origin")
    repo = source_repo(package_dir)
    llama = llama_build()
    return BuildInfo(
        version=__version__, commit=git_commit(repo) if repo is not None else None,
        build_date=None, llama_cpp_python=llama.python_package, llama_cpp_commit=llama.commit,
        llama_cpp_version=llama.version, llama_cpp_build_number=llama.build_number,
        packaged=False)


@functools.cache
def current() -> BuildInfo:
    """This process's build (computed once: it runs git in a source checkout)."""
    return detect()


# -- build time ------------------------------------------------------------------------------
def build_date(now: datetime | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC: ``SOURCE_DATE_EPOCH`` when set (reproducible builds),
    else ``now`` (a naive ``now`` is taken as UTC), else the current time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            moment = datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since "
                             "1970-01-01 UTC") from None
    elif now is None:
        moment = datetime.now(UTC)
    else:
        moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return moment.strftime(DATE_FORMAT)


def collect_for_build(repo_root: Path, *, now: datetime | None = None) -> BuildInfo:
    """What a packaged build records (run by the PyInstaller spec in the build's Python)."""
    llama = llama_build()
    return BuildInfo(
        version=__version__, commit=git_commit(repo_root), build_date=build_date(now),
        llama_cpp_python=llama.python_package, llama_cpp_commit=llama.commit,
        llama_cpp_version=llama.version, llama_cpp_build_number=llama.build_number,
        packaged=True)


def write_json(info: BuildInfo, path: Path) -> None:
    """Write ``info`` atomically (readers see the old or the new file, never half of it).

    Mode 0644, not the app's private 0600: the file is installed system-wide (/usr/lib) and
    every user's ``hivetray --version`` reads it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {key: value for key, value in info.to_dict().items() if key in KEYS}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


# -- ``python -m hivetray.buildinfo`` ----------------------------------------------------------
def shell_lines(info: BuildInfo) -> list[str]:
    """``HIVETRAY_COMMIT=748f278abcd1``-style lines (empty where unknown), safe to ``eval``."""
    lines = []
    for key, value in info.to_dict().items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        lines.append(f"HIVETRAY_{key.upper()}={shlex.quote('' if value is None else str(value))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hivetray.buildinfo",
        description="Print this Hivetray's build provenance (what `hivetray --version` shows).")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object")
    form.add_argument("--shell", action="store_true", help="KEY=value lines for a shell")
    parser.add_argument("--file", type=Path, metavar="BUILD_INFO_JSON",
                        help="read this build_info.json (e.g. a built bundle's) instead")
    args = parser.parse_args(argv)
    if args.file is not None and not args.file.is_file():
        print(f"hivetray.buildinfo: {args.file} does not exist", file=sys.stderr)
        return 1
    info = read_build_file(args.file) if args.file is not None else current()
    if args.json:
        print(json.dumps(info.to_dict()))
    else:
        print("\n".join(shell_lines(info) if args.shell else info.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
