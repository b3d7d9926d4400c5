"""Importing past support tickets (customer message -> agent reply) for training.

Formats (``fmt``):

* ``bitext`` - the public Bitext customer-support CSV (``instruction``, ``intent``, ``category``,
  ``response``, plus ``entity_type``/``entity_value`` naming the personal value in the message).
* ``csv`` / ``jsonl`` - any file, with a column mapping ``{column: field}``; fields are
  ``customer_message``, ``agent_reply``, ``intent``, ``category``, ``tone``, ``external_id``,
  ``created_at``. Common column names (``message``, ``question``, ``reply``, ``response``,
  ``answer``, ``id``) are recognised without a mapping.
* ``sample`` - the sample company's tickets (``models/sample/tickets.jsonl``: ``id``,
  ``created_at``, ``channel``, ``customer_message``, ``intent``, ``category``, ``agent_reply``,
  ``resolved``, ``csat``).
* ``corrections`` - agents' corrections exported from the database by
  ``hybridesk tickets export-corrections``. **Export format**: UTF-8 JSON Lines, one object per
  corrected bot reply::

      {"message_id": "42",                  # id of the corrected bot message (external id)
       "conversation_id": "7",              # optional
       "customer_message": "Where is my parcel?",   # the customer turn the bot answered (required)
       "intent": "track_order",             # optional, as detected at the time
       "tone": "neutral",                   # optional
       "original_reply": "...",             # optional, what the bot said
       "corrected_reply": "...",            # required, what the agent says it should have said
       "corrected_by": "agent@...",         # optional
       "corrected_at": "2026-03-01T10:00:00Z"}   # optional ISO 8601

  A transcript export may use ``agent_reply`` instead of ``corrected_reply``.

Every message and reply is PII-scrubbed (:mod:`models.pii`) before it is stored or trained on;
bitext's anonymised slots (``{{Order Number Anonymized}}``) are normalised to the slot names the
bot uses. Bad rows are reported with their line number and skipped; the rest import.

A ticket's identity is its (scrubbed) message and reply: importing the same exchange again, in any
format, stores nothing new. Its intent is a label of the exchange, not part of its identity: a re-import
whose file names an intent gives the stored ticket that intent, and one imported without an intent
(no intent column, no NLU model active) gets the detected one when it is imported again.
The bot's NLU labels (intent, tone) are read from the message as the customer wrote it, before it is
scrubbed, as the bot reads a live message; that text is only held in memory for the reading.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.errors import InvalidInput, NotFound
from models.pii import (
    BITEXT_ENTITY_PLACEHOLDERS,
    ORDER,
    scrub_exchange,
    scrub_pii,
)

FORMATS = ("bitext", "csv", "jsonl", "sample", "corrections")
FIELDS = ("customer_message", "agent_reply", "intent", "category", "tone", "external_id", "created_at")
MAX_TEXT_CHARS = 8000
_ALIASES = {
    "customer_message": (
        "customer_message",
        "message",
        "question",
        "instruction",
        "query",
        "text",
        "utterance",
    ),
    "agent_reply": ("agent_reply", "reply", "response", "answer", "corrected_reply"),
    "intent": ("intent", "label"),
    "category": ("category",),
    "tone": ("tone", "sentiment"),
    "external_id": ("external_id", "id", "ticket_id", "message_id"),
    "created_at": ("created_at", "date", "timestamp", "corrected_at"),
}
_SLOT_RE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_NOT_UTF8_RE = re.compile(r"[\udc80-\udcff]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_ORDER_LIKE = {"order number", "purchase id", "order id", "purchase number", "tracking number"}
_INVOICE_LIKE = {"invoice number", "bill number", "invoice id", "bill id"}


@dataclass
class Ticket:
    """One scrubbed ticket, ready to store or train on."""

    source: str
    customer_message: str
    agent_reply: str
    intent: str | None = None
    category: str | None = None
    tone: str | None = None
    external_id: str | None = None
    created_at: datetime | None = None
    line: int | None = None

    @property
    def data_hash(self) -> str:
        return ticket_hash(self.customer_message, self.agent_reply, self.intent)


@dataclass
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did: counts and the skipped rows with their line numbers."""

    path: str
    fmt: str
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    scrubbed: int = 0
    replaced: int = 0  # corrections that replaced an earlier one of the same message
    intents_labelled: int = 0  # rows without an intent, given the one the bot's intent model detects
    relabelled: int = 0  # tickets imported before, now given the intent this file names
    labelled_later: int = 0  # tickets imported before without an intent, now given the detected one
    no_intent: int = 0  # tickets left without an intent (stored now, or imported before and still without)
    no_tone: int = 0  # tickets stored now without a tone
    label_problem: str | None = None  # why the bot's NLU did not label them (set by the caller that knows)
    errors: list[RowError] = field(default_factory=list)
    notes: list[RowError] = field(default_factory=list)  # rows imported with something left out

    def summary(self) -> str:
        replaced = (f" ({self.replaced} replacing an earlier correction of the same message)"
                    if self.fmt == "corrections" else "")
        lines = [
            f"{self.path} ({self.fmt}): {self.read} rows read, {self.imported} imported{replaced}, "
            f"{self.duplicates} duplicates, {self.scrubbed} with personal data scrubbed, "
            f"{len(self.errors)} skipped"
            + (f"; {self.intents_labelled} without an intent given the one the bot detects" if self.intents_labelled
               else "")
        ]
        if self.relabelled:
            lines.append(f"  {self.relabelled} imported before now have the intent this file names")
        if self.labelled_later:
            lines.append(f"  {self.labelled_later} imported before without an intent now have the one the bot detects")
        if self.no_intent:
            lines.append(f"  {self.no_intent} ticket(s) have no intent"
                         + (f": {self.label_problem}" if self.label_problem else
                            " (map a column with --map COLUMN=intent, or let an active NLU model label them)"))
        elif self.no_tone and self.label_problem:
            lines.append(f"  {self.no_tone} ticket(s) have no tone: {self.label_problem}")
        lines += [f"  skipped {e}" for e in self.errors[:50]]
        lines += [f"  note {e}" for e in self.notes[:20]]
        if len(self.errors) > 50:
            lines.append(f"  ... and {len(self.errors) - 50} more")
        return "\n".join(lines)


