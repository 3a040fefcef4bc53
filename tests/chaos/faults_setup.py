"""Faults from the user's side: other launches, private pools, damaged model files, prompts
too long for the context, and files that are not images.

Every refusal must be one line that names what is wrong (the file, the context); nothing
here may cost the running instance a worker.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hivetray.config import load_config, save_config
from tests.chaos.harness import CliOutcome, chat_request, finish_cli, spawn_cli

if TYPE_CHECKING:
    from tests.chaos.engine import ChaosRun

#: the file each role's live copy is restored from
PRISTINE = {"chat": "long", "embed": "embed", "rerank": "rerank"}


def _pids(run: ChaosRun) -> dict[str, int | None]:
    doc, _, _ = run.status()
    return {row["role"]: row["pid"] for row in (doc or {}).get("roles", [])}


def _same_workers(run: ChaosRun, before: dict[str, int | None], what: str) -> None:
    after = _pids(run)
    changed = {r: (before[r], after.get(r)) for r in before
               if before[r] is not None and after.get(r) != before[r]}
    if changed:
        run.rec.violate("unexpected_crash", f"{what} changed the instance's workers "
                        f"(role: before, after): {changed}")


def second_launch(run: ChaosRun) -> tuple[str, ...]:
    """1-3 concurrent ``hivetray daemon`` (same home; some through another runtime dir):
    each refuses at once with exit 1 and one line; the running one keeps its workers."""
    run.live_worker(run.rng.choice(("chat", "embed")))
    before = _pids(run)
    launches = []
    for _ in range(run.rng.randint(1, 3)):
        env = run.env.env(runtime=run.env.foreign_runtime if run.rng.random() < 0.4 else None)
        launches.append((spawn_cli(("daemon",), env), time.monotonic()))
    for proc, started in launches:
        out = finish_cli(proc, ("daemon",), started, 15.0)
        run.judge_cli(out, "fail", 15.0)
        if out.returncode not in (1, None):
            run.rec.violate("second_launch", f"exit code {out.returncode}, not 1: {out.brief()}")
    doc, _, _ = run.status()
    if doc is not None and doc["pid"] != run.daemon_pid:
        run.rec.violate("second_launch", f"pid {doc['pid']} answers, not {run.daemon_pid}")
    _same_workers(run, before, "a second launch")
    return ()


def _private_job(run: ChaosRun) -> tuple[str, ...]:
    kind = run.rng.choice(("embed", "rerank", "chat", "status"))
    if kind == "embed":
        return ("embed", "one", "two")
    if kind == "rerank":
        return ("rerank", "query", "a", "b")
    if kind == "chat":
        return ("chat", "hi", "--max-tokens", str(run.rng.randint(2, 60)))
    return ("status", "--json")


def private_pools(run: ChaosRun) -> tuple[str, ...]:
    """Concurrent CLI commands of another home (no instance there: private pools) must not
    disturb each other or the instance, write no shared record, leave no worker; a CLI of
    this home through another runtime dir finds the instance through its owner record."""
    before = _pids(run)
    private_env = run.env.env(home=run.env.private_home, runtime=run.env.foreign_runtime)
    procs = []
    for _ in range(run.rng.randint(2, 3)):
        args = _private_job(run)
        proc = spawn_cli(args, private_env)
        run.tracker.add_app(proc.pid, f"private `hivetray {args[0]}`")
        procs.append((proc, args, time.monotonic()))
    found = run.cli("status", "--json", expect="ok",
                    env=run.env.env(runtime=run.env.foreign_runtime))
    if found.returncode == 0 and f'"pid": {run.daemon_pid},' not in found.stdout:
        run.rec.violate("instance_not_found", "a CLI with another XDG_RUNTIME_DIR did not "
                        f"reach the instance {run.daemon_pid}: {found.stdout[:200]!r}")
    waiting = list(procs)
    deadline = time.monotonic() + 60.0
    while waiting and time.monotonic() < deadline:
        run.tracker.scan()  # see their workers while they live
        for item in list(waiting):
            if item[0].poll() is not None:
                run.tracker.app_died(item[0].pid, time.monotonic())
                waiting.remove(item)
        time.sleep(0.02)
    for proc, args, started in procs:
        out: CliOutcome = finish_cli(proc, args, started, 60.0)
        run.tracker.app_died(proc.pid, time.monotonic())
        run.judge_cli(out, "ok", 60.0)
    data = run.env.paths(run.env.private_home).data_dir
    for name in ("workers.json", "instance.json"):
        if (data / name).exists():
            run.rec.violate("private_pool", f"a private pool wrote the shared {data / name}")
    _same_workers(run, before, "private pools of another home")
    return ()


# -- model files ------------------------------------------------------------------------------
def _replace_file(target: Path, source: Path) -> None:
    """Swap the file's content atomically (a running worker keeps the old inode)."""
    tmp = target.with_name(target.name + ".swap")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)


def _role_call(role: str) -> tuple[str, ...]:
    return {"chat": ("chat", "hi", "--max-tokens", "2"), "embed": ("embed", "x"),
            "rerank": ("rerank", "q", "a", "b")}[role]


