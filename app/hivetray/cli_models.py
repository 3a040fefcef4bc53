"""``hivetray models``: list, set and download the model of each role.

Kept apart from ``cli.py`` (which stays the pool-facing commands). Setting a model validates
the file first (a truncated download is refused with its reason, not written to the config),
writes ``config.toml`` atomically, then asks a running instance to ``reload``: it respawns only
the roles whose files changed. Downloads come from Hugging Face (or ``HF_ENDPOINT``) into
``data/models/``, resume from a ``.part`` file, and are checked against the hub's sha256.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hivetray import ROLES, ipc
from hivetray.config import load_config, save_config
from hivetray.errors import HivetrayError, ModelLoadError
from hivetray.models import builtin, catalog
from hivetray.models.download import download, target_path
from hivetray.models.validate import check_role, open_model
from hivetray.paths import AppPaths


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="list, set or download the model of each role")
    models.add_argument("--json", action="store_true", help="machine-readable list")
    actions = models.add_subparsers(dest="models_action", metavar="ACTION")
    listing = actions.add_parser("list", help="roles, files, size, architecture, context")
    listing.add_argument("--json", action="store_true")
    setter = actions.add_parser("set", help="use PATH for ROLE (config.toml; the running "
                                            "instance reloads that role)")
    setter.add_argument("role", choices=ROLES)
    setter.add_argument("path", help="a .gguf file, or 'none' to unset the role")
    setter.add_argument("--mmproj", help="the projector file (vision)")
    fetch = actions.add_parser(
        "download", help="download from Hugging Face and set it: ROLE [NAME] (see `models "
                         "catalog`) or ROLE REPO FILE")
    fetch.add_argument("role", choices=ROLES)
    fetch.add_argument("source", nargs="?", help="a catalog name, or a repository owner/name")
    fetch.add_argument("file", nargs="?", help="the file in the repository")
    fetch.add_argument("--mmproj-file", help="vision: the projector file in the same repository")
    fetch.add_argument("--revision", default="main")
    fetch.add_argument("--no-set", action="store_true", help="only download, keep the config")
    actions.add_parser("catalog", help="curated models per role, by name")


def run(paths: AppPaths, args: argparse.Namespace) -> int:
    action = args.models_action or "list"
    if action == "list":
        return list_models(paths, bool(args.json))
    if action == "set":
        mmproj = args.mmproj
        model = None if args.path.lower() == "none" else str(Path(args.path).expanduser())
        if mmproj:
            mmproj = str(Path(mmproj).expanduser())
        return set_model(paths, args.role, model, mmproj)
    if action == "catalog":
        return show_catalog()
    return download_model(paths, args)


def describe(role: str, model: str | None, mmproj: str | None, paths: AppPaths
             ) -> dict[str, Any]:
    """One row of ``hivetray models``: the file, what it is, and whether it validates."""
    is_builtin = builtin.is_builtin(model)
    row: dict[str, Any] = {"role": role, "model": model, "mmproj": mmproj, "size_bytes": None,
                           "architecture": None, "context_length": None, "name": None,
                           "valid": None, "problem": None, "builtin": is_builtin,
                           "label": builtin.LABEL if is_builtin else None}
    if not model:
        return row
    try:
        info = open_model(model)
        row.update(size_bytes=info.file_size, architecture=info.architecture,
                   context_length=info.context_length, name=info.name)
        check_role(role, model, mmproj)
        row["valid"] = True
    except ModelLoadError as exc:
        row.update(valid=False, problem=str(exc))
    return row


def list_models(paths: AppPaths, as_json: bool) -> int:
    loaded = load_config(paths.config_file)
    for warning in loaded.warnings:
        print(f"hivetray: warning: {warning}", file=sys.stderr)
    config = builtin.with_builtin_chat(loaded.config)  # shown, never saved
    rows = [describe(r, config.role(r).model, config.role(r).mmproj, paths) for r in ROLES]
    if as_json:
        print(json.dumps({"config": str(paths.config_file), "roles": rows}))
        return 0
    print(f"{'ROLE':7} {'SIZE':>9} {'ARCH':10} {'CTX':>7}  {'CHECK':5}  FILE")
    for row in rows:
        size = f"{row['size_bytes'] / 2**20:.0f} MiB" if row["size_bytes"] else "-"
        check = {True: "ok", False: "BAD", None: "-"}[row["valid"]]
        ctx = str(row["context_length"] or "-")
        model = row["model"] or "(no model: hivetray models download " + row["role"] + ")"
        print(f"{row['role']:7} {size:>9} {row['architecture'] or '-':10} {ctx:>7}  {check:5}  "
              f"{model}")
        if row["mmproj"]:
            print(f"{'':7} {'':>9} {'':10} {'':>7}  {'':5}  + projector {row['mmproj']}")
        if row["label"]:  # the default in use, and the way to a better one
            print(f"{'':7} └ {row['label']}: the default while no {row['role']} model is set; "
                  f"a better one: hivetray models download {row['role']}")
        if row["problem"]:
            print(f"{'':7} └ {row['problem']}")
    print(f"config: {paths.config_file}")
    return 0


def set_model(paths: AppPaths, role: str, model: str | None, mmproj: str | None,
              *, announce: bool = True) -> int:
    """Validate, write config.toml atomically, tell a running instance to reload."""
    loaded = load_config(paths.config_file)
    for warning in loaded.warnings:
        print(f"hivetray: warning: {warning}", file=sys.stderr)
    current = loaded.config.role(role)
    if mmproj and role != "vision":
        raise HivetrayError(f"only the vision role takes a projector (--mmproj), not {role}")
    if role == "vision" and model and not mmproj:
        mmproj = current.mmproj  # keep the projector when only the model changes
    if model:
        check_role(role, model, mmproj)  # raises with the file's problem: nothing is written
    save_config(paths.config_file, loaded.config.with_role(
        role, model=model, mmproj=mmproj if role == "vision" else None))
    if announce:
        what = f"{model}" + (f" + projector {mmproj}" if role == "vision" and mmproj else "")
        print(f"{role}: {what if model else '(no model)'} — written to {paths.config_file}")
    if ipc.instance_alive(paths.socket_path):
        reply = asyncio.run(ipc.call(paths.socket_path, "reload"))
        for warning in (reply or {}).get("warnings", []):
            print(f"hivetray: warning: {warning}", file=sys.stderr)
        if announce:
            print(f"{role}: the running instance restarts the role with the new model")
    return 0


def show_catalog() -> int:
    for role in ROLES:
        print(f"{role}:")
        for entry in catalog.for_role(role):
            star = "*" if catalog.DEFAULTS.get(role) == entry.name else " "
            print(f"  {star} {entry.name:24} ~{entry.approx_mb:>5} MB  {entry.about}")
            files = entry.filename + (f" + {entry.mmproj}" if entry.mmproj else "")
            print(f"    {'':24} {entry.repo}: {files}")
    print("download with: hivetray models download ROLE NAME  (* = offered first)")
    return 0


def download_model(paths: AppPaths, args: argparse.Namespace) -> int:
    role, source, filename, mmproj_file = args.role, args.source, args.file, args.mmproj_file
    if source is None or filename is None:
        entry = catalog.find(source or catalog.DEFAULTS[role])
        if entry is None:
            names = ", ".join(e.name for e in catalog.for_role(role))
            raise HivetrayError(f"{source!r} is not in the catalog for {role} ({names}); or "
                                "give REPO FILE")
        if entry.role != role:
            raise HivetrayError(f"{entry.name} is a {entry.role} model, not a {role} model")
        source, filename, mmproj_file = entry.repo, entry.filename, entry.mmproj
    if role == "vision" and not mmproj_file and not args.no_set:
        raise HivetrayError("a vision model needs its projector: add --mmproj-file FILE "
                            "(the mmproj-*.gguf file in the same repository)")
    fetched: list[Path] = []
    for name in [filename] + ([mmproj_file] if mmproj_file else []):
        dest = target_path(paths, source, name)
        print(f"{source}/{name} → {dest}", file=sys.stderr)
        result = download(source, name, dest, revision=args.revision)
        how = ("already there" if result.already_there else
               f"resumed at {result.resumed_from} bytes" if result.resumed_from else "downloaded")
        check = "no checksum published" if result.checksum == "none" else \
            f"{result.checksum.split(':')[0]} ok"
        print(f"{dest}: {result.size} bytes, {how}, {check}", file=sys.stderr)
        fetched.append(dest)
    if args.no_set:
        for path in fetched:
            print(path)
        return 0
    return set_model(paths, role, str(fetched[0]), str(fetched[1]) if len(fetched) > 1 else None)