def ticket_hash(message: str, reply: str, intent: str | None) -> str:
    """SHA-256 of the whitespace-normalised message, reply and intent."""
    norm = "\x1f".join(" ".join(str(x or "").split()) for x in (message, reply, intent))
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def exchange_key(message: str, reply: str) -> str:
    """A ticket's identity: its whitespace-normalised message and reply (the intent is a label of it)."""
    return ticket_hash(message, reply, None)


def normalize_slots(text: str) -> str:
    """Map dataset-specific slot spellings onto the bot's (``{{Purchase ID Anonymized}}`` -> ``{{Order Number}}``)."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        base = re.sub(r"\s+anonymi[sz]ed$", "", name, flags=re.IGNORECASE).strip()
        low = base.lower()
        if low in _ORDER_LIKE:
            return ORDER
        if low in _INVOICE_LIKE:
            return "{{Invoice Number}}"
        if low in ("person name", "customer name", "name"):
            return "{{Customer Name}}"
        return "{{" + base + "}}"

    return _SLOT_RE.sub(repl, text or "")


def _parse_date(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)  # raises ValueError with a clear message
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _opt(value: Any, limit: int = 64) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] or None


# control characters (C0 but tab and line breaks, DEL, C1): a terminal escape sequence in a ticket would
# act on the operator's terminal in `tickets show` (security QA), and means nothing to train on
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _make_ticket(source: str, line: int, row: Mapping[str, Any], known=(),
                 columns: Mapping[str, str] | None = None) -> Ticket:
    """``row`` (``{field: value}``) as a ticket, or a ValueError saying what is wrong with it; ``columns`` names
    the file's column (or key) each field came from, for the error ("corrected_reply is a JSON array", not the
    importer's own "agent_reply")."""
    row = {name: CONTROL_CHARS.sub("", value.replace("\r\n", "\n").replace("\r", "\n")) if isinstance(value, str)
           else value for name, value in row.items()}
    columns = columns or {}
    for name, value in row.items():
        if isinstance(value, dict | list):
            raise ValueError(f"{columns.get(name, name)} is a JSON {'object' if isinstance(value, dict) else 'array'}, "
                             "not text")
        if isinstance(value, str) and _SURROGATE_RE.search(value):
            # a JSON escape such as "\ud800" that is half a character: it cannot be stored or hashed
            raise ValueError(f"{columns.get(name, name)} holds an invalid character (an unpaired surrogate)")
    message = str(row.get("customer_message") or "").strip()
    reply = str(row.get("agent_reply") or "").strip()
    if not message:
        raise ValueError("customer message is empty")
    if not reply:
        raise ValueError("agent reply is empty")
    if len(message) > MAX_TEXT_CHARS or len(reply) > MAX_TEXT_CHARS:
        raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")
    if " ".join(message.split()).casefold() == " ".join(reply.split()).casefold():
        # a reply that repeats the message teaches the model to echo the customer (two --map options naming
        # one column, or an export whose reply column holds the question)
        where = (f" ({columns['customer_message']} and {columns['agent_reply']})"
                 if columns.get("customer_message") and columns.get("agent_reply") else "")
        raise ValueError(f"the agent reply is the same text as the customer message{where}: not a ticket to train on")
    if len(str(row.get("intent") or "").strip()) > 64:
        # (cut to 64 characters it became another label, silently: operator QA)
        raise ValueError("intent longer than 64 characters; use the short names the bot's intents have")
    note = None
    try:
        created = _parse_date(row.get("created_at"))
    except (ValueError, TypeError, OverflowError):
        # the date is optional: the ticket is kept without it (operator QA: the whole row was skipped)
        created = None
        raw = str(row.get("created_at"))
        note = RowError(line, f"created_at {raw[:40]!r} is not a date (use ISO 8601, e.g. 2026-03-01); "
                              "imported without one")
    ticket = Ticket(
        source=source,
        customer_message=message,
        agent_reply=normalize_slots(reply),
        intent=_opt(row.get("intent")),
        category=_opt(row.get("category")),
        tone=_opt(row.get("tone"), 32),
        external_id=_opt(row.get("external_id"), 128),
        created_at=created,
        line=line,
    )
    ticket.note = note  # type: ignore[attr-defined]
    return ticket


