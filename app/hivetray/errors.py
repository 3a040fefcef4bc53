"""Errors that cross process boundaries (worker → pool → socket → CLI) as plain dicts.

Exceptions are never pickled: a worker exception becomes ``{"type", "message", "traceback",
"fields"}`` and is rebuilt on the other side as the same class when it is one of ours, or as a
:class:`RemoteError` carrying the original type name. So an exception that cannot be pickled (it
holds a lock, a ctypes pointer, a generator) still reaches the caller with its type, message and
traceback.

Each of our errors is worded once (:class:`hivetray.wording.Wording`): the problem, and the
next step as a typed remedy. ``str(error)`` — the ``message`` on the wire, what the CLI prints —
renders the remedy as a command; windows render the same remedy as a button to press
(``error.wording.for_window()``). An error with a remedy carries its wording on the wire too,
in ``fields["wording"]``, so a window shows it in its own words wherever it was raised.
"""

from __future__ import annotations

import json
import os
import traceback as tb
from typing import Any, ClassVar

from hivetray.wording import Fix, Remedy, Wording


class HivetrayError(Exception):
    """Base of every error Hivetray reports; ``str()`` is a message for the user of the CLI
    (the problem, then the remedy as a command), ``wording`` the same for any surface."""

    registry: ClassVar[dict[str, type[HivetrayError]]] = {}
    #: extra attributes carried across the wire (must be JSON-serialisable)
    wire_fields: ClassVar[tuple[str, ...]] = ()
    remote_traceback: str | None = None
    _wording: Wording | None = None

    def __init__(self, problem: str = "", remedy: Remedy | None = None) -> None:
        wording = Wording(problem, remedy)
        super().__init__(wording.for_cli())
        self._wording = wording

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        HivetrayError.registry[cls.__name__] = cls

    @property
    def wording(self) -> Wording:
        """The problem and its typed remedy (an error built around ``__init__`` has its
        message as the problem and no remedy)."""
        return self._wording if self._wording is not None else Wording(str(self))

    @classmethod
    def from_fields(cls, message: str, fields: dict[str, Any]) -> HivetrayError:
        err = cls.__new__(cls)
        Exception.__init__(err, message)
        for name in cls.wire_fields:
            setattr(err, name, fields.get(name))
        err._wording = Wording.from_dict(fields.get("wording"))
        return err


class RemoteError(HivetrayError):
    """An exception raised in a worker whose type is not one of ours."""

    wire_fields = ("type_name",)

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


class InvalidRequest(HivetrayError):
    """The request itself is wrong (unknown method, missing field)."""


class ModelLoadError(HivetrayError):
    """llama.cpp could not load the model; the message carries its own reason."""

    wire_fields = ("path",)

    def __init__(self, message: str, path: str | None = None,
                 remedy: Remedy | None = None) -> None:
        super().__init__(message, remedy)
        self.path = path


class InvalidModelFile(ModelLoadError):
    """The file is missing, not GGUF, truncated or corrupt: found before any worker starts."""


class ProjectorMissing(ModelLoadError):
    """The vision role has no projector (mmproj) file, or it does not exist."""


class ProjectorMismatch(ModelLoadError):
    """The projector does not belong to the vision role's model."""


class NotARerankModel(ModelLoadError):
    """The rerank role's model has no rank-pooling classifier head."""


class InsufficientMemory(HivetrayError):
    """A role's worker would not fit in the memory available now (checked before it spawns,
    after idle roles were stopped to make room); the message says the numbers and what to do."""

    wire_fields = ("role", "needed_bytes", "available_bytes")

    def __init__(self, message: str, role: str, needed_bytes: int,
                 available_bytes: int, remedy: Remedy | None = None) -> None:
        super().__init__(message, remedy)
        self.role = role
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


class InvalidImage(HivetrayError):
    """An image that cannot be decoded; ``name`` is the file (or "clipboard image")."""

    wire_fields = ("name",)

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} is not an image Hivetray can read ({reason}): use a PNG, "
                         "JPEG, WebP, GIF or BMP file")
        self.name = name


