"""A failed download says why and what to do, told apart from real failures: a closed port, a
host that does not resolve, a local hub answering 404 or 500, a full disk (/dev/full), a file
that cannot be written, a proxy that refuses. Never the internet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivetray.errors import REPORT_ENV, DownloadFailed, read_report
from hivetray.models.download import download
from hivetray.paths import AppPaths
from hivetray.wording import Fix, window_text
from tests.models.fakehub import FakeHub, serve_hub

REPO = "someone/tiny-GGUF"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_or_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the environment it is about, and only that."""
    for name in (*PROXY_VARIABLES, *(v.upper() for v in PROXY_VARIABLES), "HF_ENDPOINT",
                 "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hub(tiny_models: dict[str, Path]) -> Iterator[FakeHub]:
    with serve_hub() as fake:
        fake.add(REPO, "chat.gguf", tiny_models["chat"].read_bytes())
        yield fake


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unwritable(path: Path) -> bool:
    try:
        with open(path, "ab"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


def fails(dest: Path, **kwargs: str) -> DownloadFailed:
    with pytest.raises(DownloadFailed) as caught:
        download(REPO, "chat.gguf", dest, **kwargs)
    return caught.value


def assert_window_words(error: DownloadFailed, *phrases: str) -> None:
    text = window_text(error)
    assert "hivetray " not in text and "`" not in text and "run the same command" not in text
    for phrase in phrases:
        assert phrase in text


def test_an_unreachable_mirror_names_hf_endpoint(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", mirror)
    error = fails(tmp_path / "chat.gguf")
    assert error.wording.remedy is not None and error.wording.remedy.fix is Fix.CHECK_MIRROR
    assert str(error).startswith(f"cannot fetch {REPO}/chat.gguf from {mirror}: the mirror in "
                                 f"HF_ENDPOINT ({mirror}) cannot be reached")
    assert str(error).endswith("and run the same command again")
    assert_window_words(error, "check the address in HF_ENDPOINT",
                        "before starting Hivetray, then press Download again")


def test_no_network_says_connect_and_offers_a_mirror(tmp_path: Path) -> None:
    error = fails(tmp_path / "chat.gguf", hub="http://hivetray-test.invalid")  # never resolves
    assert error.wording.remedy is not None and error.wording.remedy.fix is Fix.CHECK_NETWORK
    assert "no network connection" in str(error)
    assert_window_words(error, "no network connection", "connect to the network and press "
                        "Download again", "set HF_ENDPOINT to a mirror's address before "
                        "starting Hivetray")


def test_a_file_the_hub_does_not_have_says_pick_another(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed) as caught:
        download(REPO, "nope.gguf", tmp_path / "nope.gguf", hub=hub.url)
    error = caught.value
    assert error.wording.remedy is not None and error.wording.remedy.fix is Fix.NOT_ON_HUB
    assert "the file is not on 127.0.0.1 (HTTP 404)" in str(error)
    assert "`hivetray models catalog`" in str(error)
    assert_window_words(error, "pick another model in the list")


def test_a_hub_that_fails_says_try_later(hub: FakeHub, tmp_path: Path) -> None:
    hub.failures[f"{REPO}/chat.gguf"] = 500
    error = fails(tmp_path / "chat.gguf", hub=hub.url)
    assert error.wording.remedy is not None and error.wording.remedy.fix is Fix.TRY_LATER
    assert "127.0.0.1 failed (HTTP 500)" in str(error)
    assert_window_words(error, "press Download again later (it resumes)")


def test_a_full_disk_is_not_retried_and_says_free_space(hub: FakeHub, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    dest = tmp_path / "chat.gguf"
    dest.with_name("chat.gguf.part").symlink_to("/dev/full")  # every write: ENOSPC
    error = fails(dest, hub=hub.url)
    assert error.wording.remedy is not None and error.wording.remedy.fix is Fix.FREE_DISK
    assert "the disk is full" in str(error)
    assert len(hub.gets()) == 1  # a full disk is not a dropped connection: no retries
    assert_window_words(error, f"free some space in {tmp_path} and press Download again")


def test_a_file_that_cannot_be_written_says_so(hub: FakeHub, tmp_path: Path) -> None:
    readonly = Path("/sys/kernel/notes")  # read-only for everyone, root included
    if not unwritable(readonly):
        pytest.skip("no read-only sysfs file here")
    dest = tmp_path / "chat.gguf"
    dest.with_name("chat.gguf.part").symlink_to(readonly)
    error = fails(dest, hub=hub.url)
    assert error.wording.remedy is not None and error.wording.remedy.fix is Fix.FIX_PERMISSIONS
    assert f"{tmp_path} cannot be written" in str(error) and len(hub.gets()) == 1
    assert_window_words(error, f"make {tmp_path} writable for your user")


def test_a_failing_proxy_is_named_on_stderr_and_in_the_report(
        hub: FakeHub, home: AppPaths, tmp_path: Path) -> None:
    """The real command, as Settings runs it: the proxy variable is read when the HTTP client
    is made, so only a fresh process shows what a user with a broken proxy sees."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    report = tmp_path / "report.json"
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HTTP_PROXY": proxy, REPORT_ENV: str(report)}
    done = subprocess.run([sys.executable, "-m", "hivetray", "models", "download", "chat", REPO,
                           "chat.gguf", "--no-set"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"hivetray: cannot fetch {REPO}/chat.gguf from {hub.url}: the "
                                f"proxy in HTTP_PROXY ({proxy}) failed")
    assert lines[-1].endswith(": check HTTP_PROXY, or unset it, and run the same command again")
    error = read_report(str(report))
    assert isinstance(error, DownloadFailed) and error.wording.remedy is not None
    assert (error.wording.remedy.fix, error.wording.remedy.setting) == (Fix.CHECK_PROXY,
                                                                        "HTTP_PROXY")
    assert json.loads(report.read_text())["traceback"] is None
    assert_window_words(error, "check HTTP_PROXY, or unset it, before starting Hivetray, then "
                        "press Download again")
    assert hub.requests == []  # it never got past the proxy
