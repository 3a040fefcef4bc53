"""Settings' "Test connection": what a remote engine is, which model it serves, its context
size and whether it takes images — from ``/v1/models`` and, where present, llama-server's
``/props`` — or the one-line error saying what to fix.

Why apart from the link: it answers a person before anything is saved, runs once, and never
touches a role's state or counts a failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hivetray.config import RoleConfig
from hivetray.errors import HivetrayError, RemoteSetupError
from hivetray.pool.remote import wire
from hivetray.pool.remote.access import display_url, read_key

#: ``owned_by`` of /v1/models entries → the engine's name
OWNERS = {"llamacpp": "llama-server", "vllm": "vLLM", "hivetray": "Hivetray",
          "library": "Ollama", "ollama": "Ollama", "organization_owner": "LM Studio"}


@dataclass(frozen=True)
class ConnectionReport:
    engine: str
    model: str | None
    models: tuple[str, ...]
    n_ctx: int | None
    images: bool | None
    rtt_ms: float

    def describe(self) -> str:
        ctx = f"context {self.n_ctx} tokens" if self.n_ctx else "context size unknown"
        images = {True: "takes images", False: "no images", None: "images unknown"}[self.images]
        return f"{self.engine} · {self.model or 'no model'} · {ctx} · {images} · " \
               f"{self.rtt_ms:.0f} ms"


async def check_connection(role: str, config: RoleConfig) -> ConnectionReport:
    """Ask the engine at ``config.url``; raises a :class:`HivetrayError` saying what to fix."""
    import time

    import aiohttp

    from hivetray.pool.remote.link import describe_failure, tls_failure

    if not config.url:
        raise RemoteSetupError("set the engine's url first (such as http://gpu-box:8080)")
    url = display_url(config.url) or ""
    key = read_key(config.api_key_env, role)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = aiohttp.ClientTimeout(total=config.timeout_s or 30.0)
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            status, models = await _get(session, config.url + "/v1/models")
            rtt_ms = (time.monotonic() - started) * 1000.0
            if status >= 400:
                raise _setup(wire.status_error(status, models, role=role, url=url,
                                               path="/v1/models", key_env=config.api_key_env,
                                               setup=True))
            props_status, props = await _get(session, config.url + "/props")
    except HivetrayError:
        raise
    except Exception as exc:
        raise tls_failure(exc, url) or RemoteSetupError(
            f"the engine at {url} {describe_failure(exc, config.timeout_s or 30.0)}") from None
    return report(config.model, models, props if props_status == 200 else None, rtt_ms, url)


def report(wanted: str | None, models: Any, props: Any, rtt_ms: float,
           url: str) -> ConnectionReport:
    entries = [m for m in (models.get("data") or [] if isinstance(models, dict) else [])
               if isinstance(m, dict)]
    ids = tuple(str(m.get("id")) for m in entries)
    if wanted and wanted not in ids:
        raise RemoteSetupError(f"the engine at {url} has no model {wanted!r}; it has: "
                               f"{', '.join(ids) or 'none'}")
    model = wanted or (ids[0] if ids else None)
    entry = next((m for m in entries if m.get("id") == model), {})
    engine = OWNERS.get(str(entry.get("owned_by")), str(entry.get("owned_by") or "unknown"))
    n_ctx = (entry.get("meta") or {}).get("n_ctx") or entry.get("max_model_len")
    images: bool | None = None
    if isinstance(props, dict):
        engine = "llama-server" if engine == "unknown" else engine
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or n_ctx
        modalities = props.get("modalities")
        if isinstance(modalities, dict):
            images = bool(modalities.get("vision"))
    if entry.get("role") == "vision" or "multimodal" in (entry.get("capabilities") or []):
        images = True
    return ConnectionReport(engine, model, ids, int(n_ctx) if n_ctx else None, images, rtt_ms)


async def _get(session: Any, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        raw = await resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode("utf-8", errors="replace")


def _setup(error: Exception) -> Exception:
    if isinstance(error, wire.EngineDown):
        return RemoteSetupError(f"the engine {error.how}")
    return error
