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
                   sa.or_(Conversation.held_by_user_id.is_(None), Conversation.held_by_user_id == user.id))
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


def send_agent_message(manager: Any, conversation_id: str, user: Any, text: str,
                       publish: Publish | None = None, client_message_id: str | None = None) -> Any:
    """Store the agent's message (via the conversation manager) and push it to the widget."""
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
    """End a chat the agent holds (an admin: anyone's held chat), through the conversation manager's
    own ``end``; the customer is told first. Returns False when it had already ended (harmless)."""
    live = _events()
    with manager.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conversation_id, for_update=True)
        if conv is None:
            raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
        if conv.status == "ended":
            return False
        if conv.held_by_user_id != user.id and not (user.role == "admin" and conv.held_by_user_id):
            raise Conflict("Take over the conversation before ending it.", code="not_holder")
        notice = MessageRepository(session).append(
            conv, role="system", text=END_NOTICE.format(name=user.display_name), status="complete",
            author_user_id=user.id)
    manager.end(conversation_id)
    _publish(publish, conversation_id, [live.message_event(notice)])
    return True
