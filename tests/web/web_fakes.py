"""Fakes for the heavy parts (knowledge, NLU, generator) and a real uvicorn server in a thread.

Web tests check the web layer, so the models are replaced by small deterministic fakes with the
same interfaces; the database, the conversation manager, the rasa-sdk actions and the guardrails
are the real ones. Shared by tests/web, tests/e2e and benchmarks/widget_*.py.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PASSAGES = [
    {
        "keywords": ("return", "refund", "send back"),
        "text": "You can return most items within 30 days of delivery. Start a return from your order page; "
                "we refund the original payment method within 5 working days of receiving the item.",
        "title": "Returns policy", "heading": "Who can return", "anchor": "who-can-return",
        "document_id": "returns-policy", "revision": 3,
    },
    {
        "keywords": ("deliver", "shipping", "ship"),
        "text": "Standard delivery takes 3 to 5 working days and is free on orders over 50 euros.",
        "title": "Delivery options", "heading": "Standard delivery", "anchor": "standard-delivery",
        "document_id": "delivery-options", "revision": 1,
    },
]

DEFAULT_REPLY = ("You can return most items within 30 days of delivery. "
                 "Start the return from your order page and we will refund you within 5 working days.")
DELIVERY_REPLY = "Standard delivery takes 3 to 5 working days. It is free on orders over 50 euros."


class FakeKnowledge:
    """Keyword retrieval over two fixed passages (same return shape as the knowledge service)."""

    def retrieve(self, query: str, at: Any = None, history: Any = None, k: int = 3) -> list[dict[str, Any]]:
        q = query.lower()
        hits = []
        for p in PASSAGES:
            if any(w in q for w in p["keywords"]):
                hits.append({key: v for key, v in p.items() if key != "keywords"} | {"score": 0.9})
        return hits[:k]

    def facts(self, at: Any = None) -> dict[str, Any]:
        return {}

    def get(self, document_id: str, revision: int | None = None) -> Any:
        """A passage's document, as the responder reads it whole for its other sections."""
        from types import SimpleNamespace

        from knowledge.errors import NotFound

        parts = [p for p in PASSAGES if p["document_id"] == document_id]
        if not parts:
            raise NotFound(f"No document {document_id!r}.", code="document_not_found")
        body = "\n\n".join(f"## {p['heading']}\n\n{p['text']}" for p in parts)
        return SimpleNamespace(title=parts[0]["title"], content=f"# {parts[0]['title']}\n\n{body}\n",
                               number=revision or parts[0]["revision"])

    def resolve_placeholder(self, slot: str, at: Any = None) -> None:
        return None


@dataclass(frozen=True)
class FakeTone:
    label: str = "neutral"
    scores: dict[str, float] = field(default_factory=lambda: {"neutral": 1.0})


@dataclass(frozen=True)
class FakePrediction:
    intent: str
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool
    tone: FakeTone
    version: str = "fake-1"


class FakePredictor:
    RULES = (("return", "return_policy"), ("refund", "get_refund"), ("deliver", "delivery_options"),
             ("ship", "delivery_options"), ("person", "contact_human_agent"), ("human", "contact_human_agent"))

    def predict(self, text: str, history: Any = ()) -> FakePrediction:
        low = text.lower()
        for word, intent in self.RULES:
            if word in low:
                return FakePrediction(intent, 0.92, [(intent, 0.92)], False, self._tone(text))
        # anything else is an answerable general question (keeps tests about the web layer simple)
        return FakePrediction("general_question", 0.8, [("general_question", 0.8)], False, self._tone(text))

    @staticmethod
    def _tone(text: str) -> FakeTone:
        return FakeTone("angry", {"angry": 1.0}) if "!!!" in text else FakeTone()


class FakeNLU:
    def __init__(self) -> None:
        self.predictor = FakePredictor()

    def current(self) -> FakePredictor:
        return self.predictor


class ScriptedGenerator:
    """Streams enqueued replies word by word (``delay`` seconds per piece); a default reply otherwise."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.queue: deque[str] = deque()
        self.calls: list[list[dict[str, str]]] = []

    def enqueue(self, *replies: str) -> None:
        self.queue.extend(replies)

    def stream(self, messages: list[dict[str, str]], adapter_id: str | None = None, max_new_tokens: int = 160,
               stats: dict[str, Any] | None = None) -> Iterator[str]:
        self.calls.append(messages)
        if self.queue:
            reply = self.queue.popleft()
        else:
            last = messages[-1]["content"].lower() if messages else ""
            reply = DELIVERY_REPLY if re.search(r"deliver|ship", last) else DEFAULT_REPLY
        pieces = re.findall(r"\S+\s*", reply)
        if stats is not None:
            stats.update(model_id="scripted", adapter_id=adapter_id, prompt_tokens=42, completion_tokens=len(pieces))
        for piece in pieces:
            if self.delay:
                time.sleep(self.delay)
            yield piece


def build_services(data_dir: Path, *, delay: float = 0.0) -> Any:
    """A real Services container over a fresh SQLite file, with the fakes plugged in."""
    from bot.db.engine import Database
    from bot.db.models import BotBase
    from bot.services import Services
    from bot.settings import Settings

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(env="test", data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'web.db'}")
    db = Database(settings.resolved_database_url)
    BotBase.metadata.create_all(db.engine)
    return Services(settings, db=db, knowledge=FakeKnowledge(), nlu=FakeNLU(),
                    generator=ScriptedGenerator(delay=delay))


def build_app(services: Any, *, unlimited: bool = True) -> Any:
    from bot.web.app import create_app
    from bot.web.ratelimit import ChatLimits

    app = create_app(services.settings, services, recover=False)
    if unlimited:
        app.state.chat_limits = ChatLimits.unlimited()
    return app


class ServerThread:
    """A real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose listening socket
        # says so; without it every response waits ~40 ms for a delayed ACK on the plain asyncio loop.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])  # the same event loop choice as `hybridesk serve` (uvloop if present)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class SSEReader(threading.Thread):
    """Reads a Server-Sent Events stream in the background into a queue of (event, data, id)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None):
        super().__init__(daemon=True)
        self.url, self.headers, self.params = url, headers or {}, params or {}
        self.events: queue.Queue = queue.Queue()
        self.status: int | None = None
        self._halt = threading.Event()
        self.ready = threading.Event()
        self.closed = threading.Event()  # the server ended the stream

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
                    if self._halt.is_set():
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
                self.closed.set()
        except Exception as exc:  # noqa: BLE001 - surfaced to the test through the queue
            if not self._halt.is_set():
                self.events.put(("_error", repr(exc), None))
            self.ready.set()

    def stop(self) -> None:
        """Drop the connection (as a flaky network would)."""
        self._halt.set()
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


def start_conversation(client: httpx.Client) -> tuple[str, dict[str, str]]:
    r = client.post("/api/conversations")
    assert r.status_code == 201, r.text
    body = r.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


@contextlib.contextmanager
def chat_limits(app: Any, *, per_ip: tuple[float, float] = (1000, 1000),
                new_conversations: tuple[float, float] = (1000, 1000),
                per_conversation: tuple[float, float] = (1000, 1000)) -> Iterator[None]:
    """The app's chat rate limits set to (capacity, refill per second) for the block, then restored."""
    from bot.web.ratelimit import ChatLimits, RateLimiter

    saved = app.state.chat_limits
    app.state.chat_limits = ChatLimits(per_ip=RateLimiter(*per_ip), new_conversations_per_ip=RateLimiter(*new_conversations),
                                       messages_per_conversation=RateLimiter(*per_conversation))
    try:
        yield
    finally:
        app.state.chat_limits = saved
