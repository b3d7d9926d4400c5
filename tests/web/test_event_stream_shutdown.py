"""The event stream ends when the server starts shutting down, and tells the widget the length limit."""

from __future__ import annotations

import time

from web_fakes import start_conversation

from bot.web.routes_chat import close_event_streams


def test_ready_event_carries_the_message_length_limit(client, sse, chat_server):
    cid, headers = start_conversation(client)
    _, data, _ = sse(cid, headers).next("ready")
    assert data["max_chars"] == chat_server.services.settings.max_message_chars


def test_closing_the_event_streams_ends_the_open_ones_and_any_later_one(client, sse, chat_server):
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    stream.next("ready")
    streams = chat_server.app.state.event_streams
    try:
        assert close_event_streams(chat_server.app) >= 1  # called from another thread: safe
        deadline = time.monotonic() + 5
        while stream.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stream.is_alive(), "the open stream was not ended"
        left = [stream.events.get_nowait()[0] for _ in range(stream.events.qsize())]
        assert "_error" not in left  # ended cleanly (no cut-off chunk)
        # a stream opened while the server stops gets "ready" (the client knows it connected) and ends
        with client.stream("GET", f"/api/conversations/{cid}/events", headers=headers) as resp:
            body = resp.read().decode()
        assert "event: ready" in body
    finally:
        streams.closing = False
    later = sse(cid, headers)  # back to normal
    later.next("ready")
    assert later.is_alive()