def _columns_hint(columns: list[str]) -> str:
    """The columns as an error shows them: short, and with a hint when the header is not a CSV header
    (a JSON Lines file read as CSV showed its whole first row, personal data and all: CLI QA B4, B6)."""
    if columns and columns[0].lstrip().startswith(("{", "[")):
        return "the first line is a JSON object, not a CSV header: use --format jsonl"
    if len(columns) == 1 and (sep := next((c for c in ";\t|" if c in columns[0]), None)):
        return f"the header is one column with {sep!r} in it: save the file with commas between columns"
    return "columns are: " + ", ".join(c if len(c) <= 40 else c[:37] + "..." for c in columns[:40])


def _resolve_mapping(
    columns: list[str], mapping: Mapping[str, str] | None, *, strict: bool = True
) -> dict[str, str]:
    """``{field: column}`` from an explicit ``{column: field}`` mapping plus recognised names."""
    check_mapping(mapping)
    result: dict[str, str] = {}
    for column, fld in (mapping or {}).items():
        if column not in columns:
            if not strict:
                continue
            raise InvalidInput(
                f"Column {column!r} (from --map) is not in the file; {_columns_hint(columns)}.",
                code="bad_mapping",
            )
        result[fld] = column
    lowered = {c.lower(): c for c in columns}
    for fld, aliases in _ALIASES.items():
        if fld in result:
            continue
        for alias in aliases:
            # (not a column --map gave another field: "--map answer=customer_message" does not make "answer"
            # the reply too)
            if alias in lowered and lowered[alias] not in result.values():
                result[fld] = lowered[alias]
                break
    missing = [f for f in ("customer_message", "agent_reply") if f not in result]
    if missing and not strict:
        raise ValueError(f"no {' or '.join(missing)} field (map one with --map KEY={missing[0]})")
    if missing:
        raise InvalidInput(
            f"Cannot find the {' and '.join(missing)} column(s) ({_columns_hint(columns)}); pass "
            f"--map COLUMN={missing[0]} to name it.",
            code="missing_columns",
        )
    return result


