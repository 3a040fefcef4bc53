"""Download a model file from Hugging Face: progress bar, resume, checksum, atomic install.

Why our own loop around huggingface_hub's pieces instead of ``hf_hub_download``: a model is a
multi-gigabyte file the user will point Hivetray at directly, so it goes to a plain folder we
choose (not the hub cache's symlink farm), an interrupted download must resume from its
``.part`` file on the next try, and the finished file must be checked against the hub's
published sha256 (the LFS ETag) before it replaces anything. huggingface_hub still does the
protocol work: URL building (``HF_ENDPOINT`` honoured, so tests can use a local server), the
metadata HEAD with its redirects, and the ranged, retried GET with a tqdm progress bar.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hivetray.errors import ChecksumMismatch, DownloadFailed
from hivetray.models.download_errors import diagnose, disk_problem
from hivetray.paths import AppPaths
from hivetray.wording import Fix

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    checksum: str  # "sha256:<hex>", "git-sha1:<hex>" or "none"
    resumed_from: int
    already_there: bool = False


def models_dir(paths: AppPaths) -> Path:
    return paths.data_dir / "models"


def target_path(paths: AppPaths, repo: str, filename: str) -> Path:
    """``data/models/<owner>--<name>/<file>``: one folder per repository, no name clashes."""
    safe_repo = repo.strip("/").replace("/", "--")
    if ".." in Path(filename).parts or Path(filename).is_absolute():
        raise DownloadFailed(f"refusing the file name {filename!r}")
    return models_dir(paths) / safe_repo / filename


def endpoint() -> str | None:
    """The hub endpoint from ``HF_ENDPOINT``, read now (huggingface_hub reads it at import)."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def file_digest(path: Path, algorithm: str, size: int | None = None,
                progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha1() if algorithm == "git-sha1" else hashlib.sha256()
    if algorithm == "git-sha1":  # git hashes "blob <size>\0" + content
        digest.update(f"blob {size if size is not None else path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        while block := handle.read(4 * 2**20):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def expected_checksum(etag: str | None) -> tuple[str, str] | None:
    """The hub's ETag as (algorithm, hex): sha256 for LFS files, git sha1 for small ones."""
    tag = (etag or "").strip().strip('"').lower()
    if tag.startswith("w/"):
        tag = tag[2:].strip('"')
    if _SHA256.match(tag):
        return "sha256", tag
    if _SHA1.match(tag):
        return "git-sha1", tag
    return None


def download(repo: str, filename: str, dest: Path, *, revision: str = "main",
             hub: str | None = None) -> Downloaded:
    """Fetch ``repo``/``filename`` into ``dest`` (resuming ``dest.part``) and verify it.

    Every failure is a :class:`DownloadFailed` whose remedy says what to do (connect, check
    the proxy or the mirror, free disk space...: ``download_errors.diagnose``).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    mirror = endpoint()
    hub = hub or mirror
    folder = str(dest.parent)
    url = hf_hub_url(repo, filename, revision=revision, endpoint=hub)
    try:
        meta = get_hf_file_metadata(url, endpoint=hub)
    except Exception as exc:  # huggingface_hub raises many types; all mean "cannot fetch"
        why = diagnose(exc, url, mirror, folder)
        raise DownloadFailed(f"cannot fetch {repo}/{filename} from {hub or 'huggingface.co'}: "
                             f"{why.reason} ({_short(exc)})", why.remedy) from None
    expected = expected_checksum(meta.etag)
    size = meta.size
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        trouble = disk_problem(exc, folder)
        raise DownloadFailed(f"cannot make the folder {folder}: "
                             f"{trouble.reason if trouble else _short(exc)}",
                             trouble.remedy if trouble else None) from None
    if dest.is_file() and size is not None and dest.stat().st_size == size and (
            expected is None or file_digest(dest, expected[0], size) == expected[1]):
        return Downloaded(dest, size, _label(expected), 0, already_there=True)
    part = dest.with_name(dest.name + ".part")
    resume = part.stat().st_size if part.exists() else 0
    if size is not None and resume > size:
        resume = 0
        part.unlink()
    try:
        fetch_ranged(meta.location or url, part, resume, size, filename)
    except DownloadFailed:
        raise
    except Exception as exc:
        kept = part.stat().st_size if part.exists() else 0
        why = diagnose(exc, meta.location or url, mirror, folder, Fix.RESUME_DOWNLOAD)
        detail = _short(exc) if why.reason == "the download failed" else \
            f"{why.reason} ({_short(exc)})"
        raise DownloadFailed(f"download of {repo}/{filename} stopped at {kept} bytes: {detail}",
                             why.remedy) from None
    got = part.stat().st_size
    if expected is not None:
        actual = file_digest(part, expected[0], got)
        if actual != expected[1]:
            part.unlink()
            raise ChecksumMismatch(str(dest), f"{expected[0]}:{expected[1]}",
                                   f"{expected[0]}:{actual}")
    os.replace(part, dest)
    return Downloaded(dest, got, _label(expected), resume)


#: connection drops tolerated per download; each retry resumes where the file stopped
RETRIES = 3


def fetch_ranged(url: str, part: Path, resume: int, size: int | None, label: str) -> None:
    """Append ``url``'s bytes from ``resume`` on to ``part``, with a progress bar.

    Only huggingface_hub's public API: its HTTP session (proxies, endpoint, user agent) and
    headers (the user's token); the ranged GET and the retry that resumes are ours. The bar
    (tqdm) shows on a terminal and stays quiet when piped.
    """
    from huggingface_hub import get_session
    from huggingface_hub.utils import build_hf_headers
    from tqdm.auto import tqdm

    with tqdm(total=size, initial=resume, unit="B", unit_scale=True, desc=label,
              disable=None) as bar:
        for attempt in range(RETRIES + 1):
            done = part.stat().st_size if part.exists() else 0
            headers = {**build_hf_headers(), **({"Range": f"bytes={done}-"} if done else {})}
            try:
                with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                          timeout=30) as response, open(part, "ab") as handle:
                    response.raise_for_status()
                    if done and response.status_code != 206:
                        raise DownloadFailed(f"{url} does not resume downloads (HTTP "
                                             f"{response.status_code}); delete {part} and "
                                             "download again")
                    for block in response.iter_bytes(2**20):
                        handle.write(block)
                        bar.update(len(block))
                return
            except DownloadFailed:
                raise
            except Exception as exc:  # a dropped connection is retried; a full disk is not
                if attempt == RETRIES or disk_problem(exc, str(part.parent)) is not None:
                    raise


def _label(expected: tuple[str, str] | None) -> str:
    return f"{expected[0]}:{expected[1]}" if expected else "none"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
