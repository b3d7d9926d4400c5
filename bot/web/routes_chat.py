"""The customer chat API: conversations, messages, the live event stream, ratings, handoff, end.

A customer message is stored (and committed) before the request returns 202; the reply is then
produced by a background task that publishes its streamed tokens and the finished message on the
conversation's live channel (:mod:`bot.web.live`), which ``GET .../events`` streams as
Server-Sent Events. A dropped stream reconnects with ``Last-Event-ID`` (the last message ``seq``
seen) and first receives every complete message after it from the database.

``install(app)`` also mounts the widget's static files, the demo page (``/`` and ``/demo``) and
the Rasa Socket.IO channel (``/socket.io``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field

from bot.db.models import Feedback
from bot.db.repositories import ConversationRepository, FeedbackRepository, MessageRepository
from bot.web import live
from bot.web.deps import (
    MAX_ID,
    ConversationTokenDep,
    CustomerConversationDep,
    LiveDep,
    ManagerDep,
    SettingsDep,
)
from bot.web.ratelimit import ChatLimits
from knowledge.errors import Conflict, Forbidden, HybrideskError, InvalidInput

log = logging.getLogger(__name__)

WEB_DIR = FilePath(__file__).resolve().parent
VISIBLE_ROLES = ("customer", "bot", "agent", "system")
VISIBLE_STATUSES = ("complete", "received")
#: how often an idle event stream re-reads the database (catches events from other processes)
POLL_SECONDS = 15.0
HANDOFF_NOTICE = ("You asked for a person: a member of our support team will join this chat shortly. "
                  "You can keep writing in the meantime.")

router = APIRouter(prefix="/api", tags=["chat"])
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"description": "unknown conversation or wrong token (the same answer either way)"}}
pages = APIRouter(include_in_schema=False)


# -- schemas ---------------------------------------------------------------------------------
class StartConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] | None = Field(None, description="what the host page knows (page URL, language...)")


class ConversationStarted(BaseModel):
    conversation_id: str
    token: str = Field(description="secret for this conversation only: send as `Authorization: Bearer <token>`")
    greeting: str
    mode: str = "bot"


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(description="what the customer wrote (plain text; markup is shown as text)")
    client_message_id: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
        description="the client's id for this message; a retried send with the same id is stored once")


class MessageAccepted(BaseModel):
    message_id: int
    seq: int
    status: str = "received"


class Source(BaseModel):
    document_id: str | None
    revision: int | str | None = None
    title: str | None = None
    heading: str | None = None
    anchor: str | None = None
    url: str | None = Field(None, description="link to the cited policy section: /kb/{document_id}#{anchor}")


class MessageOut(BaseModel):
    id: int
    seq: int
    role: Literal["customer", "bot", "agent", "system"]
    text: str
    reply_to: int | None = None
    client_message_id: str | None = None
    sources: list[Source] = []
    created_at: str | None = None


class History(BaseModel):
    conversation_id: str
    mode: str = Field(description="bot | handoff_requested | human")
    status: str = Field(description="open | ended")
    messages: list[MessageOut]


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)


class RatingOut(BaseModel):
    message_id: int
    rating: Literal["up", "down"]


class ModeOut(BaseModel):
    conversation_id: str
    mode: str


class EndIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    satisfaction: int | None = Field(None, ge=1, le=5, description="1 (very unhappy) to 5 (very happy)")


class EndOut(BaseModel):
    conversation_id: str
    status: str
    satisfaction: int | None


# -- helpers ---------------------------------------------------------------------------------
def retry_on_conflict(fn: Any, *args: Any, attempts: int = 4, **kwargs: Any) -> Any:
    """Run a unit of work again when a concurrent writer of the same conversation won the race.

    On SQLite, ``SELECT ... FOR UPDATE`` is a no-op, so two writers can pick the same next ``seq``;
    the loser's transaction is rolled back whole (IntegrityError), so running it again is safe.
    """
    import time

    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except (IntegrityError, OperationalError) as exc:
            transient = isinstance(exc, IntegrityError) or "locked" in str(exc.orig).lower()
            if not transient or attempt == attempts - 1:
                raise
            log.info("write conflict (%s); retrying", type(exc.orig).__name__)
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


async def respond_with_retry(manager: Any, conversation_id: str, message_id: int, **kwargs: Any) -> Any:
    """``manager.respond``, run again if it lost a write race before producing anything."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        try:
            return await manager.respond(conversation_id, message_id, **kwargs)
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("write conflict while preparing the reply to %s; retrying", message_id)
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limits(request: Request) -> ChatLimits:
    return request.app.state.chat_limits