def check_mapping(mapping: Mapping[str, str] | None) -> None:
    """Refuse a ``{column: field}`` mapping that names an unknown field or maps two columns to one field (the
    second silently replaced the first, and the reply fell back to another column)."""
    by_field: dict[str, list[str]] = {}
    for column, fld in (mapping or {}).items():
        if fld not in FIELDS:
            raise InvalidInput(
                f"Unknown field {fld!r} in --map {column}={fld}; fields are: {', '.join(FIELDS)}.",
                code="bad_mapping",
            )
        by_field.setdefault(fld, []).append(column)
    for fld, mapped in by_field.items():
        if len(mapped) > 1:
            # (only a field no other --map names: "--map subject=agent_reply" when agent_reply is mapped already
            # would be refused in turn)
            other = {"customer_message": "agent_reply", "agent_reply": "customer_message"}.get(fld)
            free = [f for f in FIELDS if f not in by_field]
            if other in free:
                hint = f"map the other to its own field (e.g. --map {mapped[-1]}={other})"
            elif free:
                hint = f"map the other to a field not mapped yet ({', '.join(free)}), or leave it out"
            else:
                hint = "leave the other out"
            raise InvalidInput(
                f"--map maps {len(mapped)} columns to {fld} ({', '.join(f'{c}={fld}' for c in mapped)}); a field takes "
                f"one column: {hint}. Nothing was imported.",
                code="bad_mapping",
            )


def _not_utf8(line: int, text: str) -> RowError | None:
    """A row error when ``text`` (read with ``surrogateescape``) holds bytes that are not UTF-8."""
    bad = _NOT_UTF8_RE.search(text)
    if bad is None:
        return None
    byte = ord(bad.group()) - 0xDC00
    return RowError(line, f"not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8")


