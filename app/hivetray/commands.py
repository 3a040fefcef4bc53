"""The instance socket's commands: JSON requests in, the instance's plain methods called,
JSON results out.

Why a separate adapter: :class:`~hivetray.instance.Instance` is the app's API (the desktop, the
daemon, the self-test and the CLI's private pool call its methods with typed arguments); this
module is only the wire. Every field a client sends is checked here (a wrong type is a one-line
``InvalidRequest``, never a bug), and every reply is plain JSON. The local HTTP API
(``hivetray.api``) is a second adapter over the same methods.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from hivetray import ROLES
from hivetray.chatparams import check_chat_params
from hivetray.errors import InvalidImage, InvalidRequest, PayloadTooLarge
from hivetray.images import ChatImage, sniff_image_type
from hivetray.pool.events import Event
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.workers.spec import MAX_PAYLOAD_BYTES

Reply = Callable[[dict[str, Any]], Awaitable[None]]
Command = Callable[["Commands", dict[str, Any], Reply], Awaitable[Any]]


class InstanceApi(Protocol):
    """What the wire needs of :class:`hivetray.instance.Instance` (its plain methods)."""

    @property
    def pid(self) -> int: ...

    def status(self) -> PoolStatus: ...

    def chat(self, params: dict[str, Any], images: list[ChatImage] | None = None
             ) -> AsyncIterator[dict[str, Any]]: ...

    async def embed(self, texts: list[str], *, normalize: bool = True) -> dict[str, Any]: ...

    async def rerank(self, query: str, documents: list[str],
                     top_n: int | None = None) -> dict[str, Any]: ...

    def retry(self, role: str) -> RoleStatus: ...

    async def restart(self, role: str) -> RoleStatus: ...

    async def stop(self, role: str) -> RoleStatus: ...

    def events(self, limit: int | None = None, role: str | None = None) -> list[Event]: ...

    def reload_config(self) -> list[str]: ...

    async def quit(self) -> None: ...

    def toggle_chat(self) -> None: ...

    def show_status(self) -> bool: ...


def chat_params(prompt: str, max_tokens: int | None = None,
                sampling: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``params`` of a one-turn chat request; ``sampling`` overrides the role's defaults
    (unset ones, ``None``, are left out so the defaults apply)."""
    params: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
    if max_tokens:
        params["max_tokens"] = max_tokens
    params.update({key: value for key, value in (sampling or {}).items() if value is not None})
    return params


def wire_image(name: str, data: bytes) -> dict[str, Any]:
    """An image as it travels in a JSON request (the ``images`` list of ``chat``)."""
    return {"name": name, "data_b64": base64.b64encode(data).decode("ascii")}


def decode_images(raw: Any) -> list[ChatImage]:
    """Wire images → :class:`ChatImage`; refuse oversized and non-image data at once, naming
    the file, before any worker is involved (the worker decodes them fully)."""
    if not raw:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'images' must be a list")
    images: list[ChatImage] = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest("each image must be an object with 'name' and 'data_b64'")
        name = str(item.get("name") or f"image {n + 1}")
        encoded = item.get("data_b64") or ""
        if not isinstance(encoded, str):
            raise InvalidImage(name, "'data_b64' must be base64 text")
        try:
            data = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise InvalidImage(name, "the image data is not valid base64") from None
        images.append(check_image(name, data))
    return images


def check_image(name: str, data: bytes) -> ChatImage:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(len(data), MAX_PAYLOAD_BYTES)
    if sniff_image_type(data) is None:
        kind = "it is empty" if not data else "its content is not PNG, JPEG, WebP, GIF or BMP"
        raise InvalidImage(name, kind)
    return ChatImage(name, data)