async def per_ip_limit(request: Request) -> None:
    """The address's request bucket, for the reads too: an event stream is a long-lived connection
    that polls the database, and opening them must not be free."""
    _limits(request).per_ip.enforce(_client_ip(request), "requests")


def _visible(messages: list[Any]) -> list[Any]:
    return [m for m in messages if m.role in VISIBLE_ROLES and m.status in VISIBLE_STATUSES]


def _load_message(services: Any, message_id: int) -> Any:
    with services.db.unit_of_work() as session:
        return MessageRepository(session).get(message_id)


def greeting_for(settings: Any) -> str:
    return (f"Hi! I'm the {settings.company_name} assistant. Ask me about orders, deliveries, returns, "
            "payments or your account — or ask for a person at any time.")


async def reply_in_background(app: FastAPI, conversation_id: str, message_id: int) -> None:
    """Produce the bot's reply to one stored message and publish it on the live channel."""
    manager, hub = app.state.manager, app.state.live

    async def sink(event: dict[str, Any]) -> None:
        if event.get("type") == "token" and event.get("text"):
            hub.publish(conversation_id, live.token_event(message_id, event["text"]))

    try:
        outcome = await respond_with_retry(manager, conversation_id, message_id, sink=sink)
    except HybrideskError as exc:
        hub.publish(conversation_id, live.error_event(exc.code, exc.message, message_id))
        return
    except Exception:  # never lose the stream silently; the error is logged with its trace
        log.exception("reply to message %s failed", message_id)
        hub.publish(conversation_id, live.error_event(
            "internal_error", "Sorry, something went wrong while answering. Please try again.", message_id))
        return
    if outcome is None:
        return  # an agent holds the conversation: the console shows the message
    if outcome.suppressed:
        hub.publish(conversation_id, live.mode_event("human", "agent_took_over"))
        return
    if outcome.message is None:
        return
    # The reply as the manager committed it: no need to read it back from the database.
    hub.publish(conversation_id, live.message_event(outcome.message))
    if outcome.handoff:
        hub.publish(conversation_id, live.mode_event(outcome.mode, outcome.mode_reason))


def spawn_reply(app: FastAPI, coro: Any) -> None:
    """Run ``coro`` as a task of its own (it must outlive the request if the client goes away)."""
    tasks: set[asyncio.Task] = app.state.chat_tasks
    task = asyncio.create_task(coro)
    tasks.add(task)  # keep a reference: the loop only holds weak ones
    task.add_done_callback(tasks.discard)


# -- routes ----------------------------------------------------------------------------------
@router.post("/conversations", response_model=ConversationStarted, status_code=201,
             summary="Start a conversation", responses={429: {"description": "too many new conversations"}})
async def start_conversation(request: Request, manager: ManagerDep, settings: SettingsDep,
                             body: StartConversation | None = None) -> ConversationStarted:
    """Returns the conversation id and its secret token (keep it: it is shown only once)."""
    ip = _client_ip(request)
    _limits(request).per_ip.enforce(ip, "requests")
    _limits(request).new_conversations_per_ip.enforce(ip, "new conversations")
    metadata = (body.metadata if body else None) or {}
    conv, token = await asyncio.to_thread(manager.start, channel="widget", sender_id=None, metadata=metadata)
    return ConversationStarted(conversation_id=conv.id, token=token, greeting=greeting_for(settings))


@router.post("/conversations/{conversation_id}/messages", response_model=MessageAccepted, status_code=202,
             summary="Send a customer message",
             responses={403: {"description": "unknown conversation or wrong token"},
                        409: {"description": "the conversation has ended"},
                        413: {"description": "message too long"}, 429: {"description": "too many messages"}})
