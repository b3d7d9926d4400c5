"""Repositories query and add; the unit of work (``Database.unit_of_work``) commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased, make_transient_to_detached

from bot.db.models import (
    OPEN_CONVERSATION,
    ConsoleSession,
    Conversation,
    Correction,
    Feedback,
    LoginAttempt,
    Message,
    ModelCall,
    Order,
    User,
)

# The statements of every chat turn are built once, with bound parameters. SQLAlchemy then reuses
# their cache key and compiled SQL; building them anew on each call cost about half of each query's
# CPU time (benchmarks/results/web.md).
_CONVERSATION = sa.select(Conversation).where(Conversation.id == sa.bindparam("conversation_id"))
_CONVERSATION_FOR_UPDATE = _CONVERSATION.with_for_update()
# SQLite ignores FOR UPDATE. A no-op write as the transaction's first statement takes the
# database's write lock now (waiting on busy_timeout), so two appends to one conversation can
# never read the same message_count; RETURNING reads the row in the same statement.
_CONVERSATION_SQLITE_LOCK = (
    sa.update(Conversation).where(Conversation.id == sa.bindparam("conversation_id"))
    .values(message_count=Conversation.message_count)
    .returning(Conversation)
    .execution_options(synchronize_session=False)
)
# The status as a literal, as the partial unique index states it: SQLite uses a partial index only
# for a query whose WHERE clause contains the index's own terms (a bound parameter is not one).
_OPEN_BY_SENDER = sa.select(Conversation).where(
    Conversation.channel == sa.bindparam("channel"), Conversation.sender_id == sa.bindparam("sender_id"),
    sa.text(OPEN_CONVERSATION),
)
_IN_CONVERSATION = (Message.conversation_id == sa.bindparam("conversation_id"), Message.seq > sa.bindparam("after_seq"))
_HISTORY = sa.select(Message).where(*_IN_CONVERSATION).order_by(Message.seq)
_NEWEST = sa.select(Message).where(*_IN_CONVERSATION).order_by(Message.seq.desc()).limit(sa.bindparam("limit"))
_NEWEST_TURNS = (
    sa.select(Message.id, Message.role, Message.text, Message.status)
    .where(Message.conversation_id == sa.bindparam("conversation_id"))
    .order_by(Message.seq.desc()).limit(sa.bindparam("limit"))
)
_FIRST_REPLY = (
    sa.select(Message).where(Message.reply_to_id == sa.bindparam("message_id")).order_by(Message.seq).limit(1)
)
# Rows a chat turn inserts are written with plain INSERTs, not through the ORM's unit of work: a
# flush costs several times the CPU of the INSERT it sends (benchmarks/results/web.md).
_MESSAGES, _MODEL_CALLS = cast(sa.Table, Message.__table__), cast(sa.Table, ModelCall.__table__)
_INSERT_MESSAGE = sa.insert(_MESSAGES).returning(*_MESSAGES.columns)
_INSERT_MODEL_CALL = sa.insert(_MODEL_CALLS)


class ConversationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, conversation: Conversation) -> Conversation:
        self.session.add(conversation)
        self.session.flush()
        return conversation

    def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        """The conversation; with ``for_update``, its row stays locked until the transaction ends."""
        stmt: sa.Executable = _CONVERSATION
        if for_update:
            stmt = _CONVERSATION_SQLITE_LOCK if self.session.get_bind().dialect.name == "sqlite" \
                else _CONVERSATION_FOR_UPDATE
        return self.session.scalars(stmt, {"conversation_id": conversation_id}).first()

    def by_sender(self, channel: str, sender_id: str) -> Conversation | None:
        """The sender's open conversation on ``channel`` (at most one; their ended ones are kept)."""
        return self.session.scalars(_OPEN_BY_SENDER, {"channel": channel, "sender_id": sender_id}).first()


class MessageRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, conversation: Conversation, **fields: Any) -> Message:
        """Add the next message of ``conversation`` (caller holds the conversation row lock).

        The message is inserted at once; the returned object is the stored row (RETURNING), in
        this session like a loaded one, so later changes to it are saved as an UPDATE. The
        conversation's new count is saved with the session's next flush (usually the commit).
        """
        seq, now = (conversation.message_count or 0) + 1, datetime.now(UTC)
        row = self.session.execute(_INSERT_MESSAGE, {
            "conversation_id": conversation.id, "seq": seq, "created_at": now, **fields,
        }).one()
        conversation.message_count, conversation.last_message_at = seq, now
        message = Message(**row._mapping)
        make_transient_to_detached(message)
        self.session.add(message)
        return message

    def get(self, message_id: int) -> Message | None:
        return self.session.get(Message, message_id)

    def by_client_id(self, conversation_id: str, client_message_id: str) -> Message | None:
        return self.session.scalars(
            sa.select(Message).where(Message.conversation_id == conversation_id,
                                     Message.client_message_id == client_message_id)
        ).first()

    def history(self, conversation_id: str, *, limit: int | None = None, after_seq: int = 0) -> Sequence[Message]:
        """The conversation's messages after ``after_seq`` in order; only the newest ``limit`` if given."""
        params = {"conversation_id": conversation_id, "after_seq": after_seq}
        if limit:
            return list(reversed(self.session.scalars(_NEWEST, params | {"limit": limit}).all()))
        return self.session.scalars(_HISTORY, params).all()

    def recent_turns(self, conversation_id: str, limit: int) -> list[sa.Row]:
        """``(id, role, text, status)`` of the newest ``limit`` messages, oldest first.

        The columns a reply's context needs, without loading whole messages (their JSON columns
        included) as ORM objects.
        """
        rows = self.session.execute(_NEWEST_TURNS, {"conversation_id": conversation_id, "limit": limit}).all()
        return list(reversed(rows))

    def reply_to(self, message_id: int) -> Message | None:
        """The first message stored as a reply to ``message_id``."""
        return self.session.scalars(_FIRST_REPLY, {"message_id": message_id}).first()

    def live_reply_to(self, message_id: int) -> Message | None:
        """A reply to ``message_id`` that is written or being written (not one a crash left failed)."""
        return self.session.scalars(
            sa.select(Message).where(Message.reply_to_id == message_id, Message.status.in_(("pending", "complete")))
            .order_by(Message.seq).limit(1)).first()


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

    def log(self, **fields: Any) -> None:
        """Log one model call (the columns of :class:`ModelCall`); a plain INSERT, nothing reads it back."""
        self.session.execute(_INSERT_MODEL_CALL, fields)

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

    def item_names(self, limit: int = 2000) -> list[str]:
        """The names of the items in the ``limit`` most recent orders ("Brass reading lamp"): what the
        shop sells, as its customers name it."""
        rows = self.session.scalars(sa.select(Order.items).order_by(Order.placed_at.desc()).limit(limit))
        return [str(item["name"]) for items in rows for item in (items or [])
                if isinstance(item, dict) and isinstance(item.get("name"), str)]


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


class CorrectionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, correction: Correction) -> Correction:
        self.session.add(correction)
        self.session.flush()
        return correction

    def for_messages(self, message_ids: Sequence[int]) -> Sequence[Correction]:
        if not message_ids:
            return []
        return self.session.scalars(
            sa.select(Correction).where(Correction.message_id.in_(list(message_ids))).order_by(Correction.id)
        ).all()

    def listing(self, *, reasons: Sequence[str] | None = None, limit: int = 200,
                only_unexported: bool = False) -> Sequence[tuple[Correction, Message, Message | None, User | None]]:
        """Corrections (newest first) with the corrected bot message, the customer turn it answered
        and the agent who wrote it."""
        customer = aliased(Message)
        stmt = (
            sa.select(Correction, Message, customer, User)
            .join(Message, Message.id == Correction.message_id)
            .outerjoin(customer, customer.id == Message.reply_to_id)
            .outerjoin(User, User.id == Correction.user_id)
            .order_by(Correction.id.desc())
            .limit(limit)
        )
        if reasons:
            stmt = stmt.where(Correction.reason.in_(list(reasons)))
        if only_unexported:
            stmt = stmt.where(Correction.exported_at.is_(None))
        return [tuple(row) for row in self.session.execute(stmt).all()]  # type: ignore[misc]

    def last_export(self) -> datetime | None:
        """When the newest export was made (every correction it held carries that time)."""
        return self.session.scalar(sa.select(sa.func.max(Correction.exported_at)))

    def for_export(self, *, only_unexported: bool = False, exported_at: datetime | None = None
                   ) -> Sequence[tuple[Correction, Message, Message | None]]:
        """Corrections with a corrected reply, oldest first, with the bot message and its customer turn
        (only those not exported yet, or only those of the export made at ``exported_at``)."""
        customer = aliased(Message)
        stmt = (
            sa.select(Correction, Message, customer)
            .join(Message, Message.id == Correction.message_id)
            .outerjoin(customer, customer.id == Message.reply_to_id)
            .where(Correction.corrected_text.is_not(None), Correction.corrected_text != "")
            .order_by(Correction.id)
        )
        if only_unexported:
            stmt = stmt.where(Correction.exported_at.is_(None))
        if exported_at is not None:
            stmt = stmt.where(Correction.exported_at == exported_at)
        return [tuple(row) for row in self.session.execute(stmt).all()]  # type: ignore[misc]

    def previous_customer_message(self, message: Message) -> Message | None:
        """The customer turn just before ``message`` (for bot replies stored without ``reply_to_id``)."""
        return self.session.scalars(
            sa.select(Message)
            .where(Message.conversation_id == message.conversation_id, Message.seq < message.seq,
                   Message.role == "customer")
            .order_by(Message.seq.desc())
            .limit(1)
        ).first()

    def mark_exported(self, ids: Sequence[int], when: datetime) -> None:
        for i in range(0, len(ids), 500):
            self.session.execute(
                sa.update(Correction).where(Correction.id.in_(list(ids[i:i + 500]))).values(exported_at=when)
            )


class ConsoleSessionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, console_session: ConsoleSession) -> ConsoleSession:
        self.session.add(console_session)
        self.session.flush()
        return console_session

    def get_with_user(self, session_id: str) -> tuple[ConsoleSession, User] | None:
        row = self.session.execute(
            sa.select(ConsoleSession, User).join(User, User.id == ConsoleSession.user_id)
            .where(ConsoleSession.id == session_id)
        ).first()
        return None if row is None else (row[0], row[1])

    def delete(self, session_id: str) -> None:
        self.session.execute(sa.delete(ConsoleSession).where(ConsoleSession.id == session_id))

    def delete_for_user(self, user_id: int) -> None:
        self.session.execute(sa.delete(ConsoleSession).where(ConsoleSession.user_id == user_id))

    def delete_expired(self, now: datetime) -> None:
        self.session.execute(sa.delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


class LoginAttemptRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, attempt: LoginAttempt) -> None:
        self.session.add(attempt)
        self.session.flush()

    def mark_success(self, attempt_id: int) -> None:
        attempt = self.session.get(LoginAttempt, attempt_id)
        if attempt is not None:
            attempt.success = True

    def recent_failures(self, *, ip: str | None, since: datetime, email: str | None = None
                        ) -> tuple[int, datetime | None]:
        """Failures from ``ip`` (from any address when None) for ``email`` (if given) after ``since`` and
        after the last success; also the time of the oldest of them (to say when the lock lifts)."""
        cond = [LoginAttempt.created_at > since]
        if ip is not None:
            cond.append(LoginAttempt.ip == ip)
        if email is not None:
            cond.append(LoginAttempt.email == email)
        last_ok = self.session.scalar(
            sa.select(sa.func.max(LoginAttempt.created_at)).where(*cond, LoginAttempt.success.is_(True)))
        if last_ok is not None:
            cond.append(LoginAttempt.created_at > last_ok)
        count, oldest = self.session.execute(
            sa.select(sa.func.count(), sa.func.min(LoginAttempt.created_at))
            .where(*cond, LoginAttempt.success.is_(False))
        ).one()
        if isinstance(oldest, str):  # SQLite aggregates return the stored text, not a datetime
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(count or 0), oldest

    def signed_in_from(self, *, email: str, ip: str, since: datetime) -> bool:
        """Whether ``email`` signed in successfully from ``ip`` after ``since``."""
        return self.session.scalar(
            sa.select(LoginAttempt.id).where(LoginAttempt.email == email, LoginAttempt.ip == ip,
                                             LoginAttempt.created_at > since, LoginAttempt.success.is_(True))
            .limit(1)) is not None

    def prune(self, before: datetime) -> None:
        self.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.created_at < before))
