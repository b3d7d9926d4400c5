"""The one place where errors become HTTP responses (no stack traces ever leave the server)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from knowledge.errors import HybrideskError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields  # type: ignore[index]
    return body


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HybrideskError)
    async def _hybridesk(request: Request, exc: HybrideskError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:10]:
            if err.get("type") == "json_invalid":  # loc is ("body", <character offset>)
                where = [p for p in err.get("loc", ()) if isinstance(p, int)]
                reason = str((err.get("ctx") or {}).get("error") or "JSON decode error")[:120]
                problems.append({"field": "body", "problem": f"not valid JSON ({reason}"
                                 + (f" at character {where[0]})" if where else ")")})
                continue
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            sent_as = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if not loc and err.get("type") in ("model_attributes_type", "dict_type") and sent_as != "application/json":
                # FastAPI reads a JSON body only when it is labelled so: a form or text/plain body is not an object
                problems.append({"field": "body", "problem": "expected a JSON object; send it with Content-Type: "
                                 f"application/json (this request says {sent_as or 'no content type'})"})
                continue
            problems.append({"field": loc or "body", "problem": str(err.get("msg", "invalid"))[:200]})
        first = problems[0] if problems else {"field": "body", "problem": "invalid"}
        return JSONResponse(
            error_body("invalid_request", f"Invalid request: {first['field']}: {first['problem']}",
                       problems=problems),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if exc.status_code == 400 and cause is not None:
            # FastAPI could not read the body ("There was an error parsing the body"): say why
            if isinstance(cause, UnicodeDecodeError):
                reason = "the body is not UTF-8 text"
            elif isinstance(cause, RecursionError):
                reason = "nested too deeply"
            else:
                reason = str(cause).split(";")[0][:120] or type(cause).__name__
            problem = f"not valid JSON ({reason})"
            return JSONResponse(error_body("invalid_request", f"Invalid request: body: {problem}",
                                           problems=[{"field": "body", "problem": problem}]), status_code=422)
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 429: "rate_limited"}.get(
            exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    str(getattr(exc, "orig", exc)).splitlines()[0][:200])
        return JSONResponse(error_body("database_unavailable",
                                       "The database is not reachable right now; please retry in a few seconds."),
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "Something went wrong on our side; it has been logged."),
                            status_code=500)