async def send_message(conversation_id: str, body: SendMessage, request: Request, token: ConversationTokenDep,
                       manager: ManagerDep, hub: LiveDep) -> MessageAccepted:
    """Stores the message (committed before this returns) and starts the reply in the background.

    The reply streams on ``GET /api/conversations/{id}/events`` as ``token`` events followed by one
    ``message`` event with its sources.
    """
    limits = _limits(request)
    limits.per_ip.enforce(_client_ip(request), "requests")

    def authorize_and_store() -> Any:  # one worker-thread hop on the hot path
        manager.authorize(conversation_id, token)
        limits.messages_per_conversation.enforce(conversation_id, "messages in this conversation")
        return retry_on_conflict(manager.receive, conversation_id, body.text,
                                 client_message_id=body.client_message_id)

    message = await asyncio.to_thread(authorize_and_store)
    hub.publish(conversation_id, live.message_event(message))
    # An independent task, not a Starlette background task: measured 3x faster acks and turns
    # (benchmarks/results/web.md), and the reply outlives the request if the client goes away.
    spawn_reply(request.app, reply_in_background(request.app, conversation_id, message.id))
    return MessageAccepted(message_id=message.id, seq=message.seq)


@router.get("/conversations/{conversation_id}/messages", response_model=History, summary="Conversation history",
            responses=FORBIDDEN, dependencies=[Depends(per_ip_limit)])
