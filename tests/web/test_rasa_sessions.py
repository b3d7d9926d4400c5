"""Rasa channels (REST webhook, Socket.IO): "/restart" and session expiry start a new conversation.

A sender's ended conversation keeps its messages; their next message opens a fresh one (new state,
no old history in the prompt). An idle conversation is ended after HYBRIDESK_SESSION_EXPIRY_MINUTES,
unless a person holds it or is about to answer.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from test_socketio_channel import RasaClient, run
from web_fakes import chat_limits

from bot.db.models import Conversation, Message
from bot.db.repositories import ConversationRepository, MessageRepository
from bot.web import live
from bot.web.routes_chat import greeting_for

URL = "/webhooks/rest/webhook"
RETURN_Q = "How long do I have to return a lamp?"


def say(client: httpx.Client, sender: str, text: str) -> list[dict]:
    r = client.post(URL, json={"sender": sender, "message": text})
    assert r.status_code == 200, r.text
    return r.json()


def conversations_of(chat_server, channel: str, sender: str) -> list[Conversation]:
    """Every conversation of the sender, oldest first."""
    with chat_server.services.db.unit_of_work() as session:
        return list(session.scalars(sa.select(Conversation).where(
            Conversation.channel == channel, Conversation.sender_id == sender).order_by(Conversation.created_at)))


def texts(chat_server, conversation_id: str) -> list[tuple[str, str]]:
    with chat_server.services.db.unit_of_work() as session:
        return [(m.role, m.text) for m in MessageRepository(session).history(conversation_id)]


def update(chat_server, conversation_id: str, **values) -> None:
    with chat_server.services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id)
        for key, value in values.items():
            setattr(conv, key, value)


def idle_for(chat_server, conversation_id: str, minutes: float) -> None:
    """Set the conversation's last activity ``minutes`` back."""
    then = datetime.now(UTC) - timedelta(minutes=minutes)
    update(chat_server, conversation_id, last_message_at=then, created_at=then)


def test_rest_restart_ends_the_conversation_and_the_next_message_starts_a_fresh_one(client, chat_server):
    generator = chat_server.services.generator
    assert say(client, "restart-ann", RETURN_Q)[0]["text"]
    [old] = conversations_of(chat_server, "rest", "restart-ann")
    # old state the new conversation must not inherit: waiting for a person, streaks, history
    update(chat_server, old.id, mode="handoff_requested", handoff_reason="low_confidence_streak",
           state={"turns": 7, "low_confidence_streak": 1, "angry_streak": 1, "unhelpful_replies": 3,
                  "order_lookup_pending": True, "handoff_at": datetime.now(UTC).isoformat()})
    calls = len(generator.calls)

    reply = say(client, "restart-ann", "  /ReStart \n")
    assert reply == [{"recipient_id": "restart-ann", "text": greeting_for(chat_server.services.settings),
                      "custom": {"message_id": None, "sources": [], "intent": None, "tone": None,
                                 "action": "restart", "handoff": False}}]
    assert len(generator.calls) == calls  # not sent to the model
    [ended] = conversations_of(chat_server, "rest", "restart-ann")
    assert ended.status == "ended" and ended.ended_at is not None
    assert [role for role, _ in texts(chat_server, old.id)] == ["customer", "bot"]  # "/restart" is not stored

    answer = say(client, "restart-ann", "And how long does delivery take?")
    assert "3 to 5 working days" in answer[0]["text"]
    old_again, new = conversations_of(chat_server, "rest", "restart-ann")
    assert old_again.id == old.id and old_again.status == "ended"
    assert texts(chat_server, old.id)[0] == ("customer", RETURN_Q)  # the old conversation keeps its messages
    assert new.status == "open" and new.mode == "bot" and new.handoff_reason is None
    # one turn of fresh state
    assert new.state == {"turns": 1, "low_confidence_streak": 0, "angry_streak": 0, "last_intent": "delivery_options"}
    assert [role for role, _ in texts(chat_server, new.id)] == ["customer", "bot"]
    assert RETURN_Q not in str(generator.calls[-1])  # no old history in the prompt


