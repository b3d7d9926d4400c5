"""Rasa's Socket.IO channel, so existing Rasa chat widgets (e.g. rasa-webchat) connect unchanged.

Protocol (as Rasa's ``socketio`` input channel with ``session_persistence: true``):

* client ``session_request`` ``{"session_id": <id or null>}`` -> server ``session_confirm`` ``<id>``
  (a new id when none was given); the socket joins the room of that session id;
* client ``user_uttered`` ``{"message", "session_id", "customData"?}`` -> server ``bot_uttered``
  ``{"text", "metadata": {"message_id", "sources", "role", ...}}`` to every socket of the session.

The conversation is keyed by channel ``socketio`` and sender id = session id, so the same session
id continues the same conversation (also after a server restart). ``customData`` is stored as the
conversation's customer metadata. Agent messages published on the live channel while an agent
holds the conversation reach the widget as ``bot_uttered`` too. Rasa-style intent payloads such
as ``/get_started`` (rasa-webchat's ``initPayload``) are answered with the greeting. As in Rasa,
``/restart`` ends the session's conversation (answered with the greeting) and the next message
starts a new one, as it does after the last one ended or sat idle for the session expiry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

import socketio

from bot.conversation.manager import RESTART_COMMAND, is_restart
from bot.web import live
from bot.web.routes_chat import respond_with_retry, retry_on_conflict
from knowledge.errors import HybrideskError

log = logging.getLogger(__name__)

CHANNEL = "socketio"
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
INTENT_PAYLOAD_RE = re.compile(r"^/[A-Za-z_][\w.-]*(?:\{.*\})?$", re.S)


class SocketIOChannel:
    """The Socket.IO server and its handlers, bound to one FastAPI app's manager and live hub."""

    def __init__(self, app: Any) -> None:
        self.app = app
        settings = app.state.settings
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins="*",  # no cookies are used: any site may embed a Rasa widget
            max_http_buffer_size=settings.max_body_bytes,
            logger=False,
            engineio_logger=False,
        )
        self._forwarders: dict[str, asyncio.Task] = {}
        self._forwarded: dict[str, str] = {}  # session id -> the conversation its forwarder relays
        self._members: dict[str, set[str]] = {}
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("session_request", self.on_session_request)
        self.sio.on("user_uttered", self.on_user_uttered)

    @property
    def manager(self) -> Any:
        return self.app.state.manager

    # -- handlers ------------------------------------------------------------------------------
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        client = (environ.get("asgi.scope") or {}).get("client")  # REMOTE_ADDR is a constant under ASGI
        await self.sio.save_session(sid, {"ip": client[0] if client else "unknown"})
        return True

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        for session_id, sids in list(self._members.items()):
            sids.discard(sid)
            if not sids:
                del self._members[session_id]
                self._stop_forwarding(session_id)

    async def on_session_request(self, sid: str, data: Any = None) -> None:
        requested = data.get("session_id") if isinstance(data, dict) else None
        session_id = requested if isinstance(requested, str) and SESSION_ID_RE.match(requested) else uuid.uuid4().hex
        await self._join(sid, session_id)
        await self.sio.emit("session_confirm", session_id, to=sid)
        conv = await asyncio.to_thread(self._existing, session_id)
        if conv is not None:
            self._forward(session_id, conv.id)

    async def on_user_uttered(self, sid: str, data: Any = None) -> None:
        if not isinstance(data, dict):
            return
        session_id = data.get("session_id")
        if not (isinstance(session_id, str) and SESSION_ID_RE.match(session_id)):
            saved = await self.sio.get_session(sid)
            session_id = saved.get("session_id") or sid
        await self._join(sid, session_id)
        text = data.get("message")
        custom = data.get("customData") if isinstance(data.get("customData"), dict) else None
        restart = is_restart(text)
        if isinstance(text, str) and INTENT_PAYLOAD_RE.match(text.strip()) and not restart:
            await self._utter(session_id, self._greeting(), {"role": "bot", "payload": text.strip()[:64]})
            return
        try:
            # the chat API's per-address limit too: a new session id per message must not bypass it
            limits = self.app.state.chat_limits
            limits.per_ip.enforce((await self.sio.get_session(sid)).get("ip", "unknown"), "requests")
            limits.messages_per_conversation.enforce(f"{CHANNEL}:{session_id}", "messages")
            if restart:  # as Rasa's: ends the conversation; the next message starts a new one
                await asyncio.to_thread(self.manager.restart, CHANNEL, session_id)
                self._stop_forwarding(session_id)
                await self._utter(session_id, self._greeting(), {"role": "bot", "payload": RESTART_COMMAND})
                return
            # the session's open conversation: a new one after it ended or sat idle (session expiry)
            conv, message = await asyncio.to_thread(retry_on_conflict, self.manager.receive_from_sender, CHANNEL,
                                                    session_id, text, custom)
            self._forward(session_id, conv.id)
        except HybrideskError as exc:
            await self._utter(session_id, exc.message, {"role": "system", "error": exc.code}, to=sid)
            return
        except Exception as exc:  # e.g. the 429 of the rate limiter
            detail = getattr(exc, "detail", None)
            if detail is None:
                log.exception("socket.io message from session %s failed", _ref(session_id))
                detail = "Sorry, something went wrong on our side. Please try again."
            await self._utter(session_id, str(detail), {"role": "system", "error": "rejected"}, to=sid)
            return
        hub = self.app.state.live
        hub.publish(conv.id, live.message_event(message))
        try:
            outcome = await respond_with_retry(self.manager, conv.id, message.id)
        except Exception:
            log.exception("reply on socket.io session %s failed", _ref(session_id))
            await self._utter(session_id, "Sorry, something went wrong while answering. Please try again.",
                              {"role": "system", "error": "internal_error"})
            return
        if outcome is None or outcome.suppressed or not outcome.text:
            return  # an agent holds the conversation: their messages arrive through the forwarder
        await self._utter(session_id, outcome.text, {
            "role": "bot", "message_id": outcome.message_id, "intent": outcome.intent,
            "sources": [live.source_link(c) for c in outcome.citations], "handoff": outcome.handoff,
        })

    # -- helpers -------------------------------------------------------------------------------
    async def _join(self, sid: str, session_id: str) -> None:
        members = self._members.setdefault(session_id, set())
        if sid not in members:
            members.add(sid)
            await self.sio.enter_room(sid, session_id)
            saved = await self.sio.get_session(sid)
            await self.sio.save_session(sid, {**saved, "session_id": session_id})

    def _existing(self, session_id: str) -> Any:
        from bot.db.repositories import ConversationRepository

        with self.manager.db.unit_of_work() as session:
            return ConversationRepository(session).by_sender(CHANNEL, session_id)

    def _greeting(self) -> str:
        from bot.web.routes_chat import greeting_for

        return greeting_for(self.app.state.settings)

    async def _utter(self, session_id: str, text: str, metadata: dict[str, Any], to: str | None = None) -> None:
        # Exactly ``text`` + ``metadata``: rasa-webchat renders a message as text only when these are
        # its keys (``metadata`` is read separately and unknown metadata keys are ignored).
        await self.sio.emit("bot_uttered", {"text": text, "metadata": metadata}, to=to or session_id)

    def _forward(self, session_id: str, conversation_id: str) -> None:
        """Relay agent messages of this conversation to the session's sockets (one task per session,
        for the session's current conversation)."""
        task = self._forwarders.get(session_id)
        if task is not None and not task.done() and self._forwarded.get(session_id) == conversation_id:
            return
        self._stop_forwarding(session_id)
        self._forwarded[session_id] = conversation_id
        self._forwarders[session_id] = asyncio.create_task(self._relay(session_id, conversation_id))

    def _stop_forwarding(self, session_id: str) -> None:
        self._forwarded.pop(session_id, None)
        task = self._forwarders.pop(session_id, None)
        if task is not None:
            task.cancel()

    async def _relay(self, session_id: str, conversation_id: str) -> None:
        try:
            async for event in self.app.state.live.subscribe(conversation_id):
                if event.get("type") == "message" and event["message"].get("role") == "agent":
                    m = event["message"]
                    await self._utter(session_id, m["text"], {"role": "agent", "message_id": m["id"]})
        except asyncio.CancelledError:
            raise
        except Exception:  # a relay failure must not take the channel down
            log.exception("relay for socket.io session %s stopped", _ref(session_id))


def _ref(session_id: str) -> str:
    """A session id as logs name it: the id is the customer's credential on this channel, its hash is not."""
    from bot.conversation.manager import hash_token

    return "#" + hash_token(str(session_id))[:12]


def install(app: Any) -> SocketIOChannel:
    """Mount the channel at ``/socket.io`` inside the FastAPI app (the app stays the served object)."""
    channel = SocketIOChannel(app)
    app.state.socketio = channel
    app.mount("/socket.io", socketio.ASGIApp(channel.sio, socketio_path="socket.io"))
    return channel
