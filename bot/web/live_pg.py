"""The live channel across server processes: PostgreSQL LISTEN/NOTIFY.

With several server processes (``uvicorn --workers N``, several hosts behind a load balancer) a
customer's event stream may be served by one process while the agent who took over the chat, or
the process writing the bot's reply, publishes in another. :class:`PgLiveHub` has the interface
of :class:`bot.web.live.LiveHub` (``publish``, ``subscription``, ``subscribe``) and is chosen by
:func:`bot.web.live.make_hub` whenever the database is PostgreSQL:

* ``publish`` delivers to this process's subscribers at once (no round trip for the common
  case) and queues the event for a sender thread, which ``NOTIFY``s it on one channel over its own
  autocommit connection. One sender per process keeps a conversation's events in order.
* a listener thread holds a ``LISTEN`` connection and hands every notification from *other*
  processes (each hub has an origin id; its own echoes are skipped) to the local subscribers.
* ``NOTIFY`` payloads are limited to 8000 bytes: a larger event (a long message) is split into
  numbered parts and joined again by the listeners.
* when the listening connection drops, the listener reconnects and tells every local subscriber
  to resynchronise from the database (what the SSE stream also does every few seconds anyway),
  since notifications sent while it was away are lost. A failed ``NOTIFY`` is logged and dropped:
  the stored messages stay the source of truth.

Nothing connects until the hub is first used; :meth:`PgLiveHub.close` (called when the app shuts
down) stops both threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from sqlalchemy.engine import make_url

from bot.web.live import LiveHub

log = logging.getLogger(__name__)

CHANNEL = "hybridesk_live"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
PART_CHARS = 3000  # of ASCII JSON per part: even if every character were escaped, the part fits
MAX_PARTIAL = 256  # events still being reassembled (the oldest is dropped beyond this)
READY_TIMEOUT_S = 10.0
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string (what psycopg.connect takes)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.get_backend_name()}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def encode(origin: str, conversation_id: str, event: dict[str, Any], seq: int) -> list[str]:
    """The NOTIFY payloads of one event: one, or several numbered parts of a large one."""
    whole = json.dumps({"o": origin, "c": conversation_id, "e": event}, ensure_ascii=True, default=str)
    if len(whole) <= MAX_PAYLOAD:
        return [whole]
    body = json.dumps(event, ensure_ascii=True, default=str)
    parts = [body[i:i + PART_CHARS] for i in range(0, len(body), PART_CHARS)]
    return [json.dumps({"o": origin, "c": conversation_id, "i": seq, "n": len(parts), "k": k, "p": part},
                       ensure_ascii=True) for k, part in enumerate(parts)]


class Reassembler:
    """Joins the parts of large events (parts of one event arrive in order, from one sender)."""

    def __init__(self) -> None:
        self._partial: OrderedDict[tuple[str, int], list[str]] = OrderedDict()

    def feed(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """The complete event, once its last part has arrived (else None)."""
        if "e" in msg:
            return msg["e"]
        key = (msg["o"], int(msg["i"]))
        parts = self._partial.setdefault(key, [])
        if int(msg["k"]) != len(parts):  # a part went missing (listener reconnected): give up on it
            self._partial.pop(key, None)
            return None
        parts.append(msg["p"])
        if len(parts) < int(msg["n"]):
            while len(self._partial) > MAX_PARTIAL:
                self._partial.popitem(last=False)
            return None
        del self._partial[key]
        return json.loads("".join(parts))


class PgLiveHub:
    """A :class:`LiveHub` whose events also travel through PostgreSQL to every other process."""

    def __init__(self, database_url: str, *, channel: str = CHANNEL) -> None:
        self.conninfo = libpq_url(database_url)
        self.channel = channel
        self.origin = uuid.uuid4().hex[:16]
        self.local = LiveHub()
        self._outbox: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._seq = 0
        self._stop = threading.Event()
        self._closing = False
        self._listening = threading.Event()
        self._start_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conns: set[Any] = set()
        self.sent = 0
        self.received = 0

    # -- the LiveHub interface -----------------------------------------------------------
    def publish(self, conversation_id: str, event: dict[str, Any]) -> int:
        """Deliver to local subscribers now and to other processes through NOTIFY (thread-safe).

        Returns the number of local subscribers (other processes' are not known here).
        """
        delivered = self.local.publish(conversation_id, event)
        if not self._closing:
            self.start()
            self._outbox.put((conversation_id, event))
        return delivered

    @asynccontextmanager
    async def subscription(self, conversation_id: str) -> AsyncIterator[asyncio.Queue]:
        """As :meth:`LiveHub.subscription`, once this process listens (so nothing published after
        the subscription started is missed)."""
        self.start()
        if not self._listening.is_set():
            await asyncio.to_thread(self._listening.wait, READY_TIMEOUT_S)
        async with self.local.subscription(conversation_id) as q:
            yield q

    async def subscribe(self, conversation_id: str) -> AsyncIterator[dict[str, Any]]:
        async with self.subscription(conversation_id) as q:
            while True:
                event = await q.get()
                if event is None:
                    return
                yield event

    def subscriber_count(self, conversation_id: str) -> int:
        return self.local.subscriber_count(conversation_id)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the sender and listener threads (idempotent; called on first use)."""
        if self._threads or self._closing:
            return
        with self._start_lock:
            if self._threads or self._closing:
                return
            self._threads = [threading.Thread(target=self._send_loop, name="live-notify", daemon=True),
                             threading.Thread(target=self._listen_loop, name="live-listen", daemon=True)]
            for t in self._threads:
                t.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """Start, and wait until this process listens (True) or the timeout passes."""
        self.start()
        return self._listening.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop both threads."""
        self._closing = True
        self._outbox.put(None)  # the sender stops after the events queued before it
        if self._threads:
            self._threads[0].join(timeout=timeout)
        self._stop.set()
        for conn in list(self._conns):
            with suppress(Exception):  # wakes a listener blocked in notifies()
                conn.close()
        for t in self._threads:
            t.join(timeout=timeout)

    # -- threads -------------------------------------------------------------------------
    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.conninfo, autocommit=True, application_name="hybridesk-live")
        self._conns.add(conn)
        return conn

    def _drop(self, conn: Any) -> None:
        self._conns.discard(conn)
        with suppress(Exception):
            conn.close()

    def _send_loop(self) -> None:
        conn, failures, last = None, 0, False
        while not last:
            item = self._outbox.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < 200:  # a burst of tokens goes out in one pipeline
                try:
                    nxt = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    last = True  # send this batch, then stop
                    break
                batch.append(nxt)
            payloads = []
            for cid, event in batch:
                self._seq += 1
                payloads += encode(self.origin, cid, event, self._seq)
            try:
                if conn is None:
                    conn = self._connect()
                with conn.pipeline():
                    for p in payloads:
                        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, p))
                self.sent += len(batch)
                failures = 0
            except Exception as exc:  # the database is away: the stored messages remain the truth
                if self._closing:
                    break
                log.warning("live events not sent to other processes (%d dropped): %s", len(batch), exc)
                if conn is not None:
                    self._drop(conn)
                conn = None
                time.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1
        if conn is not None:
            self._drop(conn)

    def _listen_loop(self) -> None:
        failures, reconnect = 0, False
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute(f'LISTEN "{self.channel}"')
                self._listening.set()
                if reconnect:
                    # notifications sent while we were away are lost: subscribers re-read the database
                    self.local.resync_all()
                failures = 0
                parts = Reassembler()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=1.0):
                        self._deliver(note.payload, parts)
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("live listener lost its PostgreSQL connection (%s); reconnecting", exc)
                reconnect = True
                time.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1
            finally:
                if conn is not None:
                    self._drop(conn)

    def _deliver(self, payload: str, parts: Reassembler) -> None:
        try:
            msg = json.loads(payload)
            if msg.get("o") == self.origin:
                return  # our own event: local subscribers already have it
            event = parts.feed(msg)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed live notification: %s", exc)
            return
        if event is not None:
            self.received += 1
            self.local.publish(str(msg["c"]), event)