def _open_text(path: Path, **kwargs: Any):
    """The file as UTF-8 text; a byte that is not UTF-8 becomes a lone surrogate (see :func:`_not_utf8`)."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (b"\x00" in head and head[1::2].count(0) > len(head) // 4):
        # UTF-16 text (what some spreadsheet programs save as "Unicode text"), not a binary file (CLI QA B5)
        raise InvalidInput(f"{path} is UTF-16 text; save it as UTF-8 (CSV UTF-8 or plain UTF-8) and import it again.",
                           code="not_utf8")
    if b"\x00" in head:
        raise InvalidInput(
            f"{path} is a binary file, not CSV or JSON Lines text.", code="binary_file"
        )
    return path.open(encoding="utf-8-sig", errors="surrogateescape", **kwargs)


def _iter_csv(path: Path, fmt: str = "csv") -> Iterator[tuple[int, dict[str, str] | RowError]]:
    with _open_text(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise InvalidInput(f"{path} is empty or has no header row.", code="empty_file")
        if reader.fieldnames[0].lstrip().startswith(("{", "[")):
            # a JSON Lines file read as CSV: every row was "expected 6 columns" (CLI QA), which said nothing of why
            what = "the Bitext CSV (a header with instruction, intent, category, response)" if fmt == "bitext" \
                else "a CSV file (a header row of column names)"
            raise InvalidInput(
                f"{path} does not look like {what}: its first line is a JSON object, so it is JSON Lines. Import it "
                "with --format jsonl (and --map KEY=FIELD for its keys), or --format corrections for a file from "
                "`hybridesk tickets export-corrections`.",
                code="wrong_format",
            )
        header_error = _not_utf8(1, ",".join(reader.fieldnames))
        if header_error is not None:
            raise InvalidInput(
                f"{path}: the header row is {header_error.message}.", code="bad_encoding"
            )
        start = 2
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, RowError(start, f"unreadable CSV: {exc}")
                start = reader.line_num + 1
                continue
            if None in row or any(v is None for v in row.values()):
                message = f"expected {len(reader.fieldnames)} columns"
                if reader.line_num > start and any("\n" in v for v in row.values() if isinstance(v, str)):
                    # a quote opened here and closed much later (or never): the lines between were read
                    # as one field, so the real fault is the quote, not the column count
                    message = (f"a quoted field opened on this line runs on to line {reader.line_num} "
                               f"(a missing closing quote?); {message}")
                yield start, RowError(start, message)
            elif (error := _not_utf8(start, "".join(row.values()))) is not None:
                yield start, error
            else:
                yield start, row
            start = reader.line_num + 1


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with _open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            if (error := _not_utf8(number, raw)) is not None:
                yield number, error
                continue
            try:
                # (without its line break: a line cut short is reported where it ends, not as "column 1"
                # of a next line)
                obj = json.loads(raw.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                yield number, RowError(number, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield number, RowError(number, "expected a JSON object")
                continue
            yield number, obj


# how a line that is not a JSON object at all is reported (see _iter_jsonl)
_UNREADABLE_LINE = ("invalid JSON", "expected a JSON object", "not valid UTF-8")


def read_tickets(
    path: Path | str, fmt: str, mapping: Mapping[str, str] | None = None, *, keep_raw: bool = False,
    company: Iterable[tuple[str, str]] | Callable[[], Iterable[tuple[str, str]]] = (),
) -> tuple[list[Ticket], list[RowError]]:
    """Parse and scrub a ticket file; returns ``(tickets, bad rows)``. Nothing is stored.

    ``keep_raw``: each ticket also holds its message as written, unscrubbed (:func:`raw_message`), for
    :func:`import_tickets` to label; it is no dataclass field, so no repr, comparison or ``asdict`` shows it.
    ``company``: the company's own contact details, ``(value, "{{Slot}}")`` (:func:`models.pii.company_contacts`
    of the KB's facts), which an agent's reply gives as the KB's slots, not as the customer's, or a function
    giving them (called once the file is found).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise InvalidInput(
            f"Unknown ticket format {fmt!r}; use one of {', '.join(FORMATS)}.", code="bad_format"
        )
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; pass a ticket file.", code="not_a_file")
    if not path.is_file():
        raise NotFound(f"Ticket file {path} does not exist.", code="file_not_found")
    if fmt in ("csv", "jsonl"):
        check_mapping(mapping)  # (before any row: a mapping problem is one of the command, not of every row)
    company = list(company() if callable(company) else company)
    tickets: list[Ticket] = []
    errors: list[RowError] = []
    rows = _iter_csv(path, fmt) if fmt in ("bitext", "csv") else _iter_jsonl(path)
    seen_rows = False
    field_map: dict[str, str] | None = None
    keys_seen: set[str] = set()  # (JSON Lines: every row's keys, for one clear error when none maps)
    for line, row in rows:
        seen_rows = True
        if isinstance(row, RowError):
            errors.append(row)
            continue
        if fmt == "jsonl" and len(keys_seen) < 200:
            keys_seen.update(str(k) for k in row)
        columns: dict[str, str] = {}  # field -> the file's own column, for the row's errors
        try:
            if fmt == "bitext":
                data, known = _bitext_row(row)
                columns = {"customer_message": "instruction", "agent_reply": "response"}
            elif fmt == "sample":
                data, known = (
                    {f: row.get(f) for f in FIELDS if f != "external_id"} | {"external_id": row.get("id")},
                    (),
                )
            elif fmt == "corrections":
                data = {
                    "customer_message": row.get("customer_message"),
                    "agent_reply": row.get("corrected_reply") or row.get("agent_reply"),
                    "intent": row.get("intent"),
                    "tone": row.get("tone"),
                    "external_id": row.get("message_id"),
                    "created_at": row.get("corrected_at") or row.get("created_at"),
                }
                columns = {"agent_reply": "corrected_reply" if row.get("corrected_reply") else
                           "agent_reply" if row.get("agent_reply") else "corrected_reply",
                           "external_id": "message_id",
                           "created_at": "corrected_at" if row.get("corrected_at") else "created_at"}
                known = ()
            elif fmt == "csv":
                if field_map is None:
                    field_map = _resolve_mapping(list(row.keys()), mapping)
                data, known, columns = {f: row.get(c) for f, c in field_map.items()}, (), field_map
            else:
                # JSON Lines rows may each carry different keys: map each row on its own
                columns = _resolve_mapping(list(row.keys()), mapping, strict=False)
                data = {f: row.get(c) for f, c in columns.items()}
                known = ()
            ticket = _make_ticket(fmt, line, data, columns=columns)
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        raw = ticket.customer_message
        ticket = _scrub(ticket, known, company)
        if keep_raw:
            ticket._raw_message = raw  # type: ignore[attr-defined]
        tickets.append(ticket)
    if not seen_rows:
        # an empty JSON Lines file, or a CSV file with its header and nothing else: nothing to import is
        # an error, as a file without even a header is (not a silent success)
        raise InvalidInput(f"{path} holds no tickets: it has no rows.", code="empty_file")
    unmapped = [e for e in errors if e.message.startswith("no ")]
    unreadable = [e for e in errors if e.message.startswith(_UNREADABLE_LINE)]
    if fmt == "jsonl" and not tickets and unmapped and len(unmapped) + len(unreadable) == len(errors):
        # the same mapping problem on every line is one problem of the file (CLI QA B2, B3), also when some
        # lines are not JSON at all (operator QA: one broken line made it seven repeated messages)
        absent = [c for c in (mapping or {}) if c not in keys_seen]
        broken = (f" ({len(unreadable)} other line(s) could not be read: "
                  f"{'; '.join(str(e) for e in unreadable[:3])})" if unreadable else "")
        raise InvalidInput(
            f"No line of {path.name} has a customer message and an agent reply the mapping can find"
            + (f"; --map names key(s) no line has: {', '.join(absent)}" if absent else "")
            + f". Keys in the file: {', '.join(sorted(keys_seen)[:30]) or 'none'}; pass --map KEY=customer_message "
            f"--map KEY=agent_reply.{broken}", code="missing_columns")
    return tickets, errors