def test_rest_restart_without_a_conversation_only_greets(client, chat_server):
    reply = say(client, "restart-nobody", "/restart")
    assert reply[0]["text"] == greeting_for(chat_server.services.settings)
    assert conversations_of(chat_server, "rest", "restart-nobody") == []


def test_a_sender_whose_conversation_ended_gets_a_new_one(client, chat_server):
    say(client, "ended-bea", RETURN_Q)
    [old] = conversations_of(chat_server, "rest", "ended-bea")
    chat_server.app.state.manager.end(old.id)  # by the widget's end, an agent, anything
    reply = say(client, "ended-bea", "What about delivery?")
    assert "3 to 5 working days" in reply[0]["text"]  # not "This conversation has ended"
    old_again, new = conversations_of(chat_server, "rest", "ended-bea")
    assert (old_again.id, old_again.status, new.status) == (old.id, "ended", "open")
    assert [t for _, t in texts(chat_server, new.id)][0] == "What about delivery?"


def test_an_idle_conversation_expires_and_the_next_message_starts_fresh(client, chat_server):
    say(client, "idle-cleo", RETURN_Q)
    [old] = conversations_of(chat_server, "rest", "idle-cleo")
    update(chat_server, old.id, state={"turns": 9, "unhelpful_replies": 2})
    idle_for(chat_server, old.id, 59)  # within the default 60 minutes: continues
    say(client, "idle-cleo", "And for sofas?")
    assert len(conversations_of(chat_server, "rest", "idle-cleo")) == 1
    idle_for(chat_server, old.id, 61)
    say(client, "idle-cleo", "What about delivery?")
    old_again, new = conversations_of(chat_server, "rest", "idle-cleo")
    assert old_again.status == "ended" and old_again.ended_at is not None
    assert [role for role, _ in texts(chat_server, old.id)] == ["customer", "bot"] * 2
    assert new.status == "open" and new.state["turns"] == 1 and "unhelpful_replies" not in new.state
    assert [t for _, t in texts(chat_server, new.id)][0] == "What about delivery?"


@pytest.mark.parametrize("mode", ["human", "handoff_requested"])
def test_an_idle_conversation_a_person_holds_or_is_about_to_answer_continues(client, chat_server, mode):
    sender = f"held-dan-{mode}"
    say(client, sender, RETURN_Q)
    [conv] = conversations_of(chat_server, "rest", sender)
    update(chat_server, conv.id, mode=mode)
    idle_for(chat_server, conv.id, 24 * 60)
    reply = say(client, sender, "Are you still there?")
    [same] = conversations_of(chat_server, "rest", sender)
    assert same.id == conv.id and same.status == "open" and same.mode == mode
    assert texts(chat_server, conv.id)[-1 if mode == "human" else -2] == ("customer", "Are you still there?")
    if mode == "human":
        assert reply == []  # the agent answers, not the bot


def test_zero_disables_session_expiry(client, chat_server, monkeypatch):
    monkeypatch.setattr(chat_server.services.settings, "session_expiry_minutes", 0)
    say(client, "never-expires", RETURN_Q)
    [conv] = conversations_of(chat_server, "rest", "never-expires")
    idle_for(chat_server, conv.id, 30 * 24 * 60)
    say(client, "never-expires", "What about delivery?")
    [same] = conversations_of(chat_server, "rest", "never-expires")
    assert same.id == conv.id and same.status == "open" and len(texts(chat_server, conv.id)) == 4


@pytest.mark.parametrize("expired", [False, True], ids=["first-contact", "after-expiry"])
def test_concurrent_messages_of_one_sender_open_one_conversation(chat_server, expired):
    sender = f"burst-{expired}"
    if expired:
        with httpx.Client(base_url=chat_server.url, timeout=20) as c:
            say(c, sender, RETURN_Q)
        [old] = conversations_of(chat_server, "rest", sender)
        idle_for(chat_server, old.id, 120)

    def post(i: int) -> int:
        with httpx.Client(base_url=chat_server.url, timeout=30) as c:
            return c.post(URL, json={"sender": sender, "message": f"How do I return item {i}?"}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(post, range(6)))
    assert codes == [200] * 6
    convs = conversations_of(chat_server, "rest", sender)
    open_ = [c for c in convs if c.status == "open"]
    assert len(open_) == 1 and len(convs) == 1 + expired
    stored = sorted(t for role, t in texts(chat_server, open_[0].id) if role == "customer")
    assert stored == sorted(f"How do I return item {i}?" for i in range(6))  # every acknowledged message kept