class DownloadFailed(HivetrayError):
    """A model download failed; the partial file is kept so the next try resumes. The remedy
    says what to do: connect, check the proxy or the mirror, free disk space...
    (``hivetray.models.download_errors`` tells them apart)."""


class ChecksumMismatch(DownloadFailed):
    wire_fields = ("path", "expected", "actual")

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(f"{path}: checksum mismatch (expected sha256 {expected}, got {actual}); "
                         "the file was deleted", Remedy(Fix.DOWNLOAD_AGAIN))
        self.path = path
        self.expected = expected
        self.actual = actual


class ContextOverflow(HivetrayError):
    wire_fields = ("prompt_tokens", "n_ctx")

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(f"prompt is {prompt_tokens} tokens, context is {n_ctx}",
                         Remedy(Fix.RAISE_CONTEXT))
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class PayloadTooLarge(HivetrayError):
    wire_fields = ("size", "limit")

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request is {size / 2**20:.1f} MiB, the limit is {limit / 2**20:.0f} MiB: "
            "send a smaller image or less text"
        )
        self.size = size
        self.limit = limit


class WorkerCrashed(HivetrayError):
    """A worker process died without being asked to stop."""

    wire_fields: ClassVar[tuple[str, ...]] = ("role", "exitcode", "log_path", "log_tail")

    def __init__(self, role: str, exitcode: int | None, log_path: str, log_tail: str,
                 reason: str | None = None) -> None:
        how = reason or describe_exit(exitcode)
        super().__init__(f"the {role} worker {how}; its log is {log_path}"
                         + (f"\n--- last lines of the log ---\n{log_tail}" if log_tail else ""))
        self.role = role
        self.exitcode = exitcode
        self.log_path = log_path
        self.log_tail = log_tail


class RemoteEngineFailed(WorkerCrashed):
    """A remote engine was unreachable, answered 5xx or stopped answering: counted against the
    role's restart budget exactly like a worker crash (hivetray.pool.remote)."""

    wire_fields: ClassVar[tuple[str, ...]] = ("role", "exitcode", "log_path", "log_tail", "url")

    def __init__(self, role: str, url: str, how: str) -> None:
        HivetrayError.__init__(self, f"the {role} engine at {url} {how}")
        self.role, self.url = role, url
        self.exitcode, self.log_path, self.log_tail = None, "", ""


class RemoteSetupError(ModelLoadError):
    """A remote role that cannot work as configured (wrong key, unknown model, TLS failure,
    no key set): the role is in ``error`` until the settings change or the user retries."""


class RemoteRequestError(HivetrayError):
    """A remote engine refused one request (a 4xx, or an answer Hivetray cannot read): the
    request's fault or the engine's limits, not a crash."""

    wire_fields = ("role", "status")

    def __init__(self, message: str, role: str, status: int | None = None) -> None:
        super().__init__(message)
        self.role = role
        self.status = status


class CircuitOpen(HivetrayError):
    wire_fields = ("role", "retry_in_s")

    def __init__(self, role: str, crashes: int, window_s: float, retry_in_s: float) -> None:
        super().__init__(
            f"the {role} worker crashed {crashes} times in {window_s:g} s; retrying in "
            f"{max(0, round(retry_in_s))} s", Remedy(Fix.RETRY_NOW, role))
        self.role = role
        self.retry_in_s = retry_in_s


class RoleUnconfigured(HivetrayError):
    wire_fields = ("role",)

    def __init__(self, role: str) -> None:
        super().__init__(f"no model is set for the {role} role", Remedy(Fix.SET_MODEL, role))
        self.role = role


class RoleInError(HivetrayError):
    """A call to a role in ``error``: the role's own error (``cause``) and, on the CLI, the
    retry. In a window the cause's remedy is shown when it has one (choosing a file again in
    Settings restarts the role by itself), else the Retry button."""

    wire_fields = ("role",)

    def __init__(self, role: str, cause: Wording | str) -> None:
        cause = cause if isinstance(cause, Wording) else Wording(cause)
        super().__init__(f"the {role} role is in error: {cause.for_cli()}",
                         Remedy(Fix.RETRY, role))
        self._wording = Wording(f"the {role} role is in error: {cause.problem}",
                                cause.remedy or Remedy(Fix.RETRY, role))
        self.role = role