def _bitext_row(row: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    missing = [c for c in ("instruction", "intent", "response") if c not in row]
    if missing:
        raise InvalidInput(
            f"Not a bitext CSV: missing column(s) {missing}; use --format csv with --map.",
            code="missing_columns",
        )
    known = []
    placeholder = BITEXT_ENTITY_PLACEHOLDERS.get((row.get("entity_type") or "").strip())
    if placeholder and row.get("entity_value"):
        known.append((row["entity_value"], placeholder))
    data = {
        "customer_message": row.get("instruction"),
        "agent_reply": row.get("response"),
        "intent": row.get("intent"),
        "category": row.get("category"),
    }
    return data, known


def _scrub(ticket: Ticket, known, company: list[tuple[str, str]]) -> Ticket:
    ticket.customer_message, ticket.agent_reply, kinds = scrub_exchange(ticket.customer_message, ticket.agent_reply,
                                                                         known, company)
    # a helpdesk's ticket id or category may be the customer's e-mail address or phone number (security QA):
    # the category is scrubbed like the text; an id with personal data in it becomes a digest of itself,
    # which still tells two tickets apart (and a correction of the same message from another)
    if ticket.category:
        ticket.category, found = scrub_pii(ticket.category)
        kinds = sorted(set(kinds) | set(found))
    if ticket.external_id and scrub_pii(ticket.external_id)[1]:
        ticket.external_id = "sha256:" + hashlib.sha256(ticket.external_id.encode("utf-8")).hexdigest()[:16]
        kinds = sorted(set(kinds) | {"external_id"})
    ticket.scrubbed_kinds = kinds  # type: ignore[attr-defined]
    return ticket


def raw_message(ticket: Ticket) -> str:
    """The message as the customer wrote it (:func:`read_tickets` with ``keep_raw``), else the stored one;
    forgotten once read, so it never outlives the labelling."""
    return ticket.__dict__.pop("_raw_message", None) or ticket.customer_message


def import_tickets(
    session: Any,
    path: Path | str,
    fmt: str,
    mapping: Mapping[str, str] | None = None,
    *,
    tone_fn: Callable[[str], str | None] | None = None,
    intent_fn: Callable[[str], str | None] | None = None,
    company: Iterable[tuple[str, str]] | Callable[[], Iterable[tuple[str, str]]] = (),
) -> ImportReport:
    """Read, scrub and store tickets as :class:`models.db.ImportedTicket` rows (de-duplicated).

    ``tone_fn`` labels each message's tone (the bot passes its tone detector) and ``intent_fn`` the
    intent of a row that has none (the bot's intent model); rows with one already keep it. Both read the
    message as written, before it is scrubbed (the placeholders of a scrubbed message pull its reading
    away: "I'm {{Customer Name}} ... my email is {{Customer Email}}" read as contact_customer_service).

    A ticket whose message and reply are already stored, from any file or format, is not stored again
    (:func:`exchange_key`); the stored one takes the intent this file names, or, when it has none, the
    detected one (and a tone when it has none). ``company``: as for :func:`read_tickets`. The caller's unit of
    work commits.
    """
    from sqlalchemy import select

    from models.db import ImportedTicket

    tickets, errors = read_tickets(path, fmt, mapping, keep_raw=True, company=company)
    report = ImportReport(path=str(path), fmt=fmt, read=len(tickets) + len(errors), errors=errors)
    # every source: the same tickets imported as CSV and as JSONL, or an exported corrections file read
    # as plain JSONL and then as corrections, are one set of examples, not two (CLI QA, A8). Each stored
    # exchange: [id or the row added now, intent, tone] (rows are loaded whole only to be changed)
    stored: dict[str, list[list[Any]]] = {}
    columns = (ImportedTicket.id, ImportedTicket.customer_message, ImportedTicket.agent_reply,
               ImportedTicket.intent, ImportedTicket.tone)
    for row_id, message, reply, intent, tone in session.execute(select(*columns)):
        stored.setdefault(exchange_key(message, reply), []).append([row_id, intent, tone])
    # a message corrected again after an earlier export: the newer correction replaces the older one
    earlier: dict[str, list[Any]] = {}
    if fmt == "corrections":
        query = select(ImportedTicket).where(ImportedTicket.source == "corrections",
                                             ImportedTicket.external_id.is_not(None))
        for row in session.scalars(query):
            earlier.setdefault(row.external_id, []).append(row)

    def row_of(entry: list[Any]) -> Any:
        return entry[0] if isinstance(entry[0], ImportedTicket) else session.get(ImportedTicket, entry[0])

    for ticket in tickets:
        raw = raw_message(ticket)
        key = exchange_key(ticket.customer_message, ticket.agent_reply)
        if key in stored:
            _update_stored(ticket, raw, stored[key], row_of, report, tone_fn=tone_fn, intent_fn=intent_fn)
            continue
        if ticket.external_id and earlier.get(ticket.external_id):
            for old in earlier.pop(ticket.external_id):
                old_key = exchange_key(old.customer_message, old.agent_reply)
                left = [e for e in stored.get(old_key, []) if e[0] is not old and e[0] != old.id]
                if left:
                    stored[old_key] = left
                else:
                    stored.pop(old_key, None)
                session.delete(old)
            report.replaced += 1
        if (note := getattr(ticket, "note", None)) is not None:
            report.notes.append(note)
        if getattr(ticket, "scrubbed_kinds", None):
            report.scrubbed += 1
        if ticket.tone is None and tone_fn is not None:
            ticket.tone = _opt(tone_fn(raw), 32)
        if ticket.intent is None and intent_fn is not None and (label := intent_fn(raw)):
            ticket.intent = _opt(label, 64)
            report.intents_labelled += 1
        report.no_intent += ticket.intent is None
        report.no_tone += ticket.tone is None
        row = ImportedTicket(
            source=fmt,
            external_id=ticket.external_id,
            customer_message=ticket.customer_message,
            intent=ticket.intent,
            category=ticket.category,
            agent_reply=ticket.agent_reply,
            tone=ticket.tone,
            scrubbed=True,
            created_at=ticket.created_at,
            # (after labelling: the row's hash is of what it holds, as a re-import would compute it)
            data_hash=ticket_hash(ticket.customer_message, ticket.agent_reply, ticket.intent),
        )
        session.add(row)
        stored[key] = [[row, row.intent, row.tone]]
        if fmt == "corrections" and ticket.external_id:
            earlier[ticket.external_id] = [row]  # (a later line of the same file for that message wins)
        report.imported += 1
    session.flush()
    return report


def _update_stored(ticket: Ticket, raw: str, entries: list[list[Any]], row_of: Callable[[list[Any]], Any],
                   report: ImportReport, *, tone_fn: Callable[[str], str | None] | None,
                   intent_fn: Callable[[str], str | None] | None) -> None:
    """A ticket whose exchange is stored already: a duplicate, unless the stored ticket lacks what this
    import gives. The file's own intent replaces the stored one (the operator mapped it: a re-import with
    ``--map topic=intent`` corrects the intents detected before); a ticket stored without an intent gets
    the detected one (it was imported while no NLU model was active), and one without a tone a tone."""
    if ticket.intent is not None:
        if any(e[1] == ticket.intent for e in entries):
            report.duplicates += 1
            _fill_tone(entries, raw, row_of, tone_fn)
            return
        entry, label, counter = entries[0], ticket.intent, "relabelled"
    else:
        entry = next((e for e in entries if e[1] is None), None)
        label = intent_fn(raw) if entry is not None and intent_fn is not None else None
        counter = "labelled_later"
        if not label:
            if entry is not None:
                report.no_intent += 1
            report.duplicates += 1
            _fill_tone(entries, raw, row_of, tone_fn)
            return
        label = _opt(label, 64)
    row = row_of(entry)
    row.intent = entry[1] = label
    row.data_hash = ticket_hash(row.customer_message, row.agent_reply, row.intent)
    setattr(report, counter, getattr(report, counter) + 1)
    _fill_tone(entries, raw, row_of, tone_fn)


def _fill_tone(entries: list[list[Any]], raw: str, row_of: Callable[[list[Any]], Any],
               tone_fn: Callable[[str], str | None] | None) -> None:
    """The stored ticket's tone, when it has none and the bot's tone detector gives one now."""
    entry = entries[0]
    if entry[2] is None and tone_fn is not None and (tone := _opt(tone_fn(raw), 32)):
        row_of(entry).tone = entry[2] = tone


def stored_tickets(session: Any, sources: list[str] | None = None) -> list[Ticket]:
    """Imported tickets from the database, as :class:`Ticket` objects (oldest first)."""
    from sqlalchemy import select

    from models.db import ImportedTicket

    query = select(ImportedTicket).order_by(ImportedTicket.id)
    if sources:
        query = query.where(ImportedTicket.source.in_(sources))
    return [
        Ticket(
            source=row.source,
            customer_message=row.customer_message,
            agent_reply=row.agent_reply,
            intent=row.intent,
            category=row.category,
            tone=row.tone,
            external_id=row.external_id,
            created_at=row.created_at,
        )
        for row in session.scalars(query)
    ]


# -- auditing imported tickets (``hybridesk tickets list | show | delete``) ---------------------------


def shorten(text: str | None, width: int = 70) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def find_imported(session: Any, *, source: str | None = None, search: str | None = None,
                  limit: int | None = 50) -> tuple[list[Any], int]:
    """``(rows, how many match)``: imported tickets (oldest first) of ``source`` whose message or reply
    contains ``search`` (case-insensitive), at most ``limit`` of them."""
    from sqlalchemy import func, or_, select

    from models.db import ImportedTicket

    where = []
    if source:
        where.append(ImportedTicket.source == source)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(or_(ImportedTicket.customer_message.ilike(pattern, escape="\\"),
                         ImportedTicket.agent_reply.ilike(pattern, escape="\\")))
    total = session.scalar(select(func.count()).select_from(ImportedTicket).where(*where)) or 0
    query = select(ImportedTicket).where(*where).order_by(ImportedTicket.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query)), int(total)