def test_a_message_racing_a_restart_goes_to_the_new_conversation(chat_server, monkeypatch):
    """A conversation ended between finding it and storing the message is not written to."""
    manager = chat_server.app.state.manager
    conv = manager.by_sender("rest", "race-eve")
    original = manager.receive
    ended: list[str] = []

    def receive_after_a_restart(conversation_id, text, **kwargs):
        if not ended:
            ended.append(conversation_id)
            manager.restart("rest", "race-eve")
        return original(conversation_id, text, **kwargs)

    monkeypatch.setattr(manager, "receive", receive_after_a_restart)
    new, message = manager.receive_from_sender("rest", "race-eve", "Where is my parcel?")
    assert ended == [conv.id] and new.id != conv.id and message.conversation_id == new.id
    assert texts(chat_server, conv.id) == [] and manager.get(conv.id).status == "ended"


def test_bad_input_neither_starts_nor_ends_a_conversation(client, chat_server):
    say(client, "bad-fay", RETURN_Q)
    [conv] = conversations_of(chat_server, "rest", "bad-fay")
    idle_for(chat_server, conv.id, 120)
    r = client.post(URL, json={"sender": "bad-fay", "message": "   "})
    assert r.status_code == 422
    [same] = conversations_of(chat_server, "rest", "bad-fay")
    assert same.status == "open"


def test_socketio_restart_starts_a_fresh_conversation_and_relays_its_agent_messages(chat_server):
    manager = chat_server.app.state.manager

    async def scenario():
        async with RasaClient(chat_server.url, ["websocket"]) as c:
            sid = await c.session("sio-restart-1")
            first = await c.say(RETURN_Q, sid)
            assert "30 days" in first["text"]
            old = await asyncio.to_thread(manager.by_sender, "socketio", sid)
            await asyncio.to_thread(update, chat_server, old.id, state={"turns": 5, "angry_streak": 1})
            greeting = await c.say("/restart", sid)
            assert greeting == {"text": greeting_for(chat_server.services.settings),
                                "metadata": {"role": "bot", "payload": "/restart"}}
            second = await c.say("What about delivery?", sid)
            assert "3 to 5 working days" in second["text"]
            new = await asyncio.to_thread(manager.by_sender, "socketio", sid)
            assert new.id != old.id
            # the session now relays the new conversation's agent messages
            agent = await asyncio.to_thread(manager.receive, new.id, "Maya here.", role="agent")
            await asyncio.to_thread(live.publish, new.id, live.message_event(agent))
            assert (await c.next())["text"] == "Maya here."
            return old.id, new.id

    old_id, new_id = run(scenario())
    assert [t for _, t in texts(chat_server, old_id)][0] == RETURN_Q and len(texts(chat_server, old_id)) == 2
    with chat_server.services.db.unit_of_work() as session:
        old = ConversationRepository(session).get(old_id)
        new = ConversationRepository(session).get(new_id)
        assert not session.scalars(sa.select(Message.id).where(Message.text.ilike("%/restart%"))).all()
    assert old.status == "ended" and new.status == "open" and new.mode == "bot"
    assert new.state["turns"] == 1 and new.state["angry_streak"] == 0


