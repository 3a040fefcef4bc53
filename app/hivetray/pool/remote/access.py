"""Where a remote role's key comes from, and how its address is shown.

The key is read from the environment variable named by ``api_key_env`` or, when the optional
``keyring`` package is installed, from the OS keyring under that name (service "hivetray"); it
is never written into config.toml, and URLs are shown without any credentials in them.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from hivetray.errors import RemoteSetupError

KEYRING_SERVICE = "hivetray"


def display_url(url: str | None) -> str | None:
    """``url`` without user, password or query (where a token might hide)."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def read_key(env_name: str | None, role: str) -> str | None:
    """The key for a remote role: None when none is configured; raises
    :class:`RemoteSetupError` (saying where to put it) when one is configured but not found."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value:
        return value
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise RemoteSetupError(
            f"the {role} role's key variable {env_name} is not set: export {env_name}=<key> "
            "before starting Hivetray (the OS keyring is not used: the keyring package is not "
            "installed)") from None
    try:
        stored = keyring.get_password(KEYRING_SERVICE, env_name)
    except Exception as exc:  # a locked or absent keyring backend
        stored = None
        reason = f"; the keyring failed: {exc}"
    else:
        reason = ""
    if stored:
        return str(stored)
    raise RemoteSetupError(
        f"the {role} role's key is neither in ${env_name} nor in the OS keyring{reason}: export "
        f"{env_name}=<key>, or store it with `keyring set {KEYRING_SERVICE} {env_name}`")
