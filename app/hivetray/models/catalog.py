"""A short, curated list of good default models per role, offered by name.

Why: "which GGUF should I download?" is the first question a newcomer cannot answer. These are
small, permissively licensed models that run on a laptop CPU, each known to work with llama.cpp
in its role (an instruct chat model with a chat template; a vision model with its published
projector; an embedding model; a rank-pooling reranker). Repository and file names are as
published on Hugging Face when this list was written; the hub's own sha256 is checked on
download, so no checksum is pinned here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    role: str
    repo: str
    filename: str
    about: str
    approx_mb: int
    mmproj: str | None = None  # vision: the projector file in the same repository


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("qwen2.5-1.5b-instruct", "chat", "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
                 "qwen2.5-1.5b-instruct-q4_k_m.gguf",
                 "good small assistant, 32k context, many languages", 1100),
    CatalogEntry("qwen2.5-0.5b-instruct", "chat", "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                 "qwen2.5-0.5b-instruct-q4_k_m.gguf",
                 "tiny and fast; fine for short answers on old machines", 400),
    CatalogEntry("smolvlm-500m-instruct", "vision", "ggml-org/SmolVLM-500M-Instruct-GGUF",
                 "SmolVLM-500M-Instruct-Q8_0.gguf",
                 "small vision-language model: describe, read and answer about images", 540,
                 mmproj="mmproj-SmolVLM-500M-Instruct-Q8_0.gguf"),
    CatalogEntry("nomic-embed-text-v1.5", "embed", "nomic-ai/nomic-embed-text-v1.5-GGUF",
                 "nomic-embed-text-v1.5.Q4_K_M.gguf",
                 "768-dim text embeddings, 2k context; prefix 'search_query: ' / "
                 "'search_document: '", 80),
    CatalogEntry("bge-reranker-v2-m3", "rerank", "gpustack/bge-reranker-v2-m3-GGUF",
                 "bge-reranker-v2-m3-Q8_0.gguf",
                 "multilingual cross-encoder reranker (rank pooling)", 620),
)

#: the entry offered first for each role (``hivetray models download ROLE`` with no name)
DEFAULTS: dict[str, str] = {
    "chat": "qwen2.5-1.5b-instruct",
    "vision": "smolvlm-500m-instruct",
    "embed": "nomic-embed-text-v1.5",
    "rerank": "bge-reranker-v2-m3",
}


def find(name: str) -> CatalogEntry | None:
    wanted = name.strip().lower()
    return next((e for e in CATALOG if e.name == wanted), None)


def for_role(role: str) -> list[CatalogEntry]:
    return [e for e in CATALOG if e.role == role]
