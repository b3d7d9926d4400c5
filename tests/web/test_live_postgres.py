"""The live channel across server processes on the real PostgreSQL (LISTEN/NOTIFY).

Each app instance (or process) has its own hub and its own listening connection, so an event
that reaches a listener of another instance can only have travelled through PostgreSQL. The
SSE stream's own database poll is pushed far out, so it cannot be what delivers the events.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from web_fakes import FakeKnowledge, FakeNLU, ScriptedGenerator, ServerThread, SSEReader, build_app

from bot.web import live
from bot.web.live_pg import PgLiveHub

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]


def _events() -> list[dict[str, Any]]:
    long_text = "Très long message — " * 1200 + "<end>"  # ~24 kB of JSON: sent in parts
    return [
        live.token_event(7, "Hel"),
        live.mode_event("human", "agent_took_over"),
        {"type": "message", "message": {"id": 9, "seq": 3, "role": "agent", "text": long_text, "reply_to": None,
                                        "client_message_id": None, "sources": [], "created_at": None}},
        live.token_event(7, "lo"),
    ]


def test_an_event_published_by_one_hub_reaches_the_listeners_of_another(pg_url):
    a, b = PgLiveHub(pg_url), PgLiveHub(pg_url)

    async def scenario() -> None:
        async with b.subscription("conv-1") as on_b, a.subscription("conv-1") as on_a, \
                b.subscription("conv-2") as other:
            events = _events()
            for event in events:
                a.publish("conv-1", event)
            got = [await asyncio.wait_for(on_b.get(), 10) for _ in events]
            assert got == json.loads(json.dumps(events))  # in order, the long one reassembled
            await asyncio.sleep(0.5)
            assert on_a.qsize() == len(events)  # the publisher's own listeners: once each, no echo
            assert on_b.empty() and other.empty()  # nothing for other conversations

    try:
        asyncio.run(scenario())
        assert b.received == len(_events()) and a.received == 0
    finally:
        a.close()
        b.close()


def test_an_event_published_in_another_os_process_arrives(pg_url):
    hub = PgLiveHub(pg_url)
    child = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from bot.web.live_pg import PgLiveHub
        hub = PgLiveHub({pg_url!r})
        hub.publish("conv-x", {{"type": "message", "message": {{"role": "agent", "text": "from pid " + str(__import__("os").getpid())}}}})
        hub.close()
    """)

    async def scenario() -> str:
        async with hub.subscription("conv-x") as q:
            proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", child], capture_output=True,
                                           text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            event = await asyncio.wait_for(q.get(), 10)
            return event["message"]["text"]

    try:
        text = asyncio.run(scenario())
        assert text.startswith("from pid ") and text != f"from pid {__import__('os').getpid()}"
    finally:
        hub.close()


def test_a_closed_hub_still_delivers_locally_and_stops_its_threads(pg_url):
    hub = PgLiveHub(pg_url)
    assert hub.wait_ready()
    hub.close()
    assert not any(t.is_alive() for t in hub._threads)

    async def scenario() -> int:
        async with hub.local.subscription("c") as q:
            hub.publish("c", live.token_event(1, "x"))
            return q.qsize()

    assert asyncio.run(scenario()) == 1


# -- two app instances on one PostgreSQL database -------------------------------------------------
def _pg_services(pg_url: str, data_dir: Path) -> Any:
    from bot.db.engine import Database
    from bot.db.models import BotBase
    from bot.services import Services
    from bot.settings import Settings

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(env="test", data_dir=data_dir, database_url=pg_url)
    db = Database(pg_url)
    BotBase.metadata.create_all(db.engine)
    return Services(settings, db=db, knowledge=FakeKnowledge(), nlu=FakeNLU(),
                    generator=ScriptedGenerator(delay=0.02))


def _agent(services: Any) -> Any:
    from bot.db.models import User

    with services.db.unit_of_work() as session:
        user = User(email="maya@larkspur.example", display_name="Maya", role="agent", password_hash="x")
        session.add(user)
        session.flush()
        return user