class RequestCancelled(HivetrayError):
    """The request was cancelled or its worker was stopped on purpose."""


class PoolClosed(HivetrayError):
    """The pool is shutting down and takes no new requests."""


class WorkerBusy(HivetrayError):
    """Too many requests already wait for this role's worker: try again shortly.

    Every queue is bounded so that a flood of requests (many large images) cannot hold the
    app's memory; past the bound callers are told at once instead of waiting in line.
    """

    wire_fields = ("role", "queued")

    def __init__(self, role: str, queued: int, what: str = "requests") -> None:
        super().__init__(f"the {role} worker is busy ({queued} {what} already waiting); "
                         "try again in a moment")
        self.role = role
        self.queued = queued


class AlreadyRunning(HivetrayError):
    """Another Hivetray instance owns this home (its lock is held)."""


class NoInstance(HivetrayError):
    """No running Hivetray answers on this user's socket."""


class UnsafeRuntimeDir(HivetrayError):
    """The folder for the instance socket is not private to this user, so it is not used."""

    wire_fields = ("path",)

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} is not safe for Hivetray's socket: {problem}. Remove it (or "
                         "fix its owner and permissions: a folder owned by you with mode 700), "
                         "or set XDG_RUNTIME_DIR to a private folder")
        self.path = path


class ReplyTooLarge(HivetrayError):
    """The instance's reply is larger than a client reads in one line."""

    wire_fields = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__(f"the reply is larger than {limit / 2**20:.0f} MiB: ask for less at "
                         "once (fewer texts or documents per call)")
        self.limit = limit


class InternalError(HivetrayError):
    """A bug in Hivetray itself; the details are in the app log, not in the reply."""


def first_line(error: BaseException) -> str:
    """An error as one line for the user: the first line of its message (a crash's log tail
    follows on the next ones), or its type's name when it has no message."""
    text = str(error)
    return text.split("\n", 1)[0] if text else type(error).__name__


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended in words: 'was killed by SIGKILL', 'exited with code 3'."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if isinstance(exc, HivetrayError):
        fields = {name: getattr(exc, name, None) for name in exc.wire_fields}
        if exc.wording.remedy is not None:  # the same words in a window, wherever it is shown
            fields["wording"] = exc.wording.to_dict()
        message = str(exc)
    else:
        try:
            message = str(exc)
        except Exception:  # a broken __str__ must not lose the error itself
            message = "<unprintable message>"
    remote = getattr(exc, "remote_traceback", None)
    trace = remote or "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__name__, "message": message, "traceback": trace, "fields": fields}


def error_from_wire(data: dict[str, Any]) -> HivetrayError:
    type_name = str(data.get("type", "Exception"))
    message = str(data.get("message", ""))
    cls = HivetrayError.registry.get(type_name)
    err = (cls.from_fields(message, data.get("fields") or {}) if cls is not None
           else RemoteError(type_name, message))
    err.remote_traceback = data.get("traceback")
    return err


#: set by a window for a ``hivetray`` command it runs as a child (the Settings download): the
#: file where the command leaves its failure in wire form, so the window can show the typed
#: error in its own words; the one line on stderr is unchanged
REPORT_ENV = "HIVETRAY_ERROR_REPORT"


def report_to_parent(exc: BaseException) -> None:
    """Leave ``exc`` where the window that started this command asked (``REPORT_ENV``), if it
    did; never fails (the stderr line is the report of record)."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    wire = {**error_to_wire(exc), "traceback": None}
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(wire, handle)
    except (OSError, TypeError, ValueError):
        pass


def read_report(path: str) -> HivetrayError | None:
    """The error a child command left at ``path`` (None when there is none or it is not one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError):
        return None
    return error_from_wire(raw) if isinstance(raw, dict) else None
