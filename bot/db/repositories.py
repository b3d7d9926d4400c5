"""Repositories query and add; the unit of work (``Database.unit_of_work``) commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.db.models import Conversation, Feedback, Message, ModelCall, Order, User


class ConversationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, conversation: Conversation) -> Conversation:
        self.session.add(conversation)
        self.session.flush()
        return conversation

    def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        stmt = sa.select(Conversation).where(Conversation.id == conversation_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).first()

    def by_sender(self, channel: str, sender_id: str) -> Conversation | None:
        return self.session.scalars(
            sa.select(Conversation).where(Conversation.channel == channel, Conversation.sender_id == sender_id)
        ).first()


class MessageRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, conversation: Conversation, **fields: Any) -> Message:
        """Add the next message of ``conversation`` (caller holds the conversation row lock)."""
        conversation.message_count = (conversation.message_count or 0) + 1
        now = datetime.now(UTC)
        conversation.last_message_at = now
        message = Message(conversation_id=conversation.id, seq=conversation.message_count, created_at=now, **fields)
        self.session.add(message)
        self.session.flush()
        return message

    def get(self, message_id: int) -> Message | None:
        return self.session.get(Message, message_id)

    def by_client_id(self, conversation_id: str, client_message_id: str) -> Message | None:
        return self.session.scalars(
            sa.select(Message).where(Message.conversation_id == conversation_id,
                                     Message.client_message_id == client_message_id)
        ).first()

    def history(self, conversation_id: str, *, limit: int | None = None, after_seq: int = 0) -> Sequence[Message]:
        stmt = sa.select(Message).where(Message.conversation_id == conversation_id, Message.seq > after_seq)
        if limit:
            inner = stmt.order_by(Message.seq.desc()).limit(limit).subquery()
            stmt = sa.select(Message).join(inner, Message.id == inner.c.id)
        return self.session.scalars(stmt.order_by(Message.seq)).all()

    def reply_to(self, message_id: int) -> Message | None:
        return self.session.scalars(
            sa.select(Message).where(Message.reply_to_id == message_id).order_by(Message.seq)
        ).first()


class FeedbackRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, feedback: Feedback) -> Feedback:
        self.session.add(feedback)
        self.session.flush()
        return feedback

    def for_message(self, message_id: int) -> Feedback | None:
        return self.session.scalars(sa.select(Feedback).where(Feedback.message_id == message_id)).first()


class ModelCallRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, call: ModelCall) -> ModelCall:
        self.session.add(call)
        self.session.flush()
        return call

    def for_message(self, message_id: int) -> Sequence[ModelCall]:
        return self.session.scalars(sa.select(ModelCall).where(ModelCall.message_id == message_id)).all()


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, order_number: str) -> Order | None:
        return self.session.get(Order, order_number)

    def upsert(self, order: Order) -> None:
        self.session.merge(order)

    def count(self) -> int:
        return int(self.session.scalar(sa.select(sa.func.count()).select_from(Order)) or 0)


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_email(self, email: str) -> User | None:
        return self.session.scalars(sa.select(User).where(User.email == email.lower())).first()

    def get(self, user_id: int) -> User | None:
        return self.session.get(User, user_id)

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user

    def list(self) -> Sequence[User]:
        return self.session.scalars(sa.select(User).order_by(User.id)).all()
