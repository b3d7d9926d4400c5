"""Fixtures for the web layer: the real app over SQLite with fake models, served by real uvicorn."""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_fakes import ServerThread, build_app, build_services  # noqa: E402


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


def start_conversation(client: httpx.Client) -> tuple[str, dict[str, str]]:
    r = client.post("/api/conversations")
    assert r.status_code == 201, r.text
    body = r.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


class SSEReader(threading.Thread):
    """Reads a Server-Sent Events stream in the background into a queue of (event, data, id)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None):
        super().__init__(daemon=True)
        self.url, self.headers, self.params = url, headers or {}, params or {}
        self.events: queue.Queue = queue.Queue()
        self.status: int | None = None
        self._stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, params=self.params, timeout=30) as resp:
                self._resp = resp
                self.status = resp.status_code
                if resp.status_code != 200:
                    self.ready.set()
                    return
                name, data, ident = "message", [], None
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if data:
                            self.events.put((name, json.loads("\n".join(data)), ident))
                            if name == "ready":
                                self.ready.set()
                        name, data, ident = "message", [], None
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif line.startswith("id:"):
                        ident = line[3:].strip()
        except Exception as exc:  # noqa: BLE001 - surfaced to the test through the queue
            if not self._stop.is_set():
                self.events.put(("_error", repr(exc), None))
            self.ready.set()

    def stop(self) -> None:
        """Drop the connection (as a flaky network would)."""
        self._stop.set()
        resp = getattr(self, "_resp", None)
        if resp is not None:
            with contextlib.suppress(Exception):  # closing from another thread may race the reader
                resp.close()

    def next(self, kind: str | None = None, timeout: float = 10, where=None) -> tuple[str, Any, str | None]:
        """The next event of ``kind`` (skipping others) matching ``where``."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind or 'any'} event within {timeout} s")
            try:
                item = self.events.get(timeout=remaining)
            except queue.Empty as exc:
                raise AssertionError(f"no {kind or 'any'} event within {timeout} s") from exc
            if item[0] == "_error":
                raise AssertionError(f"stream failed: {item[1]}")
            if (kind is None or item[0] == kind) and (where is None or where(item[1])):
                return item


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
