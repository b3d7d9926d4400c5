"""The conversation manager: one customer turn, end to end.

1. ``receive`` validates and stores the customer's message and commits *before* anything
   else runs, so an acknowledged message is never lost.
2. ``respond`` skips the bot when an agent holds the conversation, runs NLU (intent + tone),
   lets the policy decide, runs the chosen rasa-sdk action in process (streaming its chunks to
   the caller), re-checks that no agent took over meanwhile, and stores the reply with its
   intent, tone, citations, adapter, guardrail verdict, latency and token counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rasa_sdk.executor import ActionExecutor
from sqlalchemy.exc import IntegrityError

from bot.conversation import actions as actions_module
from bot.conversation.limits import problem_search
from bot.conversation.nlu.text import as_read
from bot.conversation.policy import Decision, decide, unsure
from bot.conversation.responder import FACTUAL_RE, answered_by_kb, passage_dict
from bot.db.models import Conversation, Message
from bot.db.repositories import ConversationRepository, MessageRepository, ModelCallRepository
from knowledge.errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge

log = logging.getLogger(__name__)

Sink = Callable[[dict[str, Any]], Awaitable[None]]
#: how often (seconds) a streaming reply re-reads whether an agent has taken the conversation over
HELD_CHECK_S = 0.5
#: the Rasa channels' command that ends the sender's conversation (the next message starts a new one)
RESTART_COMMAND = "/restart"
FAILURE_TEXT = (
    "Sorry — something went wrong on our side while I was answering. Your message is saved; "
    "you can ask again, or I can connect you with a person."
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: format characters taken out of customer messages: the bidi embeddings, overrides and isolates, which
#: reorder the text around a message where an agent reads it ("\u202e" turned the console's "waiting since"
#: line backwards), and the zero-width space, word joiner and byte-order mark. The zero-width (non-)joiner
#: stays: emoji sequences and Persian words need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff"))


def clean_text(text: Any, max_chars: int) -> str:
    """Validate a customer message: a non-empty string of printable text within the limit."""
    if not isinstance(text, str):
        raise InvalidInput("The message must be a string.", code="invalid_message", field="text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("The message contains characters that are not valid UTF-8.",
                           code="invalid_message", field="text") from exc
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc").translate(_INVISIBLE).strip()
    if not any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text):  # nothing one can see
        raise InvalidInput("The message is empty; type a question.", code="empty_message", field="text")
    if len(text) > max_chars:
        raise TooLarge(f"The message is {len(text)} characters long; the limit is {max_chars}. "
                       "Please shorten it.", code="message_too_long", field="text")
    return text


@dataclass
class ReplyOutcome:
    message_id: int | None
    text: str
    action: str
    reason: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    intent: str | None = None
    tone: str | None = None
    verdict: str | None = None
    handoff: bool = False
    suppressed: bool = False  # an agent took over while the reply was being written
    message: Message | None = None  # the stored reply as committed (to publish without reading it again)
    mode: str | None = None  # the conversation's mode after this turn, and why
    mode_reason: str | None = None


#: a figure question this short is read with the customer's previous message when the KB is checked
MAX_FOLLOW_UP_WORDS = 8


class ConversationManager:
    """Stateless between calls: all conversation state lives in the database."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.executor = ActionExecutor()
        self.executor.register_package(actions_module)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def db(self):
        return self.services.db

    # -- conversations -------------------------------------------------------------------
    def start(self, *, channel: str = "widget", sender_id: str | None = None,
              metadata: dict[str, Any] | None = None) -> tuple[Conversation, str]:
        with self.db.unit_of_work() as session:
            return _add_conversation(session, channel, sender_id, metadata)

    def by_sender(self, channel: str, sender_id: str, metadata: dict[str, Any] | None = None) -> Conversation:
        """The open conversation of a Rasa-channel sender (``metadata`` is stored when one is created).

        A new one is started on first contact, after the sender's last one ended ("/restart", an
        agent, ...), and after it was idle for longer than ``session_expiry_minutes`` (it is ended
        first), unless a person holds it or is about to answer: then it continues. The ended
        conversations keep their messages. A sender has at most one open conversation (a partial
        unique index): of two first messages at once, the one that loses the race reads the other's.
        """
        for attempt in range(4):
            with self.db.unit_of_work() as session:
                conv = ConversationRepository(session).by_sender(channel, sender_id)
            if conv is not None and not self._expired(conv):
                return conv
            try:
                with self.db.unit_of_work() as session:
                    if conv is not None:  # idle for too long: ended, unless a message came meanwhile
                        conv = ConversationRepository(session).get(conv.id, for_update=True)
                        if conv is not None and conv.status == "open":
                            if not self._expired(conv):
                                return conv
                            _close(conv)
                    return _add_conversation(session, channel, sender_id, metadata)[0]
            except IntegrityError:  # a concurrent message of this sender opened one first: read it
                if attempt == 3:
                    raise
                log.info("a concurrent message opened this sender's conversation; reading it")
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def _expired(self, conv: Conversation) -> bool:
        """Whether a sender's conversation was idle for longer than the session expiry, with nobody
        but the bot on it (a person holding it or about to answer keeps it going)."""
        minutes = self.services.settings.session_expiry_minutes
        if not minutes or conv.status != "open" or conv.mode != "bot":
            return False
        last = conv.last_message_at or conv.created_at
        return last is not None and datetime.now(UTC) - last > timedelta(minutes=minutes)

    def receive_from_sender(self, channel: str, sender_id: str, text: Any,
                            metadata: dict[str, Any] | None = None) -> tuple[Conversation, Message]:
        """Store a Rasa-channel message in the sender's open conversation (:meth:`by_sender`).

        Committed when this returns. A conversation ended between finding it and storing the
        message (a "/restart" sent at the same time) is not written to: the message starts the
        sender's next conversation instead.
        """
        clean_text(text, self.services.settings.max_message_chars)  # bad input neither starts nor ends one
        for attempt in range(3):
            conv = self.by_sender(channel, sender_id, metadata)
            try:
                return conv, self.receive(conv.id, text)
            except Conflict as exc:
                if exc.code != "conversation_ended" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def end(self, conversation_id: str, satisfaction: int | None = None) -> Conversation:
        """End the conversation, optionally with a satisfaction rating; ending twice is harmless.

        Its messages stay (agents read them in the console); it takes no more customer messages.
        """
        with self.db.unit_of_work() as session:
            conv = ConversationRepository(session).get(conversation_id, for_update=True)
            if conv is None:
                raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
            _close(conv)
            if satisfaction is not None:
                conv.satisfaction = satisfaction
            return conv

    def restart(self, channel: str, sender_id: str) -> Conversation | None:
        """Rasa's "/restart": end the sender's open conversation; their next message starts a new one.

        The ended conversation, or None when the sender had none open.
        """
        with self.db.unit_of_work() as session:
            conv = ConversationRepository(session).by_sender(channel, sender_id)
        return None if conv is None else self.end(conv.id)

    def authorize(self, conversation_id: str, token: str | None) -> Conversation:
        """The conversation if ``token`` is its secret; the same error whether it exists or not."""
        with self.db.unit_of_work() as session:
            conv = ConversationRepository(session).get(conversation_id) if len(conversation_id) <= 64 else None
        if conv is None or not token or not hmac.compare_digest(conv.token_hash, hash_token(token)):
            raise Forbidden("Unknown conversation or wrong conversation token.", code="conversation_forbidden")
        return conv

    def get(self, conversation_id: str) -> Conversation:
        with self.db.unit_of_work() as session:
            conv = ConversationRepository(session).get(conversation_id)
        if conv is None:
            raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
        return conv

    def history(self, conversation_id: str, after_seq: int = 0) -> list[Message]:
        with self.db.unit_of_work() as session:
            return list(MessageRepository(session).history(conversation_id, after_seq=after_seq))

    # -- one turn ------------------------------------------------------------------------
    def receive(self, conversation_id: str, text: Any, *, client_message_id: str | None = None,
                role: str = "customer", author_user_id: int | None = None) -> Message:
        """Validate and store one incoming message; committed when this returns."""
        text = clean_text(text, self.services.settings.max_message_chars)
        with self.db.unit_of_work() as session:
            convs = ConversationRepository(session)
            conv = convs.get(conversation_id, for_update=True)
            if conv is None:
                raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
            if conv.status == "ended" and role == "customer":
                raise Conflict("This conversation has ended; start a new one.", code="conversation_ended")
            msgs = MessageRepository(session)
            if client_message_id:
                existing = msgs.by_client_id(conversation_id, client_message_id)
                if existing is not None:
                    return existing  # a retried send: acknowledged once, stored once
            return msgs.append(conv, role=role, text=text, status="received",
                               client_message_id=client_message_id, author_user_id=author_user_id)

    async def handle(self, conversation_id: str, text: Any, *, client_message_id: str | None = None,
                     sink: Sink | None = None) -> tuple[Message, ReplyOutcome | None]:
        message = await asyncio.to_thread(self.receive, conversation_id, text, client_message_id=client_message_id)
        outcome = await self.respond(conversation_id, message.id, sink=sink)
        return message, outcome

    async def respond(self, conversation_id: str, message_id: int, *, sink: Sink | None = None,
                      at: datetime | None = None) -> ReplyOutcome | None:
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        async with lock:
            return await self._respond(conversation_id, message_id, sink, at)

    async def _respond(self, conversation_id: str, message_id: int, sink: Sink | None,
                       at: datetime | None) -> ReplyOutcome | None:
        started = time.perf_counter()
        prep = await asyncio.to_thread(self._prepare, conversation_id, message_id)
        if prep is None or isinstance(prep, ReplyOutcome):
            return prep
        conv, message, history, nlu_result, decision, pending = prep
        tone = nlu_result.tone.label
        action_call = self._action_call(conv, message, history, nlu_result, decision, at)
        queue: asyncio.Queue = asyncio.Queue()
        streamed: list[str] = []

        async def pump() -> None:
            # an agent who takes over mid-reply silences the rest of it at once (the reply is discarded
            # when it is stored): the mode is read again at most every HELD_CHECK_S while streaming
            held, checked = False, -math.inf
            while True:
                event = await queue.get()
                kind = event.get("event")
                if kind == "stream_chunk" and event.get("text"):
                    streamed.append(event["text"])
                    if sink is not None and not held and time.monotonic() - checked >= HELD_CHECK_S:
                        held, checked = await asyncio.to_thread(self._held, conversation_id), time.monotonic()
                    if sink is not None and not held:
                        await sink({"type": "token", "text": event["text"]})
                if kind in ("stream_done", "stream_error"):
                    return

        pump_task = asyncio.create_task(pump())
        try:
            result = await self.executor.run(action_call, sink=queue)
            error = None
        except Exception as exc:  # the action (model, retriever) failed: record, fall back
            log.exception("action %s failed", decision.action_name)
            result, error = None, f"{type(exc).__name__}: {exc}"
        await pump_task
        latency_ms = (time.perf_counter() - started) * 1000
        return await asyncio.to_thread(
            self._finish, conversation_id, message_id, pending, decision, nlu_result, tone, result,
            error, "".join(streamed), latency_ms,
        )

    def _held(self, conversation_id: str) -> bool:
        """Whether an agent holds the conversation now."""
        with self.db.unit_of_work() as session:
            return session.scalar(sa.select(Conversation.mode).where(Conversation.id == conversation_id)) == "human"

    def _prepare(self, conversation_id: str, message_id: int):
        # Two units of work on purpose: NLU runs between them, outside any transaction, so a slow
        # model never holds the database's write lock (SQLite has one for the whole database).
        with self.db.unit_of_work() as session:
            convs, msgs = ConversationRepository(session), MessageRepository(session)
            conv = convs.get(conversation_id)
            message = msgs.get(message_id)
            if conv is None or message is None or message.conversation_id != conversation_id:
                raise NotFound("Unknown conversation or message.", code="message_not_found")
            done = msgs.reply_to(message_id)
            if done is not None and done.status == "complete":
                return _done(done, message, conv)
            if conv.mode == "human":
                return None  # an agent holds the conversation: the bot stays silent
            history = [(role, text) for id_, role, text, status in msgs.recent_turns(conversation_id, 12)
                       if id_ != message_id and role in ("customer", "bot", "agent")
                       and status in ("complete", "received")]
        nlu = self.services.nlu.current()
        customer_turns = [t for r, t in history if r == "customer"][-3:]
        t0 = time.perf_counter()
        # misspelt words as the knowledge base spells them ("i forgot my pasword"); the stored text stays as sent
        spelled = self._spelled(message.text)
        nlu_result = nlu.predict(spelled, history=customer_turns)
        nlu_ms = (time.perf_counter() - t0) * 1000
        # the intent model does not know the question; the knowledge base may still speak about it
        # the knowledge base, the policy and the actions read the message as the intent model does: as a
        # person sees it rendered ("<b>What</b> is your returns window?" asks for the returns window)
        read = as_read(spelled)
        in_kb = unsure(nlu_result) and self._in_knowledge_base(read, history)
        with self.db.unit_of_work() as session:
            convs, msgs = ConversationRepository(session), MessageRepository(session)
            conv = convs.get(conversation_id, for_update=True)
            # One reply per message, across server processes: a retried send that reached another
            # process, or two processes recovering after a restart, found no reply above and ran the
            # NLU alike; the conversation's row lock orders them here, and the later one leaves it.
            claimed = msgs.live_reply_to(message_id)
            if claimed is not None:
                return _done(claimed, message, conv) if claimed.status == "complete" else None
            # ``message`` was read above and nothing but this turn writes to it: attach it to this
            # session instead of reading it again (``expire_on_commit=False`` kept its columns).
            session.add(message)
            state = dict(conv.state or {})
            decision = decide(read, nlu_result, state, in_knowledge_base=in_kb)
            # The two INSERTs first, then the changes to loaded rows, which are all written in one
            # flush at commit (an INSERT sent after a change would flush it early, on its own).
            ModelCallRepository(session).log(
                message_id=message.id, conversation_id=conversation_id, kind="nlu",
                model_id=f"nlu:{getattr(nlu_result, 'version', '?')}",
                prompt={"text": message.text, "history": customer_turns,
                        **({"read_as": spelled} if spelled != message.text else {})},
                output=f"{nlu_result.intent} ({float(nlu_result.confidence):.2f}) tone={nlu_result.tone.label}",
                duration_ms=nlu_ms,
            )
            pending = msgs.append(conv, role="bot", text="", status="pending", reply_to_id=message.id,
                                  intent=nlu_result.intent, tone=nlu_result.tone.label,
                                  policy_action=decision.action, policy_reason=decision.reason)
            conv.state = state
            message.intent, message.intent_confidence = nlu_result.intent, float(nlu_result.confidence)
            message.out_of_scope = bool(nlu_result.out_of_scope)
            message.tone, message.tone_scores = nlu_result.tone.label, dict(nlu_result.tone.scores)
            message.policy_action, message.policy_reason = decision.action, decision.reason
            message.status = "complete"
            return conv, message, history, nlu_result, decision, pending

    def _in_knowledge_base(self, text: str, history: list[tuple[str, str]]) -> bool:
        recent = [as_read(t) for role, t in history if role == "customer"][-2:]
        asked = [text]
        if recent and FACTUAL_RE.search(text) and len(text.split()) <= MAX_FOLLOW_UP_WORDS:
            # a short question for a figure right after a message about something ("i keep getting locked out
            # of my account" -> "how long is the lock"; "its already packed" -> "how much does that cost?") asks
            # about that thing: read with it, as the responder's retrieval does (QA: asked what it was about)
            asked.append(f"{recent[-1]} {text}")
        try:
            products = self.services.product_words()
            for question in asked:
                passages = [passage_dict(p) for p in
                            self.services.knowledge.retrieve(problem_search(question, products), history=recent, k=3)]
                if answered_by_kb(question, passages, self.services.knowledge, products):
                    return True
        except Exception:  # no index yet, or a question retrieval refuses: the intent model decides
            log.warning("knowledge-base check failed", exc_info=True)
        return False

    def _spelled(self, text: str) -> str:
        """``text`` with its misspelt words corrected (:mod:`bot.conversation.spelling`); as it is when the
        knowledge base cannot be read (the message is still answered)."""
        try:
            return self.services.speller.correct(text)
        except Exception as exc:
            # (once per manager: a KB that cannot be read says so on every message otherwise)
            level = logging.DEBUG if getattr(self, "_speller_failed", False) else logging.WARNING
            self._speller_failed = True
            log.log(level, "spelling check failed (%s: %s); messages are read as sent", type(exc).__name__, exc)
            return text

    def _action_call(self, conv: Conversation, message: Message, history: list[tuple[str, str]], nlu: Any,
                     decision: Decision, at: datetime | None) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        for role, text in history:
            events.append({"event": "user" if role == "customer" else "bot", "text": text, "timestamp": None})
        latest = {
            "text": as_read(self._spelled(message.text)),
            "intent": {"name": nlu.intent, "confidence": float(nlu.confidence)},
            "intent_ranking": [{"name": n, "confidence": float(p)} for n, p in getattr(nlu, "top", [])],
            "entities": [],
            "metadata": {
                "tone": nlu.tone.label, "conversation_id": conv.id, "grounded_only": decision.grounded_only,
                "policy_reason": decision.reason, "at": (at or datetime.now(UTC)).isoformat(),
                "mode": conv.mode,
            },
        }
        events.append({"event": "user", "text": latest["text"], "parse_data": latest, "timestamp": None})
        return {
            "next_action": decision.action_name,
            "sender_id": conv.sender_id or conv.id,
            "tracker": {"sender_id": conv.sender_id or conv.id, "slots": {}, "latest_message": latest,
                        "events": events, "paused": False, "followup_action": None,
                        "active_loop": {}, "latest_action_name": "action_listen"},
            "domain": {},
            "version": "3.0.0",
        }

    def _finish(self, conversation_id: str, message_id: int, pending: Message, decision: Decision, nlu: Any,
                tone: str, result: Any, error: str | None, streamed: str, latency_ms: float) -> ReplyOutcome:
        with self.db.unit_of_work() as session:
            convs, msgs = ConversationRepository(session), MessageRepository(session)
            conv = convs.get(conversation_id, for_update=True)
            session.add(pending)  # the placeholder _prepare stored; only this turn writes to it
            messages = list(getattr(result, "responses", None) or []) if result is not None else []
            text = "\n".join(m.get("text") or "" for m in messages if m.get("text")).strip()
            custom: dict[str, Any] = {}
            for m in messages:
                custom.update(m.get("custom") or {})
            if custom.get("error"):
                error = error or custom["error"]
            if conv.mode == "human":
                # An agent took over while we were writing: keep the draft, never deliver it.
                pending.status, pending.text = "discarded", text or streamed
                pending.policy_reason = "agent_took_over"
                return ReplyOutcome(pending.id, "", decision.action, "agent_took_over", suppressed=True)
            if result is None or not text:
                pending.status, pending.text = "failed", streamed
                pending.guardrail_details = {"error": error}
                reply = msgs.append(conv, role="bot", text=FAILURE_TEXT, status="complete", reply_to_id=message_id,
                                    policy_action="fallback", policy_reason="generation_failed",
                                    guardrail_verdict="fallback", latency_ms=latency_ms)
                self._log_call(session, pending.id, conversation_id, custom, error)
                return ReplyOutcome(reply.id, FAILURE_TEXT, "fallback", "generation_failed",
                                    intent=nlu.intent, tone=tone, verdict="fallback",
                                    message=reply, mode=conv.mode, mode_reason=conv.handoff_reason)
            pending.text, pending.status = text, "complete"
            pending.citations = custom.get("citations") or []
            pending.guardrail_verdict = custom.get("verdict")
            pending.guardrail_details = custom.get("guardrail")
            pending.adapter_id, pending.model_id = custom.get("adapter_id"), custom.get("model_id")
            pending.prompt_tokens, pending.completion_tokens = custom.get("prompt_tokens"), custom.get("completion_tokens")
            pending.latency_ms = latency_ms
            handoff = bool(custom.get("handoff"))
            state = dict(conv.state or {})
            if custom.get("verdict") == "fallback" or decision.action == "clarify":
                state["unhelpful_replies"] = int(state.get("unhelpful_replies", 0)) + 1
            if handoff and conv.mode == "bot":
                conv.mode, conv.handoff_reason = "handoff_requested", decision.reason
                state["handoff_at"] = datetime.now(UTC).isoformat()  # the agents' queue is oldest first
            conv.state = state
            if custom.get("prompt") is not None:
                self._log_call(session, pending.id, conversation_id, custom, error)
            return ReplyOutcome(pending.id, text, decision.action, decision.reason, pending.citations or [],
                                nlu.intent, tone, pending.guardrail_verdict, handoff=handoff,
                                message=pending, mode=conv.mode, mode_reason=conv.handoff_reason)

    @staticmethod
    def _log_call(session: Any, message_id: int, conversation_id: str, custom: dict[str, Any],
                  error: str | None) -> None:
        ModelCallRepository(session).log(
            message_id=message_id, conversation_id=conversation_id, kind="generate",
            model_id=custom.get("model_id"), adapter_id=custom.get("adapter_id"), prompt=custom.get("prompt"),
            output=custom.get("raw_output"), status="error" if error else "ok", error=error,
            prompt_tokens=custom.get("prompt_tokens"), completion_tokens=custom.get("completion_tokens"),
            duration_ms=custom.get("generation_ms"),
        )

    # -- recovery ------------------------------------------------------------------------
    def recover_interrupted(self, *, older_than_s: float = 0.0) -> list[tuple[str, int]]:
        """After a crash: mark half-written replies failed; return customer messages still unanswered.

        ``older_than_s``: only replies started at least this long ago count as half-written. Another
        server process on the same database may be writing the younger ones right now (a reply takes
        at most the generation timeout); their messages are not returned either.
        """
        import sqlalchemy as sa

        with self.db.unit_of_work() as session:
            before = datetime.now(UTC) - timedelta(seconds=older_than_s)
            pending = session.scalars(sa.select(Message).where(Message.status == "pending",
                                                               Message.created_at <= before)).all()
            for m in pending:
                m.status = "failed"
                m.guardrail_details = {"error": "server stopped while this reply was being written"}
            session.flush()
            answered = sa.select(Message.reply_to_id).where(Message.status.in_(("complete", "pending")),
                                                            Message.reply_to_id.is_not(None))
            # A message an agent saw: one written while a person held the chat is followed by that
            # person's messages or the "left the chat" notice; the bot must not answer it after a restart.
            later = sa.orm.aliased(Message)
            seen_by_person = (sa.select(later.id)
                              .where(later.conversation_id == Message.conversation_id, later.id > Message.id,
                                     later.role.in_(("agent", "system")))
                              .exists())
            rows = session.execute(
                sa.select(Message.conversation_id, Message.id)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.role == "customer", Message.id.not_in(answered), Conversation.mode != "human",
                       Conversation.status == "open", ~seen_by_person)
                .order_by(Message.id)
            ).all()
            return [(r[0], r[1]) for r in rows]


