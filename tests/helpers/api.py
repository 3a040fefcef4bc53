"""A real ``hivetray daemon --api`` for the HTTP API's end-to-end tests, and a plain HTTP client
(``http.client``: no library between the test and the wire)."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hivetray.config import Config, PoolConfig, RoleConfig, default_config
from tests.helpers.daemon import Daemon, StartDaemon, cli
from tests.helpers.waiting import wait_until

URL_LINE = re.compile(r"HTTP API on (http://\S+)")


def all_roles_config(models: dict[str, Path], *, chat: Path | None = None,
                     pool: PoolConfig | None = None) -> Config:
    """Every role on the tiny models (one thread each: a shared 2-core machine)."""
    small = {"n_ctx": 256, "n_threads": 1}
    roles = {
        "chat": RoleConfig(model=str(chat or models["chat"]), **small),  # type: ignore[arg-type]
        "vision": RoleConfig(model=str(models["chat"]), mmproj=str(models["mmproj"]),
                             **small),  # type: ignore[arg-type]
        "embed": RoleConfig(model=str(models["embed"]), **small),  # type: ignore[arg-type]
        "rerank": RoleConfig(model=str(models["rerank"]), **small),  # type: ignore[arg-type]
    }
    if chat is not None:
        roles["chat"] = replace(roles["chat"], n_ctx=4096)
    return replace(default_config(), roles=roles, pool=pool or PoolConfig())


@dataclass
class ApiDaemon:
    daemon: Daemon
    url: str
    key: str

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def request(self, method: str, path: str, body: Any = None, *, key: str | None = "",
                headers: dict[str, str] | None = None, raw: bytes | None = None,
                timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; ``key=""`` sends the daemon's key, ``None`` sends none."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        sent = dict(headers or {})
        token = self.key if key == "" else key
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, \
                response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any
             ) -> tuple[int, dict[str, str], Any]:
        status, headers, data = self.request(method, path, body, **kwargs)
        return status, headers, json.loads(data)

    def metric(self, name: str, role: str) -> float | None:
        """One sample of ``GET /metrics`` (None when it is not there)."""
        status, _, data = self.request("GET", "/metrics")
        assert status == 200
        pattern = re.compile(rf'^{re.escape(name)}\{{role="{role}"\}} (\S+)$', re.M)
        match = pattern.search(data.decode())
        return float(match.group(1)) if match else None


def start_api(start_daemon: StartDaemon, *args: str) -> ApiDaemon:
    """``hivetray daemon --api --port 0`` (any free port), its URL from its output and its
    key from ``hivetray api key``."""
    daemon = start_daemon("--api", "--port", "0", *args)
    found = wait_until(lambda: URL_LINE.search(daemon.stdout()), 20.0,
                       what="the daemon printed its API address")
    result = cli("api", "key")
    assert result.returncode == 0, result.stderr
    return ApiDaemon(daemon, found.group(1), result.stdout.strip())
