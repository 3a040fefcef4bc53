"""Why a download failed, in words and as a typed next step.

Why apart from the download loop: "cannot fetch …: ConnectError: [Errno -3] …" does not tell a
person what to do. The exception types huggingface_hub and its HTTP client (httpx) raise, the
OS error under them and the environment (a proxy variable, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``) together say it: no network, a proxy or mirror that fails, a file that is
not on the hub, a hub that is down, a full disk, a folder that cannot be written. Each becomes
a reason ("no network connection") and a :class:`~hivetray.wording.Remedy` the CLI and the
windows each word their own way.

Pure functions of an exception and the environment, so each case is a unit test with a real
failure (a closed port, a ``.invalid`` host, a local server answering 404 or 500, /dev/full).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from hivetray.wording import Fix, Remedy

#: where the OS says "this name does not resolve / there is no route": the machine is offline
_OFFLINE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
#: huggingface_hub's default endpoint (``HF_ENDPOINT`` unset)
DEFAULT_HUB = "https://huggingface.co"


@dataclass(frozen=True)
class Diagnosis:
    """A failure in words: ``reason`` ("no network connection") and what to do."""

    reason: str
    remedy: Remedy


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or during (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def proxy_for(url: str) -> tuple[str, str] | None:
    """The proxy the HTTP client uses for ``url``, as (variable name, its value), or None.

    The HTTP client reads the same variables; ``NO_PROXY`` exempts a host. The name is the
    variable as it is set (HTTPS_PROXY or https_proxy), so the words name it.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or _exempt(host):
        return None
    for name in (f"{parts.scheme}_proxy", "all_proxy"):
        for variable in (name, name.upper()):
            value = os.environ.get(variable, "").strip()
            if value:
                return variable, value
    return None


def _exempt(host: str) -> bool:
    """``NO_PROXY``: "*", or a name the host is or ends with (".example.com", "example.com")."""
    listed = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    for entry in (item.strip().lower().lstrip(".") for item in listed.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a failure that had an answer (huggingface_hub / httpx errors)."""
    for error in causes(exc):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _type_names(exc: BaseException) -> set[str]:
    """Class names in every cause's MRO: matches the HTTP client's exceptions without
    importing it (it is imported lazily, only by a download)."""
    return {cls.__name__ for error in causes(exc) for cls in type(error).__mro__}


def _connection_failed(names: set[str]) -> bool:
    return bool(names & {"ConnectError", "ConnectTimeout", "ProxyError", "ConnectionError"})


def _offline(exc: BaseException) -> bool:
    for error in causes(exc):
        if isinstance(error, socket.gaierror):
            return True
        if isinstance(error, OSError) and error.errno in _OFFLINE_ERRNOS:
            return True
        text = str(error)
        if "Name or service not known" in text or "Temporary failure in name resolution" in text \
                or "nodename nor servname" in text or "getaddrinfo failed" in text:
            return True
    return False


def disk_problem(exc: BaseException, folder: str) -> Diagnosis | None:
    """A full disk or a folder that cannot be written, wherever in ``exc``'s causes."""
    for error in causes(exc):
        if isinstance(error, OSError):
            if error.errno in _DISK_FULL_ERRNOS:
                return Diagnosis(f"the disk is full ({error.strerror})",
                                 Remedy(Fix.FREE_DISK, path=folder))
            if error.errno in _NOT_WRITABLE_ERRNOS:
                return Diagnosis(f"{folder} cannot be written ({error.strerror})",
                                 Remedy(Fix.FIX_PERMISSIONS, path=folder))
    return None


def diagnose(exc: BaseException, url: str, mirror: str | None, folder: str,
             fallback: Fix = Fix.TRY_LATER) -> Diagnosis:
    """Why fetching ``url`` failed with ``exc``, and what to do.

    ``mirror`` is ``HF_ENDPOINT`` when it is set (a failure to connect is then the mirror's);
    ``folder`` is where the file was being written. The order matters: a disk problem is ours
    whatever the network did; a failing proxy explains a failure to connect before the mirror
    or the network is blamed; an HTTP status is an answer, so the network works.
    """
    if found := disk_problem(exc, folder):
        return found
    names = _type_names(exc)
    host = urlsplit(url).hostname or url
    if "OfflineModeIsEnabled" in names:
        return Diagnosis("HF_HUB_OFFLINE is set, so huggingface_hub stays offline",
                         Remedy(Fix.HUB_OFFLINE_MODE))
    proxy = proxy_for(url)
    if proxy is not None and (_connection_failed(names) or "ProxyError" in names):
        variable, value = proxy
        return Diagnosis(f"the proxy in {variable} ({value}) failed",
                         Remedy(Fix.CHECK_PROXY, setting=variable))
    status = _status(exc)
    if status is not None:
        return _http_diagnosis(status, names, host, fallback)
    if _connection_failed(names):
        if mirror is not None:
            return Diagnosis(f"the mirror in HF_ENDPOINT ({mirror}) cannot be reached",
                             Remedy(Fix.CHECK_MIRROR, setting="HF_ENDPOINT"))
        if _offline(exc):
            return Diagnosis("no network connection", Remedy(Fix.CHECK_NETWORK))
        return Diagnosis(f"{host} cannot be reached", Remedy(Fix.CHECK_NETWORK))
    if "TimeoutException" in names:
        return Diagnosis(f"{host} did not answer in time", Remedy(fallback))
    if names & {"NetworkError", "ProtocolError"}:
        return Diagnosis("the connection dropped", Remedy(fallback))
    return Diagnosis("the download failed", Remedy(fallback))


def _http_diagnosis(status: int, names: set[str], host: str, fallback: Fix) -> Diagnosis:
    if status == 404 or "EntryNotFoundError" in names:
        what = "the repository" if "RepositoryNotFoundError" in names else "the file"
        return Diagnosis(f"{what} is not on {host} (HTTP {status})", Remedy(Fix.NOT_ON_HUB))
    if status in (401, 403) or "GatedRepoError" in names:
        return Diagnosis(f"{host} refused access (HTTP {status}): the model is gated or "
                         "private", Remedy(Fix.HUB_ACCESS))
    if status >= 500:
        return Diagnosis(f"{host} failed (HTTP {status})", Remedy(Fix.TRY_LATER))
    return Diagnosis(f"{host} answered HTTP {status}", Remedy(fallback))