def test_socketio_session_expires(chat_server):
    manager = chat_server.app.state.manager

    async def scenario():
        async with RasaClient(chat_server.url, ["websocket"]) as c:
            sid = await c.session("sio-idle-1")
            await c.say(RETURN_Q, sid)
            old = await asyncio.to_thread(manager.by_sender, "socketio", sid)
            await asyncio.to_thread(idle_for, chat_server, old.id, 61)
            await c.say("What about delivery?", sid)
            new = await asyncio.to_thread(manager.by_sender, "socketio", sid)
            return old.id, new.id

    old_id, new_id = run(scenario())
    assert old_id != new_id and manager.get(old_id).status == "ended"
    assert [t for _, t in texts(chat_server, new_id)][0] == "What about delivery?"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_senders_racing_on_each_backend_share_one_new_conversation(backend, request, tmp_path):
    """Eight threads storing a message of one sender at once, on first contact and after expiry:
    one open conversation, every message in it (PostgreSQL makes the loser wait, then fail)."""
    import threading

    from web_fakes import FakeKnowledge, FakeNLU, ScriptedGenerator

    from bot.conversation.manager import ConversationManager
    from bot.db.engine import Database
    from bot.db.migrate import upgrade
    from bot.services import Services
    from bot.settings import Settings
    from bot.web.routes_chat import retry_on_conflict

    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'race.db'}"
    upgrade(url)
    settings = Settings(env="test", data_dir=tmp_path, database_url=url)
    services = Services(settings, db=Database(url), knowledge=FakeKnowledge(), nlu=FakeNLU(),
                        generator=ScriptedGenerator())
    manager = ConversationManager(services)
    try:
        for round_ in range(2):
            barrier = threading.Barrier(8)

            def send(i: int, barrier: threading.Barrier = barrier, round_: int = round_) -> str:
                barrier.wait()
                conv, _message = retry_on_conflict(manager.receive_from_sender, "rest", "racer",
                                                   f"round {round_} message {i}")
                return conv.id

            with ThreadPoolExecutor(8) as pool:
                ids = set(pool.map(send, range(8)))
            with services.db.unit_of_work() as session:
                convs = list(session.scalars(sa.select(Conversation).where(Conversation.sender_id == "racer")))
                [open_] = [c for c in convs if c.status == "open"]
                assert ids == {open_.id} and len(convs) == round_ + 1
                stored = {m.text for m in MessageRepository(session).history(open_.id)}
            assert stored == {f"round {round_} message {i}" for i in range(8)}
            idle_for_in(services, open_.id, 61)  # the next round comes after the session expired
        assert manager.restart("rest", "racer") is not None and manager.restart("rest", "racer") is None
    finally:
        services.close()


def idle_for_in(services, conversation_id: str, minutes: float) -> None:
    then = datetime.now(UTC) - timedelta(minutes=minutes)
    with services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id)
        conv.last_message_at = conv.created_at = then