async def get_history(conv: CustomerConversationDep, manager: ManagerDep,
                      after_seq: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> History:
    messages = await asyncio.to_thread(manager.history, conv.id, after_seq)
    return History(conversation_id=conv.id, mode=conv.mode, status=conv.status,
                   messages=[MessageOut(**live.message_payload(m)) for m in _visible(messages)])


@router.get("/conversations/{conversation_id}/events", response_class=EventSourceResponse,
            summary="Live events (Server-Sent Events)", responses=FORBIDDEN, dependencies=[Depends(per_ip_limit)])
async def stream_events(
    request: Request, conv: CustomerConversationDep, manager: ManagerDep, hub: LiveDep,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_ID, description="replay complete messages after this seq")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> AsyncIterable[ServerSentEvent]:
    """Events: ``ready`` (mode, last seq, the message length limit), ``message`` (id = seq; a complete customer, bot, agent or
    system message with its sources), ``token`` (a streamed piece of the reply to ``reply_to``),
    ``mode`` (``bot``/``handoff_requested``/``human``), ``status`` (``ended``: the stream then ends) and ``error``.

    Authenticate with ``Authorization: Bearer <token>`` or ``?token=``. Reconnect with
    ``Last-Event-ID`` (or ``after_seq``) to receive what was missed from the database.
    """
    last = after_seq if after_seq is not None else _parse_seq(last_event_id)
    mode = conv.mode
    streams: _EventStreams = request.app.state.event_streams
    async with hub.subscription(conv.id) as queue, streams.track(queue, conv.id):
        # Subscribe first, then read history: nothing completed in between is lost.
        history = _visible(await asyncio.to_thread(manager.history, conv.id, last or 0))
        yield _sse("ready", retry=2000, data={"mode": mode, "status": conv.status,
                                              "last_seq": history[-1].seq if history else last,
                                              "max_chars": request.app.state.settings.max_message_chars})
        if last is not None:  # a fresh stream gets history from GET .../messages instead
            for m in history:
                yield _sse("message", id=str(m.seq), data=live.message_payload(m))
        if conv.status == "ended":  # nothing more will happen in it
            yield _sse("status", data={"status": "ended", "reason": None})
            return
        last = max([last or 0] + [m.seq for m in history])
        while not streams.closing:  # the server is stopping: end the stream (the client reconnects)
            try:
                event = await asyncio.wait_for(queue.get(), timeout=POLL_SECONDS)
            except TimeoutError:
                event = "poll"
            if event is SHUTDOWN:
                return
            if event == "poll" or event is None:
                missed, now = await asyncio.to_thread(_poll, manager, conv.id, last)
                for m in missed:
                    last = m.seq
                    yield _sse("message", id=str(m.seq), data=live.message_payload(m))
                if now.mode != mode:
                    mode = now.mode
                    yield _sse("mode", data={"mode": mode, "reason": now.handoff_reason})
                if now.status == "ended":  # its live event was missed (another process, or a resync)
                    yield _sse("status", data={"status": "ended", "reason": None})
                    return
                if event == "poll":
                    yield ServerSentEvent(comment="keep-alive")
                continue
            kind = event.get("type")
            if kind == "message":
                seq = event["message"]["seq"]
                if seq <= last:
                    continue  # already sent from history
                last = seq
                yield _sse("message", id=str(seq), data=event["message"])
            elif kind == "mode":
                mode = event["mode"]
                yield _sse("mode", data={"mode": mode, "reason": event.get("reason")})
            elif kind in ("token", "error"):
                yield _sse(kind, data={k: v for k, v in event.items() if k != "type"})
            elif kind == "status":
                yield _sse("status", data={"status": event["status"], "reason": event.get("reason")})
                if event["status"] == "ended":
                    return


#: put in every open event stream's queue when the server starts shutting down
SHUTDOWN: dict[str, Any] = {"type": "shutdown"}


class _EventStreams:
    """The queues of the open event streams, so a stopping server can end them all at once.

    An event stream never ends on its own, and uvicorn's graceful shutdown waits for every open
    connection: without this, one open widget kept ``hybridesk serve`` from stopping.
    """

    def __init__(self) -> None:
        self.closing = False
        self._queues: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._open: dict[str, int] = {}  # conversation id -> open streams (a widget per tab)

    @contextlib.asynccontextmanager
    async def track(self, queue: asyncio.Queue, conversation_id: str | None = None) -> AsyncIterator[None]:
        entry = (asyncio.get_running_loop(), queue)
        self._queues.add(entry)
        if conversation_id is not None:
            self._open[conversation_id] = self._open.get(conversation_id, 0) + 1
        try:
            yield
        finally:
            self._queues.discard(entry)
            if conversation_id is not None:
                left = self._open.get(conversation_id, 1) - 1
                if left > 0:
                    self._open[conversation_id] = left
                else:
                    self._open.pop(conversation_id, None)

    def connected(self) -> frozenset[str]:
        """The conversations with a widget connected to this process now (its page is open). Safe from any
        thread: ``dict.copy`` is one step for the interpreter, iterating the dict would not be."""
        return frozenset(self._open.copy())

    def close_all(self) -> int:
        """End every open stream (safe from any thread); streams opened later end at once."""
        self.closing = True
        entries = list(self._queues)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, queue in entries:
            if loop is running:
                _end_stream(queue)
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed: the stream is gone
                    loop.call_soon_threadsafe(_end_stream, queue)
        return len(entries)


def _end_stream(queue: asyncio.Queue) -> None:
    if not queue.full():  # a full queue ends with a resync marker; ``closing`` is checked after it
        queue.put_nowait(SHUTDOWN)


def close_event_streams(app: FastAPI) -> int:
    """Tell the open event streams that the server is stopping; returns how many were open.

    ``hybridesk serve`` calls this as soon as uvicorn starts its graceful shutdown.
    """
    streams = getattr(app.state, "event_streams", None)
    return streams.close_all() if streams is not None else 0


def _sse(event: str, data: Any, id: str | None = None, retry: int | None = None) -> ServerSentEvent:
    """An SSE event whose data is JSON-encoded here: the payloads are plain JSON values already,
    so FastAPI's generic ``jsonable_encoder`` walk of each one is not needed (same bytes on the wire)."""
    return ServerSentEvent(event=event, id=id, retry=retry, raw_data=json.dumps(data, default=jsonable_encoder))


def _parse_seq(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return min(max(0, int(value.strip())), MAX_ID)
    except ValueError:
        return None


def _poll(manager: Any, conversation_id: str, after_seq: int) -> tuple[list[Any], Any]:
    messages = _visible(manager.history(conversation_id, after_seq))
    return messages, manager.get(conversation_id)


@router.post("/messages/{message_id}/rating", response_model=RatingOut, summary="Rate a bot answer",
             responses=FORBIDDEN)
async def rate_message(message_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: RatingIn, request: Request,
                       token: ConversationTokenDep, manager: ManagerDep) -> RatingOut:
    """Thumbs up or down (with an optional comment) on one of the bot's answers; rating again replaces it."""
    _limits(request).per_ip.enforce(_client_ip(request), "requests")
    services = request.app.state.services
    message = await asyncio.to_thread(_load_message, services, message_id)
    if message is None:
        raise Forbidden("Unknown conversation or wrong conversation token.", code="conversation_forbidden")
    conv = await asyncio.to_thread(manager.authorize, message.conversation_id, token)
    if message.role != "bot" or message.status != "complete":
        raise InvalidInput("Only the assistant's answers can be rated.", code="not_rateable", field="message_id")
    await asyncio.to_thread(_store_rating, services, conv.id, message_id, body)
    return RatingOut(message_id=message_id, rating=body.rating)


def _store_rating(services: Any, conversation_id: str, message_id: int, body: RatingIn) -> None:
    value = 1 if body.rating == "up" else -1
    with services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id, for_update=True)
        feedback = FeedbackRepository(session)
        existing = feedback.for_message(message_id)
        was_down = existing is not None and existing.rating < 0
        if existing is None:
            feedback.add(Feedback(message_id=message_id, conversation_id=conversation_id, rating=value,
                                  comment=body.comment))
        else:
            existing.rating, existing.comment = value, body.comment if body.comment is not None else existing.comment
        # The policy reads thumbs_down: an angry customer who was not helped goes to a person.
        state = dict(conv.state or {})
        down = int(state.get("thumbs_down", 0)) + (value < 0 and not was_down) - (value > 0 and was_down)
        state["thumbs_down"] = max(0, down)
        conv.state = state


@router.post("/conversations/{conversation_id}/handoff", response_model=ModeOut, summary="Ask for a person",
             responses=FORBIDDEN)
async def request_handoff(request: Request, conv: CustomerConversationDep, hub: LiveDep) -> ModeOut:
    """Puts the conversation in the agents' queue (``handoff_requested``) until an agent takes it."""
    _limits(request).per_ip.enforce(_client_ip(request), "requests")
    mode, notice = await asyncio.to_thread(retry_on_conflict, _handoff, request.app.state.services, conv.id)
    if notice is not None:
        hub.publish(conv.id, live.message_event(notice))
        hub.publish(conv.id, live.mode_event(mode, "customer_asked_for_human"))
    return ModeOut(conversation_id=conv.id, mode=mode)


def _handoff(services: Any, conversation_id: str) -> tuple[str, Any]:
    with services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id, for_update=True)
        if conv.status == "ended":
            raise Conflict("This conversation has ended; start a new one.", code="conversation_ended")
        if conv.mode != "bot":
            return conv.mode, None  # already queued or held by an agent
        conv.mode, conv.handoff_reason = "handoff_requested", "customer_asked_for_human"
        conv.state = dict(conv.state or {}) | {"handoff_at": datetime.now(UTC).isoformat()}  # the queue's order
        notice = MessageRepository(session).append(conv, role="system", text=HANDOFF_NOTICE, status="complete")
        return conv.mode, notice


