"""A stand-in for the Hugging Face hub on 127.0.0.1: ``/{repo}/resolve/{rev}/{file}`` with
HEAD metadata (ETag = sha256, like LFS files), ranged GETs, and a log of what was asked."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FakeHub:
    files: dict[str, bytes] = field(default_factory=dict)  # "owner/name/file" → content
    etags: dict[str, str] = field(default_factory=dict)  # override the published checksum
    failures: dict[str, int] = field(default_factory=dict)  # "owner/name/file" → HTTP status
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def add(self, repo: str, filename: str, data: bytes) -> str:
        self.files[f"{repo}/{filename}"] = data
        return hashlib.sha256(data).hexdigest()

    def gets(self) -> list[tuple[str, str | None]]:
        """File GETs (path, Range header); huggingface_hub's own side requests left out."""
        return [(path, rng) for method, path, rng in self.requests
                if method == "GET" and "/resolve/" in path]


_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _lookup(self) -> tuple[str, bytes] | None:
            match = _PATH.match(self.path.split("?", 1)[0])
            if not match:
                return None
            key = f"{match['repo']}/{match['file']}"
            data = hub.files.get(key)
            return (key, data) if data is not None else None

        def _headers(self, key: str, data: bytes) -> None:
            etag = hub.etags.get(key) or hashlib.sha256(data).hexdigest()
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.send_header("Accept-Ranges", "bytes")

        def _failed(self) -> bool:
            """Answer with the status the test set for this file (a hub having a bad day)."""
            match = _PATH.match(self.path.split("?", 1)[0])
            status = hub.failures.get(f"{match['repo']}/{match['file']}") if match else None
            if status is None:
                return False
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def do_HEAD(self) -> None:
            hub.requests.append(("HEAD", self.path, None))
            if self._failed():
                return
            found = self._lookup()
            if found is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            key, data = found
            self.send_response(200)
            self._headers(key, data)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            hub.requests.append(("GET", self.path, rng))
            if self._failed():
                return
            found = self._lookup()
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            key, data = found
            start = 0
            if rng and (m := re.match(r"bytes=(\d+)-", rng)):
                start = int(m.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self._headers(key, data)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

    return Handler


@contextmanager
def serve_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fakehub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
