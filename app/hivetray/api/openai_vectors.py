"""Embeddings (OpenAI's shape) and rerank (llama-server's, after Jina and Cohere): requests
checked field by field, replies shaped from the instance's results.

Base64 embeddings are the little-endian float32 bytes of each vector, which is what the OpenAI
clients decode (``numpy.frombuffer(..., dtype="float32")``; the official Python client asks
for base64 by default). Rerank answers ``{"results": [{"index", "relevance_score",
"document": {"text"}}]}`` best first, as llama-server's ``/v1/rerank`` does (``document`` is
Jina's and Cohere's, which llama-server's shape copies; ``return_documents: false`` leaves it
out), and accepts ``texts`` for ``documents`` as llama-server does (TEI's name).
"""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hivetray.api.http_errors import BadField


@dataclass(frozen=True)
class EmbedCall:
    texts: list[str]
    base64: bool
    model: Any


@dataclass(frozen=True)
class RerankCall:
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool
    model: Any


def parse_embeddings(body: dict[str, Any]) -> EmbedCall:
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise BadField("input", "'input' must be a string or a non-empty list of strings")
    if not all(isinstance(text, str) for text in texts):
        raise BadField("input", "'input' must be strings (token arrays are not supported)")
    if not all(texts):
        raise BadField("input", "'input' must not contain empty strings")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadField("encoding_format", "'encoding_format' must be 'float' or 'base64'")
    if body.get("dimensions") is not None:
        raise BadField("dimensions", "'dimensions' is not supported: vectors have the "
                                     "model's own size; leave it out")
    return EmbedCall(list(texts), encoding == "base64", body.get("model"))


def float32_base64(vector: Sequence[float]) -> str:
    """A vector as base64 of its little-endian float32 bytes (OpenAI's ``base64`` format)."""
    values = array.array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def embeddings_reply(call: EmbedCall, model: str, result: dict[str, Any]) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i,
             "embedding": float32_base64(vector) if call.base64 else vector}
            for i, vector in enumerate(result["embeddings"])]
    tokens = int((result.get("usage") or {}).get("prompt_tokens") or 0)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            # Hivetray's extra: the inputs cut to the model's context ({index, tokens, kept})
            "truncated": result.get("truncated") or []}


def parse_rerank(body: dict[str, Any]) -> RerankCall:
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise BadField("query", "'query' must be a non-empty string")
    name = "documents" if "documents" in body else "texts" if "texts" in body else "documents"
    raw = body.get(name)
    if not isinstance(raw, list) or not raw:
        raise BadField(name, f"'{name}' must be a non-empty list of strings")
    documents: list[str] = []
    for item in raw:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise BadField(name, f"'{name}' must be strings (or {{'text': ...}} objects)")
        documents.append(text)
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool)
                              or top_n < 1):
        raise BadField("top_n", "'top_n' must be a whole number of at least 1")
    keep = body.get("return_documents", True)
    if not isinstance(keep, bool):
        raise BadField("return_documents", "'return_documents' must be true or false")
    return RerankCall(query, documents, top_n, keep, body.get("model"))


def rerank_reply(call: RerankCall, model: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` is ``Instance.rerank``'s: rows sorted best first, cut to ``top_n``."""
    rows = []
    for row in result["results"]:
        out: dict[str, Any] = {"index": row["index"], "relevance_score": row["score"]}
        if call.return_documents:
            out["document"] = {"text": row["document"]}
        rows.append(out)
    tokens = int((result.get("usage") or {}).get("prompt_tokens") or 0)
    return {"object": "list", "model": model, "results": rows,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "truncated": result.get("truncated") or []}
