"""Console fixtures: the real app, database and KnowledgeStore on a temporary SQLite file.

The embedding model is a hashing bag-of-words fake (the real one is exercised by the knowledge
tests); no NLU or model is ever loaded: the generator is models.generation's ScriptedGenerator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hashing_embedding import HashingEmbedding

PASSWORD = "correct horse battery"


class RecordingHub:
    """Stands in for the live hub: remembers what was published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, conversation_id: str, event: dict[str, Any]) -> int:
        self.events.append((conversation_id, event))
        return 0


@dataclass
class Console:
    app: Any
    services: Any
    hub: RecordingHub
    users: dict[str, int]
    tmp: Path

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver")


def make_services(url: str, tmp: Path):
    from bot.db.engine import Database
    from bot.db.models import BotBase
    from bot.services import Services
    from bot.settings import Settings
    from knowledge.db import KnowledgeBase
    from knowledge.service import KnowledgeService
    from models.generation import ScriptedGenerator

    settings = Settings(data_dir=tmp, env="test", database_url=url)
    db = Database(url)
    BotBase.metadata.create_all(db.engine)
    KnowledgeBase.metadata.create_all(db.engine)
    knowledge = KnowledgeService(db.engine, index_dir=tmp / "index", embed_model=HashingEmbedding(128, "hashing-test-embedding"))
    # the KB editor's "test a question" writes replies: a scripted generator stands in for the model
    return Services(settings, db=db, knowledge=knowledge, nlu=object(), generator=ScriptedGenerator())


def build_console(url: str, tmp: Path) -> Console:
    from bot.cli_users import add_user
    from bot.web.app import create_app

    services = make_services(url, tmp)
    users = {}
    with services.db.unit_of_work() as session:
        for name, role in (("agent", "agent"), ("agent2", "agent"), ("editor", "editor"), ("admin", "admin")):
            users[name] = add_user(session, f"{name}@larkspur.example", role, PASSWORD, name.capitalize()).id
    app = create_app(services.settings, services, recover=False)
    hub = RecordingHub()
    app.state.live = hub
    return Console(app, services, hub, users, tmp)


@pytest.fixture
def console(tmp_path: Path) -> Console:
    c = build_console(f"sqlite:///{tmp_path / 'console.db'}", tmp_path)
    yield c
    c.services.close()


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(client: TestClient, who: str, password: str = PASSWORD) -> str:
    """Sign in as ``who`` and return the session's CSRF token."""
    page = client.get("/console/login")
    r = client.post("/console/login", data={"email": f"{who}@larkspur.example", "password": password,
                                            "csrf_token": csrf_from(page.text), "next": "/console"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    home = client.get("/console/analytics")
    assert home.status_code == 200
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', home.text).group(1)


def seed_conversation(services: Any, *, created_at: datetime | None = None, customer: str = "Where is my order?",
                      intent: str = "track_order", tone: str = "neutral", reply: str = "It is on its way.",
                      adapter: str | None = "larkspur-v1", out_of_scope: bool = False, mode: str = "bot",
                      handoff_reason: str | None = None, thumbs: int | None = None,
                      citations: list[dict[str, Any]] | None = None, latency_ms: float = 420.0) -> tuple[str, int]:
    """A stored conversation (customer message + bot reply); returns (conversation id, bot message id)."""
    import uuid

    from bot.db.models import Conversation, Feedback, Message

    created_at = created_at or datetime.now(UTC) - timedelta(minutes=5)
    with services.db.unit_of_work() as session:
        conv = Conversation(id=uuid.uuid4().hex, token_hash="x" * 64, state={}, mode=mode,
                            handoff_reason=handoff_reason, created_at=created_at, message_count=2,
                            last_message_at=created_at)
        session.add(conv)
        session.flush()
        m1 = Message(conversation_id=conv.id, seq=1, role="customer", text=customer, status="complete",
                     intent="out_of_scope" if out_of_scope else intent, intent_confidence=0.91, tone=tone,
                     out_of_scope=out_of_scope, created_at=created_at)
        session.add(m1)
        session.flush()
        m2 = Message(conversation_id=conv.id, seq=2, role="bot", text=reply, status="complete", reply_to_id=m1.id,
                     intent=m1.intent, tone=tone, adapter_id=adapter, guardrail_verdict="grounded",
                     latency_ms=latency_ms, citations=citations or [], created_at=created_at + timedelta(seconds=1))
        session.add(m2)
        session.flush()
        if thumbs is not None:
            session.add(Feedback(message_id=m2.id, conversation_id=conv.id, rating=thumbs))
        return conv.id, m2.id
