"""Live takeover: exclusive, the bot stays silent, agent messages go out live, hand back."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from console_support import build_console, login, seed_conversation

from knowledge.errors import Conflict


def test_takeover_is_exclusive_and_the_bot_stays_silent(console):
    a1, a2 = console.client(), console.client()
    csrf1, csrf2 = login(a1, "agent"), login(a2, "agent2")
    conv_id, _ = seed_conversation(console.services)
    json_accept = {"Accept": "application/json"}

    r = a1.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf1}, headers=json_accept)
    assert r.status_code == 200 and r.json()["mode"] == "human"
    r = a2.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf2}, headers=json_accept)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conversation_held" and "Agent already holds" in r.json()["error"]["message"]
    # the HTML console explains the conflict instead of dumping JSON
    html = a2.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf2},
                   headers={"Accept": "text/html"})
    assert html.status_code == 409 and "already holds this conversation" in html.text
    # only the holder can write to the customer
    r = a2.post(f"/console/conversations/{conv_id}/messages", data={"csrf_token": csrf2, "text": "hi"},
                headers=json_accept)
    assert r.status_code == 409
    r = a1.post(f"/console/conversations/{conv_id}/messages",
                data={"csrf_token": csrf1, "text": "Hello, I'm Agent. Let me look."}, headers=json_accept)
    assert r.status_code == 200
    published = [e for c, e in console.hub.events if c == conv_id]
    assert {"type": "mode", "mode": "human", "reason": "agent_took_over"} in published
    sent = [e["message"] for e in published if e["type"] == "message" and e["message"]["role"] == "agent"]
    assert sent and sent[-1]["text"] == "Hello, I'm Agent. Let me look."

    # a customer message now gets no bot reply (the manager checks the mode)
    manager = console.app.state.manager
    customer = manager.receive(conv_id, "Are you a real person?")
    assert asyncio.run(manager.respond(conv_id, customer.id)) is None
    history = manager.history(conv_id)
    assert [m.role for m in history][-2:] == ["agent", "customer"]
    # the console's live view sees the customer's message
    updates = a1.get(f"/console/conversations/{conv_id}/messages.json?after=0").json()
    assert updates["mode"] == "human" and updates["messages"][-1]["text"] == "Are you a real person?"
    # which agent wrote what (the page's live view names them)
    assert [m["author"] for m in updates["messages"] if m["role"] == "agent"] == ["Agent"]

    # hand back: the other agent cannot, the holder can; then anyone may take it again
    assert a2.post(f"/console/conversations/{conv_id}/handback", data={"csrf_token": csrf2},
                   headers=json_accept).status_code == 409
    assert a1.post(f"/console/conversations/{conv_id}/handback", data={"csrf_token": csrf1},
                   headers=json_accept).json()["mode"] == "bot"
    assert manager.get(conv_id).mode == "bot" and manager.get(conv_id).held_by_user_id is None
    # after a restart the bot does not answer what the customer told the agent; a later message it does
    assert customer.id not in {mid for _, mid in manager.recover_interrupted()}
    later = manager.receive(conv_id, "Thanks! One more question about returns.")
    assert later.id in {mid for _, mid in manager.recover_interrupted()}
    assert {"type": "mode", "mode": "bot", "reason": "agent_handed_back"} in [e for _, e in console.hub.events]
    assert a2.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf2},
                   headers=json_accept).status_code == 200


def test_unknown_conversation_is_404(console):
    client = console.client()
    csrf = login(client, "agent")
    r = client.post("/console/conversations/nope/takeover", data={"csrf_token": csrf})
    assert r.status_code == 404


def _race(db, conv_id: str, users: list) -> list[str]:
    from bot.console.takeover import take_over

    barrier = threading.Barrier(len(users))
    outcomes: list[str] = []

    def claim(user) -> None:
        barrier.wait()
        try:
            take_over(db, conv_id, user)
            outcomes.append("won")
        except Conflict:
            outcomes.append("409")

    threads = [threading.Thread(target=claim, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def _agents(console) -> list:
    from types import SimpleNamespace

    return [SimpleNamespace(id=console.users[n], display_name=n, role="agent") for n in ("agent", "agent2", "admin")]


def test_concurrent_takeovers_on_sqlite_one_wins(console):
    for _ in range(3):
        conv_id, _ = seed_conversation(console.services)
        assert _race(console.services.db, conv_id, _agents(console)) == ["409", "409", "won"]


@pytest.mark.postgres
def test_concurrent_takeovers_on_postgres_one_wins(pg_url, tmp_path: Path):
    c = build_console(pg_url, tmp_path)
    try:
        for _ in range(3):
            conv_id, _ = seed_conversation(c.services)
            assert _race(c.services.db, conv_id, _agents(c)) == ["409", "409", "won"]
        # the console's search works on PostgreSQL's full-text index as well
        from bot.console.transcripts import TranscriptFilter, search_transcripts

        target, _ = seed_conversation(c.services, customer="My kettles arrived broken")
        with c.services.db.unit_of_work() as session:
            rows = search_transcripts(session, TranscriptFilter(q="kettle broken")).rows
        assert [r.id for r in rows] == [target]
        with c.services.db.unit_of_work() as session:  # a word nobody used: answered from the GIN index
            assert search_transcripts(session, TranscriptFilter(q="zeppelin")).rows == []
    finally:
        c.services.close()


JSON = {"Accept": "application/json"}


def _holding(console):
    """An agent signed in and holding a new conversation: (client, CSRF token, conversation id)."""
    agent = console.client()
    csrf = login(agent, "agent")
    conv_id, _ = seed_conversation(console.services)
    agent.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf}, headers=JSON)
    return agent, csrf, conv_id


def test_an_empty_agent_reply_is_refused_in_agent_wording(console):
    agent, csrf, conv_id = _holding(console)
    json_accept = JSON
    before = len(console.app.state.manager.history(conv_id))
    for text in ("", "   \n"):
        r = agent.post(f"/console/conversations/{conv_id}/messages", data={"csrf_token": csrf, "text": text},
                       headers=json_accept)
        assert r.status_code == 422 and r.json()["error"]["code"] == "empty_message"
        assert r.json()["error"]["message"] == "Write a message to send."  # not the widget's "type a question"
    assert len(console.app.state.manager.history(conv_id)) == before


def test_an_agent_reply_with_bytes_that_are_not_utf8_is_refused(console):
    # web QA: a form post of "caf%E9%FF%FE...end" reached the customer as "caf\ufffd\ufffd\ufffdend"
    agent, csrf, conv_id = _holding(console)
    before = len(console.app.state.manager.history(conv_id))
    body = f"csrf_token={csrf}&text=caf%E9%FF%FEend".encode()
    r = agent.post(f"/console/conversations/{conv_id}/messages", content=body,
                   headers={**JSON, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_message", r.text
    assert "could not be read" in r.json()["error"]["message"]
    assert len(console.app.state.manager.history(conv_id)) == before


def test_taking_over_again_after_a_hand_back_tells_the_customer_again(console):
    agent = console.client()
    csrf = login(agent, "agent")
    conv_id, _ = seed_conversation(console.services)
    json_accept = {"Accept": "application/json"}
    for action in ("takeover", "handback", "takeover"):
        r = agent.post(f"/console/conversations/{conv_id}/{action}", data={"csrf_token": csrf}, headers=json_accept)
        assert r.status_code == 200, r.text
    notices = [m.text for m in console.app.state.manager.history(conv_id) if m.role == "system"]
    # the customer's last word from us says a person is here, not "Ask away!"
    assert [n.split()[-1] for n in notices] == ["chat.", "away!", "chat."], notices
    # taking it over twice in a row says it once
    assert agent.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf},
                      headers=json_accept).status_code == 200
    assert len([m for m in console.app.state.manager.history(conv_id) if m.role == "system"]) == 3


def test_an_ended_conversation_takes_no_agent_message_or_hand_back(console):
    agent, csrf, conv_id = _holding(console)
    json_accept = JSON
    with console.services.db.unit_of_work() as session:  # the customer ends the chat (as POST .../end does)
        from bot.db.repositories import ConversationRepository

        ConversationRepository(session).get(conv_id).status = "ended"
    before = len(console.app.state.manager.history(conv_id))
    r = agent.post(f"/console/conversations/{conv_id}/messages", data={"csrf_token": csrf, "text": "still there?"},
                   headers=json_accept)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conversation_ended"
    r = agent.post(f"/console/conversations/{conv_id}/handback", data={"csrf_token": csrf}, headers=json_accept)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conversation_ended"
    assert len(console.app.state.manager.history(conv_id)) == before



def test_ids_too_large_for_the_database_are_a_clear_422_not_a_500(console):
    agent, admin, editor = console.client(), console.client(), console.client()
    csrf_agent, csrf_admin, csrf_editor = login(agent, "agent"), login(admin, "admin"), login(editor, "editor")
    conv_id, _ = seed_conversation(console.services)
    huge = 2**64
    json_accept = {"Accept": "application/json"}
    answers = [
        agent.get(f"/console/conversations/{conv_id}/messages.json?after={huge}"),
        agent.post(f"/console/messages/{huge}/corrections", headers=json_accept,
                   data={"csrf_token": csrf_agent, "reason": "wrong_fact", "corrected_text": "x"}),
        admin.post(f"/console/users/{huge}/disable", headers=json_accept, data={"csrf_token": csrf_admin}),
        editor.get(f"/console/kb/gift-wrap?rev={huge}", headers=json_accept),
        editor.post("/console/kb/gift-wrap/publish", headers=json_accept,
                    data={"csrf_token": csrf_editor, "revision": huge, "base_revision": 1}),
    ]
    assert [r.status_code for r in answers] == [422] * len(answers), [r.text[:200] for r in answers]
    # the connection is still good for the next request
    assert agent.get(f"/console/conversations/{conv_id}/messages.json?after=0").status_code == 200


def test_hand_back_names_the_question_nobody_answered(console):
    from bot.console.takeover import hand_back, send_agent_message, take_over
    from bot.db.models import User
    from bot.db.repositories import ConversationRepository, MessageRepository

    manager = console.app.state.manager
    with console.services.db.unit_of_work() as session:
        agent = session.query(User).filter_by(email="agent@larkspur.example").one()
        session.expunge(agent)
    conv_id, _ = seed_conversation(console.services)
    take_over(console.services.db, conv_id, agent)
    asked = manager.receive(conv_id, "What payment methods do you accept?")
    with console.services.db.unit_of_work() as session:  # the bot's reply, discarded when the agent took over
        conv = ConversationRepository(session).get(conv_id)
        MessageRepository(session).append(conv, role="bot", text="We accept", status="discarded",
                                          reply_to_id=asked.id)
    assert hand_back(console.services.db, conv_id, agent) == asked.id
    # answered by the agent: nothing left for the bot
    take_over(console.services.db, conv_id, agent)
    manager.receive(conv_id, "And gift cards?")
    send_agent_message(manager, conv_id, agent, "Yes, gift cards too.")
    assert hand_back(console.services.db, conv_id, agent) is None


def test_the_agents_message_box_states_the_chat_message_limit(console):
    # PostgreSQL QA: the form took 8,000 characters, the server refuses more than 2,000
    agent, csrf, conv_id = _holding(console)
    limit = console.services.settings.max_message_chars
    assert f'name="text" rows="3" required maxlength="{limit}"' in agent.get(f"/console/conversations/{conv_id}").text
    r = agent.post(f"/console/conversations/{conv_id}/messages", data={"csrf_token": csrf, "text": "x" * (limit + 1)},
                   headers=JSON)
    assert r.status_code in (413, 422)


def test_the_agent_is_told_a_rest_customer_reads_their_messages_with_the_next_answer(console):
    from bot.db.repositories import ConversationRepository

    agent = console.client()
    csrf = login(agent, "agent")
    widget_id, _ = seed_conversation(console.services)
    rest_id, _ = seed_conversation(console.services)
    with console.services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(rest_id)
        conv.channel, conv.sender_id = "rest", "rest-customer-7"
    for conv_id in (widget_id, rest_id):
        agent.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf})
    assert 'id="agent-channel-note"' not in agent.get(f"/console/conversations/{widget_id}").text
    page = agent.get(f"/console/conversations/{rest_id}").text
    assert 'id="agent-channel-note"' in page and "with the answer to their next message" in page
    assert 'aria-describedby="agent-form-error agent-text-count agent-channel-note"' in page


def test_chats_held_by_a_disabled_agent_go_back_to_the_queue(console):
    """A chat held by an agent whose account was disabled stayed held for good: the bot silent, the
    customer told a person was there, other agents refused ("ask them to hand it back")."""
    from bot.db.models import User
    from bot.db.repositories import ConversationRepository

    agent, other, admin = console.client(), console.client(), console.client()
    csrf, other_csrf, admin_csrf = login(agent, "agent"), login(other, "agent2"), login(admin, "admin")
    held, _ = seed_conversation(console.services)
    agent.post(f"/console/conversations/{held}/takeover", data={"csrf_token": csrf})
    json_accept = {"Accept": "application/json"}
    assert other.post(f"/console/conversations/{held}/takeover", data={"csrf_token": other_csrf},
                      headers=json_accept).status_code == 409

    r = admin.post(f"/console/users/{console.users['agent']}/disable", data={"csrf_token": admin_csrf},
                   follow_redirects=False)
    assert r.status_code == 303
    manager = console.app.state.manager
    conv = manager.get(held)
    assert (conv.mode, conv.held_by_user_id) == ("handoff_requested", None) and "handoff_at" in conv.state
    notice = manager.history(held)[-1]
    assert (notice.role, notice.text) == ("system", "Agent is no longer available. Another member of our team "
                                          "will be with you shortly.")
    published = [e for c, e in console.hub.events if c == held]
    assert published[-1] == {"type": "mode", "mode": "handoff_requested", "reason": "agent_left"}
    queue = other.get("/console/waiting.json").json()
    assert held in [w["conversation_id"] for w in queue["waiting"]]
    assert other.post(f"/console/conversations/{held}/takeover", data={"csrf_token": other_csrf},
                      headers=json_accept).status_code == 200

    # held by an account disabled some other way (the database, an older version): anyone may take it
    stuck, _ = seed_conversation(console.services)
    with console.services.db.unit_of_work() as session:
        ConversationRepository(session).get(stuck).mode = "human"
        ConversationRepository(session).get(stuck).held_by_user_id = console.users["editor"]
        session.get(User, console.users["editor"]).active = False
    assert other.post(f"/console/conversations/{stuck}/takeover", data={"csrf_token": other_csrf},
                      headers=json_accept).status_code == 200
    assert manager.get(stuck).held_by_user_id == console.users["agent2"]


def test_an_ended_chat_reads_as_ended_not_as_held(console):
    """An agent's ended chat read "agent holds it" beside "ended", in the list and on its page."""
    import re

    agent = console.client()
    csrf = login(agent, "agent")
    conv_id, _ = seed_conversation(console.services)
    agent.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf})
    agent.post(f"/console/conversations/{conv_id}/end", data={"csrf_token": csrf})
    page = agent.get(f"/console/conversations/{conv_id}").text
    badge = re.search(r'<strong id="conv-mode"[^>]*>([^<]+)</strong>', page).group(1)
    assert badge == "ended" and "(last held by <strong>Agent</strong>)" in page
    row = agent.get("/console/transcripts").text.split(f'href="/console/conversations/{conv_id}"')[1].split("</tr>")[0]
    assert "ended" in row and "agent holds it" not in row


