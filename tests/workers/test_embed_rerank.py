"""The embed and rerank roles on real llama.cpp (tiny generated models, in this process)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hivetray.errors import InvalidRequest, ModelLoadError, NotARerankModel
from hivetray.workers.embed import EmbedHandler
from hivetray.workers.rerank import RerankHandler
from hivetray.workers.runtime import RequestContext
from hivetray.workers.spec import WorkerSpec

pytestmark = pytest.mark.real


def spec(role: str, model: Path, folder: Path, n_ctx: int = 4096) -> WorkerSpec:
    return WorkerSpec(role, str(model), None, n_ctx, 1, str(folder / f"worker-{role}.log"))


def ctx(cancelled: bool = False) -> RequestContext:
    return RequestContext(1, lambda msg: None, lambda: cancelled)


@pytest.fixture(scope="module")
def embed(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
          ) -> EmbedHandler:
    return EmbedHandler(spec("embed", tiny_models["embed"], tmp_path_factory.mktemp("embed")))


@pytest.fixture(scope="module")
def rerank(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> RerankHandler:
    return RerankHandler(spec("rerank", tiny_models["rerank"],
                              tmp_path_factory.mktemp("rerank")))


def test_one_normalised_vector_per_text(embed: EmbedHandler) -> None:
    result = embed.handle("embed", {"texts": ["hello world", "a cat", "b"]}, ctx())
    vectors = result["embeddings"]
    assert len(vectors) == 3 and all(len(v) == 64 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5)
               for v in vectors)
    assert vectors[0] != vectors[1] and result["truncated"] == []
    assert embed.info()["pooling"] == 1  # mean, from the file


def test_packing_does_not_change_a_vector(embed: EmbedHandler) -> None:
    alone = embed.handle("embed", {"texts": ["a cat"]}, ctx())["embeddings"][0]
    packed = embed.handle("embed", {"texts": ["hello", "a cat", "xyz " * 50]},
                          ctx())["embeddings"][1]
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(alone, packed, strict=True))


def test_context_is_the_model_trained_length_and_long_texts_are_reported(
        embed: EmbedHandler) -> None:
    assert embed.width == 512  # role asked 4096; the model was trained on 512
    result = embed.handle("embed", {"texts": ["short", "word " * 900, "ok"]}, ctx())
    assert len(result["embeddings"]) == 3
    (cut,) = result["truncated"]
    assert cut["index"] == 1 and cut["kept"] == 512 and cut["tokens"] > 512


def test_many_texts_need_several_decodes(embed: EmbedHandler) -> None:
    texts = [f"text number {i} " * 20 for i in range(40)]  # ~40 x 60 tokens > 512 per decode
    vectors = embed.handle("embed", {"texts": texts}, ctx())["embeddings"]
    assert len(vectors) == 40 and len({tuple(v[:4]) for v in vectors}) == 40


def test_cancel_between_decodes(embed: EmbedHandler) -> None:
    texts = [f"text {i} " * 60 for i in range(20)]
    result = embed.handle("embed", {"texts": texts}, ctx(cancelled=True))
    assert result["finish_reason"] == "cancelled" and result["embeddings"] == []


def test_bad_embed_requests(embed: EmbedHandler) -> None:
    with pytest.raises(InvalidRequest, match="non-empty 'texts'"):
        embed.handle("embed", {"texts": []}, ctx())
    with pytest.raises(InvalidRequest, match="text 2 is empty"):
        embed.handle("embed", {"texts": ["a", ""]}, ctx())
    with pytest.raises(InvalidRequest, match="no method"):
        embed.handle("chat", {}, ctx())


def test_a_model_without_pooling_gets_mean(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    handler = EmbedHandler(spec("embed", tiny_models["chat"], tmp_path, n_ctx=256))
    assert handler.info()["pooling"] == 1
    assert len(handler.handle("embed", {"texts": ["a", "b"]}, ctx())["embeddings"]) == 2


def test_a_reranker_is_refused_as_embedding_model(tiny_models: dict[str, Path],
                                                  tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="rerank role"):
        EmbedHandler(spec("embed", tiny_models["rerank"], tmp_path))


def test_rerank_scores_one_per_document(rerank: RerankHandler) -> None:
    docs = ["a cat is an animal", "cars are fast", "x"]
    result = rerank.handle("rerank", {"query": "what is a cat", "documents": docs}, ctx())
    scores = result["scores"]
    assert len(scores) == 3 and all(0.0 < s < 1.0 for s in scores)  # softmax of 2 labels
    assert len(set(scores)) == 3 and result["truncated"] == []
    again = rerank.handle("rerank", {"query": "what is a cat", "documents": docs[::-1]}, ctx())
    assert [round(s, 5) for s in again["scores"]] == [round(s, 5) for s in scores[::-1]]


def test_rerank_long_document_keeps_the_query_and_is_reported(rerank: RerankHandler) -> None:
    result = rerank.handle("rerank", {"query": "q", "documents": ["ok", "long " * 900]}, ctx())
    (cut,) = result["truncated"]
    assert cut["index"] == 1 and cut["kept"] == 512 and cut["tokens"] > 512


def test_bad_rerank_requests(rerank: RerankHandler) -> None:
    with pytest.raises(InvalidRequest, match="'query'"):
        rerank.handle("rerank", {"query": " ", "documents": ["a"]}, ctx())
    with pytest.raises(InvalidRequest, match="'documents'"):
        rerank.handle("rerank", {"query": "q", "documents": []}, ctx())


@pytest.mark.parametrize("model", ["chat", "embed"])
def test_a_non_reranker_is_a_clear_load_error(tiny_models: dict[str, Path], tmp_path: Path,
                                              model: str) -> None:
    with pytest.raises(NotARerankModel, match="not a reranker") as caught:
        RerankHandler(spec("rerank", tiny_models[model], tmp_path))
    assert str(tiny_models[model]) in str(caught.value)
