"""One role's supervisor: the state machine, spawn, requests, crashes, health and stop.

Everything here runs on the event loop thread; the worker link calls back through
``call_soon_threadsafe``. ``_set_state`` is the only place a role's state changes: it refuses
illegal edges and turns every change into an event.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from hivetray.config import PoolConfig, RoleConfig
from hivetray.errors import (
    CircuitOpen,
    HivetrayError,
    ModelLoadError,
    PoolClosed,
    RequestCancelled,
    RoleInError,
    RoleUnconfigured,
    WorkerCrashed,
    describe_exit,
    error_from_wire,
)
from hivetray.models.validate import check_role
from hivetray.pool.breaker import CircuitBreaker
from hivetray.pool.clock import Clock
from hivetray.pool.events import Event, EventKind, EventLog
from hivetray.pool.logtail import read_tail, telling_line
from hivetray.pool.requests import InFlight, PendingRequest, Usage
from hivetray.pool.shutdown import Timing, stop_worker
from hivetray.pool.states import IllegalTransition, RoleState, is_legal
from hivetray.pool.transport import Spawner, WorkerLink
from hivetray.workers.spec import WorkerSpec

log = logging.getLogger(__name__)
S = RoleState
#: (role, model, mmproj) -> anything, or raises ModelLoadError; injected so logic tests need
#: no model files
ModelCheck = Callable[[str, str | None, str | None], object]


class RoleSupervisor:
    """Keeps one role's worker alive, healthy and cheap; the pool holds one per role."""

    def __init__(self, name: str, config: RoleConfig, pool_config: PoolConfig, *,
                 spawner: Spawner, clock: Clock, events: EventLog, log_path: Path,
                 on_pid: Callable[[str, int | None], None] = lambda role, pid: None,
                 faults: frozenset[str] = frozenset(),
                 validate_model: ModelCheck = check_role) -> None:
        self.name = name
        self.config = config
        self.pool_config = pool_config
        self.spawner = spawner
        self.clock = clock
        self.events = events
        self.log_path = log_path
        self.on_pid = on_pid
        self.faults = faults
        self.validate_model = validate_model
        self.state = S.STOPPED if config.configured else S.UNCONFIGURED
        self.breaker = CircuitBreaker(clock)
        self.timing = Timing()
        self.apply_pool_config(pool_config)
        self.usage = Usage()
        self.last_error: str | None = None
        self.link: WorkerLink | None = None
        self.pid: int | None = None
        self.started_at: float | None = None
        self.last_used = clock.now()
        self.closed = False
        self.in_flight = InFlight()
        self._start_future: asyncio.Future[None] | None = None
        self._exit_future: asyncio.Future[int | None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._kill_reason: str | None = None
        self._ping_seq = 0
        self._ping_sent_at: float | None = None
        self._last_ping_at = clock.now()

    # -- the one state setter -------------------------------------------------------------
    def _set_state(self, new: RoleState, reason: str = "") -> None:
        old = self.state
        if not is_legal(old, new):
            raise IllegalTransition(f"{self.name}: {old} -> {new} is not a legal transition")
        self.state = new
        self._emit(EventKind.STATE, f"{self.name}: {old} → {new}" + (f" ({reason})" if reason
                   else ""), {"old": str(old), "new": str(new), "reason": reason})

    def _emit(self, kind: EventKind, message: str, data: dict[str, Any] | None = None,
              level: str = "info") -> None:
        self.events.emit(Event(kind, self.name, message, data or {}, level=level))

    def apply_pool_config(self, pool: PoolConfig) -> None:
        self.pool_config = pool
        self.breaker.configure(pool.restart_budget, pool.restart_window_s, pool.cooldown_s)
        self.timing.grace_s = pool.shutdown_grace_s

    # -- starting ---------------------------------------------------------------------------
    async def ensure_ready(self) -> None:
        """Return once the worker is ready; N concurrent callers share one spawn."""
        while True:
            if self.closed:
                raise PoolClosed("Hivetray is shutting down")
            state = self.state
            if state is S.UNCONFIGURED:
                raise RoleUnconfigured(self.name)
            if state is S.ERROR:
                raise RoleInError(self.name, self.last_error or "unknown error")
            if state is S.COOLING_DOWN:
                if not self.expire_cooldown():
                    raise self._circuit_open_error()
                continue
            if state is S.STOPPING:
                assert self._stop_task is not None
                await asyncio.shield(self._stop_task)
                continue
            if state is S.STOPPED:
                self.begin_start()
                failed = self._start_future
                if self.state is S.ERROR and failed is not None and failed.done():
                    error = failed.exception()  # refused before spawning: the first caller
                    if error is not None:       # gets the cause, later ones RoleInError
                        raise error
                continue
            if state is S.STARTING:
                assert self._start_future is not None
                await asyncio.shield(self._start_future)
                continue
            return  # READY or BUSY

    def begin_start(self) -> None:
        """stopped → starting: spawn the worker (not awaited; see ``ensure_ready``)."""
        loop = asyncio.get_running_loop()
        self.breaker.begin_attempt()
        self._kill_reason = None
        self._start_future = loop.create_future()
        self._start_future.add_done_callback(_consume_exception)
        self._exit_future = loop.create_future()
        self._set_state(S.STARTING, "spawning")
        try:  # a missing, truncated or wrong file is reported now, without spawning
            self.validate_model(self.name, self.config.model, self.config.mmproj)
        except ModelLoadError as exc:
            self._emit(EventKind.LOAD_ERROR, f"{self.name}: {exc}", level="error")
            self._fail_start(str(exc), exc)
            return
        spec = WorkerSpec(self.name, self.config.model or "", self.config.mmproj,
                          self.config.n_ctx, self.config.n_threads, str(self.log_path),
                          self.faults)
        try:
            # the link is ours before it starts: it reports back only through on_started
            self.link = self.spawner(spec)
            self.link.start(self)
        except Exception as exc:  # e.g. fork failure, out of file descriptors
            self.link = None
            self._emit(EventKind.CRASH, f"{self.name}: spawning the worker failed: {exc}",
                       {"traceback": traceback.format_exc()}, level="error")
            self._fail_start(f"could not start the worker process: {exc}")
            return

    def on_started(self, pid: int) -> None:
        """The worker process exists (the link started it off the loop)."""
        if self.link is None:
            return
        self.pid = pid
        self.on_pid(self.name, pid)
        self._emit(EventKind.SPAWN, f"{self.name}: worker pid {pid} spawned",
                   {"pid": pid, "model": self.config.model})

    def on_spawn_failed(self, reason: str) -> None:
        """The process could not even be started: an error, not a crash loop."""
        link, self.link = self.link, None
        self.pid = None
        if link is not None:
            link.close()  # its pipes would otherwise stay open until garbage collection
        if self._exit_future is not None and not self._exit_future.done():
            self._exit_future.set_result(None)  # a stop in progress has nothing to wait for
        self._emit(EventKind.CRASH, f"{self.name}: spawning the worker failed: {reason}",
                   level="error")
        if self.state is S.STARTING:
            self._fail_start(f"could not start the worker process: {reason}")

    def _fail_start(self, message: str, error: HivetrayError | None = None) -> None:
        self.last_error = message
        self._set_state(S.ERROR, message)
        if self._start_future is not None and not self._start_future.done():
            self._start_future.set_exception(error or RoleInError(self.name, message))

    # -- link callbacks (loop thread) -------------------------------------------------------
    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ready":
            self._on_ready(msg)
        elif kind == "load_error":
            error = error_from_wire(msg["error"])
            self._emit(EventKind.LOAD_ERROR, f"{self.name}: {error}", level="error")
            if self.state is S.STARTING:
                self._fail_start(str(error), error)
        elif kind == "chunk":
            self.in_flight.deliver(int(msg["id"]), "chunk", msg["data"])
        elif kind in ("result", "cancelled", "error"):
            payload = error_from_wire(msg["error"]) if kind == "error" else msg.get("result")
            if self.in_flight.deliver(int(msg["id"]), kind, payload) is not None:
                self._request_finished(kind, payload)

    def _on_ready(self, msg: dict[str, Any]) -> None:
        if self.state is not S.STARTING:
            return
        self.usage.load_s = msg.get("load_s")
        self.started_at = self.last_used = self._last_ping_at = self.clock.now()
        self._set_state(S.READY, f"model loaded in {self.usage.load_s or 0:.2f} s")
        self._emit(EventKind.READY, f"{self.name}: ready", {"load_s": self.usage.load_s})
        if self._start_future is not None and not self._start_future.done():
            self._start_future.set_result(None)

    def _request_finished(self, kind: str, payload: Any) -> None:
        self.last_used = self.clock.now()
        self.usage.requests += 1
        if kind == "result" and isinstance(payload, dict):
            usage = payload.get("usage") or {}
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
            if payload.get("tokens_per_s"):
                self.usage.tokens_per_s = float(payload["tokens_per_s"])
            self._worker_proved_healthy()
        if self.state is S.BUSY and not self.in_flight:
            self._set_state(S.READY, "idle")

    def _worker_proved_healthy(self) -> None:
        if self.breaker.record_success():
            self._emit(EventKind.BREAKER_CLOSED, f"{self.name}: worker healthy again; "
                       "the crash history is cleared")

    def on_control(self, msg: dict[str, Any]) -> None:
        if msg.get("op") == "pong" and msg.get("seq") == self._ping_seq:
            self._ping_sent_at = None
            self._worker_proved_healthy()

    def on_exit(self, exitcode: int | None) -> None:
        link, self.link = self.link, None
        self.pid = None
        self.started_at = None
        self._ping_sent_at = None
        self.on_pid(self.name, None)
        if link is not None:
            link.close()
        if self._exit_future is not None and not self._exit_future.done():
            self._exit_future.set_result(exitcode)
        state = self.state
        if state is S.STOPPING or state is S.ERROR:
            # asked to stop, or the worker exits by itself after reporting a load error
            self.in_flight.fail_all(RequestCancelled(f"the {self.name} worker was stopped"))
            return
        tail = read_tail(self.log_path)
        error = WorkerCrashed(self.name, exitcode, str(self.log_path), tail, self._kill_reason)
        self._emit(EventKind.CRASH, str(error).split("\n", 1)[0],
                   {"exitcode": exitcode, "log_tail": tail}, level="error")
        if state is S.STARTING:
            self._fail_start(f"the worker {self._kill_reason or describe_exit(exitcode)} while "
                             f"loading {self.config.model}; see {self.log_path}"
                             + telling_line(tail), error)
            return
        self.in_flight.fail_all(error)
        self.last_error = str(error).split("\n", 1)[0]
        if self.breaker.record_crash():
            self._set_state(S.COOLING_DOWN, "restart budget exhausted")
            self._emit(EventKind.BREAKER_OPEN, str(self._circuit_open_error()),
                       {"retry_in_s": self.breaker.retry_in_s()}, level="warning")
        else:
            self._set_state(S.STOPPED, "crashed")
            if self.config.pinned and not self.closed:
                self.begin_start()

    # -- requests -----------------------------------------------------------------------------
    async def stream(self, method: str,
                     params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the worker's chunks, then a final ``{"done": True, **result}``.

        Leaving early (break, cancellation, closed connection) cancels the request in the
        worker; the request stays in flight until the worker confirms.
        """
        await self.ensure_ready()
        assert self.link is not None
        req = self.in_flight.add(method)
        try:
            self.link.send({"type": "request", "id": req.id, "method": method, "params": params})
        except BaseException:
            self.in_flight.discard(req.id)
            raise
        if self.state is S.READY:
            self._set_state(S.BUSY, method)
        finished = False
        try:
            while True:
                kind, payload = await req.queue.get()
                if kind == "chunk":
                    yield payload
                    continue
                finished = True
                if kind == "error":
                    raise payload
                if kind == "cancelled":
                    raise RequestCancelled("the request was cancelled")
                yield {"done": True, **(payload or {})}
                return
        finally:
            if not finished:
                self.cancel(req)

    def cancel(self, req: PendingRequest) -> None:
        if req.id in self.in_flight and not req.cancel_sent and self.link is not None:
            req.cancel_sent = True
            self.link.abort(req.id)

    # -- health, cooldown, reaping (driven by the pool's ticker) ---------------------------
    def health_tick(self) -> None:
        if self.state not in (S.READY, S.BUSY) or self.link is None:
            return
        now = self.clock.now()
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self.pool_config.ping_timeout_s:
                self._kill_reason = (f"did not answer a health ping within "
                                     f"{self.pool_config.ping_timeout_s:g} s and was killed")
                self._emit(EventKind.PING_TIMEOUT, f"{self.name}: {self._kill_reason}",
                           level="error")
                self._ping_sent_at = None
                self.link.kill()
            return
        if now - self._last_ping_at >= self.pool_config.health_interval_s:
            self._ping_seq += 1
            self._ping_sent_at = self._last_ping_at = now
            self.link.send_control({"op": "ping", "seq": self._ping_seq})

    def expire_cooldown(self) -> bool:
        """cooling_down → stopped once the cooldown is over; the next start is half-open."""
        if self.state is S.COOLING_DOWN and not self.breaker.retry_in_s():
            self._set_state(S.STOPPED, "cooldown over; the next start is a trial")
            if self.config.pinned and not self.closed:
                self.begin_start()
            return True
        return False

    def reap_if_idle(self) -> bool:
        timeout = self.config.idle_timeout_s
        if (self.state is S.READY and not self.in_flight and not self.config.pinned
                and timeout > 0 and self.clock.now() - self.last_used >= timeout):
            self._emit(EventKind.REAP, f"{self.name}: idle for {timeout:g} s; stopping to free "
                       "memory")
            self.stop("idle")
            return True
        return False

    def _circuit_open_error(self) -> CircuitOpen:
        return CircuitOpen(self.name, self.breaker.crashes_in_window(),
                           self.breaker.window_s, self.breaker.retry_in_s() or 0.0)

    # -- user intents ---------------------------------------------------------------------
    def retry(self) -> None:
        """Reset the breaker and any load error; pinned roles start again at once."""
        self.breaker.reset()
        self.last_error = None
        if self.state in (S.COOLING_DOWN, S.ERROR):
            self._set_state(S.STOPPED, "retry asked")
            if self.config.pinned and not self.closed:
                self.begin_start()

    def stop(self, reason: str) -> asyncio.Task[None] | None:
        """Stop the worker (not a crash). Returns the stop task; it always runs to the end."""
        if self.state is S.STOPPING:
            return self._stop_task
        if self.state not in (S.STARTING, S.READY, S.BUSY):
            return None
        self._set_state(S.STOPPING, reason)
        self._emit(EventKind.STOP, f"{self.name}: stopping ({reason})", {"reason": reason})
        self._stop_task = asyncio.get_running_loop().create_task(self._stop_sequence(reason))
        return self._stop_task

    async def _stop_sequence(self, reason: str) -> None:
        """Shutdown message → grace → SIGTERM → 5 s → SIGKILL; always ends reaped and stopped."""
        if self._start_future is not None and not self._start_future.done():
            self._start_future.set_exception(
                RequestCancelled(f"the {self.name} worker was stopped while starting"))
        self.in_flight.fail_all(RequestCancelled(f"the {self.name} worker was stopped ({reason})"))
        link, exit_future = self.link, self._exit_future
        if link is not None and exit_future is not None:
            await stop_worker(link, exit_future, self.timing, self._escalating)
        self._set_state(S.STOPPED, reason)

    def _escalating(self, signal_name: str) -> None:
        self._emit(EventKind.ESCALATE, f"{self.name}: worker did not exit; sending "
                   f"{signal_name}", {"signal": signal_name}, level="warning")

    def reconfigure(self, config: RoleConfig) -> asyncio.Task[None] | None:
        """Apply new settings; a changed model means the worker is released and respawned."""
        old, self.config = self.config, config
        needs_respawn = (old.model, old.mmproj, old.n_ctx, old.n_threads) != (
            config.model, config.mmproj, config.n_ctx, config.n_threads)
        if not needs_respawn:
            return None
        self._emit(EventKind.CONFIG, f"{self.name}: settings changed; the worker is restarted "
                   "with the new model" if config.configured else f"{self.name}: model removed")
        self.breaker.reset()
        self.last_error = None
        task = self.stop("settings changed")
        return asyncio.get_running_loop().create_task(self._settle_after_config(task))

    async def _settle_after_config(self, stopping: asyncio.Task[None] | None) -> None:
        if stopping is not None:
            await asyncio.shield(stopping)
        if self.state in (S.COOLING_DOWN, S.ERROR):
            self._set_state(S.STOPPED, "settings changed")
        if not self.config.configured and self.state is S.STOPPED:
            self._set_state(S.UNCONFIGURED, "no model set")
        elif self.config.configured and self.state is S.UNCONFIGURED:
            self._set_state(S.STOPPED, "model set")
        if self.config.pinned and self.state is S.STOPPED and not self.closed:
            self.begin_start()


def _consume_exception(future: asyncio.Future[Any]) -> None:
    """A start nobody awaited (pinned role) must not log 'exception was never retrieved'."""
    if not future.cancelled():
        future.exception()
