"""Corrections: an agent flags a bot reply, writes what it should have said and tags why.

Corrections with a corrected reply become fine-tuning examples through
:func:`export_records` (JSONL, one object per line, the format the ticket importer reads);
``missing_policy`` and ``wrong_fact`` ones are suggestions for the KB editor (:func:`kb_suggestions`),
shown with the customer's personal data replaced by placeholders: editors do not read transcripts.
Agents, who do, see the corrections as written (:func:`list_corrections`).
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import sqlalchemy as sa

from bot.db.models import Correction, Message
from bot.db.repositories import CorrectionRepository
from bot.security import visible_text
from knowledge.errors import InvalidInput, NotFound
from models.pii import scrub_exchange

REASONS = {
    "wrong_fact": "Wrong fact",
    "wrong_tone": "Wrong tone",
    "wrong_intent": "Wrong intent",
    "missing_policy": "Missing policy",
    "other": "Other",
}
KB_REASONS = ("missing_policy", "wrong_fact")
MAX_TEXT = 4000
#: an intent as the model names them ("track_refund")
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EXPORT_FIELDS = ("customer_message", "intent", "corrected_reply", "reason", "message_id", "created_at")
#: the same agent saving the same correction of the same reply within this time saved it once (a double
#: click, Enter pressed twice, a browser retry): the second save returns the first one's id
DUPLICATE_WINDOW = timedelta(minutes=2)
# one save at a time in this process (SQLite's reads do not wait for another's write); other processes
# on PostgreSQL wait on the message row's lock
_save_lock = threading.Lock()


@dataclass(frozen=True)
class CorrectionItem:
    """A correction with the context needed to show or export it."""

    id: int
    message_id: int
    conversation_id: str
    reason: str
    corrected_text: str | None
    corrected_intent: str | None
    note: str | None
    bot_reply: str
    customer_message: str | None
    intent: str | None
    author: str | None
    created_at: datetime
    exported_at: datetime | None


def create_correction(db: Any, *, user_id: int, message_id: int, reason: str, corrected_text: str = "",
                      note: str = "", corrected_intent: str = "", known_intents: Collection[str] = ()) -> int:
    """Store a correction of bot message ``message_id``; returns its id. ``known_intents`` (the active
    NLU model's; empty: not checked) are the names a corrected intent may take."""
    reason = (reason or "").strip()
    if reason not in REASONS:
        raise InvalidInput(f"Choose why the reply was wrong: {', '.join(REASONS)}.", code="bad_reason",
                           field="reason")
    # (without the invisible characters chat messages lose: a bidi override in a correction reorders the
    # console's text around it, and the corrected reply is exported as training data)
    corrected_text = visible_text(corrected_text)
    note = visible_text(note)
    corrected_intent = (corrected_intent or "").strip()
    if len(corrected_text) > MAX_TEXT or len(note) > MAX_TEXT:
        raise InvalidInput(f"Keep the corrected reply and the note under {MAX_TEXT} characters.",
                           code="correction_too_long")
    if not corrected_text and reason not in KB_REASONS:
        raise InvalidInput("Write the reply that should have been given.", code="missing_corrected_reply",
                           field="corrected_text")
    if reason == "wrong_intent" and not corrected_intent:
        raise InvalidInput("Name the intent the customer actually had.", code="missing_intent",
                           field="corrected_intent")
    if corrected_intent and not INTENT_NAME.match(corrected_intent):
        # it becomes a training label: a name like the model's own ("track_refund"), not free text
        raise InvalidInput("Write the intent as its name: lower-case letters, digits and _ (such as track_refund).",
                           code="bad_intent", field="corrected_intent")
    if corrected_intent and known_intents and corrected_intent not in known_intents:
        # an intent the bot never detects would train the model on a prompt it is never sent
        close = difflib.get_close_matches(corrected_intent, sorted(known_intents), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        # (the agent is in the console: name the intents rather than a command to list them)
        listed = ", ".join(sorted(known_intents)[:60]) + (", ..." if len(known_intents) > 60 else "")
        raise InvalidInput(f"The bot knows no intent {corrected_intent!r}.{hint} The intents it knows: {listed}.",
                           code="unknown_intent", field="corrected_intent")
    fields = {"message_id": message_id, "user_id": user_id, "reason": reason,
              "corrected_text": corrected_text or None, "note": note or None,
              "corrected_intent": corrected_intent[:64] or None}
    with _save_lock, db.unit_of_work() as session:
        message = session.scalars(sa.select(Message).where(Message.id == message_id).with_for_update()).first()
        if message is None:
            raise NotFound(f"No message {message_id}.", code="message_not_found")
        if message.role != "bot":
            raise InvalidInput("Only the bot's replies can be corrected.", code="not_a_bot_reply")
        if message.status == "discarded":
            # (the console hides these drafts; a correction would export a reply nobody was sent)
            raise InvalidInput("This reply was discarded when an agent took the chat over: the customer never "
                               "got it, so there is nothing to correct.", code="reply_discarded")
        if message.status != "complete":
            raise InvalidInput(f"Only a reply the customer got can be corrected; this one is {message.status}.",
                               code="reply_not_complete")
        now = datetime.now(UTC)
        same = _recent_duplicate(session, fields, now - DUPLICATE_WINDOW)
        if same is not None:
            return same
        row = CorrectionRepository(session).add(Correction(**fields, created_at=now))
        return row.id


def _recent_duplicate(session: Any, fields: dict[str, Any], since: datetime) -> int | None:
    """The id of the same agent's identical correction of the same reply saved after ``since``."""
    query = sa.select(Correction.id).where(Correction.created_at >= since)
    for name, value in fields.items():
        column = getattr(Correction, name)
        query = query.where(column.is_(None) if value is None else column == value)
    return session.scalars(query.order_by(Correction.id.desc()).limit(1)).first()


def list_corrections(db: Any, *, reasons: Iterable[str] | None = None, limit: int = 200,
                     scrub: bool = False, company: Iterable[tuple[str, str]] = ()) -> list[CorrectionItem]:
    """Newest corrections first (optionally only some reasons). ``scrub``: the customer's message, the
    bot's reply, the corrected reply and the note with personal data (names, e-mail addresses, phone,
    card and order numbers) replaced by placeholders, as the export and the analytics show them; the
    company's own phone numbers and e-mail addresses (``company``, ``Services.company_contacts()``)
    become their KB slots."""
    company = list(company)
    with db.unit_of_work() as session:
        repo = CorrectionRepository(session)
        out = []
        for corr, bot_msg, customer, author in repo.listing(reasons=list(reasons or []), limit=limit):
            if customer is None:
                customer = repo.previous_customer_message(bot_msg)
            asked = customer.text if customer else None
            said, corrected, note = bot_msg.text, corr.corrected_text, corr.note
            if scrub:
                asked, said, corrected, note = _scrubbed(asked, said, corrected, note, company=company)
            out.append(CorrectionItem(
                id=corr.id, message_id=bot_msg.id, conversation_id=bot_msg.conversation_id, reason=corr.reason,
                corrected_text=corrected, corrected_intent=corr.corrected_intent, note=note,
                bot_reply=said, customer_message=asked,
                intent=corr.corrected_intent or (customer.intent if customer else None) or bot_msg.intent,
                author=author.display_name if author else None, created_at=corr.created_at,
                exported_at=corr.exported_at))
        return out


def _scrubbed(asked: str | None, *replies: str | None, company: list[tuple[str, str]]) -> tuple[str | None, ...]:
    """The customer's message and the texts answering it, scrubbed (a name the customer gave is
    scrubbed from the replies too: "Hello Maria, ...")."""
    out = [None if reply is None else scrub_exchange(asked or "", reply, company=company)[1] for reply in replies]
    return (None if asked is None else scrub_exchange(asked, "")[0], *out)


def kb_suggestions(db: Any, limit: int = 50, company: Iterable[tuple[str, str]] = ()) -> list[CorrectionItem]:
    """``missing_policy`` / ``wrong_fact`` corrections, for the KB editor: scrubbed of personal data
    (editors have no business reading a customer's details, and no access to the transcripts)."""
    return list_corrections(db, reasons=KB_REASONS, limit=limit, scrub=True, company=company)


def export_records(db: Any, *, only_unexported: bool = False, mark: bool = True,
                   last_again: bool = False,
                   deliver: Callable[[list[dict[str, Any]]], None] | None = None,
                   company: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """Training examples from corrections with a corrected reply (oldest first).

    Only a "new only" export (``only_unexported``) marks what it exported, so that the next one skips
    it; exporting everything, or previewing, leaves the marks alone (``mark=False``: a "new only"
    preview). ``last_again``: the newest "new only" export's corrections once more, marked as they were
    (a download that failed after they were marked); it cannot be combined with ``only_unexported``.
    ``deliver``, when given, is called with the records before they are marked: if it raises (a file
    that cannot be written), nothing is marked. ``company``: the company's own contact details
    (``Services.company_contacts()``), which a corrected reply gives as the KB's slots."""
    if only_unexported and last_again:
        raise InvalidInput("Choose one: the corrections not exported yet (new only), or the last export again.",
                           code="conflicting_options")
    now = datetime.now(UTC)
    records: dict[int, dict[str, Any]] = {}  # by bot message, oldest first
    with db.unit_of_work() as session:
        repo = CorrectionRepository(session)
        ids = []
        last = repo.last_export() if last_again else None
        if last_again and last is None:
            if deliver is not None:
                deliver([])
            return []
        mark = mark and only_unexported and not last_again
        for corr, bot_msg, customer in repo.for_export(only_unexported=only_unexported, exported_at=last):
            if bot_msg.status != "complete":
                # a draft discarded at a takeover never reached the customer (correcting one is refused;
                # a correction saved before that is not training data either)
                continue
            ids.append(corr.id)
            if customer is None:
                customer = repo.previous_customer_message(bot_msg)
            if customer is None:
                continue  # a greeting with no customer turn is not a training example
            # a reply corrected twice is one training example: the newer correction replaces the older
            records.pop(bot_msg.id, None)
            # the file is training data an operator copies around: personal data is scrubbed here already
            # (as the import does; scrubbing twice changes nothing)
            message, reply, _ = scrub_exchange(customer.text, corr.corrected_text or "", company=company)
            records[bot_msg.id] = {
                "customer_message": message,
                "intent": corr.corrected_intent or customer.intent or bot_msg.intent,
                "corrected_reply": reply,
                "reason": corr.reason,
                "message_id": bot_msg.id,
                "created_at": corr.created_at.astimezone(UTC).isoformat(),
            }
        out = list(records.values())
        if deliver is not None:
            deliver(out)
        if mark and ids:
            repo.mark_exported(ids, now)
    return out


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for rec in records:
        out.write(json.dumps({k: rec[k] for k in EXPORT_FIELDS}, ensure_ascii=False) + "\n")
        n += 1
    return n
