"""One role's supervisor: the state machine, start, requests, crashes, health and stop.

Everything here runs on the event loop thread; a worker's link calls back through
``call_soon_threadsafe`` and a :class:`~hivetray.pool.worker_run.RunSink` that ties every
callback to the worker that sent it. ``_set_state`` is the only place a role's state changes:
it refuses illegal edges and turns every change into an event.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from hivetray.config import PoolConfig, RoleConfig
from hivetray.errors import (
    CircuitOpen,
    HivetrayError,
    InvalidModelFile,
    ModelLoadError,
    PoolClosed,
    RequestCancelled,
    RoleInError,
    RoleUnconfigured,
    WorkerBusy,
    WorkerCrashed,
    describe_exit,
    error_from_wire,
)
from hivetray.models.validate import check_role
from hivetray.pool.breaker import CircuitBreaker
from hivetray.pool.clock import Clock
from hivetray.pool.events import Event, EventKind, EventLog
from hivetray.pool.health import HealthMonitor, start_timeout_s
from hivetray.pool.logtail import log_size, read_tail, telling_line
from hivetray.pool.requests import InFlight, PendingRequest, Usage
from hivetray.pool.shutdown import Timing, stop_worker
from hivetray.pool.states import IllegalTransition, RoleState, is_legal
from hivetray.pool.tasks import TaskSet, wait_shielded
from hivetray.pool.transport import Spawner
from hivetray.pool.worker_run import RunSink, WorkerRun
from hivetray.workers.spec import WorkerSpec

log = logging.getLogger(__name__)
S = RoleState
#: (role, model, mmproj) -> anything, or raises ModelLoadError; injected so logic tests need
#: no model files
ModelCheck = Callable[[str, str | None, str | None], object]
#: runs a blocking function off the event loop (a thread in production, inline in unit tests)
BlockingRunner = Callable[[Callable[[], int]], Awaitable[int]]
#: requests waiting for (or being served by) one worker; past this, callers get WorkerBusy
MAX_QUEUED_REQUESTS = 64
#: a death by these signals while loading is the model's own fault (llama.cpp aborted or
#: faulted on it): the role goes to ``error``; any other signal came from outside (the OOM
#: killer's SIGKILL, a stray SIGTERM) and is a crash within the restart budget
MODEL_FAULT_SIGNALS = frozenset(getattr(signal, name) for name in
                                ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE")
                                if hasattr(signal, name))


class WorkerRegistry(Protocol):
    """Where live worker pids are recorded (the launch-time sweep reads it)."""

    def add(self, role: str, pid: int) -> None: ...

    def remove(self, pid: int) -> None: ...


class NoRegistry:
    """A private pool records nothing: the shared record belongs to the home's owner."""

    def add(self, role: str, pid: int) -> None:
        return None

    def remove(self, pid: int) -> None:
        return None


async def _in_thread(fn: Callable[[], int]) -> int:
    return await asyncio.to_thread(fn)


