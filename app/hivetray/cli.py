"""``hivetray`` command line (the contract in docs/contract.md).

Commands talk to the running instance over its socket; ``chat`` and ``status`` (and the other
pool commands where it makes sense) fall back to a private pool for the command's duration.
Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage, 3 no instance running
(for commands that need one), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from hivetray import ROLES, buildinfo, cli_models, ipc, selftest
from hivetray.commands import Commands, chat_params, wire_image
from hivetray.config import load_config
from hivetray.errors import (
    HivetrayError,
    InternalError,
    PayloadTooLarge,
    first_line,
    report_to_parent,
)
from hivetray.homelock import find_instance
from hivetray.instance import Instance
from hivetray.models.builtin import LABEL as BUILTIN_LABEL
from hivetray.models.builtin import is_builtin
from hivetray.paths import AppPaths, app_paths
from hivetray.pool.memory import memory_text
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.sampling import SAMPLING_KEYS, sampling_problem
from hivetray.wording import Fix, Remedy

EXIT_FAIL, EXIT_USAGE, EXIT_NO_INSTANCE, EXIT_INTERRUPTED = 1, 2, 3, 130


class VersionAction(argparse.Action):
    """``--version``: the build's provenance (:meth:`BuildInfo.lines`), then exit 0.

    Why not argparse's own action: a bug report needs the commit, build date and llama.cpp
    build, not only the version. The first line stays exactly ``hivetray <version>``.
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print("\n".join(buildinfo.current().lines()), flush=True)
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hivetray", description="Keep local llama.cpp models warm, healthy and cheap.")
    parser.add_argument("--version", action=VersionAction,
                        help="show the version, git commit, build date and llama.cpp build")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    daemon = sub.add_parser("daemon", help="run the instance without widgets (servers, CI)")
    daemon.add_argument("--api", action="store_true",
                        help="serve the local OpenAI-compatible HTTP API for this run")
    daemon.add_argument("--port", type=int, default=None,
                        help="the HTTP API's port for this run (0 = any free port)")
    api = sub.add_parser("api", help="the local HTTP API")
    api_sub = api.add_subparsers(dest="api_command", metavar="COMMAND", required=True)
    key = api_sub.add_parser("key", help="print the API key (made on first use)")
    key.add_argument("--new", action="store_true",
                     help="replace the key: the old one stops working at once")
    status = sub.add_parser("status", help="one row per role")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    chat = sub.add_parser("chat", help="stream a reply from the chat worker")
    chat.add_argument("prompt", nargs="?", help="the prompt (read from stdin when omitted)")
    chat.add_argument("--image", help="an image file for the vision worker")
    chat.add_argument("--max-tokens", type=int, default=None)
    sampling = chat.add_argument_group(
        "sampling", "override the role's defaults (config.toml, Settings) for this request")
    sampling.add_argument("--temperature", type=float, help="0 = greedy (reproducible)")
    sampling.add_argument("--top-k", type=int)
    sampling.add_argument("--top-p", type=float)
    sampling.add_argument("--min-p", type=float)
    sampling.add_argument("--repeat-penalty", type=float, help="1 = off")
    sampling.add_argument("--seed", type=int, help="a fixed seed makes the reply reproducible")
    chat.add_argument("--json", action="store_true", help="one JSON object per line")
    embed = sub.add_parser("embed", help="one embedding vector per TEXT (JSON)")
    embed.add_argument("texts", nargs="+", metavar="TEXT")
    rerank = sub.add_parser("rerank", help="score DOCs against QUERY, best first (JSON)")
    rerank.add_argument("query", metavar="QUERY")
    rerank.add_argument("documents", nargs="+", metavar="DOC")
    cli_models.add_parser(sub)
    selftest.add_parser(sub)
    for name, text in (("retry", "reset the breaker or the error of ROLE"),
                       ("restart", "stop and start ROLE's worker"),
                       ("stop", "stop ROLE's worker (it starts again on next use)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("role", choices=ROLES)
    sub.add_parser("toggle-chat", help="show/hide the quick-chat window")
    quit_parser = sub.add_parser("quit", help="stop all workers and exit the instance")
    # for uninstallers (the .deb's prerm): every instance of this user, whatever its home
    quit_parser.add_argument("--all-homes", action="store_true", help=argparse.SUPPRESS)
    quit_parser.add_argument("--only-under", type=Path, help=argparse.SUPPRESS)
    logs = sub.add_parser("logs", help="print the app log or a worker log")
    logs.add_argument("role", nargs="?", choices=ROLES)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    events = sub.add_parser("events", help="recent pool events from the running instance")
    events.add_argument("--limit", type=int, default=50)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = app_paths()
    command = args.command
    try:
        if command is None:
            from hivetray.app import run_desktop

            return run_desktop(paths)
        if command == "daemon":
            from hivetray.api_control import ApiOverride
            from hivetray.daemon import run_daemon

            if args.port is not None and not (args.api and 0 <= args.port <= 65535):
                print("hivetray: --port needs --api and a port from 0 to 65535",
                      file=sys.stderr)
                return EXIT_USAGE
            return run_daemon(paths, ApiOverride(args.api, args.port))
        if command == "api":
            return api_key(paths, args.new)
        if command == "logs":
            return show_logs(paths, args.role, args.follow)
        if command == "models":
            return cli_models.run(paths, args)
        if command == "self-test":
            return selftest.run(paths, args)
        runner = COMMANDS[command]
        return int(asyncio.run(runner(paths, args)))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ipc.NoInstance as exc:
        print(f"hivetray: {exc}; start it with `hivetray` or `hivetray daemon`", file=sys.stderr)
        return EXIT_NO_INSTANCE
    except HivetrayError as exc:
        print(f"hivetray: {first_line(exc)}", file=sys.stderr)
        report_to_parent(exc)  # a window that ran this command words it its own way
        return EXIT_FAIL
    except BrokenPipeError:  # `hivetray embed ... | head`: the reader left; not our failure
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # mute the exit-time flush
        return EXIT_FAIL
    except Exception as exc:  # a bug: still one line and an exit code, never a traceback
        bug = InternalError(f"internal error ({type(exc).__name__}: {first_line(exc)})",
                            Remedy(Fix.REPORT_BUG))
        print(f"hivetray: {bug}", file=sys.stderr)
        report_to_parent(bug)
        return EXIT_FAIL


async def _with_instance_or_private(
        paths: AppPaths, cmd: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Run ``cmd`` on the running instance, or on a private pool when none is reachable.

    The private pool lives for this command only: it never sweeps, records or starts pinned
    roles, so it cannot disturb an instance that is still starting, or another private pool.
    """
    socket = find_instance(paths)
    if socket is not None:
        async for item in ipc.request(socket, cmd, **payload):
            yield item
        return
    loaded = load_config(paths.config_file)
    for warning in loaded.warnings:
        print(f"hivetray: warning: {warning}", file=sys.stderr)
    instance = Instance(paths, loaded.config, private=True)
    await instance.start()
    try:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def reply(chunk: dict[str, Any]) -> None:
            await queue.put(chunk)

        work = asyncio.ensure_future(Commands(instance).handle({"cmd": cmd, **payload}, reply))
        while not work.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        yield {"result": work.result()}
    finally:
        with contextlib.suppress(BaseException):
            if "work" in locals() and not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        await instance.close()


async def cmd_status(paths: AppPaths, args: argparse.Namespace) -> int:
    reply: dict[str, Any] = {}
    async for item in _with_instance_or_private(paths, "status", {}):
        reply = item.get("result", reply)
    status = PoolStatus.from_dict(reply)
    if args.json:
        print(json.dumps(status.status_json()))
        return 0
    print(f"{'ROLE':8} {'STATE':13} {'PID':>7} {'MEMORY':>22} {'REQ':>5} {'TOK/S':>7}  MODEL")
    for row in status.roles:
        rss = memory_text(row.rss_bytes, row.mem_estimate_bytes, "-")
        tps = f"{row.tokens_per_s:.1f}" if row.tokens_per_s else "-"
        state = row.state + (f" {row.retry_in_s:.0f}s" if row.retry_in_s else "")
        print(f"{row.role:8} {state:13} {row.pid or '-':>7} {rss:>22} "
              f"{row.requests:>5} {tps:>7}  {row.served_by() or '(no model set)'}")
        if row.rtt_text:
            print(f"{'':8} └ remote engine, last round trip {row.rtt_text}")
        if is_builtin(row.model, paths):
            print(f"{'':8} └ {BUILTIN_LABEL}")
        if row.last_error:
            print(f"{'':8} └ {row.last_error}")
    return 0


def read_image(path: str) -> dict[str, Any]:
    """The image file as a wire image; the instance checks it is one, the worker decodes it."""
    from hivetray.workers.spec import MAX_PAYLOAD_BYTES

    try:
        size = os.path.getsize(path)
        if size > MAX_PAYLOAD_BYTES:
            raise HivetrayError(f"{path}: {PayloadTooLarge(size, MAX_PAYLOAD_BYTES)}")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise HivetrayError(f"cannot read the image {path}: {exc.strerror or exc}") from None
    image: dict[str, Any] = wire_image(path, data)
    return image


async def cmd_chat(paths: AppPaths, args: argparse.Namespace) -> int:
    images = [read_image(args.image)] if args.image else []
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    if not prompt.strip():
        print("hivetray: the prompt is empty (give PROMPT or pipe it on stdin)", file=sys.stderr)
        return EXIT_USAGE
    overrides = {key: getattr(args, key) for key in SAMPLING_KEYS if hasattr(args, key)}
    for key, value in overrides.items():  # a usage error: say which flag, before anything
        if value is not None and (problem := sampling_problem(key, value)):
            print(f"hivetray: --{key.replace('_', '-')}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    payload: dict[str, Any] = {"params": chat_params(prompt, args.max_tokens, overrides)}
    if images:
        payload["images"] = images  # → the vision worker
    async for item in _with_instance_or_private(paths, "chat", payload):
        if "result" in item:
            result = item["result"] or {}
            if args.json:
                print(json.dumps({"done": True, "usage": result.get("usage"),
                                  "finish_reason": result.get("finish_reason")}), flush=True)
            else:
                print(flush=True)
        elif args.json:
            print(json.dumps({"text": item.get("text", "")}), flush=True)
        else:
            sys.stdout.write(item.get("text", ""))
            sys.stdout.flush()
    return 0


def _warn_truncated(result: dict[str, Any], what: str) -> None:
    for cut in result.get("truncated") or []:
        print(f"hivetray: warning: {what} {cut['index'] + 1} is {cut['tokens']} tokens; only "
              f"the first {cut['kept']} were used (the context of the model)", file=sys.stderr)


async def _final_result(paths: AppPaths, cmd: str, payload: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async for item in _with_instance_or_private(paths, cmd, payload):
        if "result" in item:
            result = item["result"] or {}
    return result


async def cmd_embed(paths: AppPaths, args: argparse.Namespace) -> int:
    result = await _final_result(paths, "embed", {"texts": list(args.texts)})
    _warn_truncated(result, "text")
    print(json.dumps({"embeddings": result["embeddings"]}))
    return 0


async def cmd_rerank(paths: AppPaths, args: argparse.Namespace) -> int:
    result = await _final_result(paths, "rerank", {"query": args.query,
                                                   "documents": list(args.documents)})
    _warn_truncated(result, "document")
    print(json.dumps({"results": result["results"]}))
    return 0


def instance_socket(paths: AppPaths) -> Path:
    """Where the running instance listens (the usual path when none runs: NoInstance)."""
    return find_instance(paths) or paths.socket_path


def _role_command(cmd: str) -> Callable[[AppPaths, argparse.Namespace], Any]:
    async def run(paths: AppPaths, args: argparse.Namespace) -> int:
        result = RoleStatus.from_dict(await ipc.call(instance_socket(paths), cmd, role=args.role))
        print(f"{result.role}: {result.state}")
        return 0

    return run


async def cmd_quit(paths: AppPaths, args: argparse.Namespace) -> int:
    if args.all_homes or args.only_under is not None:
        from hivetray import quitall

        if not args.all_homes:
            print("hivetray: --only-under needs --all-homes", file=sys.stderr)
            return EXIT_USAGE
        return await quitall.run(args.only_under)
    await ipc.call(instance_socket(paths), "quit")
    return 0


async def cmd_toggle_chat(paths: AppPaths, args: argparse.Namespace) -> int:
    await ipc.call(instance_socket(paths), "toggle-chat")
    return 0


async def cmd_events(paths: AppPaths, args: argparse.Namespace) -> int:
    for event in await ipc.call(instance_socket(paths), "events", limit=args.limit):
        stamp = time.strftime("%H:%M:%S", time.localtime(event["ts"]))
        print(f"{stamp} {event['level']:7} {event['kind']:14} {event['message']}")
    return 0


def api_key(paths: AppPaths, new: bool) -> int:
    """``hivetray api key [--new]``: the HTTP API's bearer key on stdout (made if missing)."""
    from hivetray.api.keys import ApiKey

    key = ApiKey(paths.api_key_file)
    try:
        print(key.replace() if new else key.ensure())
    except OSError as exc:
        print(f"hivetray: could not write the API key to {paths.api_key_file} "
              f"({exc.strerror or exc}); check that folder's permissions", file=sys.stderr)
        return EXIT_FAIL
    return 0


def show_logs(paths: AppPaths, role: str | None, follow: bool) -> int:
    path = paths.worker_log(role) if role else paths.app_log
    if not path.exists():
        print(f"hivetray: no log yet at {path}", file=sys.stderr)
        return EXIT_FAIL
    with open(path, encoding="utf-8", errors="replace") as handle:
        sys.stdout.write(handle.read())
        sys.stdout.flush()
        while follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)
    return 0


COMMANDS: dict[str, Callable[[AppPaths, argparse.Namespace], Any]] = {
    "status": cmd_status,
    "chat": cmd_chat,
    "embed": cmd_embed,
    "rerank": cmd_rerank,
    "retry": _role_command("retry"),
    "restart": _role_command("restart"),
    "stop": _role_command("stop"),
    "quit": cmd_quit,
    "toggle-chat": cmd_toggle_chat,
    "events": cmd_events,
}
