"""KB editor services: form -> document, stale-edit check, facts as YAML ("test a question": kb_test).

The editor edits fields (title, dates, tags, facts, Markdown body); they are assembled into the
same Markdown-with-front-matter format the importer reads and parsed by
:func:`knowledge.ingest.parse_markdown`, so the editor and ``hybridesk kb import`` validate
documents identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from knowledge.errors import Conflict, InvalidInput
from knowledge.ingest import (
    ParsedDocument,
    describe_contradictions,
    describe_facts,
    facts_contradicted,
    facts_not_stated,
    parse_markdown,
    parse_when,
)


@dataclass
class DocumentForm:
    """What the edit form posts."""

    document_id: str
    title: str
    body: str
    effective_from: str = ""
    effective_until: str = ""
    tags: str = ""
    audience: str = ""
    facts_yaml: str = ""
    change_note: str = ""

    def parse(self) -> ParsedDocument:
        """Validate the form the way the importer validates a file."""
        if not self.document_id.strip():
            raise InvalidInput("Give the document an id (lower-case letters, digits, - and _), such as "
                               "returns-policy.", code="bad_document_id", field="document_id")
        try:
            facts = yaml.safe_load(self.facts_yaml) if self.facts_yaml.strip() else None
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date YAML cannot build (2026-02-30)
            raise InvalidInput("The facts are not valid YAML; use a list of `- name: ... value: ...` entries.",
                               code="bad_facts", field="facts") from exc
        meta: dict[str, Any] = {"id": self.document_id.strip(), "title": self.title.strip() or None,
                                "tags": [t.strip() for t in self.tags.split(",") if t.strip()],
                                "facts": facts}
        if self.audience.strip():
            meta["audience"] = self.audience.strip()
        if self.change_note.strip():
            meta["change_note"] = self.change_note.strip()
        dates: dict[str, datetime | None] = {}
        for name in ("effective_from", "effective_until"):
            raw = getattr(self, name).strip()
            if raw:
                dates[name] = when = parse_when(raw, field_name=name)
                meta[name] = when.isoformat() if when else None
        check_dates(dates.get("effective_from"), dates.get("effective_until"))
        if not self.body.strip():
            raise InvalidInput("Write the policy text.", code="empty_content", field="body")
        text = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + self.body
        return parse_markdown(text, name=f"{self.document_id or 'document'}.md")


def check_dates(start: datetime | None, end: datetime | None, now: datetime | None = None) -> None:
    """Refuse, when the draft is saved, an end date the revision could never be published with."""
    if end is None:
        return
    if start is not None and end <= start:
        raise InvalidInput(f"Effective until ({end:%Y-%m-%d %H:%M} UTC) must be later than effective from "
                           f"({start:%Y-%m-%d %H:%M} UTC). Nothing was saved.", code="bad_date",
                           field="effective_until")
    if start is None and end <= (now or datetime.now(UTC)):
        raise InvalidInput(f"Effective until ({end:%Y-%m-%d %H:%M} UTC) has already passed: with no effective-from "
                           "date the revision takes effect when it is published, so it would never be in force. "
                           "Pick a later date or leave the field empty. Nothing was saved.", code="bad_date",
                           field="effective_until")


def revision_badge(status: str, effective_from: datetime | None, effective_until: datetime | None,
                   now: datetime | None = None, *, in_force: int | None = None,
                   number: int | None = None) -> tuple[str, str]:
    """(text, CSS status) of a revision's badge: a published revision not yet or no longer in force says so.

    With ``in_force`` (the document's revision in force now) and the revision's ``number``, a published
    revision that took effect and was replaced by a later one says "superseded", not "published"."""
    now = now or datetime.now(UTC)
    if status == "draft":
        return "draft", "draft"
    if (status == "published" and number is not None and in_force is not None and number != in_force
            and (effective_from is None or effective_from <= now)
            and (effective_until is None or effective_until > now)):
        return f"superseded by r{in_force}", "retired"
    # (a revision retired before its scheduled start is retired, not scheduled)
    if effective_until is not None and effective_until <= now:
        word = "retired" if status == "retired" else "expired"
        return f"{word} · since {effective_until:%Y-%m-%d %H:%M} UTC", "retired"
    if effective_from is not None and effective_from > now:
        return f"scheduled · from {effective_from:%Y-%m-%d %H:%M} UTC", "scheduled"
    if effective_until is not None:
        word = "retiring" if status == "retired" else "published"
        return f"{word} · until {effective_until:%Y-%m-%d %H:%M} UTC", "published"
    return status, status


def facts_to_yaml(facts: Any) -> str:
    """The revision's facts as the YAML list the form edits."""
    items = []
    for f in facts:
        item: dict[str, Any] = {"name": f.name, "value": f.value}
        if f.unit:
            item["unit"] = f.unit
        if f.description:
            item["description"] = f.description
        if f.placeholders:
            item["placeholders"] = list(f.placeholders)
        items.append(item)
    return yaml.safe_dump(items, sort_keys=False, allow_unicode=True) if items else ""


def date_input(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value else ""


def check_not_stale(knowledge: Any, doc_id: str, base_revision: int, *, publishing: bool = False) -> None:
    """Refuse an edit made on top of an old revision (someone saved or published in between)."""
    history = knowledge.history(doc_id)
    latest = history[-1] if history else None
    if latest is not None and latest.number != base_revision:
        when = latest.created_at.strftime("%Y-%m-%d %H:%M UTC") if latest.created_at else "recently"
        raise Conflict(
            f"{doc_id} changed while you were editing: revision {latest.number} ({latest.status}) was saved "
            f"by {latest.author} at {when}, after revision {base_revision} that you opened. " + (
                "Nothing was published; open the document again to see what changed, then publish."
                if publishing else
                "Your text was not saved; open the latest revision, re-apply your change and save again."),
            code="stale_edit", latest_revision=latest.number)


def _plain(text: str) -> str:
    return " ".join(text.replace("**", "").replace("__", "").lower().split())


def check_facts_stated(body: str, facts: Any) -> None:
    """Refuse to publish a fact whose value the text does not state, or that the text contradicts ("within
    45 days" in the intro, "within 21 days" in a table row, the fact at 45): the bot tells customers the fact
    and cites the page, which would say otherwise. A draft may be saved."""
    missing = facts_not_stated(body, facts)
    if missing:
        raise InvalidInput(
            f"The text does not state these facts: {describe_facts(missing)}. The bot tells customers a fact's value "
            "and cites this page, so the two must agree: write the value in the text or change the fact. A draft "
            "can be saved.", code="fact_not_in_text", field="facts")
    contradicted = facts_contradicted(body, facts)
    if contradicted:
        raise InvalidInput(
            f"The text contradicts its own facts: {describe_contradictions(contradicted)}. The bot tells customers "
            "the fact's value and cites this page, so the text must not give another figure for it: correct the "
            "text or the fact. A draft can be saved.", code="fact_contradicted", field="body")


def save_revision(knowledge: Any, form: DocumentForm, *, author: str, base_revision: int | None,
                  publish: bool = False) -> Any:
    """Create the document (``base_revision`` None) or add a revision on top of ``base_revision``."""
    parsed = form.parse()
    if publish:
        check_facts_stated(parsed.body, parsed.facts)
    if base_revision is None:
        return knowledge.create_document(parsed, author=author, publish=publish)
    check_not_stale(knowledge, parsed.id, base_revision)
    return knowledge.add_revision(
        parsed.id, parsed.body, author=author, change_note=parsed.change_note, title=parsed.title,
        effective_from=parsed.effective_from, effective_until=parsed.effective_until, tags=parsed.tags,
        audience=parsed.audience, facts=parsed.facts, publish=publish)


# ---------------------------------------------------------------- other policies to check


@dataclass(frozen=True)
class Mention:
    """A sentence of another policy in force the editor should read when changing or retiring this one."""

    document_id: str
    title: str
    why: str
    sentence: str


def _states_value(sentence: str, value: str, unit: str | None) -> bool:
    """Whether a plain, lower-case ``sentence`` states ``value`` ("30" with unit "days": "within 30 days",
    "a 30-day term"). A bare number without a unit is never matched: it is in too many sentences."""
    v = _plain(value)
    if not v:
        return False
    if re.fullmatch(r"[\d.,\-–]+", v):  # (a price or a percentage carries its sign: "€4.95", "10%")
        if not unit:
            return False
        word = _plain(unit).split()[-1].rstrip("s")  # "business days" -> "day"
        return re.search(rf"(?<![\w.,]){re.escape(v)}(?:\s+|-)(?:\w+\s+)?{re.escape(word)}", sentence) is not None
    return re.search(rf"(?<!\w){re.escape(v)}(?!\w)", sentence) is not None


# a figure ("30", "€4.95", "10%"): stated by many sentences about other things
_FIGURE = re.compile(r"[€$£]?[\d.,\-–]+%?")
# words of a fact's description that say nothing of what it is about
_FUNCTION_WORDS = {"after", "within", "before", "until", "which", "when", "where", "can", "could", "may", "hav",
                   "has", "been", "than", "per", "each", "every", "one", "all", "any", "not", "more", "less",
                   "up", "only", "once", "first", "next", "time", "number", "amount", "value", "day", "hour",
                   "order", "item", "customer"}  # (the shop's every other sentence names an order)


def _about(sentence: str, fact: Any) -> bool:
    """Whether a sentence stating a fact's value is about the fact: a bare figure with a unit ("48 hours")
    must come with a word of the fact's name or description besides the unit; a value of its own (a phone
    number, an e-mail address, "every Thursday") needs none."""
    from bot.conversation.words import stems

    if not _FIGURE.fullmatch(_plain(str(fact.value))):
        return True
    topic = stems(f"{fact.name.replace('_', ' ')} {getattr(fact, 'description', '') or ''}")
    return bool((topic - stems(fact.unit or "") - _FUNCTION_WORDS) & stems(sentence))


def other_mentions(knowledge: Any, revision: Any, *, per_document: int = 3) -> list[Mention]:
    """The sentences of other policies in force that point to this one (its title in quotes, a link to
    its public page), or that state the value a fact had before this revision changed it.

    A policy is often repeated elsewhere ("You have 30 days to return it, see "Returns policy"."):
    the bot retrieves those sentences too, so a change or a retirement made here alone would leave the
    old policy in other pages' words. The comparison is with the revision in force (or, for the one in
    force, the revision before it)."""
    in_force = knowledge.in_force()
    live = next((r for r in in_force if r.document_id == revision.document_id), None)
    base = live if live is not None and live.number != revision.number else None
    if base is None and revision.number > 1:
        base = knowledge.get(revision.document_id, revision.number - 1)
    now = {f.name: f for f in revision.facts}
    changed = [f for f in (base.facts if base is not None else ())
               if f.name in now and (_plain(str(f.value)), f.unit) != (_plain(str(now[f.name].value)), now[f.name].unit)]
    title = _plain(revision.title)
    out: list[Mention] = []
    for other in in_force:
        if other.document_id == revision.document_id:
            continue
        found: list[Mention] = []
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", other.content):
            shown = " ".join(sentence.replace("**", "").replace("__", "").strip(" -*#|").split())
            plain = shown.lower()
            reasons = []
            if title and (f'"{title}"' in plain or f"“{title}”" in plain) or f"/kb/{revision.document_id}" in plain:
                reasons.append("refers to this policy")
            old = next((f for f in changed if _states_value(plain, str(f.value), f.unit) and _about(plain, f)), None)
            if old is not None:
                reasons.insert(0, f"states {old.value}{' ' + old.unit if old.unit else ''}, the old {old.name}")
            if reasons:
                found.append(Mention(other.document_id, other.title, "; ".join(reasons), shown))
        # an old value first: it is what a customer would be told
        out += sorted(found, key=lambda m: not m.why.startswith("states"))[:per_document]
    return out


# ---------------------------------------------------------------- form errors shown at their field

#: the edit form's fields (the names the form posts, "facts" for the YAML)
FORM_FIELDS = ("document_id", "title", "effective_from", "effective_until", "tags", "audience", "body", "facts",
               "change_note")
_FIELD_OF_CODE = {"bad_document_id": "document_id", "document_exists": "document_id", "bad_facts": "facts",
                  "fact_not_in_text": "facts", "fact_conflict": "facts", "fact_contradicted": "body",
                  "empty_content": "body", "empty_file": "body", "bad_date": "effective_from"}


def form_error_field(exc: Any) -> str | None:
    """The edit form's field an error is about (shown beside it), or None for the whole form."""
    field = (getattr(exc, "fields", None) or {}).get("field")
    if field in FORM_FIELDS:
        return str(field)
    return _FIELD_OF_CODE.get(getattr(exc, "code", ""))