def _strings(value: Any, problem: str) -> list[str]:
    """A non-empty list of strings from a request, or InvalidRequest saying what is wanted."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(problem)
    return value


def _whole(value: Any, name: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidRequest(f"'{name}' must be a whole number")
    return value


def _role(value: Any) -> str:
    if value not in ROLES:
        raise InvalidRequest(f"unknown role {value!r}; roles are {', '.join(ROLES)}")
    return str(value)


class Commands:
    """``handle(request, reply)``: the socket's handler for one instance."""

    def __init__(self, instance: InstanceApi) -> None:
        self.instance = instance

    async def handle(self, request: dict[str, Any], reply: Reply) -> Any:
        name = request.get("cmd")
        command = COMMANDS.get(name) if isinstance(name, str) else None
        if command is None:
            raise InvalidRequest(f"unknown command {name!r}")
        return await command(self, request, reply)

    async def ping(self, request: dict[str, Any], reply: Reply) -> Any:
        return {"pid": self.instance.pid}

    async def status(self, request: dict[str, Any], reply: Reply) -> Any:
        return self.instance.status().to_dict()

    async def chat(self, request: dict[str, Any], reply: Reply) -> Any:
        """Stream a reply; a request with ``images`` goes to the vision worker."""
        raw = request.get("params")
        if not isinstance(raw, dict):
            raise InvalidRequest("chat needs 'params': an object with 'messages'")
        params: dict[str, Any] = dict(raw)
        images = decode_images(request.get("images") or params.pop("images", None))
        check_chat_params(params)
        async for chunk in self.instance.chat(params, images):
            if chunk.get("done"):
                return {k: v for k, v in chunk.items() if k != "done"}
            await reply(chunk)
        return None

    async def embed(self, request: dict[str, Any], reply: Reply) -> Any:
        """``{"texts": [...]}`` → ``{"embeddings": [[...], ...], "truncated": [...]}``."""
        texts = _strings(request.get("texts"), "embed needs 'texts': a non-empty list of "
                                               "strings")
        return await self.instance.embed(texts, normalize=bool(request.get("normalize", True)))

    async def rerank(self, request: dict[str, Any], reply: Reply) -> Any:
        """``{"query", "documents", "top_n"?}`` → results sorted by score, best first."""
        query = request.get("query")
        if not isinstance(query, str):
            raise InvalidRequest("rerank needs 'query': a string")
        documents = _strings(request.get("documents"), "rerank needs 'documents': a non-empty "
                                                       "list of strings")
        return await self.instance.rerank(query, documents, _whole(request.get("top_n"), "top_n"))

    async def retry(self, request: dict[str, Any], reply: Reply) -> Any:
        return self.instance.retry(_role(request.get("role"))).to_dict()

    async def restart(self, request: dict[str, Any], reply: Reply) -> Any:
        return (await self.instance.restart(_role(request.get("role")))).to_dict()

    async def stop(self, request: dict[str, Any], reply: Reply) -> Any:
        return (await self.instance.stop(_role(request.get("role")))).to_dict()

    async def events(self, request: dict[str, Any], reply: Reply) -> Any:
        limit = _whole(request.get("limit"), "limit") or 200
        role = request.get("role")
        events = self.instance.events(limit, _role(role) if role is not None else None)
        return [event.to_dict() for event in events]

    async def reload(self, request: dict[str, Any], reply: Reply) -> Any:
        """Re-read config.toml (after ``hivetray models set`` or a hand edit) and apply it."""
        return {"warnings": self.instance.reload_config()}

    async def quit(self, request: dict[str, Any], reply: Reply) -> Any:
        """Stop every worker, then answer; the process exits right after."""
        await self.instance.quit()
        return {"stopped": True}

    async def toggle_chat(self, request: dict[str, Any], reply: Reply) -> Any:
        self.instance.toggle_chat()
        return {"toggled": True}

    async def show(self, request: dict[str, Any], reply: Reply) -> Any:
        shown = self.instance.show_status()
        return {"shown": True} if shown else {"shown": False,
                                              "reason": "headless instance (hivetray daemon)"}


COMMANDS: dict[str, Command] = {
    "ping": Commands.ping, "status": Commands.status, "chat": Commands.chat,
    "embed": Commands.embed, "rerank": Commands.rerank, "retry": Commands.retry,
    "restart": Commands.restart, "stop": Commands.stop, "events": Commands.events,
    "reload": Commands.reload, "quit": Commands.quit, "toggle-chat": Commands.toggle_chat,
    "show": Commands.show,
}
