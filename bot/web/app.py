"""The FastAPI app factory (no app, engine or model is built at import time)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from bot.settings import Settings, get_settings

log = logging.getLogger(__name__)

ROUTERS = ["bot.web.routes_chat", "bot.web.routes_console", "bot.web.routes_kb"]


def create_app(settings: Settings | None = None, services: Any | None = None, *,
               warm_up: bool = False, recover: bool = True) -> FastAPI:
    """Build the app. ``services`` defaults to a lazily loading container over ``settings``."""
    import importlib

    from bot.conversation.manager import ConversationManager
    from bot.services import Services, set_runtime_services
    from bot.web import routes_rasa
    from bot.web.errors import install_error_handlers
    from bot.web.limits import BodySizeLimit, NoSniff

    settings = settings or get_settings()
    settings.check_secrets()
    services = services or Services(settings)
    manager = ConversationManager(services)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from bot.server import install_log_redaction

        install_log_redaction()
        set_runtime_services(services)
        if warm_up:
            await asyncio.to_thread(services.warm_up)
        if recover:
            app.state.recovery = asyncio.create_task(_recover(app, manager))
        yield
        recovery = getattr(app.state, "recovery", None)
        if recovery is not None and not recovery.done():
            recovery.cancel()  # (on PostgreSQL it may still be waiting out its grace period)
        set_runtime_services(None)
        generator = services.__dict__.get("generator")  # only if it was ever built
        if generator is not None and hasattr(generator, "close"):
            await asyncio.to_thread(generator.close)  # the batching worker: pending replies fail cleanly
        hub = getattr(app.state, "live", None)
        if hub is not None and hasattr(hub, "close"):
            await asyncio.to_thread(hub.close)  # the PostgreSQL live channel's threads

    # /docs is served with Swagger UI's files from the swagger-ui-py package, not from a CDN: it
    # works offline and behind a firewall; ReDoc (CDN only) is not offered
    app = FastAPI(title="hybridesk", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Customer-support chat API: streamed, grounded answers with sources.")
    _install_docs(app)
    app.state.settings = settings
    app.state.services = services
    app.state.manager = manager
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(NoSniff)
    app.include_router(routes_rasa.router)
    for module_name in ROUTERS:
        importlib.import_module(module_name).install(app)

    @app.get("/healthz", tags=["ops"], summary="liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


DOCS_ASSETS = "/docs/assets"


def _install_docs(app: FastAPI) -> None:
    """The interactive API docs at /docs, every file they load served by this app."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    # Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes), as shipped inside swagger-ui-py
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("swagger_ui") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="hybridesk API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")
        # only this app's files: the page's one inline script starts Swagger UI
        page.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
        return page


def recovery_grace_s(services: Any) -> float:
    """How old a half-written reply must be to count as a crash's. SQLite: any (one server process
    owns the file). PostgreSQL: older than the longest a reply takes, since another server process on
    the same database may be writing it right now (QA: a restart of one process re-answered messages
    the other was still answering)."""
    if services.db.is_sqlite:
        return 0.0
    return float(services.settings.generation_timeout_s) + 30.0


async def _recover(app: FastAPI, manager: Any) -> None:
    """Answer customer messages left unanswered by a crash (half-written replies are marked failed).

    On PostgreSQL a second pass runs once the grace period is over, for the replies that were too
    young to judge at start-up."""
    grace = recovery_grace_s(manager.services)
    for attempt in range(2 if grace else 1):
        if attempt:
            await asyncio.sleep(grace)
        try:
            todo = await asyncio.to_thread(manager.recover_interrupted, older_than_s=grace)
            try:
                from bot.web.routes_chat import reply_in_background
            except ImportError:  # pragma: no cover - the chat API is always installed
                reply_in_background = None
            for conversation_id, message_id in todo:
                if reply_in_background is not None and hasattr(app.state, "live"):
                    await reply_in_background(app, conversation_id, message_id)  # streamed to open widgets
                else:
                    await manager.respond(conversation_id, message_id)
            if todo:
                log.warning("recovered %d unanswered message(s) after a restart", len(todo))
        except Exception:  # recovery must never stop the server
            log.exception("recovery after restart failed")
