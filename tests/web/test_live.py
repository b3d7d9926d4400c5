"""The in-process live channel: fan-out per conversation, thread-safe publish, bounded queues."""

from __future__ import annotations

import asyncio
import threading

from bot.web import live


def test_publish_reaches_only_that_conversations_subscribers_also_from_threads():
    hub = live.LiveHub()

    async def scenario():
        got_a, got_b = [], []

        async def consume(cid, sink, n):
            async for event in hub.subscribe(cid):
                sink.append(event)
                if len(sink) == n:
                    return

        tasks = [asyncio.create_task(consume("a", got_a, 2)), asyncio.create_task(consume("b", got_b, 1))]
        await asyncio.sleep(0.01)
        assert hub.subscriber_count("a") == 1
        hub.publish("a", live.token_event(1, "Hel"))
        thread = threading.Thread(target=hub.publish, args=("a", live.mode_event("human")))
        thread.start()
        thread.join()
        hub.publish("b", live.error_event("x", "y"))
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert [e["type"] for e in got_a] == ["token", "mode"] and got_b[0]["type"] == "error"
        assert hub.subscriber_count("a") == 0  # unsubscribed when the consumer stopped
        assert hub.publish("a", live.token_event(1, "lost")) == 0

    asyncio.run(scenario())


def test_a_slow_subscriber_is_told_to_resync_instead_of_growing_without_bound(monkeypatch):
    monkeypatch.setattr(live, "MAX_QUEUE", 3)
    hub = live.LiveHub()

    async def scenario():
        async with hub.subscription("c") as queue:
            for i in range(10):
                hub.publish("c", live.token_event(1, str(i)))
            items = [queue.get_nowait() for _ in range(queue.qsize())]
        assert [i["text"] for i in items[:3]] == ["0", "1", "2"] and items[3] is None and len(items) == 4

    asyncio.run(scenario())


def test_message_payload_links_sources_to_the_kb_section():
    link = live.source_link({"document_id": "returns-policy", "revision": 2, "title": "Returns",
                             "heading": "Window", "anchor": "window"})
    assert link["url"] == "/kb/returns-policy#window"
    assert live.source_link({"document_id": "faq", "anchor": None})["url"] == "/kb/faq"
    assert live.source_link({"document_id": None})["url"] is None
