"""The rerank role: a query and documents → one relevance score per document.

llama-cpp-python has no rerank API. A reranker is a model with rank pooling and a classifier
head: llama.cpp pools the pair's last token through the head and stores ``n_cls_out`` floats as
the sequence's "embedding" (the rest of the ``n_embd`` buffer is junk); the first is the score,
as in llama-server. The loader refuses a model without that head (a plain chat or embedding
model would return meaningless numbers), naming the file.

Pairs are formatted like llama-server does: the model's ``tokenizer.chat_template.rerank`` when
it has one (Qwen3-Reranker), else ``[BOS] query [EOS] [SEP] document [EOS]`` with the specials
the vocabulary asks for (BERT-style rerankers), else ``query\\ndocument``. A pair longer than
the context keeps the whole query and loses the document's tail, and is reported as truncated.
"""

from __future__ import annotations

from typing import Any

from hivetray.errors import InvalidRequest, NotARerankModel
from hivetray.models.gguf import read_header
from hivetray.models.validate import POOLING_RANK, check_rerank, rerank_needs_forced_pooling
from hivetray.workers.context import RequestContext
from hivetray.workers.embed import encode_sequences, load_embedding_llama, usable_context
from hivetray.workers.spec import WorkerSpec


class RerankHandler:
    def __init__(self, spec: WorkerSpec) -> None:
        import llama_cpp

        self.spec = spec
        info = read_header(spec.model)
        check_rerank(info)
        self.width = usable_context(spec, info)
        forced = POOLING_RANK if rerank_needs_forced_pooling(info) else None
        self.llm = load_embedding_llama(spec, self.width, forced)
        self.n_labels = int(llama_cpp.llama_model_n_cls_out(self.llm.model))
        if int(self.llm.pooling_type()) != llama_cpp.LLAMA_POOLING_TYPE_RANK or self.n_labels < 1:
            raise NotARerankModel(f"{spec.model} loaded without rank pooling or a classifier "
                                  "head, so it cannot score documents: use a reranker model",
                                  spec.model)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.template = self.llm.metadata.get("tokenizer.chat_template.rerank")
        self.bos = self._special(llama_cpp.llama_vocab_get_add_bos(vocab),
                                 llama_cpp.llama_vocab_bos(vocab))
        self.eos = self._special(llama_cpp.llama_vocab_get_add_eos(vocab),
                                 llama_cpp.llama_vocab_eos(vocab))
        self.sep = self._special(llama_cpp.llama_vocab_get_add_sep(vocab),
                                 llama_cpp.llama_vocab_sep(vocab))

    @staticmethod
    def _special(wanted: bool, token: int) -> list[int]:
        return [int(token)] if wanted and token >= 0 else []

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.width, "labels": self.n_labels, "model": self.spec.model}

    def _tokens(self, text: str, special: bool = False) -> list[int]:
        """Tokens of ``text``; specials are parsed only in the model's own template."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def pair_tokens(self, query: str, document: str) -> tuple[list[int], int]:
        """The pair's tokens, cut to the context; and its length before cutting."""
        if isinstance(self.template, str) and "{document}" in self.template:
            head, _, tail = self.template.partition("{document}")
            q_head, _, q_tail = head.partition("{query}")
            before = self._tokens(q_head, True) + self._tokens(query) + self._tokens(q_tail, True)
            doc, after = self._tokens(document), self._tokens(tail, True)
        elif self.eos or self.sep:
            before = self.bos + self._tokens(query) + self.eos + self.sep
            doc, after = self._tokens(document), self.eos
        else:
            before, doc, after = self._tokens(f"{query}\n"), self._tokens(document), []
        total = len(before) + len(doc) + len(after)
        room = self.width - len(before) - len(after)
        if room < 1:
            raise InvalidRequest(f"the query alone is {len(before)} tokens; the rerank context "
                                 f"is {self.width}: shorten the query or raise n_ctx")
        return before + doc[:room] + after, total

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        if method != "rerank":
            raise InvalidRequest(f"the rerank worker has no method {method!r}")
        query, documents = params.get("query"), params.get("documents")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("rerank needs a non-empty 'query'")
        if not isinstance(documents, list) or not documents \
                or not all(isinstance(d, str) for d in documents):
            raise InvalidRequest("rerank needs a non-empty 'documents' list of strings")
        sequences: list[list[int]] = []
        truncated: list[dict[str, int]] = []
        for i, doc in enumerate(documents):
            tokens, total = self.pair_tokens(query, doc)
            if total > len(tokens):
                truncated.append({"index": i, "tokens": total, "kept": len(tokens)})
            sequences.append(tokens)
        scores = encode_sequences(self.llm, sequences, self.width, self.n_labels, ctx)
        if scores is None:
            return {"scores": [], "truncated": truncated, "finish_reason": "cancelled"}
        return {"scores": [s[0] for s in scores], "truncated": truncated,
                "usage": {"prompt_tokens": sum(len(s) for s in sequences),
                          "completion_tokens": 0}}