def test_a_customer_silent_in_the_queue_goes_below_the_others_and_can_be_closed(console):
    """A customer who closed the page stayed at the top of the waiting queue for good; the only way
    to clear them was to take the chat over (greeting nobody) and end it."""
    from datetime import UTC, datetime, timedelta

    from bot.db.repositories import ConversationRepository

    agent = console.client()
    csrf = login(agent, "agent")
    now = datetime.now(UTC)
    gone, _ = seed_conversation(console.services, created_at=now - timedelta(hours=3),
                                customer="I need a person", mode="handoff_requested")
    fresh, _ = seed_conversation(console.services, created_at=now - timedelta(minutes=5),
                                 customer="Can someone help me?", mode="handoff_requested")
    with console.services.db.unit_of_work() as session:
        ConversationRepository(session).get(gone).state = {"handoff_at": (now - timedelta(hours=3)).isoformat()}
        ConversationRepository(session).get(fresh).state = {"handoff_at": (now - timedelta(minutes=5)).isoformat()}
    queue = agent.get("/console/waiting.json").json()["waiting"]
    assert [w["conversation_id"] for w in queue if w["conversation_id"] in (gone, fresh)] == [fresh, gone]
    assert [w["stale"] for w in queue if w["conversation_id"] in (gone, fresh)] == [False, True]
    page = agent.get("/console/transcripts").text
    waiting = page.split('id="waiting-list"')[1].split("</ol>")[0]
    assert waiting.index(fresh) < waiting.index(gone)
    def item(conv_id):
        return waiting.split(f'<li data-id="{conv_id}">')[1].split("</li>")[0]

    assert "may have left" in item(gone) and "may have left" not in item(fresh)

    # a quiet customer whose widget is connected (page open) is there: not "may have left" (regression QA)
    import asyncio

    async def queue_while_connected():
        async with console.app.state.event_streams.track(asyncio.Queue(), gone):
            return agent.get("/console/waiting.json").json()["waiting"]

    connected = {w["conversation_id"]: w for w in asyncio.run(queue_while_connected())}
    assert connected[gone]["stale"] is False
    assert agent.get("/console/waiting.json").json()["waiting"][-1]["stale"] is True  # gone again

    # closed from its page without taking it over
    conv_page = agent.get(f"/console/conversations/{gone}").text
    assert "End chat (customer left)" in conv_page and "joined the chat" not in conv_page
    r = agent.post(f"/console/conversations/{gone}/end", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    manager = console.app.state.manager
    assert manager.get(gone).status == "ended" and manager.get(gone).held_by_user_id is None
    assert gone not in [w["conversation_id"] for w in agent.get("/console/waiting.json").json()["waiting"]]
    # a chat the bot is answering is not ended that way
    answering, _ = seed_conversation(console.services)
    refused = agent.post(f"/console/conversations/{answering}/end", data={"csrf_token": csrf},
                         headers={"Accept": "application/json"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_holder"
