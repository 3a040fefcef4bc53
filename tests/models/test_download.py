"""Downloads against a local stand-in for the hub: resume, checksum, atomic install."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivetray.errors import ChecksumMismatch, DownloadFailed
from hivetray.models.download import download, expected_checksum, file_digest, target_path
from hivetray.paths import AppPaths
from tests.models.fakehub import FakeHub, serve_hub

REPO = "someone/tiny-GGUF"


@pytest.fixture
def hub(tiny_models: dict[str, Path]) -> Iterator[FakeHub]:
    with serve_hub() as fake:
        fake.add(REPO, "chat.gguf", tiny_models["chat"].read_bytes())
        yield fake


def test_download_checks_sha256_and_installs(hub: FakeHub, tmp_path: Path,
                                             tiny_models: dict[str, Path]) -> None:
    dest = tmp_path / "models" / "chat.gguf"
    result = download(REPO, "chat.gguf", dest, hub=hub.url)
    data = tiny_models["chat"].read_bytes()
    assert dest.read_bytes() == data and result.size == len(data)
    assert result.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.resumed_from == 0 and not dest.with_name("chat.gguf.part").exists()
    again = download(REPO, "chat.gguf", dest, hub=hub.url)
    assert again.already_there and len(hub.gets()) == 1  # nothing fetched the second time


def test_an_interrupted_download_resumes_from_its_part_file(
        hub: FakeHub, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    data = tiny_models["chat"].read_bytes()
    dest = tmp_path / "chat.gguf"
    dest.with_name("chat.gguf.part").write_bytes(data[:100_000])  # what a Ctrl-C left
    result = download(REPO, "chat.gguf", dest, hub=hub.url)
    assert result.resumed_from == 100_000 and dest.read_bytes() == data
    ((_path, rng),) = hub.gets()
    assert rng == "bytes=100000-"  # only the rest was asked for


def test_a_checksum_mismatch_deletes_the_download(hub: FakeHub, tmp_path: Path) -> None:
    hub.etags[f"{REPO}/chat.gguf"] = "ab" * 32
    dest = tmp_path / "chat.gguf"
    with pytest.raises(ChecksumMismatch, match="checksum mismatch") as caught:
        download(REPO, "chat.gguf", dest, hub=hub.url)
    assert caught.value.expected == "sha256:" + "ab" * 32
    assert not dest.exists() and not dest.with_name("chat.gguf.part").exists()


def test_a_missing_file_is_a_clear_error(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed, match=f"cannot fetch {REPO}/nope.gguf"):
        download(REPO, "nope.gguf", tmp_path / "nope.gguf", hub=hub.url)
    assert not (tmp_path / "nope.gguf").exists()


def test_etag_forms() -> None:
    assert expected_checksum('"' + "a" * 64 + '"') == ("sha256", "a" * 64)
    assert expected_checksum('W/"' + "b" * 40 + '"') == ("git-sha1", "b" * 40)
    assert expected_checksum("xyz") is None and expected_checksum(None) is None


def test_git_sha1_matches_git(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert file_digest(path, "git-sha1") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_target_path_is_one_folder_per_repo(home: AppPaths) -> None:
    assert target_path(home, "a/b", "m.gguf") == home.data_dir / "models" / "a--b" / "m.gguf"
    with pytest.raises(DownloadFailed):
        target_path(home, "a/b", "../../etc/passwd")