def test_rest_token_when_set_guards_the_webhook_and_only_the_webhook(client, chat_server):
    """HYBRIDESK_REST_TOKEN: a backend relaying its signed-in customers keeps anyone else from
    speaking as one of them; a wrong or missing token is refused before the body is read or stored."""
    from pydantic import SecretStr

    app = chat_server.app
    open_settings = app.state.settings
    app.state.settings = open_settings.model_copy(update={"rest_token": SecretStr("s3cret-relay-token")})
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-relay-token"},
                        {"Authorization": "Bearer s3cret-relay-token-and-more"}):
            r = client.post(URL, json={"sender": "guarded-ann", "message": RETURN_Q}, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert "Authorization: Bearer" in r.json()["error"]["message"]
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "s3cret" not in r.text
        r = client.post(URL, content=b"not json at all", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401  # refused before the body is parsed
        assert conversations_of(chat_server, "rest", "guarded-ann") == []  # nothing stored
        ok = client.post(URL, json={"sender": "guarded-ann", "message": RETURN_Q},
                         headers={"Authorization": "bearer  s3cret-relay-token"})
        assert ok.status_code == 200 and ok.json()[0]["recipient_id"] == "guarded-ann"
        assert len(conversations_of(chat_server, "rest", "guarded-ann")) == 1
        assert client.get("/webhooks/rest/").json() == {"status": "ok"}  # the health check stays open
    finally:
        app.state.settings = open_settings
    assert say(client, "open-bob", RETURN_Q)[0]["text"]  # unset: open, as Rasa's REST channel


def test_a_sender_id_must_be_printable(client, chat_server):
    # regression QA: "evil\u202eredro" reordered the console's title; "\u200b" was an invisible customer
    for sender in ("evil\u202eredro", "\u200b", "tab\there", "   "):
        r = client.post(URL, json={"sender": sender, "message": RETURN_Q})
        assert r.status_code == 422, (sender, r.text)
        assert "sender" in r.json()["error"]["message"] and "printable" in r.json()["error"]["message"]
        assert conversations_of(chat_server, "rest", sender) == []
    assert say(client, "ünïcode-ok_1", RETURN_Q)[0]["recipient_id"] == "ünïcode-ok_1"


def test_a_rest_customer_gets_what_the_agent_wrote_with_their_next_message(client, chat_server):
    """The REST channel has no live connection, and the webhook answered [] while an agent held the
    chat: the customer never read a word the agent wrote, nor that the agent had ended the chat."""
    from bot.db.models import User

    services, manager = chat_server.services, chat_server.app.state.manager
    with services.db.unit_of_work() as session:
        agent = User(email="maya.rest@larkspur.example", display_name="Maya", role="agent", password_hash="x")
        session.add(agent)
        session.flush()
    with chat_limits(chat_server.app):  # more messages from one sender than its limit lets through at once
        _rest_agent_scenario(client, chat_server, services, manager, agent)


def _rest_agent_scenario(client, chat_server, services, manager, agent):
    from bot.console import takeover

    sender = "rest-held-by-maya"
    say(client, sender, RETURN_Q)
    cid = conversations_of(chat_server, "rest", sender)[-1].id
    takeover.take_over(services.db, cid, agent)
    takeover.send_agent_message(manager, cid, agent, "Hi, Maya here. Which lamp is it?")

    got = say(client, sender, "The blue one")  # the agent's words come with this response; no bot reply
    assert [(m["custom"]["role"], m["text"]) for m in got] == [
        ("system", "Maya from our support team has joined the chat."),
        ("agent", "Hi, Maya here. Which lamp is it?")]
    assert all(m["recipient_id"] == sender for m in got)
    assert say(client, sender, "hello?") == []  # nothing new written since: nothing sent twice

    takeover.send_agent_message(manager, cid, agent, "Thanks, I've booked the return.")
    takeover.hand_back(services.db, cid, agent)
    got = say(client, sender, RETURN_Q)  # handed back: the agent's words, the notice, then the bot's reply
    assert [m["custom"].get("role") for m in got] == ["agent", "system", None]
    assert got[0]["text"] == "Thanks, I've booked the return." and "handed you back" in got[1]["text"]
    assert got[2]["custom"]["message_id"] and "30 days" in got[2]["text"]

    # an agent ends the chat: the next message opens a new conversation and carries the old one's end
    takeover.take_over(services.db, cid, agent)
    takeover.send_agent_message(manager, cid, agent, "All done, have a nice day!")
    takeover.end_chat(manager, cid, agent)
    got = say(client, sender, RETURN_Q)
    assert [m["text"] for m in got[:3]] == [
        "Maya from our support team has joined the chat.", "All done, have a nice day!",
        "Maya from our support team has ended this chat. Thank you for contacting us!"]
    assert len(got) == 4 and "30 days" in got[3]["text"]
    assert len(conversations_of(chat_server, "rest", sender)) == 2
    assert len(say(client, sender, RETURN_Q)) == 1  # and only once

    # a conversation the customer restarted carries nothing of the old one
    say(client, sender, "/restart")
    assert len(say(client, sender, RETURN_Q)) == 1

    # regression QA: the bot's answer on hand-back, to what was asked while the agent held the chat
    cid = conversations_of(chat_server, "rest", sender)[-1].id
    takeover.take_over(services.db, cid, agent)
    assert [m["custom"]["role"] for m in say(client, sender, "How do I return a lamp?")] == ["system"]  # joined
    unanswered = takeover.hand_back(services.db, cid, agent)
    assert unanswered is not None
    import asyncio
    asyncio.run(manager.respond(cid, unanswered))  # what the console's hand-back starts in the background
    got = say(client, sender, "thanks")
    assert [m["custom"].get("role") for m in got][:2] == ["system", "bot"]
    assert "handed you back" in got[0]["text"] and got[1]["custom"]["message_id"] and got[1]["text"]

    # regression QA: an agent ended the chat, then the customer sent "/restart": the end comes with the
    # greeting, and the new conversation starts clean
    takeover.take_over(services.db, cid, agent)
    takeover.end_chat(manager, cid, agent)
    restarted = say(client, sender, "/restart")
    assert [m["custom"].get("role") for m in restarted] == ["system", "system", None]
    assert "ended this chat" in restarted[1]["text"] and restarted[2]["custom"]["action"] == "restart"
    assert len(say(client, sender, RETURN_Q)) == 1
