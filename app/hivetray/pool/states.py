"""The role state enum and the one table of legal transitions.

Kept apart from the supervisor so the table can be read (and tested edge by edge) on its own.
"""

from __future__ import annotations

from enum import StrEnum


class RoleState(StrEnum):
    UNCONFIGURED = "unconfigured"
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    COOLING_DOWN = "cooling_down"
    STOPPING = "stopping"
    ERROR = "error"


S = RoleState

#: every legal edge; anything else is a bug and ``RoleSupervisor._set_state`` refuses it
LEGAL_TRANSITIONS: dict[RoleState, frozenset[RoleState]] = {
    S.UNCONFIGURED: frozenset({S.STOPPED}),
    # stopped → starting (first use, pinned, restart); → unconfigured (model removed)
    S.STOPPED: frozenset({S.STARTING, S.UNCONFIGURED}),
    # starting → ready (loaded) | error (the model failed to load, or made llama.cpp abort)
    # | stopping (stop asked) | stopped / cooling_down (killed while loading — start deadline,
    # OOM killer, a stray signal: a crash counted against the restart budget)
    S.STARTING: frozenset({S.READY, S.ERROR, S.STOPPING, S.STOPPED, S.COOLING_DOWN}),
    S.READY: frozenset({S.BUSY, S.STOPPING, S.STOPPED, S.COOLING_DOWN}),
    S.BUSY: frozenset({S.READY, S.STOPPING, S.STOPPED, S.COOLING_DOWN}),
    # cooling_down → stopped (cooldown over: next call is the half-open attempt, or retry)
    S.COOLING_DOWN: frozenset({S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    # error → stopped (retry asked, or settings changed)
    S.ERROR: frozenset({S.STOPPED}),
}

# named groups of states: the supervisor and the UI ask these, nobody spells state names
#: the worker is loaded and answers (health pings apply)
SERVING = frozenset({S.READY, S.BUSY})
#: ``stop()`` acts: the role's worker is starting or running
STOPPABLE = frozenset({S.STARTING, S.READY, S.BUSY})
#: ``retry()`` acts: the breaker is open or the model failed to load
RETRYABLE = frozenset({S.COOLING_DOWN, S.ERROR})
#: what the tray badge shows as trouble
TROUBLE = RETRYABLE
#: on the way to another state on its own
TRANSITIONAL = frozenset({S.STARTING, S.STOPPING})


def is_legal(old: RoleState, new: RoleState) -> bool:
    return new in LEGAL_TRANSITIONS[old]


class IllegalTransition(RuntimeError):
    """A bug: code asked for a state change the table does not allow."""
