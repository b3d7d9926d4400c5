"""`hybridesk serve`: start uvicorn on the app factory, with clear errors for common mistakes."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from bot.settings import Settings
from knowledge.errors import ConfigurationError


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class RedactTokens(logging.Filter):
    """Hide what may travel in a URL's query from uvicorn's access log: secrets (``?token=``) and what
    people typed (a transcript search ``?q=anna@mail.example``, a KB test question; security QA). Only
    parameters that are never personal keep their values (page positions, revision numbers, dates)."""

    _re = re.compile(r"([?&])([^=&\s\"]+)=([^&\s\"]*)")
    KEEP = frozenset({"rev", "after", "page", "done", "limit", "side", "date_from", "date_to", "from", "to",
                      "before", "cursor", "mode", "reason", "only_new", "format", "EIO", "transport"})

    def _redact(self, text: str) -> str:
        return self._re.sub(lambda m: m.group(0) if m.group(2) in self.KEEP or not m.group(3)
                            else f"{m.group(1)}{m.group(2)}=[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self._redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = self._redact(str(record.msg))
        return True


def install_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (unless ``MALLOC_ARENA_MAX`` already does).

    Every thread that allocates while another holds the main arena gets an arena of its own
    (up to 8 per core), and memory freed there is rarely handed back. The server's request,
    generation and encoder threads each leave one behind: measured with `first_reply.py` (20 messages) on
    two cores, the resident memory was 1.89 GiB with glibc's default and 1.72 GiB with two arenas, at
    the same reply latency. Returns whether the cap was set (False off glibc).
    """
    import os

    from models.glibc import M_ARENA_MAX, mallopt

    if "MALLOC_ARENA_MAX" in os.environ:
        return False  # glibc read the operator's own setting at start-up
    return mallopt(M_ARENA_MAX, arenas)


def serve(settings: Settings, *, host: str, port: int, init: bool = False, services: Any = None) -> None:
    import uvicorn

    from bot.services import Services
    from bot.web.app import create_app

    limit_malloc_arenas()
    if not port_free(host, port):
        raise ConfigurationError(
            f"Port {port} on {host} is already in use. Stop the other process or pick another port "
            "with --port or HYBRIDESK_PORT.", code="port_in_use")
    services = services or Services(settings)
    if init:
        from bot.bootstrap import initialise

        initialise(services, train_nlu=True)
    from bot.db.engine import check_connection

    check_connection(services.db.engine)
    # the product's own records at HYBRIDESK_LOG_LEVEL (the CLI's root logger says warnings only): "NLU model
    # ... is active" after `hybridesk nlu activate`, a reply retried after a write conflict
    for name in ("bot", "knowledge", "models"):
        logging.getLogger(name).setLevel(settings.log_level.upper())
    from bot.db.migrate import require_current_schema

    # (an old schema served customers until a request needed what the newer one adds: a 500)
    require_current_schema(services.db.engine)
    started = time.perf_counter()
    app = create_app(settings, services, warm_up=True)
    base = f"http://{host}:{port}"
    print(f"hybridesk is starting on {base} (loading models...)")
    print(f"  demo help page with the chat widget: {base}/")
    print(f"  agent console and KB editor:         {base}/console")
    print(f"  chat API docs (OpenAPI):             {base}/docs")
    guarded = settings.rest_token is not None and bool(settings.rest_token.get_secret_value())
    print(f"  Rasa REST channel:                   {base}/webhooks/rest/webhook"
          + (" (Bearer HYBRIDESK_REST_TOKEN)" if guarded else " (open: any caller may name any sender)"))
    app.state.started_at = started
    # Behind a reverse proxy every request comes from the proxy's address: without its X-Forwarded-For,
    # all customers share one rate-limit bucket and 30 failed sign-ins lock every console user out.
    # Only the configured proxies are believed (anyone else could forge the header).
    trusted = settings.forwarded_allow_ips
    with stop_cleanly(app):
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), proxy_headers=bool(trusted),
                    forwarded_allow_ips=trusted or None, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)


#: how long a stopping server waits for open requests before cancelling them (well under the
#: 10 s docker / 90 s systemd give before SIGKILL)
GRACEFUL_SHUTDOWN_SECONDS = 5


@contextlib.contextmanager
def stop_cleanly(app: Any) -> Iterator[None]:
    """While ``uvicorn.run`` runs: SIGTERM/SIGINT stop the server promptly and ``serve`` returns.

    * The widgets' event streams never end on their own, and uvicorn's graceful shutdown waits for
      every open connection: uvicorn's server is given a ``shutdown`` that first ends those streams
      (the widgets reconnect to the restarted server). Anything else still running after
      ``GRACEFUL_SHUTDOWN_SECONDS`` is cancelled by uvicorn.
    * After a graceful stop uvicorn raises the signal again for the previous handler; for SIGTERM
      that is the default one, which would kill the process (exit status 143 instead of 0). A
      handler that does nothing stands in while uvicorn runs, so a requested stop exits 0.
    """
    import importlib

    import uvicorn.server

    from bot.web.routes_chat import close_event_streams

    main = importlib.import_module("uvicorn.main")  # the module (``uvicorn.main`` is the CLI command)
    base = uvicorn.server.Server

    class Server(base):  # type: ignore[misc, valid-type]
        async def shutdown(self, sockets: Any = None) -> None:
            count = close_event_streams(app)
            if count:
                logging.getLogger("uvicorn.error").info("Closing %d open event stream(s)", count)
            await super().shutdown(sockets)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop_requested)
    patched = getattr(main, "Server", None) is base  # where ``uvicorn.run`` finds it
    if patched:
        main.Server = Server
    try:
        yield
    finally:
        if patched:
            main.Server = base
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_requested(signum: int, frame: Any) -> None:
    """SIGTERM raised again by uvicorn once it has stopped: already handled, nothing left to do."""