@router.post("/conversations/{conversation_id}/end", response_model=EndOut, summary="End the conversation",
             responses=FORBIDDEN)
async def end_conversation(request: Request, conv: CustomerConversationDep, manager: ManagerDep, hub: LiveDep,
                           body: EndIn | None = None) -> EndOut:
    """Closes the conversation, optionally with a satisfaction rating (1-5). Ending twice is harmless."""
    _limits(request).per_ip.enforce(_client_ip(request), "requests")
    satisfaction = body.satisfaction if body else None
    ended = await asyncio.to_thread(manager.end, conv.id, satisfaction)
    if conv.status != "ended":  # the customer's other open streams (another device) close too
        hub.publish(conv.id, live.status_event("ended", "customer_ended"))
    return EndOut(conversation_id=conv.id, status=ended.status, satisfaction=ended.satisfaction)


# -- demo page -------------------------------------------------------------------------------
# the demo page runs the widget and nothing else: its own script and styles, its own API
DEMO_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'")


@pages.get("/", response_class=HTMLResponse)
@pages.get("/demo", response_class=HTMLResponse)
async def demo_page() -> Response:
    html = (WEB_DIR / "templates" / "demo.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache", "Content-Security-Policy": DEMO_CSP})


@pages.get("/favicon.ico")
async def favicon() -> Response:
    """No icon: browsers ask for one on every page (a 404 in the server log each time otherwise)."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


# -- wiring ----------------------------------------------------------------------------------
class _ApiCORS:
    """CORS for the public chat API and widget assets only (the console stays same-origin)."""

    PREFIXES = ("/api/", "/static/")

    def __init__(self, app: Any) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        # Token auth in a header, never cookies: any site may embed the widget.
        self.cors = CORSMiddleware(app, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"],
                                   allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                                   expose_headers=["Retry-After"], max_age=600)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.PREFIXES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Add the chat API, the widget's static files, the demo page and the Socket.IO channel."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from bot.web import socketio_channel

    # in process on SQLite; across server processes (LISTEN/NOTIFY) on PostgreSQL
    app.state.live = live.make_hub(app.state.settings.resolved_database_url)
    app.state.chat_limits = ChatLimits()
    app.state.chat_tasks = set()
    app.state.event_streams = _EventStreams()
    app.include_router(router)
    app.include_router(pages)
    if not any(isinstance(r, Mount) and r.path == "/static" for r in app.routes):
        app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.add_middleware(_ApiCORS)
    socketio_channel.install(app)
