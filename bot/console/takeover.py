"""Live takeover: an agent claims a conversation, chats with the customer, and hands it back.

Claiming is one conditional ``UPDATE ... WHERE held_by_user_id IS NULL OR = me``: the database
decides, so two agents (in one process or several) can never both hold a conversation; the
loser gets a 409 naming the holder. Once the mode is ``human`` the conversation manager stays
silent and discards a reply that was being written when the agent took over.

Every change is published on the live hub (``bot.web.live``) so the widget shows agent messages
and mode changes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bot.db.models import Conversation, User
from bot.db.repositories import ConversationRepository, MessageRepository
from knowledge.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], Any]
JOIN_NOTICE = "{name} from our support team has joined the chat."
LEAVE_NOTICE = "{name} has handed you back to our assistant. Ask away!"


def _events() -> Any:
    from bot.web import live  # the widget's live channel (in process; SSE re-reads the DB too)

    return live


def _publish(publish: Publish | None, conversation_id: str, events: list[dict[str, Any]]) -> None:
    if publish is None:
        return
    for event in events:
        try:
            publish(conversation_id, event)
        except Exception:  # a live push must never undo a committed change
            log.exception("could not publish a live event for %s", conversation_id)


def take_over(db: Any, conversation_id: str, user: Any, publish: Publish | None = None) -> bool:
    """Hold the conversation for ``user``; True if newly taken, False if they already held it.

    Raises Conflict (409) when another agent holds it, NotFound when it does not exist.
    """
    live = _events()
    with db.unit_of_work() as session:
        result = session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.status != "ended",
                   sa.or_(Conversation.held_by_user_id.is_(None), Conversation.held_by_user_id == user.id,
                          # a holder whose account was disabled can hand nothing back: anyone may take it
                          Conversation.held_by_user_id.in_(sa.select(User.id).where(User.active.is_(False)))))
            .values(mode="human", held_by_user_id=user.id,
                    handoff_reason=sa.func.coalesce(Conversation.handoff_reason, "agent_takeover"),
                    updated_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            conv = ConversationRepository(session).get(conversation_id)
            if conv is None:
                raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
            if conv.status == "ended":
                raise Conflict("This conversation has ended; there is nobody to talk to.",
                               code="conversation_ended")
            holder = session.get(User, conv.held_by_user_id) if conv.held_by_user_id else None
            name = holder.display_name if holder else "another agent"
            raise Conflict(f"{name} already holds this conversation; ask them to hand it back first.",
                           code="conversation_held", held_by=name)
        conv = ConversationRepository(session).get(conversation_id, for_update=True)
        # the customer was told this agent is here, and not since that they were handed back
        notices = [m for m in MessageRepository(session).history(conversation_id, limit=20)
                   if m.role == "system" and m.author_user_id is not None]
        already = bool(notices) and notices[-1].author_user_id == user.id and notices[-1].text.endswith(
            "joined the chat.")
        notice = None
        if not already:
            notice = MessageRepository(session).append(
                conv, role="system", text=JOIN_NOTICE.format(name=user.display_name), status="complete",
                author_user_id=user.id)
    events = [live.mode_event("human", "agent_took_over")]
    if notice is not None:
        events.insert(0, live.message_event(notice))
    _publish(publish, conversation_id, events)
    return notice is not None


def hand_back(db: Any, conversation_id: str, user: Any, publish: Publish | None = None) -> int | None:
    """Give the conversation back to the bot (the holder, or an admin for anyone's).

    Returns the customer's last message when no person answered it (written after the agent's last
    message): the bot answers it now, or it would wait for good.
    """
    live = _events()
    with db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id, for_update=True)
        if conv is None:
            raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
        if conv.status == "ended":
            raise Conflict("This conversation has ended; there is nobody to hand it back to.",
                           code="conversation_ended")
        if conv.held_by_user_id != user.id and not (user.role == "admin" and conv.held_by_user_id):
            raise Conflict("You do not hold this conversation; take it over first.", code="not_holder")
        conv.mode, conv.held_by_user_id = "bot", None
        state = dict(conv.state or {})
        state["unhelpful_replies"] = 0  # a fresh start: do not bounce straight back to a person
        conv.state = state
        recent = MessageRepository(session).history(conversation_id, limit=50)
        notice = MessageRepository(session).append(
            conv, role="system", text=LEAVE_NOTICE.format(name=user.display_name), status="complete",
            author_user_id=user.id)
    _publish(publish, conversation_id, [live.message_event(notice), live.mode_event("bot", "agent_handed_back")])
    last_customer = next((m for m in reversed(recent) if m.role == "customer"), None)
    # (a reply the bot was writing when the agent took over was discarded: it answered nothing)
    last_person = next((m for m in reversed(recent) if m.role in ("agent", "bot") and m.status == "complete"), None)
    if last_customer is not None and (last_person is None or last_person.id < last_customer.id):
        return last_customer.id
    return None


RELEASE_NOTICE = "{name} is no longer available. Another member of our team will be with you shortly."


def release_held_by(db: Any, user: Any, publish: Publish | None = None) -> int:
    """Put the open chats ``user`` holds back in the queue for a person (their account is being
    disabled: nobody could hand them back); returns how many. Each customer is told, and keeps their
    place in the queue (the time they first asked for a person)."""
    live = _events()
    released: list[tuple[str, Any]] = []
    with db.unit_of_work() as session:
        held = session.scalars(sa.select(Conversation).where(
            Conversation.held_by_user_id == user.id, Conversation.status != "ended").with_for_update()).all()
        now = datetime.now(UTC).isoformat()
        for conv in held:
            conv.mode, conv.held_by_user_id = "handoff_requested", None
            state = dict(conv.state or {})
            state.setdefault("handoff_at", now)
            conv.state = state
            notice = MessageRepository(session).append(
                conv, role="system", text=RELEASE_NOTICE.format(name=user.display_name), status="complete",
                author_user_id=user.id)
            released.append((conv.id, notice))
    for conv_id, notice in released:
        _publish(publish, conv_id, [live.message_event(notice), live.mode_event("handoff_requested", "agent_left")])
    if released:
        log.info("%d chat(s) held by user %s put back in the queue", len(released), user.id)
    return len(released)


def send_agent_message(manager: Any, conversation_id: str, user: Any, text: str,
                       publish: Publish | None = None, client_message_id: str | None = None) -> Any:
    """Store the agent's message (via the conversation manager) and push it to the widget."""
    if "\ufffd" in text:
        # a form post's bytes that are not UTF-8 arrive as U+FFFD (web QA: "caf\ufffd\ufffdend" reached the
        # customer); the chat API refuses such bytes, and so does this
        raise InvalidInput("The message has characters that could not be read (text that is not UTF-8, or "
                           "pasted from a broken page): retype them.", code="invalid_message", field="text")
    live = _events()
    with manager.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id)
        if conv is None:
            raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
        if conv.status == "ended":
            raise Conflict("This conversation has ended; the customer can no longer read it.",
                           code="conversation_ended")
        if conv.held_by_user_id != user.id:
            raise Conflict("Take over the conversation before writing to the customer.", code="not_holder")
    try:
        message = manager.receive(conversation_id, text, role="agent", author_user_id=user.id,
                                  client_message_id=client_message_id)
    except InvalidInput as exc:  # its wording is the widget's, for customers
        if exc.code != "empty_message":
            raise
        raise InvalidInput("Write a message to send.", code="empty_message", field="text") from None
    with manager.db.unit_of_work() as session:
        stored = MessageRepository(session).get(message.id)
        stored.status = "complete"  # an agent's message needs no reply from the bot
        message = stored
    _publish(publish, conversation_id, [live.message_event(message)])
    return message


