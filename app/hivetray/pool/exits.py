"""How a worker's unasked-for exit is judged: a crash report, and whether it counts.

Why apart: the rule "a death while loading is the model's fault, or not" is a small decision
table that deserves to be read (and tested) on its own, away from the state machine.
"""

from __future__ import annotations

import signal
from pathlib import Path

from hivetray.errors import RemoteEngineFailed, WorkerCrashed, describe_exit
from hivetray.pool.logtail import read_tail, telling_line
from hivetray.pool.worker_run import WorkerRun

#: a death by these signals while loading is the model's own fault (llama.cpp aborted or
#: faulted on it): the role goes to ``error``; any other signal came from outside (the OOM
#: killer's SIGKILL, a stray SIGTERM) and is a crash within the restart budget
MODEL_FAULT_SIGNALS = frozenset(getattr(signal, name) for name in
                                ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE")
                                if hasattr(signal, name))


def crash_while_loading_counts(run: WorkerRun, exitcode: int | None) -> bool:
    """Does a death while loading count as a crash (retried within the budget)? Yes when
    Hivetray killed it (start deadline) or a signal from outside did; no when the model made
    llama.cpp abort or fault, or the worker exited on its own (both say the file is bad)."""
    if run.kill_reason is not None or exitcode is None:
        return True
    return exitcode < 0 and -exitcode not in MODEL_FAULT_SIGNALS


def crash_error(role: str, run: WorkerRun, exitcode: int | None, log_path: Path,
                loading: str | None = None) -> WorkerCrashed:
    """The crash as the caller sees it: how it ended (and, when it died ``loading`` a model,
    which file), the log, and this worker's last lines (only those written since its spawn,
    never an older worker's)."""
    failure = getattr(run.link, "failure", None)
    if failure is not None or getattr(run.link, "url", None) is not None:  # a remote engine
        how = failure or (run.kill_reason or "failed").removesuffix(" and was killed")
        return RemoteEngineFailed(role, str(getattr(run.link, "url", "")), how)
    tail = read_tail(log_path, since=run.log_offset)
    how = run.kill_reason or describe_exit(exitcode)
    if loading:
        how += f" while loading {loading}"
    return WorkerCrashed(role, exitcode, str(log_path), tail, how)


def load_death_message(error: WorkerCrashed, model: str | None) -> str:
    """``last_error`` of a role whose model killed its worker while loading."""
    return (f"the worker {describe_exit(error.exitcode)} while loading {model}; see "
            f"{error.log_path}" + telling_line(error.log_tail))