def stored_sources(session: Any) -> dict[str, int]:
    """How many imported tickets each source has (``{"csv": 12, "sample": 312}``)."""
    from sqlalchemy import func, select

    from models.db import ImportedTicket

    query = select(ImportedTicket.source, func.count()).group_by(ImportedTicket.source).order_by(ImportedTicket.source)
    return {source: int(n) for source, n in session.execute(query)}


def get_imported(session: Any, ticket_ids: list[int]) -> list[Any]:
    """The imported tickets ``ticket_ids`` (in that order), or :class:`NotFound` naming the unknown ids."""
    from sqlalchemy import select

    from models.db import ImportedTicket

    rows = {r.id: r for r in session.scalars(select(ImportedTicket).where(ImportedTicket.id.in_(ticket_ids)))}
    unknown = [str(i) for i in ticket_ids if i not in rows]
    if unknown:
        raise NotFound(
            f"No imported ticket with id {', '.join(unknown)}; nothing was changed "
            "(`hybridesk tickets list` shows the ids).", code="ticket_not_found",
        )
    return [rows[i] for i in dict.fromkeys(ticket_ids)]


def delete_imported(session: Any, *, ticket_ids: list[int] | None = None, source: str | None = None) -> int:
    """Delete imported tickets by id (all of them must exist) or every ticket of ``source``; how many.
    The caller's unit of work commits."""
    from sqlalchemy import select

    from models.db import ImportedTicket

    if ticket_ids:
        rows = get_imported(session, ticket_ids)
    elif source:
        rows = list(session.scalars(select(ImportedTicket).where(ImportedTicket.source == source)))
    else:
        raise InvalidInput("Name the tickets to delete: their ids, or --source SOURCE.", code="nothing_to_delete")
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)