def _names_file(run: ChaosRun, text: str | None, bad: Path, what: str) -> None:
    if not text or bad.name not in text:
        run.rec.violate("error_message", f"{what} does not name {bad.name}: {text!r}")


def model_swap(run: ChaosRun) -> tuple[str, ...]:
    """A damaged model: refused by ``models set`` (config untouched), or met at load time
    (hand edit + reload, or the file replaced on disk): the role goes to ``error`` naming the
    file, then recovers after ``models set``/``retry``."""
    role = run.rng.choice(("chat", "embed", "rerank"))
    bad = run.rng.choice([run.env.models[f"truncated-{role}"], run.env.models["random"]])
    variant = run.rng.choice(("refused", "hand_edit", "on_disk"))
    if variant == "refused":
        config_file = run.env.paths().config_file
        pid, before = run.live_worker(role), config_file.read_bytes()
        out = run.cli("models", "set", role, str(bad), expect="fail")
        _names_file(run, out.stderr, bad, "`models set` of a damaged file")
        if config_file.read_bytes() != before:
            run.rec.violate("config", "a refused `models set` changed config.toml")
        _same_workers(run, {role: pid}, "a refused `models set`")
        return (role,)
    _load_damaged(run, role, bad, on_disk=variant == "on_disk")
    return (role,)


def model_abort(run: ChaosRun) -> tuple[str, ...]:
    """A model that makes llama.cpp abort while loading (SIGABRT): ``error`` naming the file,
    not a crash counted against the breaker, and no crash loop."""
    _load_damaged(run, "chat", run.env.models["crash"], on_disk=False)
    return ("chat",)


def _load_damaged(run: ChaosRun, role: str, bad: Path, *, on_disk: bool) -> None:
    live, pristine = run.env.models[f"live-{role}"], run.env.models[PRISTINE[role]]
    if on_disk:
        run.live_worker(role)
        _replace_file(live, bad)
        out = run.cli("restart", role, expect="fail")
        bad = live
    else:
        config_file = run.env.paths().config_file
        loaded = load_config(config_file).config
        roles = {**loaded.roles, role: replace(loaded.role(role), model=str(bad))}
        save_config(config_file, replace(loaded, roles=roles))
        run.request({"cmd": "reload"}, what="reload", expect="ok")
        out = run.cli(*_role_call(role), expect="fail")
    run.ledgers[role].reset()  # a changed model, or restart's retry, clears the breaker
    _names_file(run, out.stderr, bad, f"the {role} failure with a damaged model")
    row = run.wait_row(role, lambda r: r["state"] == "error", 10.0, f"{role} in error")
    if row is not None:
        _names_file(run, row["last_error"], bad, f"{role}'s last_error")
    run.mark()  # recovery is timed from the fix
    if on_disk:
        _replace_file(live, pristine)
        run.retry(role)
    else:
        run.cli("models", "set", role, str(live), expect="ok")


# -- requests the model cannot take --------------------------------------------------------
def _overflow(run: ChaosRun, role: str, n_ctx: int) -> None:
    pid = run.live_worker(role)
    # 7 tokens per word (" a" is one merged token): always past n_ctx, by up to 75 %
    words = n_ctx // 6 + run.rng.randint(20, n_ctx // 4)
    prompt = "abcdefg " * words
    image = run.env.models["image"] if role == "vision" else None
    seen = len(run.rec.violations)
    reply = run.request(chat_request(prompt, 4, image), what=f"{role} prompt over n_ctx",
                        expect="fail")
    kind = (reply.error or {}).get("type")
    if len(run.rec.violations) == seen and reply.error is not None \
            and kind != "ContextOverflow":
        run.rec.violate("typed_failure", f"{role} context overflow came back as {kind}: "
                        f"{str((reply.error or {}).get('message'))[:200]!r}")
    args = ("chat", prompt, "--max-tokens", "4") + (("--image", str(image)) if image else ())
    out = run.cli(*args, expect="fail")
    if len(run.rec.violations) == seen and out.returncode == 1 \
            and "context" not in out.stderr:
        run.rec.violate("error_message", f"{role} overflow does not mention the context: "
                        f"{out.stderr.strip()[:200]!r}")
    _same_workers(run, {role: pid}, f"a {role} context overflow")


def context_overflow(run: ChaosRun) -> tuple[str, ...]:
    _overflow(run, "chat", run.settings.chat_n_ctx)
    return ("chat",)


def context_overflow_vision(run: ChaosRun) -> tuple[str, ...]:
    _overflow(run, "vision", 256)
    return ("vision",)


def non_image(run: ChaosRun) -> tuple[str, ...]:
    """``chat --image`` with a text file, a fake PNG or a missing file: one line naming it."""
    pid = run.live_worker("vision")
    models = run.env.models
    missing = run.env.root / "no-such-picture.png"
    for path in run.rng.sample([models["notes"], models["fake_png"], missing], 2):
        out = run.cli("chat", "what is this?", "--image", str(path), expect="fail")
        _names_file(run, out.stderr, path, f"`chat --image {path.name}`")
    _same_workers(run, {"vision": pid}, "images that are not images")
    return ("vision",)
