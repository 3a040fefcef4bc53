"""Write tiny GGUF models and a HIVETRAY_HOME whose config.toml sets all four roles.

    python packaging/smoke_home.py DIR [--broken ROLE]

Used by packaging/linux/check.sh and the installers workflow (Windows, macOS, Linux) to run a
packaged ``hivetray self-test`` without downloading a model: the models come from
``hivetray.devtools.tinymodels`` (needs the ``dev`` extra: gguf, numpy). ``--broken ROLE`` gives
that role a file of random bytes instead (the self-test must then fail, naming it).
Prints the home folder (set ``HIVETRAY_HOME`` to it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROLES = ("chat", "vision", "embed", "rerank")


def toml_path(path: Path) -> str:
    """A TOML literal string (no escapes: Windows backslashes stay as they are)."""
    return "'" + str(path.resolve()) + "'"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--broken", choices=ROLES, help="give ROLE a file that is not a model")
    args = parser.parse_args()
    from hivetray.devtools import tinymodels

    models = args.folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    files = {
        "chat": tinymodels.write_chat_model(models / "chat.gguf"),
        "embed": tinymodels.write_embed_model(models / "embed.gguf"),
        "rerank": tinymodels.write_rerank_model(models / "rerank.gguf"),
        "mmproj": tinymodels.write_mmproj(models / "mmproj.gguf"),
    }
    model = {"chat": files["chat"], "vision": files["chat"], "embed": files["embed"],
             "rerank": files["rerank"]}
    if args.broken:
        model[args.broken] = tinymodels.write_random_bytes(models / "broken.gguf")
    home = args.folder / ("broken-home" if args.broken else "home")
    (home / "config").mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for role in ROLES:
        lines += [f"[roles.{role}]", f"model = {toml_path(model[role])}",
                  f"n_ctx = {512 if role == 'embed' else 256}", "n_threads = 1"]
        if role == "vision":
            lines.append(f"mmproj = {toml_path(files['mmproj'])}")
        lines.append("")
    (home / "config" / "config.toml").write_text("\n".join(lines), encoding="utf-8")
    print(home.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
