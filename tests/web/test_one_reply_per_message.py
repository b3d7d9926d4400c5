"""One reply per customer message, also with several server processes on one database.

QA on PostgreSQL with two server processes: a retried send (same ``client_message_id``) that reached
the other process was answered by both, and restarting one process marked the other's replies in
progress as failed and answered those messages again. Each "process" here is a manager with its own
engine over the same database; the NLU and the generator are the web tests' scripted stand-ins (what
is tested is the database's part).
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import sqlalchemy as sa
from web_fakes import FakeKnowledge, FakeNLU, ScriptedGenerator

from bot.conversation.manager import ConversationManager
from bot.db.engine import Database
from bot.db.migrate import upgrade
from bot.db.models import Message
from bot.db.repositories import ConversationRepository, MessageRepository
from bot.services import Services, set_runtime_services
from bot.settings import Settings

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _process(url: str, tmp_path, delay: float = 0.0) -> ConversationManager:
    settings = Settings(env="test", data_dir=tmp_path, database_url=url)
    services = Services(settings, db=Database(url), knowledge=FakeKnowledge(), nlu=FakeNLU(),
                        generator=ScriptedGenerator(delay=delay))
    set_runtime_services(services)  # what the rasa-sdk actions run with (one per real process)
    return ConversationManager(services)


def _url(backend, request, tmp_path) -> str:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'one.db'}"
    upgrade(url)
    return url


def _replies(manager: ConversationManager, message_id: int) -> list[str]:
    with manager.db.unit_of_work() as session:
        return list(session.scalars(sa.select(Message.status).where(Message.reply_to_id == message_id)
                                    .order_by(Message.seq)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reply_being_written_elsewhere_is_not_written_twice(backend, request, tmp_path):
    manager = _process(_url(backend, request, tmp_path), tmp_path)
    try:
        conv, message = manager.receive_from_sender("rest", "alice", "Where is my parcel?")
        with manager.db.unit_of_work() as session:  # another process started the reply a moment ago
            row = ConversationRepository(session).get(conv.id, for_update=True)
            MessageRepository(session).append(row, role="bot", text="", status="pending", reply_to_id=message.id)
        assert asyncio.run(manager.respond(conv.id, message.id)) is None
        assert _replies(manager, message.id) == ["pending"]
        # a restart within the grace period leaves it to its writer, and does not answer the message
        assert message.id not in {m for _, m in manager.recover_interrupted(older_than_s=90)}
        assert _replies(manager, message.id) == ["pending"]
        # past it, the writer is taken to be gone: the reply is failed and the message answered once
        assert message.id in {m for _, m in manager.recover_interrupted(older_than_s=0)}
        outcome = asyncio.run(manager.respond(conv.id, message.id))
        assert outcome is not None and _replies(manager, message.id) == ["failed", "complete"]
        again = asyncio.run(manager.respond(conv.id, message.id))  # a retried send: the same reply
        assert again.message_id == outcome.message_id and _replies(manager, message.id) == ["failed", "complete"]
    finally:
        set_runtime_services(None)
        manager.services.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_answering_one_message_write_one_reply(backend, request, tmp_path):
    url = _url(backend, request, tmp_path)
    a, b = _process(url, tmp_path, delay=0.01), _process(url, tmp_path, delay=0.01)
    try:
        conv, message = a.receive_from_sender("rest", "bob", "How do I return a lamp?")
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def answer(manager: ConversationManager) -> None:
            barrier.wait()
            outcomes.append(asyncio.run(manager.respond(conv.id, message.id)))

        threads = [threading.Thread(target=answer, args=(m,)) for m in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert _replies(a, message.id) == ["complete"], _replies(a, message.id)
        assert len(outcomes) == 2  # one wrote it; the other found it being written (None) or written
    finally:
        set_runtime_services(None)
        a.services.close()
        b.services.close()


@pytest.mark.postgres
def test_restart_recovery_looks_again_once_the_grace_period_is_over(request, tmp_path, monkeypatch):
    # the server's recovery task (bot/web/app.py): on PostgreSQL a reply too young to judge at start-up is
    # left to its writer, and recovered by a second pass when it is still unfinished after the grace period
    from types import SimpleNamespace

    from bot.web import app as web_app

    manager = _process(_url("postgres", request, tmp_path), tmp_path)
    try:
        conv, message = manager.receive_from_sender("rest", "carol", "Where is my parcel?")
        with manager.db.unit_of_work() as session:  # a reply another process started, then died writing
            row = ConversationRepository(session).get(conv.id, for_update=True)
            MessageRepository(session).append(row, role="bot", text="", status="pending", reply_to_id=message.id)
        monkeypatch.setattr(web_app, "recovery_grace_s", lambda services: 1.0)  # (the real one: 90 s and more)
        passes: list[float] = []
        real = manager.recover_interrupted

        def counted(older_than_s: float):
            passes.append(older_than_s)
            found = real(older_than_s=older_than_s)
            if len(passes) == 1:  # the first pass, at start-up: too young to judge
                assert found == [] and _replies(manager, message.id) == ["pending"]
            return found

        monkeypatch.setattr(manager, "recover_interrupted", counted)
        asyncio.run(web_app._recover(SimpleNamespace(state=SimpleNamespace()), manager))
        assert passes == [1.0, 1.0]
        assert _replies(manager, message.id) == ["failed", "complete"]  # answered once, by the second pass
    finally:
        set_runtime_services(None)
        manager.services.close()
