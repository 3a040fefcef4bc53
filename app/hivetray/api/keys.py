"""The HTTP API's bearer key: made on first enable, kept private, compared in constant time.

Why a file of its own in the data folder and not a ``config.toml`` key: the config is meant to
be edited by hand, copied between machines and kept in dotfiles repositories; a secret must not
travel with it. The file is written by :func:`hivetray.config.write_atomic` (0600 whatever the
umask, never half-written), and read again whenever it changes on disk, so ``hivetray api key
--new`` in another process takes effect on the running server at once.

No aiohttp here: Settings and ``hivetray api key`` import this module without the server.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from hivetray.config import write_atomic
from hivetray.paths import make_private

#: a recognisable prefix (secret scanners, people reading a config of another tool)
KEY_PREFIX = "hivetray-"
#: 32 random bytes: 256 bits, as url-safe base64 (43 characters)
KEY_BYTES = 32


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def mask(key: str) -> str:
    """The key as Settings shows it: enough to tell two keys apart, not enough to use one."""
    return f"{key[:len(KEY_PREFIX) + 4]}…{key[-4:]}" if len(key) > len(KEY_PREFIX) + 8 else "…"


class ApiKey:
    """The key file of one home; ``matches()`` is what the server asks per request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: (inode, mtime, size) of the file when it was last read, and what it held
        self._seen: tuple[tuple[int, int, int], str | None] | None = None

    def read(self) -> str | None:
        """The current key, or None when none was made yet (or the file is empty).

        A stat per call, a read only when the file changed: cheap enough per request, and a
        key replaced by another process is used from its next request on.
        """
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._seen = None
            return None
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._seen is not None and self._seen[0] == stamp:
            return self._seen[1]
        key = self.path.read_text(encoding="utf-8").strip() or None
        self._seen = (stamp, key)
        return key

    def ensure(self) -> str:
        """The key, made now if there is none yet (first enable); the file is made private
        again if someone loosened it."""
        key = self.read()
        if key is None:
            return self.replace()
        make_private(self.path)
        return key

    def replace(self) -> str:
        """A new key (``hivetray api key --new``, Settings' New key): the old one stops
        working at once."""
        key = new_key()
        write_atomic(self.path, key + "\n")
        return key

    def matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is the key; constant time, so timing tells nothing of it."""
        key = self.read()
        if not key or not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), key.encode("utf-8"))


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the OpenAI clients' form)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
