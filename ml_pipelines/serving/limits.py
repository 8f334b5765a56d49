"""The request body size limit (`serving.max_body_bytes`), as ASGI middleware in front
of the service: a body over the limit is answered 413 before anything parses it,
whether it declares its Content-Length or streams in chunks. And the count of requests
a process is handling (`CountRequests`), which tells the service whether one is alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ml_pipelines.serving.http import send_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"request body is {declared} bytes; at most {self.max_bytes}")
            return
        # read the whole body (at most max_bytes of it) before the app sees any
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, f"request body is over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send, message: str) -> None:
        # connection: close, as the rest of the body is never read
        await send_error(send, 413, f"{message} (serving.max_body_bytes)", [(b"connection", b"close")])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body over once, then waits on the client (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class RequestsInFlight:
    """How many HTTP requests this process is handling now: from the moment CountRequests, our
    outermost middleware, sees one (before its body is read) until its answer is sent."""

    def __init__(self) -> None:
        self.count = 0


class CountRequests:
    def __init__(self, app: ASGIApp, requests: RequestsInFlight):
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.requests.count -= 1