def _done(reply: Message, message: Message, conv: Conversation) -> ReplyOutcome:
    """The outcome of a turn answered already (a retried send, or another process's reply)."""
    return ReplyOutcome(reply.id, reply.text, reply.policy_action or "answer", reply.policy_reason or "",
                        reply.citations or [], message.intent, message.tone, reply.guardrail_verdict,
                        message=reply, mode=conv.mode, mode_reason=conv.handoff_reason)


def is_restart(text: Any) -> bool:
    """Whether a Rasa-channel message is the "/restart" command (trimmed, in any case)."""
    return isinstance(text, str) and text.strip().lower() == RESTART_COMMAND


def _add_conversation(session: Any, channel: str, sender_id: str | None,
                      metadata: dict[str, Any] | None) -> tuple[Conversation, str]:
    """A new open conversation and its secret token (flushed: a second open one of a sender fails here)."""
    token = secrets.token_urlsafe(32)
    conv = ConversationRepository(session).add(Conversation(
        id=uuid.uuid4().hex, token_hash=hash_token(token), channel=channel, sender_id=sender_id,
        customer_metadata=_small_metadata(metadata), state={},
    ))
    return conv, token


def _close(conv: Conversation) -> None:
    if conv.status != "ended":
        conv.status, conv.ended_at = "ended", datetime.now(UTC)


def _small_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What the host page or channel told us, as strict JSON of at most 4,000 characters.

    Python's JSON reader accepts NaN and Infinity, which PostgreSQL's JSON types refuse: they are
    kept as text, so a stray ``"x": NaN`` cannot fail the customer's first message.
    """
    if not metadata:
        return {}
    import json

    def strict(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {str(k): strict(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [strict(v) for v in value]
        return value

    metadata = strict(metadata)
    raw = json.dumps(metadata, default=str)[:4000]
    return {"raw": raw} if len(raw) >= 4000 else json.loads(json.dumps(metadata, default=str))
