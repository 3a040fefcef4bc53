"""Which role a request's ``model`` picks, and ``GET /v1/models``.

A model is named by its role ("chat", "vision", "embed", "rerank"), or by the role's model
file name (with or without ``.gguf``), as an OpenAI client names models: tools that let the
user type a model name then work with either. No ``model`` means the endpoint's first role.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hivetray.api.http_errors import BadField, ModelNotFound
from hivetray.errors import InvalidRequest
from hivetray.pool.status import RoleStatus

#: what each endpoint serves, the default first
CHAT_ROLES = ("chat", "vision")
EMBED_ROLES = ("embed",)
RERANK_ROLES = ("rerank",)
#: the endpoint to use for a role a request named on the wrong one
ENDPOINTS = {"chat": "/v1/chat/completions", "vision": "/v1/chat/completions",
             "embed": "/v1/embeddings", "rerank": "/v1/rerank"}


def file_names(model_path: str | None) -> tuple[str, ...]:
    """The names a model file answers to: ``x.gguf`` and ``x``."""
    if not model_path:
        return ()
    name = os.path.basename(model_path)
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    return (name, stem)


def pick_role(model: Any, roles: Sequence[RoleStatus], served: Sequence[str]) -> str:
    """The role ``model`` names among ``served`` (the endpoint's roles); the first by default.

    A role the endpoint does not serve is a 400 naming the right endpoint; a name nothing
    answers to is a 404 (OpenAI's ``model_not_found``).
    """
    if model is None or model == "":
        return served[0]
    if not isinstance(model, str):
        raise BadField("model", "'model' must be a string: a role name or a model file name")
    by_name = {status.role: status.role for status in roles}  # role names win over files
    for status in roles:
        for name in file_names(status.model):
            by_name.setdefault(name, status.role)
    role = by_name.get(model)
    if role is None:
        raise ModelNotFound(model, " or ".join(repr(r) for r in served))
    if role not in served:
        raise InvalidRequest(f"the model {model!r} is the {role} role, which this endpoint does "
                             f"not serve: use {ENDPOINTS[role]}")
    return role


def model_list(roles: Sequence[RoleStatus], created: int) -> dict[str, Any]:
    """``GET /v1/models``: one entry per configured role, with its state (OpenAI's list shape
    plus Hivetray's fields, which OpenAI clients keep as extras)."""
    data = []
    for status in roles:
        if not status.configured:
            continue
        data.append({
            "id": status.role, "object": "model", "created": created, "owned_by": "hivetray",
            "role": status.role, "state": str(status.state),
            "file": os.path.basename(status.model) if status.model else None,
            "label": status.model_label, "retry_in_s": status.retry_in_s,
            "endpoint": ENDPOINTS[status.role],
        })
    return {"object": "list", "data": data}
