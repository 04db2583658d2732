"""A request body over the configured size gets 413 with the JSON error body every 4xx has.

Starlette's own limit (FastAPI's ``max_body_size``) answers 413 in plain text from a
middleware outside the app's exception handlers. :class:`BodyLimit` refuses a declared
``Content-Length`` over the limit before reading a byte, and counts a body sent without one
(chunked) as it arrives: past the limit the app's read fails, and whatever the app then answers
(FastAPI turns a failed read into a 400) is replaced by the 413.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from echoseek.service.images import QueryError


class BodyLimit:
    """ASGI middleware: request bodies of at most ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def refusal(self) -> JSONResponse:
        exc = QueryError(f"body: larger than {self.max_bytes} bytes", 413, "too_large")
        body = {"error": {"code": exc.code, "message": str(exc)}}
        return JSONResponse(body, status_code=exc.status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.refusal()(scope, receive, send)
            return
        seen, refused = 0, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    raise ValueError("request body over the limit")  # ends the app's read
            return message

        async def answer(message: Message) -> None:
            if not refused:
                await send(message)
            elif message["type"] == "http.response.start":  # the app's answer, replaced
                await self.refusal()(scope, receive, send)

        await self.app(scope, counted, answer)
