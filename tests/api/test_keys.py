"""The API key: made on first use, private whatever the umask, compared in constant time,
replaced at once for a running server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hivetray.api import keys
from hivetray.api.keys import KEY_PREFIX, ApiKey, bearer, mask


def test_the_key_is_made_once_and_kept_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "data" / "api-key"
    store = ApiKey(path)
    assert store.read() is None and not path.exists()
    key = store.ensure()
    assert key.startswith(KEY_PREFIX) and len(key) >= len(KEY_PREFIX) + 43
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert store.ensure() == key and ApiKey(path).read() == key  # kept, not remade


def test_a_loosened_key_file_is_made_private_again(tmp_path: Path) -> None:
    path = tmp_path / "api-key"
    ApiKey(path).ensure()
    os.chmod(path, 0o644)
    ApiKey(path).ensure()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_only_the_key_matches(tmp_path: Path) -> None:
    store = ApiKey(tmp_path / "api-key")
    assert not store.matches("anything")  # no key yet: nothing matches
    key = store.ensure()
    assert store.matches(key)
    assert not store.matches(key[:-1]) and not store.matches(key + "x")
    assert not store.matches("") and not store.matches(None)


def test_the_comparison_is_constant_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    store = ApiKey(tmp_path / "api-key")
    key = store.ensure()
    assert store.matches(key) and compared == [(key.encode(), key.encode())]


def test_a_key_replaced_elsewhere_is_used_at_once(tmp_path: Path) -> None:
    path = tmp_path / "api-key"
    server = ApiKey(path)
    old = server.ensure()
    new = ApiKey(path).replace()  # `hivetray api key --new` in another process
    assert new != old
    assert server.matches(new) and not server.matches(old)
    path.unlink()
    assert not server.matches(new)  # a removed key file: nobody gets in


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer") is None and bearer("") is None and bearer(None) is None


def test_the_masked_key_tells_keys_apart_without_giving_one_away() -> None:
    key = KEY_PREFIX + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    shown = mask(key)
    assert shown.startswith(KEY_PREFIX + "abcd") and shown.endswith("DEFG")
    assert len(shown) < len(key) // 2
