"""Keeping OpenSSL out of the tray process while its modules are imported.

Shared by the tray app's start-up (``hivetray.app``) and the HTTP API's server, which the tray
imports later, when the API is enabled (``hivetray.api_control``): neither serves or makes a
TLS connection on the app's loop, and OpenSSL (libssl + libcrypto) costs ~8 MiB of RSS.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def without_openssl() -> Iterator[None]:
    """While the app's modules are imported, keep OpenSSL out of the tray process.

    asyncio imports ``ssl`` eagerly and ``multiprocessing.connection`` imports ``hmac``, which
    loads ``_hashlib``; both fall back cleanly when those are missing (no TLS transports in
    asyncio, pure-Python HMAC — used only for authenticated listeners, which Hivetray does not
    use); so does aiohttp (no TLS server or client, which the local API never needs). The tray
    app makes no TLS connection on its loop: it talks over a local socket and serves plain HTTP
    on loopback. After the imports both are importable again for code that needs them (model
    downloads). Where they were already imported (the daemon), nothing changes. Worker
    processes are fresh interpreters and unaffected.
    """
    blocked = ("ssl", "_ssl", "_hashlib")
    saved = {name: sys.modules[name] for name in blocked if name in sys.modules}
    for name in blocked:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # `import` now fails cleanly
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                del sys.modules[name]
        sys.modules.update(saved)