END_NOTICE = "{name} from our support team has ended this chat. Thank you for contacting us!"


def end_chat(manager: Any, conversation_id: str, user: Any, publish: Publish | None = None) -> bool:
    """End a chat the agent holds (an admin: anyone's held chat), or one waiting in the queue that
    nobody holds (its customer left), through the conversation manager's own ``end``; the customer
    is told first. Returns False when it had already ended (harmless)."""
    live = _events()
    with manager.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id, for_update=True)
        if conv is None:
            raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
        if conv.status == "ended":
            return False
        queued = conv.mode == "handoff_requested" and conv.held_by_user_id is None
        if conv.held_by_user_id != user.id and not (user.role == "admin" and conv.held_by_user_id) and not queued:
            raise Conflict("Take over the conversation before ending it.", code="not_holder")
        notice = MessageRepository(session).append(
            conv, role="system", text=END_NOTICE.format(name=user.display_name), status="complete",
            author_user_id=user.id)
    manager.end(conversation_id)
    _publish(publish, conversation_id, [live.message_event(notice), live.status_event("ended", "agent_ended")])
    return True


# -- channels without a live connection (Rasa REST) -------------------------------------------
# The REST channel answers only in the response to the customer's own message, so what the agents
# wrote reaches the customer with their next message: each customer message carries the agents'
# messages and notices written since the customer's previous one (a partition of them: two
# messages sent at once never carry the same one).

