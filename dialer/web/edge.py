"""The API's edge against text that is not Unicode: a JSON body carrying a lone surrogate
(`"\\ud800"`, legal JSON, not encodable as UTF-8) is refused with a 422 naming the field,
before any endpoint, the database or the error page trips over it with a 500."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A \uD800-\uDFFF escape: only such a body can decode to a lone surrogate. Pairs (an emoji
# written escaped) match too and pass the full check below.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate_at(
    value: object, where: tuple[str | int, ...] = ()
) -> tuple[str | int, ...] | None:
    """The path of the first string (key or value) in decoded JSON that holds a lone
    surrogate, or None when all of it is Unicode."""
    if isinstance(value, str):
        return None if _is_unicode(value) else where
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate_at(item, (*where, index))
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _is_unicode(key):
                return (*where, key.encode("utf-8", "backslashreplace").decode("ascii"))
            found = lone_surrogate_at(item, (*where, key))
            if found is not None:
                return found
    return None


class RefuseLoneSurrogates:
    """ASGI middleware: reads a JSON request body whole (the API's bodies are small), refuses
    it when it holds a lone surrogate, else hands the same bytes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before the body was complete; nothing to check.
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        where = _check(body)
        if where is not None:
            await _refuse(send, where)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def _check(body: bytes) -> tuple[str | int, ...] | None:
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        decoded = json.loads(body)
    except ValueError:
        return None  # not JSON at all: the endpoint's own 422 says so
    return lone_surrogate_at(decoded)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replayed


async def _refuse(send: Send, where: tuple[str | int, ...]) -> None:
    # FastAPI's own shape for a bad field, so the pages show it like any other.
    field = ".".join(str(part) for part in where) or "(body)"
    payload = json.dumps(
        {
            "detail": [
                {
                    "type": "unicode",
                    "loc": ["body", *where],
                    "msg": f"{field}: the text is not valid Unicode (a lone surrogate)",
                }
            ]
        }
    ).encode("ascii")
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
