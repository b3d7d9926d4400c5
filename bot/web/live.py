"""In-process live channel: one asyncio broadcast per conversation.

The chat API publishes streamed tokens and finished replies here; the agent console publishes
agent messages and mode changes here; every open event stream (SSE) or Socket.IO session of
that conversation receives them. The event shapes are built by :func:`message_event`,
:func:`mode_event`, :func:`token_event` and :func:`error_event` so every publisher sends
the same thing::

    from bot.web import live
    live.publish(conv.id, live.message_event(agent_message))
    live.publish(conv.id, live.mode_event("human"))

:class:`LiveHub` is process-local: the embedded default (SQLite, one server process). When the
database is PostgreSQL, :func:`make_hub` returns a :class:`bot.web.live_pg.PgLiveHub` instead,
which also carries every event to the other server processes through LISTEN/NOTIFY. Either way
the SSE stream re-reads the conversation from the database every few seconds, so nothing is
lost if an event is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

#: a subscriber that falls this far behind is dropped (its client reconnects and replays history)
MAX_QUEUE = 1000


class LiveHub:
    """Fan-out of event dicts to the subscribers of each conversation (thread-safe ``publish``)."""

    def __init__(self) -> None:
        self._subs: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self._lock = threading.Lock()

    def publish(self, conversation_id: str, event: dict[str, Any]) -> int:
        """Deliver ``event`` to every subscriber of the conversation; returns how many there were.

        Safe to call from the event loop or from a worker thread.
        """
        with self._lock:
            subs = list(self._subs.get(conversation_id, ()))
        for loop, queue in subs:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                _offer(queue, event)
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed: the subscriber is gone
                    loop.call_soon_threadsafe(_offer, queue, event)
        return len(subs)

    @asynccontextmanager
    async def subscription(self, conversation_id: str) -> AsyncIterator[asyncio.Queue]:
        """A queue that receives the conversation's events while the block runs.

        A ``None`` item means the subscriber overflowed and must resynchronise from history.
        """
        queue: asyncio.Queue = asyncio.Queue(maxsize=MAX_QUEUE + 1)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subs.setdefault(conversation_id, set()).add(entry)
        try:
            yield queue
        finally:
            with self._lock:
                subs = self._subs.get(conversation_id)
                if subs is not None:
                    subs.discard(entry)
                    if not subs:
                        del self._subs[conversation_id]

    async def subscribe(self, conversation_id: str) -> AsyncIterator[dict[str, Any]]:
        """Iterate over the conversation's events until the consumer stops."""
        async with self.subscription(conversation_id) as queue:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event

    def subscriber_count(self, conversation_id: str) -> int:
        with self._lock:
            return len(self._subs.get(conversation_id, ()))

    def resync_all(self) -> None:
        """Tell every subscriber to re-read its conversation from the database (events were lost)."""
        with self._lock:
            subs = [entry for entries in self._subs.values() for entry in entries]
        for loop, queue in subs:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resync, queue)

    def close(self) -> None:
        """Nothing to release in process (the PostgreSQL hub stops its threads here)."""


def _offer(queue: asyncio.Queue, event: dict[str, Any]) -> None:
    if queue.qsize() >= MAX_QUEUE:
        # Too slow a consumer: tell it to resync instead of growing without bound.
        if not queue.full():
            queue.put_nowait(None)
        return
    queue.put_nowait(event)


def _resync(queue: asyncio.Queue) -> None:
    if not queue.full():
        queue.put_nowait(None)


_default: LiveHub | None = None
_default_lock = threading.Lock()


def default_hub() -> LiveHub:
    """The process-wide hub (created on first use, never at import)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LiveHub()
        return _default


def make_hub(database_url: str | None) -> Any:
    """The live channel for a server: across processes (LISTEN/NOTIFY) on PostgreSQL, else in process."""
    if database_url:
        from sqlalchemy.engine import make_url

        if make_url(database_url).get_backend_name() == "postgresql":
            from bot.web.live_pg import PgLiveHub

            return PgLiveHub(database_url)
    return default_hub()


def publish(conversation_id: str, event: dict[str, Any]) -> int:
    """Publish on the process-wide hub (see :class:`LiveHub.publish`)."""
    return default_hub().publish(conversation_id, event)


def subscribe(conversation_id: str) -> AsyncIterator[dict[str, Any]]:
    """Subscribe on the process-wide hub (see :class:`LiveHub.subscribe`)."""
    return default_hub().subscribe(conversation_id)


# -- event shapes ------------------------------------------------------------------------
def source_link(citation: dict[str, Any]) -> dict[str, Any]:
    """A citation with the link the widget shows: ``/kb/{document_id}#{anchor}``."""
    doc = str(citation.get("document_id") or "")
    anchor = citation.get("anchor")
    url = f"/kb/{doc}" + (f"#{anchor}" if anchor else "") if doc else None
    return {
        "document_id": citation.get("document_id"),
        "revision": citation.get("revision"),
        "title": citation.get("title"),
        "heading": citation.get("heading"),
        "anchor": anchor,
        "url": url,
    }


def message_payload(message: Any) -> dict[str, Any]:
    """The public view of one stored message (what the widget renders)."""
    created = getattr(message, "created_at", None)
    return {
        "id": message.id,
        "seq": message.seq,
        "role": message.role,
        "text": message.text,
        "reply_to": getattr(message, "reply_to_id", None),
        "client_message_id": getattr(message, "client_message_id", None),
        "sources": [source_link(c) for c in (getattr(message, "citations", None) or [])],
        "created_at": created.isoformat() if isinstance(created, datetime) else None,
    }


def message_event(message: Any) -> dict[str, Any]:
    """A complete customer/bot/agent/system message (SSE ``message``, id = its seq)."""
    return {"type": "message", "message": message_payload(message)}


def token_event(reply_to: int, text: str) -> dict[str, Any]:
    """A streamed piece of the bot's reply to customer message ``reply_to``."""
    return {"type": "token", "reply_to": reply_to, "text": text}


def mode_event(mode: str, reason: str | None = None) -> dict[str, Any]:
    """The conversation changed hands: ``bot``, ``handoff_requested`` or ``human``."""
    return {"type": "mode", "mode": mode, "reason": reason}


def status_event(status: str, reason: str | None = None) -> dict[str, Any]:
    """The conversation's status changed; only ``ended`` is sent (by the customer, elsewhere, or by an agent)."""
    return {"type": "status", "status": status, "reason": reason}


def error_event(code: str, message: str, reply_to: int | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "reply_to": reply_to}
