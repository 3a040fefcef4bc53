"""One role's supervisor: the state machine, start, requests, crashes, health and stop.

Everything here runs on the event loop thread; a worker's link calls back through
``call_soon_threadsafe`` and a :class:`~hivetray.pool.worker_run.RunSink` that ties every
callback to the worker that sent it. ``_set_state`` is the only place a role's state changes:
it refuses illegal edges and turns every change into an event.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from hivetray.config import PoolConfig, RoleConfig
from hivetray.errors import (
    CircuitOpen,
    HivetrayError,
    PoolClosed,
    RequestCancelled,
    RoleInError,
    RoleUnconfigured,
    error_from_wire,
    first_line,
)
from hivetray.models.validate import check_role
from hivetray.pool.breaker import CircuitBreaker
from hivetray.pool.clock import Clock
from hivetray.pool.dispatch import stream_request
from hivetray.pool.events import Event, EventKind, EventLog
from hivetray.pool.exits import crash_error, crash_while_loading_counts, load_death_message
from hivetray.pool.health import HealthMonitor, Stuck
from hivetray.pool.launch import BlockingRunner, Launcher, ModelCheck, StartGate
from hivetray.pool.memory import Admit, admit_always
from hivetray.pool.registry import NoRegistry, WorkerRegistry
from hivetray.pool.requests import InFlight, Usage
from hivetray.pool.retire import Retirement
from hivetray.pool.shutdown import Timing, stop_worker
from hivetray.pool.states import RETRYABLE, SERVING, STOPPABLE, IllegalTransition, is_legal
from hivetray.pool.states import RoleState as S
from hivetray.pool.tasks import TaskSet, in_thread, wait_shielded
from hivetray.pool.transport import Spawner
from hivetray.pool.worker_run import WorkerRun
from hivetray.wording import Wording


class RoleSupervisor:
    """Keeps one role's worker alive, healthy and cheap; the pool holds one per role."""

    def __init__(self, name: str, config: RoleConfig, pool_config: PoolConfig, *,
                 spawner: Spawner, clock: Clock, events: EventLog, log_path: Path,
                 registry: WorkerRegistry | None = None, faults: frozenset[str] = frozenset(),
                 validate_model: ModelCheck = check_role,
                 run_blocking: BlockingRunner = in_thread, tasks: TaskSet | None = None,
                 eager: bool = True, admit: Admit = admit_always) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.events = events
        self.log_path = log_path
        self.registry: WorkerRegistry = registry or NoRegistry()
        self.launcher = Launcher(name, spawner=spawner, clock=clock, log_path=log_path,
                                 faults=faults, validate_model=validate_model,
                                 run_blocking=run_blocking, admit=admit)
        self.tasks = tasks or TaskSet(self._task_failed)
        #: pinned roles start at launch and after a crash; off in private pools
        self.eager = eager
        self.state = S.STOPPED if config.configured else S.UNCONFIGURED
        self.breaker = CircuitBreaker(clock)
        self.health = HealthMonitor(clock)
        self.timing = Timing()
        self.apply_pool_config(pool_config)
        self.usage = Usage()
        self.last_failure: Wording | None = None  # what went wrong last, in every surface's words
        self.run: WorkerRun | None = None
        self.started_at: float | None = None
        self.last_used = clock.now()
        self.closed = False
        self.in_flight = InFlight()
        self.start_gate = StartGate()
        self._stop_task: asyncio.Task[None] | None = None
        self.retired = Retirement(self.tasks, self.timing, name, self._escalating)

    @property
    def pid(self) -> int | None:
        return self.run.pid if self.run is not None else None

    @property
    def last_error(self) -> str | None:
        """The last failure as the CLI says it (``status --json``); windows use its wording."""
        return self.last_failure.for_cli() if self.last_failure is not None else None

    # -- the one state setter -------------------------------------------------------------
    def _set_state(self, new: S, reason: str = "") -> None:
        old = self.state
        if not is_legal(old, new):
            raise IllegalTransition(f"{self.name}: {old} -> {new} is not a legal transition")
        self.state = new
        self._emit(EventKind.STATE, f"{self.name}: {old} → {new}" + (f" ({reason})" if reason
                   else ""), {"old": str(old), "new": str(new), "reason": reason})

    def _emit(self, kind: EventKind, message: str, data: dict[str, Any] | None = None,
              level: str = "info", wording: Wording | None = None) -> None:
        self.events.emit(Event(kind, self.name, message, data or {}, level=level, wording=wording))

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
                raise RoleInError(self.name, self.last_failure or "unknown error")
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
                await self.start_gate.wait()
                continue
            return  # READY or BUSY

    def begin_start(self) -> None:
        """stopped → starting: check the files off the loop, then spawn (not awaited)."""
        self.breaker.begin_attempt()
        attempt = self.start_gate.open()
        self._set_state(S.STARTING, "spawning")
        self.tasks.spawn(self._check_then_spawn(attempt, self.config), f"start-{self.name}")

    async def _check_then_spawn(self, attempt: int, config: RoleConfig) -> None:
        """A bad file, or a worker the memory cannot hold, is reported without spawning; a stop
        (or a newer start) that came during the check or the memory admission wins."""
        def current() -> bool:
            return self.state is S.STARTING and attempt == self.start_gate.attempt
        try:
            checked = await self.launcher.prepare(config, current)
        except HivetrayError as exc:  # a ModelLoadError, or InsufficientMemory
            if current():
                self._emit(EventKind.LOAD_ERROR, f"{self.name}: {exc}", level="error",
                           wording=exc.wording)
                self._fail_start(exc.wording, exc)
            return
        if not current():
            return
        try:
            self.launcher.spawn(config, checked.model_bytes, self)
        except Exception as exc:  # e.g. fork failure, out of file descriptors
            self._emit(EventKind.CRASH, f"{self.name}: spawning the worker failed: {exc}",
                       {"traceback": traceback.format_exc()}, level="error")
            self._fail_start(f"could not start the worker process: {exc}")

    def _fail_start(self, failure: Wording | str, error: HivetrayError | None = None) -> None:
        self.last_failure = failure = failure if isinstance(failure, Wording) else Wording(failure)
        self._set_state(S.ERROR, failure.for_cli())
        self.start_gate.fail(error or RoleInError(self.name, failure))
        if self.run is not None:  # it reported a load error and is exiting: see it go aside
            self._retire(self.run)

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
            self._emit(EventKind.LOAD_ERROR, f"{self.name}: {error}", level="error",
                       wording=error.wording)
            if self.state is S.STARTING:
                self._fail_start(error.wording, error)
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
        self.start_gate.succeed()

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
        if self.state is S.STOPPING:  # asked for, not a crash: the stop task sets the state
            self.in_flight.fail_all(RequestCancelled(f"the {self.name} worker was stopped"))
        else:
            self._on_crash(run, exitcode)

    def on_retired_exit(self, run: WorkerRun, exitcode: int | None) -> None:
        """A worker this role had already replaced (or stopped aside) is gone."""
        if run.pid is not None:
            self.registry.remove(run.pid)

    # -- crashes ----------------------------------------------------------------------------------
    def _on_crash(self, run: WorkerRun, exitcode: int | None) -> None:
        """The worker died unasked: a load error (the model's fault) or a counted crash."""
        loading = self.config.model if self.state is S.STARTING else None
        error = crash_error(self.name, run, exitcode, self.log_path, loading)
        self._emit(EventKind.CRASH, first_line(error),
                   {"exitcode": exitcode, "log_tail": error.log_tail}, level="error")
        if self.state is S.STARTING and not crash_while_loading_counts(run, exitcode):
            self._fail_start(load_death_message(error, self.config.model), error)
            return
        self.in_flight.fail_all(error)
        self.start_gate.fail(error)
        self.last_failure = Wording(first_line(error))
        if self.breaker.record_crash():
            self._set_state(S.COOLING_DOWN, "restart budget exhausted")
            self._emit(EventKind.BREAKER_OPEN, str(opened := self._circuit_open_error()),
                       {"retry_in_s": self.breaker.retry_in_s()}, "warning", opened.wording)
        else:
            self._set_state(S.STOPPED, "crashed")
            self._restart_if_pinned()

    def _restart_if_pinned(self) -> None:
        if self.config.pinned and self.eager and not self.closed and self.state is S.STOPPED:
            self.begin_start()

    # -- requests -----------------------------------------------------------------------------
    def stream(self, method: str,
               params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the worker's chunks, then ``{"done": True, **result}`` (``pool.dispatch``).

        A chat request gets the role's sampling defaults for every setting it leaves unset,
        read now, so a change in Settings applies to the next request without a restart."""
        if method == "chat":
            params = {**self.config.sampling.to_params(),
                      **{key: value for key, value in params.items() if value is not None}}
        return stream_request(self, method, params)

    def mark_busy(self, method: str) -> None:
        if self.state is S.READY:
            self._set_state(S.BUSY, method)

    # -- health, start deadline, cooldown, reaping (driven by the pool's ticker) --------------
    def health_tick(self) -> None:
        """Ping the worker on schedule; kill it when it overran its start or stopped answering
        (its exit is then reported, and counted, as a crash)."""
        run = self.run
        verdict = run and self.health.verdict(run, loading=self.state is S.STARTING,
                                              serving=self.state in SERVING)
        if not verdict:
            return
        assert run is not None
        if verdict.ping_seq is not None:
            run.link.send_control({"op": "ping", "seq": verdict.ping_seq})
            return
        run.kill_reason = verdict.reason
        kind = EventKind.START_TIMEOUT if verdict.stuck is Stuck.LOADING else EventKind.PING_TIMEOUT
        self._emit(kind, f"{self.name}: the worker {verdict.reason}", level="error")
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
        self.last_failure = None
        if self.state in RETRYABLE:
            self._set_state(S.STOPPED, "retry asked")
            self._restart_if_pinned()

    def stop(self, reason: str) -> asyncio.Task[None] | None:
        """Stop the worker (not a crash). Returns the stop task; it always runs to the end.

        A role in ``error`` may still have a live process aside — a worker that reported a load
        error and has not exited yet: the returned task then waits until it is gone.
        """
        if self.state is S.STOPPING:
            return self._stop_task
        if self.state not in STOPPABLE:
            if self.retired:
                return self.tasks.spawn(self.retired.wait(), f"stop-{self.name}")
            return None
        self._set_state(S.STOPPING, reason)
        self._emit(EventKind.STOP, f"{self.name}: stopping ({reason})", {"reason": reason})
        self._stop_task = self.tasks.spawn(self._stop_sequence(reason), f"stop-{self.name}")
        return self._stop_task

    def live_links(self) -> list[Any]:
        """Links of every worker process this role still has (current and retired ones)."""
        current = [self.run.link] if self.run is not None and self.run.alive else []
        return [*current, *self.retired.links()]

    def stop_all_workers(self, reason: str) -> list[asyncio.Task[None]]:
        """Quit: stop the current worker and wait for every retired one too."""
        task = self.stop(reason)
        return [*([task] if task is not None else []), *self.retired.stops()]

    async def _stop_sequence(self, reason: str) -> None:
        """Shutdown message → grace → SIGTERM → 5 s → SIGKILL; always ends reaped and stopped."""
        self.start_gate.fail(
            RequestCancelled(f"the {self.name} worker was stopped while starting"))
        self.in_flight.fail_all(RequestCancelled(f"the {self.name} worker was stopped ({reason})"))
        run = self.run
        if run is not None:
            await stop_worker(run.link, run.exited, self.timing, self._escalating)
        self._set_state(S.STOPPED, reason)

    def _retire(self, run: WorkerRun) -> asyncio.Task[None]:
        """Stop a worker that is no longer the role's current one, without touching the state;
        its exit then arrives as ``on_retired_exit``."""
        if self.run is run:
            self.run = None
        return self.retired.retire(run)

    def _escalating(self, signal_name: str) -> None:
        self._emit(EventKind.ESCALATE, f"{self.name}: worker did not exit; sending "
                   f"{signal_name}", {"signal": signal_name}, level="warning")

    def reconfigure(self, config: RoleConfig) -> asyncio.Task[None] | None:
        """Apply new settings; a changed model means the worker is released and respawned."""
        old, self.config = self.config, config
        needs_respawn = old.launch_key != config.launch_key
        if not needs_respawn:
            return None
        self._emit(EventKind.CONFIG, f"{self.name}: settings changed; the worker is restarted "
                   "with the new model" if config.configured else f"{self.name}: model removed")
        self.breaker.reset()
        self.last_failure = self.launcher.mem_estimate = None
        task = self.stop("settings changed")
        return self.tasks.spawn(self._settle_after_config(task), f"reconfigure-{self.name}")

    async def _settle_after_config(self, stopping: asyncio.Task[None] | None) -> None:
        if stopping is not None:
            await wait_shielded(stopping)
        if self.state in RETRYABLE:
            self._set_state(S.STOPPED, "settings changed")
        if not self.config.configured and self.state is S.STOPPED:
            self._set_state(S.UNCONFIGURED, "no model set")
        elif self.config.configured and self.state is S.UNCONFIGURED:
            self._set_state(S.STOPPED, "model set")
        self._restart_if_pinned()
