"""The local OpenAI-compatible HTTP API: a second adapter over the instance's methods.

The socket's adapter (``hivetray.commands``) and this one call the same
:class:`~hivetray.instance.Instance` methods (``status``, ``chat``, ``embed``, ``rerank``), so
HTTP clients get the pool's guarantees: lazy single-flight starts, the breaker (503 +
Retry-After), typed errors, and a disconnect that cancels the request in the worker.

This package is imported only when ``[api] enabled`` (``hivetray.api_control`` imports
``server`` on demand), and ``aiohttp`` only from inside it: an idle tray with the API off
loads neither. Keep this ``__init__`` free of imports, so ``hivetray.api.keys`` (Settings,
``hivetray api key``) stays light too.
"""