class RoleSupervisor:
    """Keeps one role's worker alive, healthy and cheap; the pool holds one per role."""

    def __init__(self, name: str, config: RoleConfig, pool_config: PoolConfig, *,
                 spawner: Spawner, clock: Clock, events: EventLog, log_path: Path,
                 registry: WorkerRegistry | None = None, faults: frozenset[str] = frozenset(),
                 validate_model: ModelCheck = check_role,
                 run_blocking: BlockingRunner = _in_thread, tasks: TaskSet | None = None,
                 eager: bool = True) -> None:
        self.name = name
        self.config = config
        self.spawner = spawner
        self.clock = clock
        self.events = events
        self.log_path = log_path
        self.registry: WorkerRegistry = registry or NoRegistry()
        self.faults = faults
        self.validate_model = validate_model
        self.run_blocking = run_blocking
        self.tasks = tasks or TaskSet(self._task_failed)
        #: pinned roles start at launch and after a crash; off in private pools
        self.eager = eager
        self.state = S.STOPPED if config.configured else S.UNCONFIGURED
        self.breaker = CircuitBreaker(clock)
        self.health = HealthMonitor(clock)
        self.timing = Timing()
        self.apply_pool_config(pool_config)
        self.usage = Usage()
        self.last_error: str | None = None
        self.run: WorkerRun | None = None
        self.started_at: float | None = None
        self.last_used = clock.now()
        self.closed = False
        self.in_flight = InFlight()
        self._start_future: asyncio.Future[None] | None = None
        self._start_attempt = 0
        self._stop_task: asyncio.Task[None] | None = None
        self._retiring: dict[WorkerRun, asyncio.Task[None]] = {}

    @property
    def link(self) -> Any:
        """The current worker's link (None when no worker runs)."""
        return self.run.link if self.run is not None else None

    @property
    def pid(self) -> int | None:
        return self.run.pid if self.run is not None else None

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

    def _task_failed(self, name: str, error: BaseException) -> None:
        self._emit(EventKind.TASK_FAILED, f"{self.name}: {name} failed: {error}",
                   {"type": type(error).__name__}, level="error")

    def apply_pool_config(self, pool: PoolConfig) -> None:
        self.pool_config = pool
        self.breaker.configure(pool.restart_budget, pool.restart_window_s, pool.cooldown_s)
        self.health.configure(pool.health_interval_s, pool.ping_timeout_s)
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
                await wait_shielded(self._stop_task)
                continue
            if state is S.STOPPED:
                self.begin_start()
                continue
            if state is S.STARTING:
                assert self._start_future is not None
                await wait_shielded(self._start_future)
                continue
            return  # READY or BUSY

    def begin_start(self) -> None:
        """stopped → starting: check the files off the loop, then spawn (not awaited)."""
        loop = asyncio.get_running_loop()
        self.breaker.begin_attempt()
        self._start_future = loop.create_future()
        self._start_future.add_done_callback(_consume_exception)
        self._start_attempt += 1
        self._set_state(S.STARTING, "spawning")
        self.tasks.spawn(self._check_then_spawn(self._start_attempt, self.config),
                         f"start-{self.name}")

    async def _check_then_spawn(self, attempt: int, config: RoleConfig) -> None:
        """A missing, truncated or hostile file is reported without spawning; the check runs
        in a thread, so a slow or huge header never stalls the loop (or the UI)."""
        def check() -> int:
            self.validate_model(self.name, config.model, config.mmproj)
            return sum(_size(p) for p in (config.model, config.mmproj))

        try:
            model_bytes = await self.run_blocking(check)
        except ModelLoadError as exc:
            error: ModelLoadError = exc
        except Exception as exc:  # a bug in the check must not leave the role in starting
            error = InvalidModelFile(f"{config.model} could not be checked ({type(exc).__name__}:"
                                     f" {exc}); is it really a GGUF model?", config.model)
        else:
            if self.state is S.STARTING and attempt == self._start_attempt:
                self._spawn(config, model_bytes)
            return
        if self.state is S.STARTING and attempt == self._start_attempt:
            self._emit(EventKind.LOAD_ERROR, f"{self.name}: {error}", level="error")
            self._fail_start(str(error), error)

    def _spawn(self, config: RoleConfig, model_bytes: int) -> None:
        spec = WorkerSpec(self.name, config.model or "", config.mmproj, config.n_ctx,
                          config.n_threads, str(self.log_path), self.faults)
        loop = asyncio.get_running_loop()
        try:
            link = self.spawner(spec)
            # the run is current before the link starts: it reports back only through the sink
            self.run = WorkerRun(link, loop.create_future(), log_size(self.log_path),
                                 self.clock.now(), start_timeout_s(config.start_timeout_s,
                                                                   model_bytes))
            link.start(RunSink(self, self.run))
        except Exception as exc:  # e.g. fork failure, out of file descriptors
            run, self.run = self.run, None
            if run is not None:
                run.link.close()
            self._emit(EventKind.CRASH, f"{self.name}: spawning the worker failed: {exc}",
                       {"traceback": traceback.format_exc()}, level="error")
            self._fail_start(f"could not start the worker process: {exc}")

    def _fail_start(self, message: str, error: HivetrayError | None = None) -> None:
        self.last_error = message
        self._set_state(S.ERROR, message)
        self._fail_start_waiters(error or RoleInError(self.name, message))
        if self.run is not None:  # it reported a load error and is exiting: see it go aside
            self._retire(self.run)

    def _fail_start_waiters(self, error: BaseException) -> None:
        if self._start_future is not None and not self._start_future.done():
            self._start_future.set_exception(error)

    # -- callbacks of the current worker (loop thread, through its RunSink) ------------------
    def on_started(self, pid: int) -> None:
        """The worker process exists (the link started it off the loop)."""
        self.registry.add(self.name, pid)
        self._emit(EventKind.SPAWN, f"{self.name}: worker pid {pid} spawned",
                   {"pid": pid, "model": self.config.model})

    def on_spawn_failed(self, reason: str) -> None:
        """The process could not even be started: an error, not a crash loop."""
        run, self.run = self.run, None
        if run is not None:
            run.link.close()  # its pipes would otherwise stay open until garbage collection
            if not run.exited.done():
                run.exited.set_result(None)  # a stop in progress has nothing to wait for
        self._emit(EventKind.CRASH, f"{self.name}: spawning the worker failed: {reason}",
                   level="error")
        if self.state is S.STARTING:
            self._fail_start(f"could not start the worker process: {reason}")

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
        self.started_at = self.last_used = self.clock.now()
        self.health.restart()
        self._set_state(S.READY, f"model loaded in {self.usage.load_s or 0:.2f} s")
        self._emit(EventKind.READY, f"{self.name}: ready", {"load_s": self.usage.load_s})
        if self._start_future is not None and not self._start_future.done():
            self._start_future.set_result(None)

    def _request_finished(self, kind: str, payload: Any) -> None:
        self.last_used = self.clock.now()
        self.usage.record(kind, payload)
        if kind == "result":
            self._worker_proved_healthy()
        if self.state is S.BUSY and not self.in_flight:
            self._set_state(S.READY, "idle")

    def _worker_proved_healthy(self) -> None:
        if self.breaker.record_success():
            self._emit(EventKind.BREAKER_CLOSED, f"{self.name}: worker healthy again; "
                       "the crash history is cleared")

    def on_control(self, msg: dict[str, Any]) -> None:
        if msg.get("op") == "pong" and self.health.pong(msg.get("seq")):
            self._worker_proved_healthy()

    def on_exit(self, exitcode: int | None) -> None:
        run, self.run = self.run, None
        self.started_at = None
        self.health.forget()
        if run is None:
            return
        run.link.close()
        if not run.exited.done():
            run.exited.set_result(exitcode)
        if run.pid is not None:
            self.registry.remove(run.pid)
        if self.state is S.STOPPING:
            self.in_flight.fail_all(RequestCancelled(f"the {self.name} worker was stopped"))
            return
        self._on_crash(run, exitcode)

    def on_retired_exit(self, run: WorkerRun, exitcode: int | None) -> None:
        """A worker this role had already replaced (or stopped aside) is gone."""
        if run.pid is not None:
            self.registry.remove(run.pid)

    # -- crashes ----------------------------------------------------------------------------------
    def _on_crash(self, run: WorkerRun, exitcode: int | None) -> None:
        tail = read_tail(self.log_path, since=run.log_offset)
        error = WorkerCrashed(self.name, exitcode, str(self.log_path), tail, run.kill_reason)
        self._emit(EventKind.CRASH, str(error).split("\n", 1)[0],
                   {"exitcode": exitcode, "log_tail": tail}, level="error")
        if self.state is S.STARTING and not _crash_while_loading_counts(run, exitcode):
            self._fail_start(f"the worker {describe_exit(exitcode)} while loading "
                             f"{self.config.model}; see {self.log_path}" + telling_line(tail),
                             error)
            return
        self.in_flight.fail_all(error)
        self._fail_start_waiters(error)
        self.last_error = str(error).split("\n", 1)[0]
        if self.breaker.record_crash():
            self._set_state(S.COOLING_DOWN, "restart budget exhausted")
            self._emit(EventKind.BREAKER_OPEN, str(self._circuit_open_error()),
                       {"retry_in_s": self.breaker.retry_in_s()}, level="warning")
        else:
            self._set_state(S.STOPPED, "crashed")
            self._restart_if_pinned()

    def _restart_if_pinned(self) -> None:
        if self.config.pinned and self.eager and not self.closed and self.state is S.STOPPED:
            self.begin_start()

    # -- requests -----------------------------------------------------------------------------
    async def stream(self, method: str,
                     params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the worker's chunks, then a final ``{"done": True, **result}``.

        Leaving early (break, cancellation, closed connection) cancels the request in the
        worker; the request stays in flight until the worker confirms.
        """
        await self.ensure_ready()
        run = self.run
        assert run is not None
        if len(self.in_flight) >= MAX_QUEUED_REQUESTS:
            raise WorkerBusy(self.name, len(self.in_flight))
        req = self.in_flight.add(method)
        try:
            run.link.send({"type": "request", "id": req.id, "method": method, "params": params})
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
        if req.id in self.in_flight and not req.cancel_sent and self.run is not None:
            req.cancel_sent = True
            self.run.link.abort(req.id)

    # -- health, start deadline, cooldown, reaping (driven by the pool's ticker) --------------
    def health_tick(self) -> None:
        run = self.run
        if run is None or run.kill_reason is not None:
            return
        if self.state is S.STARTING:
            if self.health.start_overdue(run.spawned_at, run.start_timeout_s):
                self._kill(run, f"did not finish loading within {run.start_timeout_s:g} s and "
                                "was killed", EventKind.START_TIMEOUT)
            return
        if self.state not in (S.READY, S.BUSY):
            return
        if self.health.overdue():
            self.health.forget()
            self._kill(run, f"did not answer a health ping within "
                            f"{self.pool_config.ping_timeout_s:g} s and was killed",
                       EventKind.PING_TIMEOUT)
            return
        seq = self.health.ping_due()
        if seq is not None:
            run.link.send_control({"op": "ping", "seq": seq})

    def _kill(self, run: WorkerRun, reason: str, kind: EventKind) -> None:
        """Kill a hung or stuck worker; its exit is then reported (and counted) as a crash."""
        run.kill_reason = reason
        self._emit(kind, f"{self.name}: the worker {reason}", level="error")
        run.link.kill()

    def expire_cooldown(self) -> bool:
        """cooling_down → stopped once the cooldown is over; the next start is half-open."""
        if self.state is S.COOLING_DOWN and not self.breaker.retry_in_s():
            self._set_state(S.STOPPED, "cooldown over; the next start is a trial")
            self._restart_if_pinned()
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
            self._restart_if_pinned()

    def stop(self, reason: str) -> asyncio.Task[None] | None:
        """Stop the worker (not a crash). Returns the stop task; it always runs to the end.

        A role in ``error`` may still have a live process aside — a worker that reported a load
        error and has not exited yet: the returned task then waits until it is gone.
        """
        if self.state is S.STOPPING:
            return self._stop_task
        if self.state not in (S.STARTING, S.READY, S.BUSY):
            if self._retiring:
                return self.tasks.spawn(self._wait_retired(), f"stop-{self.name}")
            return None
        self._set_state(S.STOPPING, reason)
        self._emit(EventKind.STOP, f"{self.name}: stopping ({reason})", {"reason": reason})
        self._stop_task = self.tasks.spawn(self._stop_sequence(reason), f"stop-{self.name}")
        return self._stop_task

    def live_links(self) -> list[Any]:
        """Links of every worker process this role still has (current and replaced ones)."""
        runs = [*([self.run] if self.run is not None else []), *self._retiring]
        return [run.link for run in runs if run.alive]

    def stop_all_workers(self, reason: str) -> list[asyncio.Task[None]]:
        """Quit: stop the current worker and wait for every replaced one too."""
        task = self.stop(reason)
        return [*([task] if task is not None else []), *self._retiring.values()]

    async def _stop_sequence(self, reason: str) -> None:
        """Shutdown message → grace → SIGTERM → 5 s → SIGKILL; always ends reaped and stopped."""
        self._fail_start_waiters(
            RequestCancelled(f"the {self.name} worker was stopped while starting"))
        self.in_flight.fail_all(RequestCancelled(f"the {self.name} worker was stopped ({reason})"))
        run = self.run
        if run is not None:
            await stop_worker(run.link, run.exited, self.timing, self._escalating)
        self._set_state(S.STOPPED, reason)

    async def _wait_retired(self) -> None:
        await asyncio.gather(*map(wait_shielded, list(self._retiring.values())))

    def _retire(self, run: WorkerRun) -> asyncio.Task[None]:
        """Stop a worker that is no longer the role's current one, without touching the state;
        its exit then arrives as ``on_retired_exit``."""
        if self.run is run:
            self.run = None
        task = self._retiring.get(run)
        if task is None:
            task = self.tasks.spawn(stop_worker(run.link, run.exited, self.timing,
                                                self._escalating), f"retire-{self.name}")
            self._retiring[run] = task
            task.add_done_callback(lambda _t: self._retiring.pop(run, None))
        return task

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
        return self.tasks.spawn(self._settle_after_config(task), f"reconfigure-{self.name}")

    async def _settle_after_config(self, stopping: asyncio.Task[None] | None) -> None:
        if stopping is not None:
            await wait_shielded(stopping)
        if self.state in (S.COOLING_DOWN, S.ERROR):
            self._set_state(S.STOPPED, "settings changed")
        if not self.config.configured and self.state is S.STOPPED:
            self._set_state(S.UNCONFIGURED, "no model set")
        elif self.config.configured and self.state is S.UNCONFIGURED:
            self._set_state(S.STOPPED, "model set")
        self._restart_if_pinned()


def _crash_while_loading_counts(run: WorkerRun, exitcode: int | None) -> bool:
    """Does a death while loading count as a crash (retried within the budget)? Yes when
    Hivetray killed it (start deadline) or a signal from outside did; no when the model made
    llama.cpp abort or fault, or the worker exited on its own (both say the file is bad)."""
    if run.kill_reason is not None or exitcode is None:
        return True
    return exitcode < 0 and -exitcode not in MODEL_FAULT_SIGNALS


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


def _consume_exception(future: asyncio.Future[Any]) -> None:
    """A start nobody awaited (pinned role) must not log 'exception was never retrieved'."""
    if not future.cancelled():
        future.exception()
