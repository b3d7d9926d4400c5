"""ASGI middleware that refuses oversized bodies before they are read into memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the KB editor's forms carry whole policy documents (up to 500,000 characters, form-encoded): they
#: may be this large when they come with a console session cookie; everything else keeps the app's limit
KB_EDITOR_PREFIX = "/console/kb"
KB_EDITOR_MAX_BYTES = 4 * 1024 * 1024
SESSION_COOKIE = b"hd_session="  # bot.web.auth.SESSION_COOKIE


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: path prefix -> a larger limit for it
        self.larger = {KB_EDITOR_PREFIX: max(max_bytes, KB_EDITOR_MAX_BYTES)} if larger is None else larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = scope.get("headers", [])
        # (only for a signed-in editor's browser: an anonymous request is refused at the usual size)
        signed_in = any(name == b"cookie" and SESSION_COOKIE in value for name, value in headers)
        limit = next((n for prefix, n in self.larger.items() if signed_in and path.startswith(prefix)),
                     self.max_bytes)
        html = any(name == b"accept" and b"text/html" in value for name, value in headers)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(send, limit, html)
                    return
        received = 0
        too_large = False  # the body went over the limit while the app was reading it
        rejected = started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            # The app may catch _TooLarge while parsing the body (FastAPI answers 400 "There was an
            # error parsing the body"): its response is replaced by the 413.
            nonlocal rejected, started
            if too_large and not started:
                if not rejected:
                    rejected = True
                    await self._reject(send, limit, html)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not rejected and not started:
                rejected = True
                await self._reject(send, limit, html)

    @staticmethod
    async def _reject(send: Send, limit: int, html: bool = False) -> None:
        message = f"The request is larger than {limit} bytes; send a shorter one."
        if html:  # a browser form (the KB editor): a page to go back from, not raw JSON
            body = ("<!doctype html><meta charset=utf-8><title>Too large</title>"
                    f"<p>{message} Nothing was saved.</p><p><a href=\"javascript:history.back()\">Go back</a> "
                    "(your browser keeps what you typed).</p>").encode()
            kind = b"text/html; charset=utf-8"
        else:
            body = json.dumps({"error": {"code": "too_large", "message": message}}).encode()
            kind = b"application/json"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


#: a year: a browser that once reached the server over HTTPS never uses plain HTTP for it again
HSTS = b"max-age=31536000"


class NoSniff:
    """``X-Content-Type-Options: nosniff`` on every HTTP response (JSON, the widget script, pages):
    a browser never runs a response as a type other than the one declared. A response sent over
    HTTPS (directly, or behind a trusted proxy: ``HYBRIDESK_FORWARDED_ALLOW_IPS``) also carries
    ``Strict-Transport-Security``; over plain HTTP it would mean nothing and is not sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        https = scope.get("scheme") == "https"
        # what a signed-in agent's browser fetched (messages.json, waiting.json, analytics.csv, an export) is
        # not kept in its cache, as the console's pages are not (security QA); its own static files may be
        private = str(scope.get("path", "")).startswith("/console/")

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                if private and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                if https and not any(name.lower() == b"strict-transport-security" for name, _ in headers):
                    headers.append((b"strict-transport-security", HSTS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)
