"""The service's HTTP edges, as ASGI middleware (public API: Service.add_asgi_middleware):

- `ApiKeyAuth`: /predict and /feedback need `Authorization: Bearer <key>` when API keys are
  configured; a 401 says what is wrong (no key, not a Bearer header, a key that is not valid).
- `ErrorEnvelope`: every 4xx answers one JSON shape, `{"error": {"status": 400, "message": "..."}}`,
  whoever made it (our checks, BentoML's request parsing, an unknown route).
- `OpenAPIDocument`: /docs.json names the pipeline and the model version in `info`, declares the
  API key as a Bearer security scheme and the error shape of every 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_SCHEME = "apiKey"
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status"},
                "message": {"type": "string", "description": "what is wrong; names records[i].field where one is"},
            },
        }
    },
}
ERROR_STATUSES = {400: "bad request", 401: "missing or invalid API key", 404: "unknown request id or record",
                  409: "a label that contradicts one kept, or feedback without the audit trail",
                  413: "too many records or body too large"}


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"status": status, "message": message}}).encode()


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error_body(status, message)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *headers],
    })
    await send({"type": "http.response.body", "body": body})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_api_key(header: str, api_keys: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(key id, None) for `Bearer <a configured key>`; (None, what is wrong) otherwise."""
    if not header.strip():
        return None, "no API key: send `Authorization: Bearer <key>`"
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None, "the Authorization header is not `Bearer <key>`"
    digest = hash_key(key.strip())
    for key_id, expected in api_keys.items():
        if hmac.compare_digest(digest, expected):
            return key_id, None
    return None, "the API key is not valid"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, api_keys: Mapping[str, str], paths: frozenset[str]):
        self.app = app
        self.api_keys = api_keys
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.api_keys and scope.get("path") in self.paths:
            _, problem = check_api_key(_header(scope, b"authorization"), self.api_keys)
            if problem is not None:
                await send_error(send, 401, problem, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class _Buffered:
    """Holds back a response whose start `wanted(start)` accepts until its body is complete,
    then sends `rewrite(status, body)` instead; other responses pass through."""

    def __init__(self, send: Send, wanted: Callable[[Message], bool], rewrite: Callable[[int, bytes], bytes]):
        self.send, self.wanted, self.rewrite = send, wanted, rewrite
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.wanted(message):
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = self.rewrite(self.start["status"], b"".join(self.chunks))
        headers = [(k, v) for k, v in self.start.get("headers", ())
                   if k.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


class ErrorEnvelope:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Buffered(send, lambda start: 400 <= start["status"] < 500, enveloped))


def enveloped(status: int, body: bytes) -> bytes:
    """Any 4xx body in the one error shape: ours as it is; BentoML's `[{"error": m}]`,
    `{"error": m, "detail": [pydantic errors]}` and plain text turned into it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return body
    message = _message(data) or body.decode("utf-8", "replace").strip() or HTTPStatus(status).phrase
    return error_body(status, message)


def _message(data: Any) -> str | None:
    if isinstance(data, list):
        return "; ".join(str(item.get("error", item)) if isinstance(item, dict) else str(item) for item in data)
    if not isinstance(data, dict):
        return None
    details = data.get("detail")
    if isinstance(details, list) and details:
        return "; ".join(_detail(d) for d in details)
    return str(data["error"]) if "error" in data else None


def _detail(detail: Any) -> str:
    """One of BentoML's pydantic errors about the request body: `records: field is missing`."""
    if not isinstance(detail, dict):
        return str(detail)
    where = ".".join(str(part) for part in detail.get("loc", ()))
    text = "field is missing" if detail.get("type") == "missing" else str(detail.get("msg", detail))
    return f"{where}: {text}" if where else text


class OpenAPIDocument:
    """Rewrites BentoML's /docs.json with `document(spec)`."""

    def __init__(self, app: ASGIApp, document: Callable[[dict[str, Any]], dict[str, Any]]):
        self.app = app
        self.document = document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/docs.json":
            await self.app(scope, receive, send)
            return

        def rewrite(status: int, body: bytes) -> bytes:
            return json.dumps(self.document(json.loads(body))).encode()

        await self.app(scope, receive, _Buffered(send, lambda start: start["status"] == 200, rewrite))


def service_document(
    spec: dict[str, Any], *, title: str, version: str, description: str, protected: Mapping[str, tuple[int, ...]],
    auth: bool,
) -> dict[str, Any]:
    """`info`, the Bearer security scheme (required on the protected routes when keys are
    configured) and the error shape of their 4xx answers (protected: route -> its 4xx statuses)."""
    spec["info"] = {"title": title, "version": version, "description": description}
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "http", "scheme": "bearer",
        "description": "an API key from ML_PIPELINES_API_KEYS" + ("" if auth else " (this service runs without keys)"),
    }}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, statuses in protected.items():
        operation = spec.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        if auth:
            operation["security"] = [{SECURITY_SCHEME: []}]
        responses = {k: v for k, v in operation.get("responses", {}).items() if not str(k).startswith("4")}
        operation["responses"] = {**responses, **{
            str(status): {"description": ERROR_STATUSES[status], **error} for status in statuses
            if status != 401 or auth
        }}
    return spec
