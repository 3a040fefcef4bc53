"""Pure pieces of remote roles: the config keys, the URL shown, the chat body (sampling and
images), the answers' shapes, and what each HTTP status means."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from hivetray.config import load_config
from hivetray.errors import RemoteRequestError, RemoteSetupError
from hivetray.pool.remote import wire
from hivetray.pool.remote.access import display_url


def test_config_reads_the_remote_keys_and_refuses_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[roles.chat]\nengine = "remote"\nurl = "http://gpu-box:8080/"\n'
                    'model = "qwen"\napi_key_env = "GPU_KEY"\ntimeout_s = 12\n'
                    '[roles.embed]\nengine = "cloud"\nurl = "gpu-box"\n')
    loaded = load_config(path)
    chat = loaded.config.role("chat")
    assert (chat.engine, chat.url, chat.model, chat.api_key_env, chat.timeout_s) == (
        "remote", "http://gpu-box:8080", "qwen", "GPU_KEY", 12.0)
    assert chat.configured and chat.remote
    embed = loaded.config.role("embed")
    assert embed.engine == "local" and embed.url is None and not embed.configured
    assert any('engine ("local" or "remote")' in w for w in loaded.warnings)
    assert any('URL such as "http://gpu-box:8080"' in w for w in loaded.warnings)


def test_the_url_is_shown_without_credentials() -> None:
    assert display_url("https://user:secret@gpu:8443/base/?token=x") == "https://gpu:8443/base"
    assert display_url("http://[::1]:8080") == "http://[::1]:8080"
    assert display_url(None) is None


def test_the_chat_body_maps_sampling_and_sends_images_as_data_urls() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    body = wire.chat_body("m", {"messages": [{"role": "system", "content": "s"},
                                             {"role": "user", "content": "what?"}],
                                "images": [{"name": "a.png", "data": png}],
                                "temperature": 0.2, "top_p": 0.9, "min_p": 0.1,
                                "repeat_penalty": 1.1, "seed": None, "unknown": 1})
    assert body["model"] == "m" and body["temperature"] == 0.2 and body["min_p"] == 0.1
    assert "seed" not in body and "unknown" not in body and "images" not in body
    parts = body["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "what?"}
    assert parts[1]["image_url"]["url"] == \
        "data:image/png;base64," + base64.b64encode(png).decode()
    with pytest.raises(RemoteRequestError, match="needs a user message"):
        wire.chat_body(None, {"messages": [{"role": "system", "content": "s"}],
                              "images": [{"data": png}]})


def test_embeddings_and_rerank_answers_are_read_in_input_order() -> None:
    body = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}
    assert wire.embeddings(body, 2, "embed") == [[1.0], [2.0]]
    with pytest.raises(RemoteRequestError, match="1 vectors for 2 texts"):
        wire.embeddings({"data": [{"index": 0, "embedding": [1.0]}]}, 2, "embed")
    ranked = {"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "score": -1}]}
    assert wire.rerank_scores(ranked, 2, "rerank") == [-1.0, 0.9]
    with pytest.raises(RemoteRequestError, match="malformed"):
        wire.rerank_scores({"oops": 1}, 1, "rerank")


@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    (500, {"error": {"message": "boom"}}, wire.EngineDown, "answered HTTP 500 (boom)"),
    (502, "Bad Gateway", wire.EngineDown, "answered HTTP 502 (Bad Gateway)"),
    (401, {"error": "unauthorized"}, RemoteRequestError, "set the right key in $K"),
    (404, {"detail": "Not Found"}, RemoteRequestError, "has no /v1/rerank (HTTP 404)"),
    (501, {"error": {"message": "no"}}, RemoteRequestError, "start it with --reranking"),
    (422, {"detail": "bad top_n"}, RemoteRequestError, "(HTTP 422): bad top_n"),
])
def test_http_statuses_map_to_failures_or_typed_errors(status: int, body: object,
                                                      kind: type, text: str) -> None:
    error = wire.status_error(status, body, role="rerank", url="http://h", path="/v1/rerank",
                              key_env="K")
    assert isinstance(error, kind) and text in str(error)
    setup = wire.status_error(403, {}, role="chat", url="http://h", path="/v1/models",
                              key_env=None, setup=True)
    assert isinstance(setup, RemoteSetupError) and "set api_key_env" in str(setup)
