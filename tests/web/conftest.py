"""Fixtures for the web layer: the real app over SQLite with fake models, served by real uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_fakes import ServerThread, SSEReader, build_app, build_services  # noqa: E402


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory) -> Iterator[ServerThread]:
    """One real server per test module (actions read the process-wide services it registers)."""
    services = build_services(tmp_path_factory.mktemp("web"), delay=0.02)
    app = build_app(services)
    with ServerThread(app) as server:
        server.app, server.services = app, services
        yield server
    services.close()


@pytest.fixture
def client(chat_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chat_server.url, timeout=20) as c:
        yield c


@pytest.fixture
def sse(chat_server):
    readers: list[SSEReader] = []

    def open_stream(conversation_id: str, headers: dict[str, str] | None = None, **params: Any) -> SSEReader:
        reader = SSEReader(f"{chat_server.url}/api/conversations/{conversation_id}/events", headers, params)
        reader.start()
        assert reader.ready.wait(10), "the event stream did not become ready"
        readers.append(reader)
        return reader

    yield open_stream
    for r in readers:
        r.stop()
