"""Tables owned by the ``bot`` package: people, conversations and everything said in them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from knowledge.db import UTCDateTime  # one UTC-aware timestamp type for every package


def utcnow() -> datetime:
    return datetime.now(UTC)


class BotBase(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON(), list[Any]: sa.JSON()}


class User(BotBase):
    """A support agent, knowledge-base editor or admin of the console."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(120))
    role: Mapped[str] = mapped_column(sa.String(16))  # agent | editor | admin
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


#: the predicate of a sender's one open conversation (the partial unique index, and its lookups)
OPEN_CONVERSATION = "status = 'open'"


class Conversation(BotBase):
    """One customer's chat; ``token_hash`` authorises the customer, ``state`` is the policy memory."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(16), default="widget")  # widget | rest | socketio | cli
    sender_id: Mapped[str | None] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")  # open | ended
    mode: Mapped[str] = mapped_column(sa.String(24), default="bot")  # bot | human | handoff_requested
    held_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    handoff_reason: Mapped[str | None] = mapped_column(sa.String(200))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message_count: Mapped[int] = mapped_column(default=0)
    satisfaction: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_message_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.seq", lazy="raise"
    )

    # A Rasa-channel sender has at most one open conversation (their earlier, ended ones are kept);
    # the index is also how a sender's message finds it.
    __table_args__ = (
        sa.Index("uq_conversations_open_sender", "channel", "sender_id", unique=True,
                 sqlite_where=sa.text(OPEN_CONVERSATION), postgresql_where=sa.text(OPEN_CONVERSATION)),
    )


class Message(BotBase):
    """Everything said in a conversation, with the metadata an agent needs to review it."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int]
    role: Mapped[str] = mapped_column(sa.String(16))  # customer | bot | agent | system
    text: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="complete")  # received|pending|complete|failed
    client_message_id: Mapped[str | None] = mapped_column(sa.String(64))
    reply_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("messages.id"))
    author_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    intent: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    intent_confidence: Mapped[float | None]
    out_of_scope: Mapped[bool | None]
    tone: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    tone_scores: Mapped[dict[str, Any] | None]
    policy_action: Mapped[str | None] = mapped_column(sa.String(16))
    policy_reason: Mapped[str | None] = mapped_column(sa.String(200))
    citations: Mapped[list[Any] | None]
    adapter_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)  # console filter
    model_id: Mapped[str | None] = mapped_column(sa.String(128))
    guardrail_verdict: Mapped[str | None] = mapped_column(sa.String(16))
    guardrail_details: Mapped[dict[str, Any] | None]
    latency_ms: Mapped[float | None]
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages", lazy="raise")

    __table_args__ = (
        sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        sa.UniqueConstraint("conversation_id", "client_message_id", name="uq_messages_conversation_client_id"),
    )


class Feedback(BotBase):
    """A customer's thumbs up/down on one bot reply."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[str] = mapped_column(sa.ForeignKey("conversations.id", ondelete="CASCADE"))
    rating: Mapped[int]  # +1 or -1
    comment: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Correction(BotBase):
    """An agent's review of a bot reply: the reply that should have been given, and why."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    corrected_text: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.String(32))  # wrong_fact|wrong_tone|wrong_intent|missing_policy|other
    note: Mapped[str | None] = mapped_column(sa.Text)
    corrected_intent: Mapped[str | None] = mapped_column(sa.String(64))  # set for wrong_intent
    exported_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelCall(BotBase):
    """Every model call, logged with inputs, output, model, adapter, duration and token counts."""

    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # generate | nlu | retrieve
    model_id: Mapped[str | None] = mapped_column(sa.String(128))
    adapter_id: Mapped[str | None] = mapped_column(sa.String(64))
    prompt: Mapped[Any] = mapped_column(sa.JSON)
    output: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="ok")
    error: Mapped[str | None] = mapped_column(sa.Text)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    duration_ms: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(BotBase):
    """The sample store's orders, looked up by the order-status action."""

    __tablename__ = "orders"

    order_number: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    status: Mapped[str] = mapped_column(sa.String(16))
    placed_at: Mapped[datetime]
    items: Mapped[list[Any]] = mapped_column(default=list)
    total: Mapped[float]
    currency: Mapped[str] = mapped_column(sa.String(3), default="EUR")
    carrier: Mapped[str | None] = mapped_column(sa.String(64))
    tracking_code: Mapped[str | None] = mapped_column(sa.String(64))
    estimated_delivery: Mapped[datetime | None]


class ConsoleSession(BotBase):
    """A signed-in console session (server side, so logout and disabling a user revoke it at once).

    The cookie carries a random token; only its SHA-256 is stored, so a database leak does not
    hand out live sessions. ``csrf_token`` is the per-session secret every console form echoes.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginAttempt(BotBase):
    """One console sign-in attempt; recent failures per account+address throttle further tries."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    ip: Mapped[str] = mapped_column(sa.String(64))
    success: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.Index("ix_login_attempts_email_ip_created", "email", "ip", "created_at"),
        sa.Index("ix_login_attempts_ip_created", "ip", "created_at"),
    )


class AnalyticsDay(BotBase):
    """Daily roll-up of the console analytics: figures of the conversations created that UTC day.

    Filled incrementally by :mod:`bot.console.analytics_rollup` (a day is recomputed when one of
    its conversations changes) and read by :mod:`bot.console.analytics`; today stays live.
    Counts per key are JSON objects; ``latencies`` are the day's bot reply latencies as a sorted
    float64 array, so medians over any range are exact.
    """

    __tablename__ = "analytics_days"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    conversations: Mapped[int] = mapped_column(default=0)
    engaged: Mapped[int] = mapped_column(default=0)  # with at least one customer message
    handed_off: Mapped[int] = mapped_column(default=0)
    thumbs_up: Mapped[int] = mapped_column(default=0)
    thumbs_down: Mapped[int] = mapped_column(default=0)
    handoff_reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    intents: Mapped[dict[str, Any]] = mapped_column(default=dict)
    out_of_scope: Mapped[dict[str, Any]] = mapped_column(default=dict)  # normalised question -> count
    satisfaction: Mapped[dict[str, Any]] = mapped_column(default=dict)  # score -> count
    latencies: Mapped[bytes] = mapped_column(sa.LargeBinary, default=b"")
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnalyticsChange(BotBase):
    """A day whose roll-up must be recomputed: one of its conversations changed after that day.

    Written only by database triggers on ``conversations``, ``messages`` and ``feedback`` (see
    :mod:`bot.console.analytics_rollup`), append-only, and deleted by the roll-up that consumed it.
    """

    __tablename__ = "analytics_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date)
