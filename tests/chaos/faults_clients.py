"""Faults from clients: 50 at once, disconnect storms, and hostile bytes on the socket.

The instance must answer every malformed request line with one typed error line (past the
64 MiB limit it may close instead), never a traceback, keep serving, and forget the requests
of clients that left.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from tests.chaos import checks
from tests.chaos.harness import CliOutcome, Exchange, Streamer, chat_request, exchange, run_cli

if TYPE_CHECKING:
    from tests.chaos.engine import ChaosRun

CLIENTS = 50
CLIENT_DEADLINE_S = 60.0
BUSY = frozenset({"WorkerBusy"})


def _client_job(run: ChaosRun, index: int) -> tuple[str, dict[str, Any] | tuple[str, ...]]:
    """One client of the storm: what it asks, over the socket or (some) through the CLI."""
    rng = run.rng
    kind = rng.choice(("chat", "chat", "embed", "rerank", "status", "vision"))
    via_cli = index % 10 == 0
    if kind == "chat":
        tokens = rng.randint(1, 40)
        if via_cli:
            return kind, ("chat", "hello there", "--max-tokens", str(tokens))
        return kind, chat_request("hello there", tokens)
    if kind == "vision":
        return kind, chat_request("what is it?", rng.randint(1, 8), run.env.models["image"])
    if kind == "embed":
        texts = [f"text {i}" for i in range(rng.randint(1, 4))]
        return kind, ("embed", *texts) if via_cli else {"cmd": "embed", "texts": texts}
    if kind == "rerank":
        docs = [f"doc {i}" for i in range(rng.randint(2, 5))]
        if via_cli:
            return kind, ("rerank", "query", *docs)
        return kind, {"cmd": "rerank", "query": "query", "documents": docs}
    return kind, ("status", "--json") if via_cli else {"cmd": "status"}


def client_storm(run: ChaosRun) -> tuple[str, ...]:
    """50 concurrent clients (chat/vision/embed/rerank/status, a few through the CLI); all
    succeed or are told, typed, that a worker is busy; status keeps answering meanwhile."""
    jobs = [_client_job(run, i) for i in range(CLIENTS)]
    results: list[Exchange | CliOutcome | None] = [None] * CLIENTS
    gate = threading.Barrier(CLIENTS)
    env = run.env.env()

    def client(i: int, job: dict[str, Any] | tuple[str, ...]) -> None:
        gate.wait()
        if isinstance(job, tuple):
            results[i] = run_cli(job, env, CLIENT_DEADLINE_S)
        else:
            results[i] = exchange(run.socket, job, timeout=CLIENT_DEADLINE_S)

    threads = [threading.Thread(target=client, args=(i, job), daemon=True)
               for i, (_kind, job) in enumerate(jobs)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):  # the promise holds under load too
        run.status()
        time.sleep(0.05)
    for (kind, _job), result in zip(jobs, results, strict=True):
        if isinstance(result, CliOutcome):
            run.judge_cli(result, "any", CLIENT_DEADLINE_S)
            if result.returncode not in (0, None) and "busy" not in result.stderr:
                run.rec.violate("unexpected_failure", f"storm client: {result.brief()}")
        elif result is not None:
            run.judge(result, what=f"storm {kind} client", expect="ok", allowed=BUSY,
                      timeout=CLIENT_DEADLINE_S)
    return tuple(sorted({kind for kind, _ in jobs} - {"status"}))


def _send_and_close(path: Any, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(str(path))
        sock.sendall(payload)


def disconnect_storm(run: ChaosRun) -> tuple[str, ...]:
    """Clients that ask for a long chat and hang up (at once, or after a chunk or two): their
    requests are cancelled, ``in_flight`` returns to 0 and the same worker serves the next."""
    pid = run.live_worker("chat")
    streamers: list[Streamer] = []
    closers: list[threading.Thread] = []
    for _ in range(run.rng.randint(8, 25)):
        request = chat_request("tell me a long story", run.rng.randint(1200, 1900))
        after = run.rng.choice((0, 0, 1, 1, 2))  # chunks read before hanging up
        if after == 0:  # gone right after asking: a chat, or an embed batch
            if run.rng.random() < 0.3:
                request = {"cmd": "embed", "texts": ["x"] * 8}
            closers.append(threading.Thread(target=_send_and_close, daemon=True,
                                            args=(run.socket, _line(request))))
        else:
            streamers.append(Streamer(run.socket, request, 30.0, hang_up_after=after))
    for thread in [*streamers, *closers]:
        thread.start()
    for thread in [*streamers, *closers]:
        thread.join(35.0)
        if thread.is_alive():
            run.rec.violate("deadline", "a disconnecting client did not finish in 35 s")
    checks.check_in_flight(run)
    if pid is not None:
        run.probe("chat")
        row = run.row("chat")
        if row is not None and row["pid"] != pid:
            run.rec.violate("unexpected_crash", f"chat worker {pid} was replaced by "
                            f"{row['pid']} after clients hung up")
    return ("chat", "embed")


# -- hostile bytes ----------------------------------------------------------------------------
def _line(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc) + "\n").encode()


_HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

#: refused by the instance itself (parsing, command and field checks)
HOSTILE: tuple[bytes, ...] = (
    b"garbage\n",
    b"\xff\xfe\x00\xc3\x28 not utf-8\n",
    b"[" * 100_000 + b"\n",
    b'{"cmd": "status", "x": ' + b"[" * 50_000 + b"\n",
    b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"\n",
    b"[1, 2]\n",
    b'"status"\n',
    b"\n",
    b'{"cmd": 5}\n',
    b'{"cmd": "status", "x": ' + b"9" * 5000 + b"}\n",
    _line({"cmd": "no-such-command"}),
    _line({"cmd": "__init__"}),
    _line({"cmd": "embed", "texts": 5}),
    _line({"cmd": "embed", "texts": []}),
    _line({"cmd": "embed", "texts": [1, 2]}),
    _line({"cmd": "rerank", "query": 5, "documents": ["a"]}),
    _line({"cmd": "rerank", "query": "q", "documents": ["a"], "top_n": "x"}),
    _line({"cmd": "retry", "role": []}),
    _line({"cmd": "stop", "role": "nobody"}),
    _line({"cmd": "events", "limit": "x"}),
    _line({"cmd": "chat", "params": "x"}),
    _line({"cmd": "chat", "params": {"messages": "x"}}),
    _line({"cmd": "chat", "images": "x", "params": _HI}),
    _line({"cmd": "chat", "images": [5], "params": _HI}),
    _line({"cmd": "chat", "images": [{"name": "a.png", "data_b64": "!!"}], "params": _HI}),
)

#: well-formed requests with wrong types deep inside the chat parameters (they reach a worker)
HOSTILE_PARAMS: tuple[bytes, ...] = (
    _line({"cmd": "chat", "params": {"messages": [{"role": "user", "content": 5}]}}),
    _line({"cmd": "chat", "params": {"messages": [{"role": 5, "content": "hi"}]}}),
    _line({"cmd": "chat", "params": {**_HI, "max_tokens": "x"}}),
    _line({"cmd": "chat", "params": {**_HI, "temperature": "hot"}}),
    _line({"cmd": "chat", "params": {**_HI, "max_tokens": -5}}),
    _line({"cmd": "chat", "params": {**_HI, "max_tokens": True}}),
    _line({"cmd": "chat", "params": {"messages": [5]}}),
)


def _hostile_exchange(run: ChaosRun, payload: bytes, what: str, *,
                      may_close: bool = False) -> None:
    """One typed error line (``may_close``: or a close, past the size limit); never a
    traceback, a success or a hang."""
    reply = exchange(run.socket, payload, timeout=30.0)
    seen = len(run.rec.violations)
    run.judge(reply, what=what, expect="fail", timeout=30.0)
    if len(run.rec.violations) == seen and not reply.final and not may_close:
        run.rec.violate("typed_failure", f"{what}: the connection closed without an error "
                        f"line ({reply.oserror or 'EOF'})")


def malformed_input(run: ChaosRun) -> tuple[str, ...]:
    """Every hostile line, in a seeded order, sometimes beside a connection that sends half a
    line and waits."""
    for payload in run.rng.sample(HOSTILE, len(HOSTILE)):
        _hostile_exchange(run, payload, f"hostile line {payload[:60]!r}")
    if run.rng.random() < 0.3:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.connect(str(run.socket))
            idle.sendall(b'{"cmd": "sta')  # never finished: others are served meanwhile
            run.status()
    return ()


def oversized_input(run: ChaosRun) -> tuple[str, ...]:
    """A 70 MiB request line (past the 64 MiB limit): one typed error line or a close."""
    body = b"x" * (70 * 2**20)
    if run.rng.random() < 0.5:
        payload = b'{"cmd": "embed", "texts": ["' + body + b'"]}\n'
    else:
        payload = body + b"\n"
    _hostile_exchange(run, payload, "a 70 MiB request line", may_close=True)
    return ()


def malformed_params(run: ChaosRun) -> tuple[str, ...]:
    pid = run.live_worker("chat")
    for payload in run.rng.sample(HOSTILE_PARAMS, len(HOSTILE_PARAMS)):
        _hostile_exchange(run, payload, f"chat params {payload[:90]!r}")
    row = run.row("chat")
    if pid is not None and row is not None and row["pid"] != pid:
        run.rec.violate("unexpected_crash", f"chat worker {pid} replaced by {row['pid']} "
                        "after malformed chat params")
    return ("chat",)