class SocketClient:
    """A Rasa-webchat-like Socket.IO client: what the widget on a customer's page does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sio.on("session_confirm", lambda data: self.inbox.put_nowait(("session_confirm", data)))
        self.sio.on("bot_uttered", lambda data: self.inbox.put_nowait(("bot_uttered", data)))

    async def next(self, timeout: float = 10) -> tuple[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), timeout)


def test_takeover_and_replies_cross_app_instances_over_sse_and_socketio(pg_url, tmp_path, monkeypatch):
    from bot.console import takeover
    from bot.web import routes_chat

    monkeypatch.setattr(routes_chat, "POLL_SECONDS", 120.0)  # the SSE fallback poll stays out of the way
    services_a, services_b = _pg_services(pg_url, tmp_path / "a"), _pg_services(pg_url, tmp_path / "b")
    app_a, app_b = build_app(services_a), build_app(services_b)
    assert isinstance(app_a.state.live, PgLiveHub) and app_a.state.live is not app_b.state.live
    agent = _agent(services_a)
    with ServerThread(app_a) as server_a, ServerThread(app_b) as server_b:
        # SSE: the customer's widget is connected to instance B, everything happens on instance A
        with httpx.Client(base_url=server_a.url, timeout=20) as client_a:
            started = client_a.post("/api/conversations").json()
            conv_id, auth = started["conversation_id"], {"Authorization": f"Bearer {started['token']}"}
            stream = SSEReader(f"{server_b.url}/api/conversations/{conv_id}/events", auth)
            stream.start()
            assert stream.ready.wait(10) and stream.status == 200
            t0 = time.monotonic()
            r = client_a.post(f"/api/conversations/{conv_id}/messages", headers=auth,
                              json={"text": "How do I return a lamp?"})
            assert r.status_code == 202
            stream.next("message", where=lambda d: d["role"] == "customer")
            stream.next("token")  # the reply streams from A's generator into B's stream
            reply = stream.next("message", where=lambda d: d["role"] == "bot")[1]
            assert "30 days" in reply["text"]

            publish = app_a.state.live.publish
            takeover.take_over(services_a.db, conv_id, agent, publish=publish)
            stream.next("message", where=lambda d: d["role"] == "system" and "joined" in d["text"])
            assert stream.next("mode")[1]["mode"] == "human"
            takeover.send_agent_message(app_a.state.manager, conv_id, agent, "Maya here, I can help.",
                                        publish=publish)
            said = stream.next("message", where=lambda d: d["role"] == "agent")[1]
            assert said["text"] == "Maya here, I can help."
            # the agent ends the chat on A: B's stream says so, then ends
            takeover.end_chat(app_a.state.manager, conv_id, agent, publish=publish)
            stream.next("message", where=lambda d: d["role"] == "system" and "ended this chat" in d["text"])
            assert stream.next("status")[1] == {"status": "ended", "reason": "agent_ended"}
            assert stream.closed.wait(10)
            assert time.monotonic() - t0 < 60  # well inside the 120 s poll: these came by NOTIFY
            stream.stop()

        # Socket.IO: the widget's socket on B, the agent on A
        async def socket_scenario() -> dict:
            c = SocketClient(server_b.url)
            await c.sio.connect(server_b.url, transports=["websocket"], wait_timeout=10)
            try:
                await c.sio.emit("session_request", {"session_id": "pg-live-socket-1"})
                assert (await c.next())[0] == "session_confirm"
                await c.sio.emit("user_uttered", {"message": "I want to return a chair",
                                                  "session_id": "pg-live-socket-1"})
                assert "30 days" in (await c.next())[1]["text"]
                conv = await asyncio.to_thread(app_a.state.manager.by_sender, "socketio", "pg-live-socket-1")
                await asyncio.to_thread(takeover.take_over, services_a.db, conv.id, agent, publish)
                await asyncio.to_thread(takeover.send_agent_message, app_a.state.manager, conv.id, agent,
                                        "Maya on the socket.", publish)
                while True:
                    kind, data = await c.next()
                    if data.get("metadata", {}).get("role") == "agent":
                        return data
            finally:
                await c.sio.disconnect()

        relayed = asyncio.run(socket_scenario())
        assert relayed["text"] == "Maya on the socket."
    services_a.close()
    services_b.close()
