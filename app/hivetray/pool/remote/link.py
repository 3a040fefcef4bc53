"""A remote engine behind the worker-link interface the supervisor already drives.

What each link call means here (compare :class:`~hivetray.pool.transport.ProcessLink`):

- ``start`` → connect and check that the model exists (``GET /v1/models``), then report
  ``ready``; a wrong key, an unknown model or a TLS failure is a ``load_error`` (the role goes to
  ``error`` and does not retry by itself); an unreachable engine is the link's exit (counted).
- ``send`` → one HTTP request per request id, chunks/result/error through the same sink;
  a 4xx is that request's typed error; a 5xx, a dropped connection or a timeout is the link's
  exit, which the supervisor counts against the restart budget and the breaker.
- ``abort`` → closes that request's HTTP stream (llama-server and vLLM then stop generating).
- ``send_control`` ping → ``GET /health`` (``/v1/models`` where there is none); shutdown,
  ``terminate``, ``kill`` → close the connections and report the exit.

No process, so no pid, no RSS, no worker log and no sweep record. All on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from hivetray.config import RoleConfig
from hivetray.errors import HivetrayError, InvalidRequest, RemoteSetupError, error_to_wire
from hivetray.pool.clock import Clock
from hivetray.pool.remote import wire
from hivetray.pool.remote.access import display_url, read_key
from hivetray.pool.remote.wire import ENDPOINTS, EngineDown
from hivetray.pool.transport import LinkSink

if TYPE_CHECKING:
    import aiohttp

#: the link's exit code when the engine failed or the link was closed (there is no process)
NO_EXITCODE: int | None = None
#: how long to wait between polls while the engine answers 503 "loading the model"
LOADING_POLL_S = 0.25


def connection_errors() -> tuple[type[BaseException], ...]:
    """What a failed engine raises (imported late: the tray keeps aiohttp and OpenSSL out of
    its start-up, see hivetray.lean_imports)."""
    import aiohttp

    return aiohttp.ClientError, TimeoutError, OSError, EngineDown


def describe_failure(exc: BaseException, timeout_s: float) -> str:
    """A connection-level failure in words, saying what to do."""
    import aiohttp

    if isinstance(exc, EngineDown):
        return exc.how
    if isinstance(exc, TimeoutError):
        return f"did not answer within {timeout_s:g} s (is it overloaded or stopped?)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"is unreachable ({reason}): start the engine or fix the role's url"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "dropped the connection (did the engine stop?)"
    return f"failed ({type(exc).__name__}: {exc})"


def process_has_tls() -> bool:
    """Whether asyncio in this process can make TLS connections: not in a tray app that
    imported asyncio with OpenSSL kept out (``hivetray.lean_imports``; asyncio then has no TLS
    transport for the life of the process)."""
    import asyncio.sslproto

    return getattr(asyncio.sslproto, "ssl", None) is not None


def tls_failure(exc: BaseException, url: str) -> RemoteSetupError | None:
    import ssl

    import aiohttp

    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return RemoteSetupError(f"the TLS connection to {url} failed ({exc}): check the "
                                "server's certificate, or use http:// on a trusted network")
    return None


class RemoteLink:
    """One remote role's connection pool and its requests, as a worker link."""

    pid: int | None = None

    def __init__(self, role: str, config: RoleConfig, clock: Clock) -> None:
        assert config.url
        self.role = role
        self.config = config
        self.base = config.url.rstrip("/")
        self.url = display_url(config.url) or ""
        self.clock = clock
        self.timeout_s = config.timeout_s or 30.0
        self.model = config.model
        #: why the engine was given up on (read by the crash report), None while it is fine
        self.failure: str | None = None
        #: the last round trip (request → answer headers, or a health ping), milliseconds
        self.rtt_ms: float | None = None
        self._sink: LinkSink | None = None
        self._session: aiohttp.ClientSession | None = None
        self._requests: dict[int, asyncio.Task[dict[str, Any]]] = {}
        self._aborted: set[int] = set()
        self._aux: set[asyncio.Task[Any]] = set()
        self._exited = False
        self._health_path = "/health"
        self._exit_task: asyncio.Task[None] | None = None

    # -- the link interface ---------------------------------------------------------------------
    def start(self, sink: LinkSink) -> None:
        self._sink = sink
        self._spawn(self._connect())

    def send(self, msg: dict[str, Any]) -> None:
        rid = int(msg["id"])
        task = asyncio.get_running_loop().create_task(
            self._request(rid, str(msg["method"]), msg.get("params") or {}))
        self._requests[rid] = task
        task.add_done_callback(lambda t, rid=rid: self._finished(rid, t))  # type: ignore[misc]

    def send_control(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "ping":
            self._spawn(self._ping(msg.get("seq")))
        elif op == "shutdown":
            self._close(0)

    def abort(self, request_id: int) -> None:
        task = self._requests.get(request_id)
        if task is not None:
            self._aborted.add(request_id)
            task.cancel()

    def terminate(self) -> None:
        self._close(NO_EXITCODE)

    def kill(self) -> None:
        self._close(NO_EXITCODE)

    def close(self) -> None:
        """Nothing left to release once the exit was reported (the session is closed then)."""

    # -- starting -------------------------------------------------------------------------------
    async def _connect(self) -> None:
        import aiohttp

        started = self.clock.now()
        if self.base.lower().startswith("https:") and not process_has_tls():
            self._deliver({"type": "load_error", "error": error_to_wire(RemoteSetupError(
                f"{self.url} needs TLS, which this Hivetray started without (to save memory, "
                "the tray loads OpenSSL only when a role uses https:// at launch): quit "
                "Hivetray and start it again"))})
            return
        try:
            headers = self._headers()
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s))
            body = await self._get_json("/v1/models", setup=True)
        except HivetrayError as exc:
            self._deliver({"type": "load_error", "error": error_to_wire(exc)})
            return
        except connection_errors() as exc:
            setup = tls_failure(exc, self.url)
            if setup is not None:
                self._deliver({"type": "load_error", "error": error_to_wire(setup)})
            else:
                self._fail(describe_failure(exc, self.timeout_s))
            return
        ids = [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict)]
        if self.model and self.model not in ids:
            error = RemoteSetupError(
                f"the engine at {self.url} has no model {self.model!r}; it has: "
                f"{', '.join(ids) or 'none'} (set one of them as the {self.role} role's model)")
            self._deliver({"type": "load_error", "error": error_to_wire(error)})
            return
        self.model = self.model or (ids[0] if ids else None)
        self._deliver({"type": "ready", "load_s": self.clock.now() - started,
                       "model": self.model})

    def _headers(self) -> dict[str, str]:
        key = read_key(self.config.api_key_env, self.role)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _get_json(self, path: str, *, setup: bool = False) -> Any:
        """GET ``path``; while the engine answers 503 (loading its model) it is asked again,
        until the start deadline (the supervisor's) ends the wait."""
        assert self._session is not None
        while True:
            sent = self.clock.now()
            async with await self._open("GET", path) as resp:
                self._rtt(sent)
                if resp.status == 503 and setup:
                    await asyncio.sleep(LOADING_POLL_S)
                    continue
                body = await self._body(resp)
                if resp.status >= 400:
                    raise self._status_error(resp.status, body, path, setup)
                return body

    # -- requests -------------------------------------------------------------------------------
    async def _request(self, rid: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "chat":
            return await self._chat(rid, params)
        if method == "embed":
            texts = list(params.get("texts") or [])
            body = await self._post_json(ENDPOINTS["embed"], {"input": texts})
            return {"embeddings": wire.embeddings(body, len(texts), self.role),
                    "usage": wire.usage_of(body)}
        if method == "rerank":
            docs = list(params.get("documents") or [])
            body = await self._post_json(ENDPOINTS["rerank"], {
                "query": params.get("query"), "documents": docs, "top_n": len(docs)})
            return {"scores": wire.rerank_scores(body, len(docs), self.role),
                    "usage": wire.usage_of(body)}
        raise InvalidRequest(f"the {self.role} engine has no method {method!r}")

    async def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        assert self._session is not None
        if self.model:
            payload = {"model": self.model, **payload}
        sent = self.clock.now()
        async with await self._open("POST", path, payload) as resp:
            self._rtt(sent)
            body = await self._body(resp)
            if resp.status >= 400:
                raise self._status_error(resp.status, body, path, False)
            return body

    async def _chat(self, rid: int, params: dict[str, Any]) -> dict[str, Any]:
        assert self._session is not None
        path = ENDPOINTS["chat"]
        body = wire.chat_body(self.model, params)
        sent = self.clock.now()
        state = wire.StreamState()
        first: float | None = None
        async with await self._open("POST", path, body) as resp:
            self._rtt(sent)
            if resp.status >= 400:
                raise self._status_error(resp.status, await self._body(resp), path, False)
            try:
                async for line in resp.content:
                    text = wire.read_event(line, state, self.role)
                    if text:
                        first = first or self.clock.now()
                        self._deliver({"type": "chunk", "id": rid, "data": {"text": text}})
                    if state.done:
                        break
            except BaseException:
                resp.close()  # a cancel closes the stream: the engine stops generating
                raise
        end = self.clock.now()
        return self._chat_result(state, sent, first, end)

    async def _open(self, method: str, path: str,
                    payload: dict[str, Any] | None = None) -> aiohttp.ClientResponse:
        """Send a request; once more on a fresh connection when a pooled one turned out closed
        before any answer came (llama-server closes a keep-alive connection after a few
        requests): that is not the engine failing. A refused connection is not retried."""
        import aiohttp

        assert self._session is not None
        for attempt in (1, 2):
            try:
                return await self._session.request(method, self.base + path, json=payload)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 2 or isinstance(exc, aiohttp.ClientConnectorError):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _chat_result(state: wire.StreamState, sent: float, first: float | None,
                     end: float) -> dict[str, Any]:
        usage = {"prompt_tokens": int(state.usage.get("prompt_tokens") or 0),
                 "completion_tokens": int(state.usage.get("completion_tokens") or state.chunks)}
        speed = state.timings.get("predicted_per_second")
        if not speed and first is not None and end > first and usage["completion_tokens"] > 1:
            speed = (usage["completion_tokens"] - 1) / (end - first)
        return {"usage": usage, "finish_reason": state.finish_reason or "stop",
                "tokens_per_s": float(speed) if speed else None,
                "ttft_s": (first - sent) if first is not None else None}

    async def _body(self, resp: aiohttp.ClientResponse) -> Any:
        raw = await resp.read()
        try:
            import json

            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", errors="replace")

    def _status_error(self, status: int, body: Any, path: str, setup: bool) -> Exception:
        return wire.status_error(status, body, role=self.role, url=self.url, path=path,
                                 key_env=self.config.api_key_env, setup=setup)

    def _finished(self, rid: int, task: asyncio.Task[dict[str, Any]]) -> None:
        """A request's task ended: report its result, error or cancel — unless the link
        itself failed or closed (the supervisor then fails every request in flight)."""
        self._requests.pop(rid, None)
        aborted = rid in self._aborted
        self._aborted.discard(rid)
        if self._exited:
            return
        if task.cancelled():
            if aborted:
                self._deliver({"type": "cancelled", "id": rid, "result": None})
            return
        exc = task.exception()
        if exc is None:
            self._deliver({"type": "result", "id": rid, "result": task.result()})
        elif isinstance(exc, HivetrayError):
            self._deliver({"type": "error", "id": rid, "error": error_to_wire(exc)})
        elif isinstance(exc, connection_errors()):
            self._fail(describe_failure(exc, self.timeout_s))
        else:  # a bug: the caller still gets a typed error, with its traceback
            self._deliver({"type": "error", "id": rid, "error": error_to_wire(exc)})

    # -- health ---------------------------------------------------------------------------------
    async def _ping(self, seq: object) -> None:
        """Answer a ping once the engine did; a 5xx or a refused connection fails the link;
        no answer at all is the supervisor's ping timeout (it then kills the link)."""
        try:
            try:
                await self._get_json(self._health_path)
            except HivetrayError:
                if self._health_path == "/v1/models":
                    raise
                self._health_path = "/v1/models"  # no /health here (Ollama, LM Studio)
                await self._get_json(self._health_path)
        except connection_errors() as exc:
            self._fail(describe_failure(exc, self.timeout_s))
            return
        except HivetrayError as exc:  # e.g. the key was revoked: the engine is unusable now
            self._fail(f"refused the health check ({exc})")
            return
        if self._sink is not None and not self._exited:
            self._sink.on_control({"op": "pong", "seq": seq})

    def _rtt(self, sent: float) -> None:
        self.rtt_ms = round((self.clock.now() - sent) * 1000.0, 2)

    # -- ending ---------------------------------------------------------------------------------
    def _fail(self, how: str) -> None:
        if not self._exited:
            self.failure = how
            self._close(NO_EXITCODE)

    def _close(self, exitcode: int | None) -> None:
        """Stop every request and connection, then report the exit (once)."""
        if self._exited:
            return
        self._exited = True
        current = asyncio.current_task()
        for task in [*self._requests.values(), *self._aux]:
            if task is not current:
                task.cancel()
        self._exit_task = asyncio.get_running_loop().create_task(self._report_exit(exitcode))

    async def _report_exit(self, exitcode: int | None) -> None:
        pending = [t for t in [*self._requests.values(), *self._aux]
                   if t is not asyncio.current_task() and not t.done()]
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._sink is not None:
            self._sink.on_exit(exitcode)

    def _deliver(self, msg: dict[str, Any]) -> None:
        if self._sink is not None and not self._exited:
            self._sink.on_message(msg)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)