def _from_people(session: Any, conversation_id: str, after_seq: int, before_seq: int | None) -> list[Any]:
    """The agents' messages and notices between two customer messages, and the bot's answer on a hand-back
    (to what the customer asked while the agent held the chat: its own REST response was empty)."""
    from bot.db.models import Message

    stmt = (sa.select(Message)
            .where(Message.conversation_id == conversation_id, Message.seq > after_seq,
                   Message.role.in_(("agent", "system", "bot")))
            .order_by(Message.seq))
    if before_seq is not None:
        stmt = stmt.where(Message.seq < before_seq)
    handed_back = LEAVE_NOTICE.split("{name}", 1)[1]
    out, after_hand_back = [], False
    for m in session.scalars(stmt):
        if m.author_user_id is not None and m.role in ("agent", "system"):
            out.append(m)
            after_hand_back = after_hand_back or (m.role == "system" and m.text.endswith(handed_back))
        elif after_hand_back and m.role == "bot" and m.status == "complete":
            out.append(m)
    return out


def _previous_customer_seq(session: Any, conversation_id: str, before_seq: int | None) -> int:
    from bot.db.models import Message

    stmt = sa.select(sa.func.max(Message.seq)).where(Message.conversation_id == conversation_id,
                                                     Message.role == "customer")
    if before_seq is not None:
        stmt = stmt.where(Message.seq < before_seq)
    return session.scalar(stmt) or 0


def undelivered_from_people(db: Any, conversation_id: str, customer_seq: int) -> list[Any]:
    """The agents' messages and notices (joined, handed back) written between the customer's
    previous message and this one (``customer_seq``): what a REST customer has not been sent yet.

    A customer's first message in a new conversation also carries the end of their previous one on
    the channel when an agent ended it (what was written after their last message there, the
    "ended this chat" notice included): they had no other way to read it.
    """
    with db.unit_of_work() as session:
        after = _previous_customer_seq(session, conversation_id, customer_seq)
        found = _from_people(session, conversation_id, after, customer_seq)
        if after == 0:
            conv = session.get(Conversation, conversation_id)
            if conv is not None and conv.sender_id:
                found = _ended_by_an_agent(session, conv.channel, conv.sender_id, conv.id) + found
        return found


def undelivered_end(db: Any, channel: str, sender_id: str) -> list[Any]:
    """The end of the sender's last conversation, when an agent ended it and the customer has not been sent
    it: a REST "/restart" answers with it before the greeting (the next conversation must not bring it up)."""
    with db.unit_of_work() as session:
        return _ended_by_an_agent(session, channel, sender_id, None)


def _ended_by_an_agent(session: Any, channel: str, sender_id: str, except_id: str | None) -> list[Any]:
    """What an agent wrote after the customer's last message in the sender's last ended conversation, its
    "ended this chat" notice included, once (the conversation is marked as having delivered it)."""
    stmt = (sa.select(Conversation)
            .where(Conversation.channel == channel, Conversation.sender_id == sender_id,
                   Conversation.status == "ended")
            .order_by(Conversation.created_at.desc()).limit(1))
    if except_id is not None:
        stmt = stmt.where(Conversation.id != except_id)
    before = session.scalars(stmt).first()
    if before is None or (before.state or {}).get("end_delivered"):
        return []
    tail = _from_people(session, before.id, _previous_customer_seq(session, before.id, None), None)
    ended = END_NOTICE.split("{name}", 1)[1]
    if not any(m.role == "system" and m.text.endswith(ended) for m in tail):
        return []
    before.state = dict(before.state or {}) | {"end_delivered": True}
    return tail
