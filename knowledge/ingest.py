"""Importers: Markdown with YAML front matter, plain text, HTML, and folders of them.

Parsing never touches the database; :func:`import_folder` hands each parsed file to the store
in its own transaction, so one bad file is reported by name and the rest still import.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from knowledge.chunking import slugify
from knowledge.errors import HybrideskError, InvalidInput, TooLarge

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 2 * 1024 * 1024
SKIP_FILES = {"readme.md", "slots.md"}
SCHEDULED_DIR = "scheduled"
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,119}$")
_FACT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,119}$")
_FACT_BLOCK = re.compile(r"^```facts[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class FactSpec:
    """A fact as written in a document (front matter ``facts:`` or a ```` ```facts ```` block)."""

    name: str
    value: str
    unit: str | None = None
    description: str | None = None
    placeholders: list[str] = field(default_factory=list)


@dataclass
class ParsedDocument:
    """A document ready for the store; ``body`` is Markdown (text and HTML are converted)."""

    id: str
    title: str
    body: str
    content_format: str = "markdown"
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    tags: list[str] = field(default_factory=list)
    audience: str | None = None
    facts: list[FactSpec] = field(default_factory=list)
    source: str | None = None
    change_note: str | None = None

    def __post_init__(self) -> None:
        # the database's column sizes, said as a clear error (PostgreSQL refuses a longer value with a 500;
        # security QA: the console's form took 500 characters for a title)
        for name, limit in (("title", MAX_TITLE_CHARS), ("audience", MAX_AUDIENCE_CHARS)):
            value = getattr(self, name)
            if value is not None and len(value) > limit:
                raise InvalidInput(f"The {name} is {len(value)} characters long; keep it under {limit + 1}.",
                                   code=f"{name}_too_long", field=name)


#: what kb_documents.title / kb_revisions.title and kb_revisions.audience hold
MAX_TITLE_CHARS = 300
MAX_AUDIENCE_CHARS = 60


@dataclass
class ImportProblem:
    file: str
    reason: str
    code: str = "invalid_input"

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class ImportReport:
    """Outcome of an import: ids per outcome and one entry per file that could not be imported."""

    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)  # a new revision of a document, in force from a later date
    unchanged: list[str] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)
    # saved, but not published: a fact whose value the text does not state (the bot would cite a page
    # saying otherwise)
    drafted: list[ImportProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One line for people: counts per outcome."""
        return (
            f"{len(self.imported)} imported, {len(self.updated)} updated, "
            + (f"{len(self.scheduled)} scheduled, " if self.scheduled else "")
            + (f"{len(self.drafted)} kept as draft, " if self.drafted else "")
            + f"{len(self.unchanged)} unchanged, {len(self.errors)} skipped"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "scheduled": self.scheduled,
            "unchanged": self.unchanged,
            "drafted": [e.__dict__ for e in self.drafted],
            "errors": [e.__dict__ for e in self.errors],
        }


def _plain(text: str) -> str:
    return " ".join(text.replace("**", "").replace("__", "").lower().split())


def whole_value(value: str) -> re.Pattern[str]:
    """``value`` found only whole: "2%" is not in "12%", "€5" not in "€5.95" nor "30" in "300"; a value
    starting or ending with a letter or digit is read as a whole word."""
    head = r"(?<![\w.,])" if value[:1].isalnum() else ""
    tail = r"(?![\d%]|[.,]\d)" if value[-1:].isdigit() else r"(?!\w)" if value[-1:].isalnum() else ""
    return re.compile(head + re.escape(value) + tail)


def _states(text: str, value: str) -> bool:
    """Whether ``text`` (plain) gives ``value`` (plain) whole (:func:`whole_value`)."""
    return whole_value(value).search(text) is not None


def facts_not_stated(body: str, facts: Any) -> list[Any]:
    """The facts whose value the text does not state ("21" when the text says "thirty days", "2%" when it
    says "12%"): the bot tells customers a fact's value and cites the page, so a page saying otherwise
    must not be published."""
    text = _plain(body)
    return [f for f in facts if str(f.value).strip() and not _states(text, _plain(str(f.value)))]


def describe_facts(facts: Any) -> str:
    return "; ".join(f"{f.name} ({f.value}{' ' + f.unit if getattr(f, 'unit', None) else ''})" for f in facts)


# ---------------------------------------------------------------- a figure that contradicts a fact

# a figure: "21", "4.5", a range "3-5" / "3 to 5"
_NUMBER = r"\d+(?:[.,]\d+)?(?:\s*(?:[-–]|to)\s*\d+(?:[.,]\d+)?)?"
_TOPIC_WORD = re.compile(r"[a-z0-9]+")
# words of a fact's name or description that say nothing of what it is about
_NOT_A_TOPIC = {
    "a", "about", "after", "all", "an", "and", "any", "are", "as", "at", "be", "been", "before", "by", "can",
    "could", "customer", "during", "each", "every", "first", "for", "from", "has", "have", "in", "is", "it",
    "its", "item", "less", "may", "more", "next", "not", "number", "of", "on", "once", "one", "only", "or",
    "order", "our", "per", "stay", "than", "that", "the", "this", "time", "to", "until", "up", "value", "we",
    "when", "where", "which", "with", "within", "you", "your"}


@dataclass(frozen=True)
class Contradiction:
    """A figure with a fact's unit ("21 days"), in a sentence about the fact, that is not its value (45)."""

    fact: Any
    figure: str
    sentence: str

    def describe(self) -> str:
        unit = f" {self.fact.unit}" if getattr(self.fact, "unit", None) else ""
        shown = self.sentence if len(self.sentence) <= 120 else self.sentence[:117] + "…"
        return f"{self.fact.name} is {self.fact.value}{unit}, but the text says {self.figure} in “{shown}”"


def _topic_stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "e", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _topic(text: str) -> set[str]:
    return {_topic_stem(w) for w in _TOPIC_WORD.findall(text.lower()) if w not in _NOT_A_TOPIC and len(w) > 1}


def _figure_key(value: str) -> str:
    return re.sub(r"\s*(?:[-–]|to)\s*", "-", value.strip().lower()).replace(",", ".")


def _unit_word(unit: str) -> str:
    word = unit.lower().split()[-1]  # "business days" -> "days"
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


_SYMBOL_VALUE = re.compile(rf"([€$£])\s?({_NUMBER})|({_NUMBER})\s?(%)")


def _kind(fact: Any) -> str | None:
    """What kind of figure ``fact`` is, when it is one: its unit's word ("day" of "business days"), or its
    currency sign or "%" ("€60", "15%"); None for a value that is not a single figure."""
    value = str(fact.value).strip()
    if getattr(fact, "unit", None):
        return _unit_word(fact.unit) if re.fullmatch(_NUMBER, value) else None
    m = _SYMBOL_VALUE.fullmatch(value)
    return (m.group(1) or m.group(4)) if m else None


def _bare(value: str) -> str:
    """A figure without its currency sign or percent sign ("€60" -> "60")."""
    m = _SYMBOL_VALUE.fullmatch(value.strip())
    return (m.group(2) or m.group(3)) if m else value


def _figures_of_kind(kind: str) -> re.Pattern[str]:
    """Figures of one kind in a text, the number as group 1: "21 days" / "21 business days", "€9.95", "12%"."""
    if kind in "€$£":
        return re.compile(rf"(?<![\w.,]){re.escape(kind)}\s?({_NUMBER})(?![\d]|[.,]\d)")
    if kind == "%":
        return re.compile(rf"(?<![\w.,€$£-])({_NUMBER})\s?%")
    return re.compile(rf"(?<![\w.,€$£-])({_NUMBER})(?:\s+|-)(?:[a-z]+\s+)?{re.escape(kind)}s?(?!\w)", re.I)


def facts_contradicted(body: str, facts: Any) -> list[Contradiction]:
    """The figures the text gives where it talks about a fact, in the fact's unit, that differ from the
    fact's value: "within 45 days" in one place and "within 21 days" in a table row, the fact at 45.
    The bot tells customers 45 and cites the page, which also says 21.

    Only a fact whose value is a figure with a unit is checked. A sentence (or table row) counts when
    it names a word of the fact's name or description besides the unit, does not state the fact's own
    value, and gives a figure in that unit that no fact of the document has ("5 years" beside a
    24-month warranty, or "2 business days" when another fact is "2 business days", are other facts)."""
    checked = [f for f in facts if _kind(f)]
    if not checked:
        return []
    segments = [seg.strip() for line in body.replace("**", "").replace("__", "").splitlines()
                for seg in re.split(r"(?<=[.!?;])\s+", line) if seg.strip()]
    out: list[Contradiction] = []
    for fact in checked:
        word = _kind(fact)
        pattern = _figures_of_kind(word)
        # the figures of every fact of the document of this kind: a figure that is one of them is that fact's
        known = set()
        for other in facts:
            value = str(other.value).strip()
            if _kind(other) == word:
                known.add(_figure_key(_bare(value)))
            else:
                known |= {_figure_key(m.group(1)) for m in pattern.finditer(value)}
        topic = (_topic(f"{fact.name.replace('_', ' ')} {getattr(fact, 'description', '') or ''}")
                 - _topic(getattr(fact, "unit", None) or ""))
        own = _figure_key(_bare(str(fact.value)))
        for seg in segments:
            figures = [(m.group(0), _figure_key(m.group(1))) for m in pattern.finditer(seg)]
            if not figures or any(key == own for _, key in figures):
                continue
            # (a zero is an exception the text names, not another value: "the invoice shows 0% VAT")
            wrong = next((shown for shown, key in figures if key not in known and key.strip("0.") != ""), None)
            if wrong is not None and topic & _topic(seg):
                out.append(Contradiction(fact, wrong, " ".join(seg.strip(" |-*#").split())))
                break  # one sentence per fact is enough to say what to fix
    return out


def describe_contradictions(items: list[Contradiction]) -> str:
    return "; ".join(c.describe() for c in items)


# ---------------------------------------------------------------- values


def parse_when(value: Any, *, field_name: str = "effective_from") -> datetime | None:
    """ISO date or datetime (or a YAML date) -> aware UTC datetime; ``None``/empty -> ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "null", "none"}):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parse_when(parsed)
    raise InvalidInput(
        f"{field_name} {value!r} is not a valid date; use ISO 8601, e.g. 2026-03-01 or 2026-03-01T09:00:00Z.",
        code="bad_date",
        field=field_name,
    )


def _scalar(value: Any, where: str, code: str = "bad_front_matter") -> str | None:
    """A front-matter value as text; a YAML list or mapping where text belongs is refused."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        # never str() it: YAML aliases can make a small list print as gigabytes
        kind = "mapping" if isinstance(value, dict) else "list"
        raise InvalidInput(f"{where} must be text, not a YAML {kind}.", code=code)
    return str(value)


def _scalars(value: Any, where: str, code: str = "bad_front_matter") -> list[str]:
    """A list of texts, or one text (a comma-separated string stays one item here)."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    if isinstance(value, dict) or not all(isinstance(v, str | int | float) for v in items):
        raise InvalidInput(f"{where} must be a list of texts.", code=code)
    return [str(v) for v in items]


#: what a fact entry may say
FACT_KEYS = frozenset({"name", "value", "unit", "description", "placeholders"})
#: a fact is a figure, a name or a short phrase ("My Account › Payment & billing"), not a paragraph
MAX_FACT_VALUE = 300


def _facts(raw: Any, where: str) -> list[FactSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(f"{where}: `facts` must be a list of {{name, value}} entries.", code="bad_facts")
    out: list[FactSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            raise InvalidInput(f"{where}: fact #{i + 1} needs a `name` and a `value`.", code="bad_facts")
        name = (_scalar(item["name"], f"{where}: fact #{i + 1} name", "bad_facts") or "").strip()
        if not _FACT_NAME.match(name):
            raise InvalidInput(f"{where}: fact name {name!r} must be snake_case.", code="bad_facts")
        value = item["value"]
        if isinstance(value, (dict, list)) or value is None:
            raise InvalidInput(f"{where}: fact {name!r} needs a scalar value.", code="bad_facts")
        if isinstance(value, bool):  # YAML reads yes/no/on/off as true/false: stored, it would say "True"
            raise InvalidInput(f"{where}: fact {name!r}: put the value in quotes (\"yes\"), or YAML reads it as "
                               "true/false.", code="bad_facts")
        if not str(value).strip() or len(str(value)) > MAX_FACT_VALUE:
            raise InvalidInput(f"{where}: fact {name!r} needs a value of 1 to {MAX_FACT_VALUE} characters.",
                               code="bad_facts")
        unknown = sorted(set(item) - FACT_KEYS)
        if unknown:  # a typo ("placeholder", "units") would be dropped silently
            raise InvalidInput(f"{where}: fact {name!r} has unknown key(s) {', '.join(map(str, unknown))}; a fact "
                               f"takes {', '.join(sorted(FACT_KEYS))}.", code="bad_facts")
        label = f"{where}: fact {name!r}"
        out.append(
            FactSpec(
                name=name,
                value=str(value),
                unit=_scalar(item.get("unit"), f"{label} unit", "bad_facts"),
                description=_scalar(item.get("description"), f"{label} description", "bad_facts"),
                placeholders=_scalars(item.get("placeholders"), f"{label} placeholders", "bad_facts"),
            )
        )
    names = [f.name for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"{where}: fact(s) defined twice: {', '.join(dupes)}.", code="bad_facts")
    return out


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge(f"{name} is {len(data)} bytes; the limit is {MAX_FILE_BYTES}.", code="file_too_large")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") and b"\x00" in data[2:64]:  # (its NUL bytes read as a binary file's)
        raise InvalidInput(f"{name} is UTF-16 text; save it as UTF-8 and import it again.", code="not_utf8")
    if b"\x00" in data[:8192]:
        raise InvalidInput(
            f"{name} looks like a binary file; import Markdown, text or HTML.", code="binary_file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name} is not UTF-8 text ({exc.reason}).", code="binary_file") from exc
    if not text.strip():
        raise InvalidInput(f"{name} is empty.", code="empty_file")
    return text.replace("\r\n", "\n")


#: ids the console's KB pages use for themselves (``/console/kb/new``, ``/console/kb/preview``)
RESERVED_IDS = frozenset({"new", "preview"})


def _check_id(doc_id: Any, where: str) -> str:
    doc_id = str(doc_id).strip()
    if not _ID.match(doc_id):
        raise InvalidInput(
            f"{where}: document id {doc_id!r} must be a slug (lower-case letters, digits, - and _).",
            code="bad_document_id",
        )
    if doc_id in RESERVED_IDS:
        raise InvalidInput(
            f"{where}: {doc_id!r} names a console page (/console/kb/{doc_id}); choose another document id.",
            code="bad_document_id",
        )
    return doc_id


# ---------------------------------------------------------------- formats


def parse_markdown(text: str, *, name: str = "document.md", default_id: str | None = None) -> ParsedDocument:
    """Markdown with optional YAML front matter (see CONVENTIONS.md for the fields)."""
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        m = re.match(r"^---[ \t]*\n(.*?)^(---|\.\.\.)[ \t]*$\n?", text, re.S | re.M)
        if not m:
            raise InvalidInput(
                f"{name}: front matter starts with --- but never ends.", code="bad_front_matter"
            )
        try:
            loaded = yaml.safe_load(m.group(1))
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 2})" if where is not None else ""
            raise InvalidInput(
                f"{name}: front matter is not valid YAML{line}.", code="bad_front_matter"
            ) from exc
        except ValueError as exc:  # YAML's own date type: 2026-13-45 looks like a date but is none
            raise InvalidInput(
                f"{name}: front matter holds an impossible date ({exc}); use ISO 8601, e.g. 2026-03-01.",
                code="bad_date",
            ) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise InvalidInput(f"{name}: front matter must be a YAML mapping.", code="bad_front_matter")
        meta = loaded or {}
        body = text[m.end() :]
    facts = _facts(meta.get("facts"), name)
    # Optional fact blocks in the body: ```facts ... ``` holding the same YAML list.
    for block in _FACT_BLOCK.findall(body):
        try:
            facts += _facts(yaml.safe_load(block), name)
        except (yaml.YAMLError, ValueError) as exc:
            raise InvalidInput(f"{name}: a ```facts block is not valid YAML.", code="bad_facts") from exc
    body = _FACT_BLOCK.sub("", body).strip()
    if not body:
        raise InvalidInput(f"{name} has no text after its front matter.", code="empty_file")
    title = _scalar(meta.get("title"), f"{name}: title")
    if not title:
        h1 = re.search(r"^#\s+(.+)$", body, re.M)
        title = h1.group(1).strip() if h1 else Path(name).stem.replace("-", " ").capitalize()
    doc_id = _check_id(_scalar(meta.get("id"), f"{name}: id") or default_id or slugify(Path(name).stem), name)
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    doc = ParsedDocument(
        id=doc_id,
        title=title.strip(),
        body=body,
        effective_from=parse_when(meta.get("effective_from"), field_name=f"{name}: effective_from"),
        effective_until=parse_when(meta.get("effective_until"), field_name=f"{name}: effective_until"),
        tags=_scalars(tags, f"{name}: tags"),
        audience=_scalar(meta.get("audience"), f"{name}: audience"),
        facts=_check_unique(facts, name),
        source=name,
        change_note=_scalar(meta.get("change_note"), f"{name}: change_note"),
    )
    if doc.effective_from and doc.effective_until and doc.effective_until <= doc.effective_from:
        raise InvalidInput(f"{name}: effective_until must be after effective_from.", code="bad_date")
    return doc


def _check_unique(facts: list[FactSpec], name: str) -> list[FactSpec]:
    names = [f.name for f in facts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"{name}: fact(s) defined twice: {', '.join(dupes)}.", code="bad_facts")
    return facts


#: a file whose first line is exactly ``---`` opens YAML front matter (what :func:`parse_markdown` reads)
_TEXT_FRONT_MATTER = re.compile(r"---[ \t]*\n")


def parse_text(text: str, *, name: str = "document.txt", default_id: str | None = None) -> ParsedDocument:
    """Plain text: the first line is the title when it is short; paragraphs are kept.

    A text that starts with YAML front matter (a ``---`` line, the YAML, a ``---`` line) is read as a
    Markdown file is, by :func:`parse_markdown`: the same id, title, dates, tags, audience and facts
    (and ```` ```facts ```` blocks), and the same errors; QA found such a file imported with the title
    "---" and its YAML shown to customers as text."""
    if _TEXT_FRONT_MATTER.match(text):
        doc = parse_markdown(text, name=name, default_id=default_id)
        doc.content_format = "text"
        return doc
    lines = text.strip().splitlines()
    first = lines[0].strip()
    if len(first) <= 120 and len(lines) > 1:
        title, body = first, "\n".join(lines[1:]).strip() or first
    else:
        title, body = Path(name).stem.replace("-", " ").capitalize(), text.strip()
    doc_id = _check_id(default_id or slugify(Path(name).stem), name)
    return ParsedDocument(id=doc_id, title=title, body=body, content_format="text", source=name)


#: HTML elements with no content and no end tag
_HTML_VOID = frozenset({"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
                        "keygen", "link", "meta", "param", "source", "track", "wbr"})
#: elements whose content a visitor never reads on the page, dropped with everything inside: ``<noscript>``
#: shows only without JavaScript (a "turn on JavaScript" notice, a tracking pixel), ``<template>`` never;
#: ``<title>`` is the document's title, read apart
_HTML_DROP = frozenset({"audio", "canvas", "datalist", "head", "iframe", "math", "noscript", "script", "style",
                        "svg", "template", "title", "video"})
#: what may stand in ``<head>``; any other element starts the body (a file without ``</head>``)
_HTML_HEAD_CONTENT = frozenset({"base", "link", "meta", "noscript", "script", "style", "template", "title"})
#: elements that are paragraphs of their own
_HTML_BLOCK = frozenset({"address", "article", "aside", "blockquote", "body", "center", "dd", "details", "dialog",
                         "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup",
                         "legend", "listing", "main", "nav", "p", "search", "section", "summary", "xmp"})
_HTML_HEADING = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_LIST = frozenset({"dir", "menu", "ol", "ul"})
#: start tags that end an open ``<p>``
_HTML_CLOSES_P = (_HTML_BLOCK | _HTML_HEADING | _HTML_LIST | {"hr", "li", "pre", "table"}) - {"body"}
#: where an end tag stops looking for its element (HTML's scopes): a ``</div>`` inside a table cell does not
#: end a ``<div hidden>`` around the table, so the rest of the table stays hidden as in a browser
_HTML_SCOPE = frozenset({"applet", "caption", "html", "marquee", "object", "table", "td", "template", "th"})
_HTML_TABLE_SCOPE = frozenset({"html", "table", "template"})
_HTML_TABLE_PARTS = frozenset({"caption", "table", "tbody", "td", "tfoot", "th", "thead", "tr"})
_HTML_BUTTON_SCOPE = _HTML_SCOPE | {"button"}
_HTML_LIST_SCOPE = _HTML_SCOPE | {"ol", "ul"}
_HTML_CELL = frozenset({"td", "th"})
_HTML_DEF = frozenset({"dd", "dt"})
_HTML_SECTION = frozenset({"tbody", "tfoot", "thead"})
_HTML_ROW_SCOPE = _HTML_TABLE_SCOPE | _HTML_SECTION
_HTML_CELL_SCOPE = _HTML_TABLE_SCOPE | {"tr"}
#: where an implied ``</li>``, ``</dt>`` or ``</dd>`` stops looking (a nested list or section keeps its items)
_HTML_SPECIAL = frozenset({
    "applet", "article", "aside", "blockquote", "body", "button", "caption", "center", "colgroup", "details",
    "dialog", "dir", "dl", "fieldset", "figcaption", "figure", "footer", "form", "frameset", "h1", "h2", "h3", "h4",
    "h5", "h6", "head", "header", "hgroup", "html", "iframe", "listing", "main", "marquee", "menu", "nav",
    "noembed", "noframes", "noscript", "object", "ol", "plaintext", "pre", "script", "search", "section", "select",
    "style", "summary", "table", "tbody", "td", "template", "textarea", "tfoot", "th", "thead", "title", "tr",
    "ul", "xmp"})
#: how many open elements an end tag looks through (broken HTML stays linear: one not found stays open)
_HTML_SEARCH_LIMIT = 64
#: lists, tables, cells and headings nested deeper than this are read as plain paragraphs
_HTML_MAX_NESTING = 32
#: a table wider than this is read cell by cell, not as a Markdown table
_HTML_MAX_COLUMNS = 40
#: characters a visitor does not see: NUL, soft hyphen ("re&shy;fund"), zero-width space, BOM
_HTML_INVISIBLE = str.maketrans("", "", "\x00\u00ad\u200b\ufeff")
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_IMPORTANT = re.compile(r"!\s*important", re.I)


def _html_hidden(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    """Whether an element and all it holds are hidden from a visitor: ``hidden``, ``aria-hidden="true"``,
    ``display:none`` or ``visibility:hidden`` in its ``style``, a closed ``<dialog>``, or a dropped element.
    (A stylesheet's classes are not read.)"""
    if tag in _HTML_DROP:
        return True
    if tag == "dialog" and not any(k == "open" for k, _ in attrs):
        return True
    for key, value in attrs:
        if key == "hidden" or (key == "aria-hidden" and (value or "").strip().lower() == "true"):
            return True
        if key == "style" and value:
            shown = {"display": "", "visibility": ""}
            for decl in _CSS_COMMENT.sub("", value).split(";"):
                prop, _, val = decl.partition(":")
                if prop.strip().lower() in shown:  # the last declaration wins, as in CSS
                    shown[prop.strip().lower()] = _CSS_IMPORTANT.sub("", val).strip().lower()
            if shown["display"] == "none" or shown["visibility"] in {"hidden", "collapse"}:
                return True
    return False


def _html_int(attrs: list[tuple[str, str | None]], name: str, default: int | None) -> int | None:
    """A number attribute (``start``, ``value``, ``colspan``), or ``default`` when absent or not a number."""
    for key, value in attrs:
        if key == name and (m := re.match(r"\s*\+?(\d{1,9})", value or "")):
            return int(m.group(1))
    return default


@dataclass(slots=True)
class _MdBlock:
    """Rendered Markdown lines: a paragraph (``text``), ``heading``, ``list``, ``table``, ``pre`` or a
    paragraph ``break``; a list keeps its items' texts for a table cell."""

    kind: str
    lines: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


_BREAK = _MdBlock("break")


@dataclass(slots=True)
class _MdItem:
    value: int | None
    first: str
    rest: list[str]


@dataclass(slots=True)
class _HtmlFrame:
    """An element that renders its own content: the document, a list, an item, a table, a cell, a
    caption, a heading or a ``<pre>``; ``buf`` holds its text and rendered blocks."""

    kind: str
    buf: list[str | _MdBlock] | None = None
    parent: _HtmlFrame | None = None  # an item's list, a cell's or caption's table
    ordered: bool = False
    start: int = 1
    value: int | None = None
    level: int = 0
    span: int = 1
    row: list[_HtmlFrame] | None = None  # the row a cell is in
    items: list[_MdItem] = field(default_factory=list)
    rows: list[list[_HtmlFrame]] = field(default_factory=list)
    row_open: bool = False
    caption: list[_MdBlock] = field(default_factory=list)
    layout: bool = False  # a table holding headings, tables or code: read cell by cell
    text: str = ""  # a cell's text
    blocks: list[_MdBlock] = field(default_factory=list)  # a cell's blocks


@dataclass(slots=True)
class _HtmlOpen:
    """An open element."""

    tag: str
    hides: bool = False
    frame: _HtmlFrame | None = None
    block: bool = False  # a paragraph break when it ends
    bold: tuple[list[str | _MdBlock], int] | None = None  # where its ** starts
    counts_bold: bool = False
    plain: bool = False  # a heading or <pre>: no ** inside
    pre: bool = False
    title: bool = False
    row_of: _HtmlFrame | None = None  # a <tr>'s table


class _HTMLToMarkdown(HTMLParser):
    """HTML as Markdown, as a visitor sees the page: headings as ``#`` headings, paragraphs, ``<ol>`` items
    numbered ("1. ") and ``<ul>`` items as "- ", tables as Markdown tables (the first row as header), ``<b>``
    and ``<strong>`` as ``**bold**`` (the bot knows screen names by it), ``<pre>`` as a fenced code block,
    links as their text. Hidden elements (see :func:`_html_hidden`), scripts, styles, templates and
    ``<noscript>`` are dropped with all they hold. Italics are plain text: the bot's quotes strip ``**``
    only, so a ``*`` would reach customers; a link's address is dropped for the same reason (and a URL
    the bot may give is a fact)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._open: list[_HtmlOpen] = []
        self._count: dict[str, int] = {}
        root: list[str | _MdBlock] = []
        self._frames = [_HtmlFrame("root", buf=root)]
        self._bufs = [root]  # the buffers of the open frames that have one: text goes to the last
        self._hidden = 0  # open elements that hide their content
        self._pre = 0
        self._plain = 0
        self._bold = 0
        self._title_parts: list[str] | None = None
        self._title_level = 0
        self._title_seen = False

    # -------------------------------------------------------------- parser events

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        self.handle_starttag(tag, attrs)  # "<div hidden/>" opens a div, as browsers read it

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._imply_end(tag)
        if tag in _HTML_VOID:
            if not self._hidden and tag in {"br", "hr"}:
                self._sink().append("\n" if tag == "br" else _BREAK)
            return
        entry = _HtmlOpen(tag, hides=_html_hidden(tag, attrs))
        self._open.append(entry)
        self._count[tag] = self._count.get(tag, 0) + 1
        if entry.hides:
            self._hidden += 1
        if tag == "title" and not self._title_seen and self._hidden - 1 == self._count.get("head", 0):
            entry.title, self._title_seen = True, True  # the first <title> not inside <svg> or hidden markup
            self._title_parts, self._title_level = [], self._hidden
        if not self._hidden and not self._pre:  # inside <pre> every element is text
            self._start(entry, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "br":  # "</br>" is a line break to browsers
            self.handle_starttag("br", [])
        elif tag in _HTML_HEADING:  # "</h3>" ends an open <h2> too
            self._pop_to(_HTML_HEADING, _HTML_SCOPE)
        elif tag not in _HTML_VOID and tag not in {"body", "html"}:
            self._pop_to(frozenset({tag}), _HTML_TABLE_SCOPE - {tag} if tag in _HTML_TABLE_PARTS
                         else _HTML_LIST_SCOPE if tag == "li" else _HTML_SCOPE)

    def handle_data(self, data: str) -> None:
        data = data.translate(_HTML_INVISIBLE)
        if self._title_parts is not None and self._hidden == self._title_level:
            self._title_parts.append(data)
        elif not self._hidden and data:
            self._sink().append(data.replace("\r\n", "\n") if self._pre else re.sub(r"\s+", " ", data))

    def markdown(self) -> str:
        while self._open:
            self._close(self._open.pop())
        return "\n\n".join("\n".join(b.lines) for b in self._blocks(self._frames[0].buf or [])).strip()

    # -------------------------------------------------------------- open and close

    def _imply_end(self, tag: str) -> None:
        """The end tags HTML leaves out: ``<p>``, ``<li>``, cells and rows end where the next one starts."""
        head = self._count.get("head", 0)
        # (not inside a <template> or <noscript> of <head>: what they hold stays hidden)
        if head and self._hidden == head and (tag == "body" or tag not in _HTML_HEAD_CONTENT):
            self._pop_to(frozenset({"head"}), frozenset())
        if tag in _HTML_CLOSES_P:
            self._pop_to(frozenset({"p"}), _HTML_BUTTON_SCOPE)
        if tag == "li":
            self._pop_to(frozenset({"li"}), _HTML_SPECIAL)
        elif tag in _HTML_DEF:
            self._pop_to(_HTML_DEF, _HTML_SPECIAL)
        elif tag in _HTML_CELL or tag == "tr" or tag in _HTML_SECTION:
            self._pop_to(_HTML_CELL, _HTML_CELL_SCOPE)
            if tag not in _HTML_CELL:
                self._pop_to(frozenset({"tr"}), _HTML_ROW_SCOPE)
            if tag in _HTML_SECTION:
                self._pop_to(_HTML_SECTION, _HTML_TABLE_SCOPE)
        elif tag in _HTML_HEADING and self._open and self._open[-1].tag in _HTML_HEADING:
            self._close(self._open.pop())

    def _pop_to(self, tags: frozenset[str], stops: frozenset[str]) -> None:
        """Close the nearest open element named in ``tags`` and all inside it; not past ``stops``."""
        count = self._count
        if not any(count.get(t) for t in tags):
            return
        for i in range(len(self._open) - 1, max(-1, len(self._open) - 1 - _HTML_SEARCH_LIMIT), -1):
            if self._open[i].tag in tags:
                while len(self._open) > i:
                    self._close(self._open.pop())
                return
            if self._open[i].tag in stops:
                return

    def _start(self, entry: _HtmlOpen, attrs: Any) -> None:
        tag, top = entry.tag, self._frames[-1]
        if tag in {"b", "strong"}:
            if not self._bold and not self._plain:
                buf = self._sink()
                entry.bold = (buf, len(buf))
            self._bold += 1
            entry.counts_bold = True
            return
        frame: _HtmlFrame | None = None
        deep = len(self._frames) > _HTML_MAX_NESTING
        if deep:
            frame = None
        elif tag in _HTML_LIST:
            frame = _HtmlFrame("list", ordered=tag == "ol", start=_html_int(attrs, "start", 1) or 0)
        elif tag == "li":
            frame = _HtmlFrame("item", buf=[], parent=top if top.kind == "list" else None,
                               value=_html_int(attrs, "value", None))
        elif tag == "table":
            frame = _HtmlFrame("table")
        elif tag == "tr" and top.kind == "table":
            top.rows.append([])
            top.row_open, entry.row_of = True, top
        elif tag in {"td", "th"} and top.kind == "table":
            if not top.row_open:  # a cell outside any <tr>
                top.rows.append([])
                top.row_open = True
            span = min(max(_html_int(attrs, "colspan", 1) or 1, 1), _HTML_MAX_COLUMNS)
            frame = _HtmlFrame("cell", buf=[], parent=top, span=span, row=top.rows[-1])
        elif tag == "caption" and top.kind == "table":
            frame = _HtmlFrame("caption", buf=[], parent=top)
        elif tag in _HTML_HEADING:
            frame = _HtmlFrame("heading", buf=[], level=int(tag[1]))
        elif tag == "pre":
            frame = _HtmlFrame("pre", buf=[])
            entry.pre = True
            self._pre += 1
        if tag in _HTML_HEADING or tag == "pre":
            entry.plain = True
            self._plain += 1
        if frame is not None:
            entry.frame = frame
            self._frames.append(frame)
            if frame.buf is not None:
                self._bufs.append(frame.buf)
        elif tag in _HTML_BLOCK or (deep and tag in {"li", "td", "th", "caption", "pre"} | _HTML_HEADING):
            entry.block = True
            self._sink().append(_BREAK)

    def _close(self, entry: _HtmlOpen) -> None:
        self._count[entry.tag] -= 1
        if entry.hides:
            self._hidden -= 1
        if entry.title and self._title_parts is not None:
            title = "".join(self._title_parts)
            # a parser that reads <title> as raw text (as browsers do) hands over "<script>...</script>"
            title = re.sub(r"<(script|style)\b.*?(?:</\1\s*>|$)", "", title, flags=re.I | re.S)
            self.title = " ".join(re.sub(r"<[^>]*>", "", title).split())
            self._title_parts = None
        if entry.counts_bold:
            self._bold -= 1
            if entry.bold is not None:
                self._mark_bold(*entry.bold)
        if entry.plain:
            self._plain -= 1
        if entry.pre:
            self._pre -= 1
        if entry.row_of is not None:
            entry.row_of.row_open = False
        if entry.frame is not None:
            frame = self._frames.pop()  # frames open and close with their elements
            if frame.buf is not None:
                self._bufs.pop()
            self._finish(frame)
        if entry.block:
            self._sink().append(_BREAK)

    def _mark_bold(self, buf: list[str | _MdBlock], start: int) -> None:
        """``**`` around the text since ``start``: the spaces outside the marks, none across paragraphs."""
        inner = buf[start:]
        if self._sink() is not buf or not all(isinstance(x, str) for x in inner):
            return
        text = "".join(x for x in inner if isinstance(x, str))
        core = " ".join(text.split())
        if not core or "\n" in text or "**" in core:
            return
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
        if not lead and start and buf[start - 1] == "**":  # <b>A</b><b>B</b>: one bold run
            buf[start - 1:] = [core, "**"]
        else:
            buf[start:] = [lead, "**", core, "**"]
        if trail:
            buf.append(trail)

    # -------------------------------------------------------------- rendering

    def _sink(self) -> list[str | _MdBlock]:
        return self._bufs[-1]

    def _emit(self, block: _MdBlock) -> None:
        """A rendered block into the element it stands in (a list without ``<li>`` takes it as its last
        item's continuation)."""
        top = self._frames[-1]
        if top.kind == "list":
            if top.items:
                top.items[-1].rest.extend(block.lines)
            else:
                top.items.append(_MdItem(None, "", list(block.lines)))
        else:
            self._sink().append(block)

    @staticmethod
    def _blocks(buf: list[str | _MdBlock]) -> list[_MdBlock]:
        """A buffer as blocks: its text as paragraphs (a ``<br>`` as a new line, spaces collapsed)."""
        out: list[_MdBlock] = []
        start = 0
        for i, x in enumerate([*buf, _BREAK]):
            if isinstance(x, str):
                continue
            if start < i:  # the text since the last block
                text = "".join(buf[start:i])  # type: ignore[arg-type]
                parts = text.split("\n") if "\n" in text else [text]
                if lines := [ln for ln in (" ".join(part.split()) for part in parts) if ln]:
                    out.append(_MdBlock("text", lines))
            start = i + 1
            if x.kind != "break":
                out.append(x)
        return out

    def _finish(self, frame: _HtmlFrame) -> None:
        blocks = self._blocks(frame.buf) if frame.buf is not None else []
        if frame.kind == "item":
            first: list[str] = []
            rest: list[str] = []
            for b in blocks:  # the item's paragraphs on its line (a step is one line); lists, tables below
                (first if b.kind == "text" and not rest else rest).extend(b.lines)
            item = _MdItem(frame.value, " ".join(first), rest)
            if frame.parent is not None:
                frame.parent.items.append(item)
            elif item.first or item.rest:  # an <li> outside any list
                self._emit(_MdBlock("list", [f"- {item.first}".rstrip(), *("  " + ln if ln else "" for ln in rest)],
                                    [item.first]))
        elif frame.kind == "list":
            lines: list[str] = []
            texts: list[str] = []
            number = frame.start
            for item in frame.items:
                if item.value is not None:
                    number = item.value
                if not item.first:  # nothing of its own: its nested list or table only
                    lines.extend(item.rest)
                    continue
                marker = f"{number}. " if frame.ordered else "- "
                lines.append(marker + item.first)
                lines.extend(" " * len(marker) + ln if ln else "" for ln in item.rest)
                texts.append(item.first)
                number += 1
            if lines:
                self._emit(_MdBlock("list", lines, texts))
        elif frame.kind == "cell":
            if any(b.kind in {"heading", "table", "pre"} for b in blocks):
                frame.parent.layout = True  # type: ignore[union-attr]
            frame.blocks = blocks
            frame.text = " ".join("; ".join(b.items) if b.kind == "list" else " ".join(b.lines) for b in blocks)
            frame.row.append(frame)  # type: ignore[union-attr]
        elif frame.kind == "caption":
            frame.parent.caption.extend(blocks)  # type: ignore[union-attr]
        elif frame.kind == "table":
            for block in self._table(frame):
                self._emit(block)
        elif frame.kind == "heading":
            text = " ".join(" ".join(b.lines) for b in blocks).strip()
            if text:
                in_item = any(f.kind == "item" for f in self._frames)
                self._emit(_MdBlock("text", [text]) if in_item
                           else _MdBlock("heading", ["#" * frame.level + " " + text]))
        elif frame.kind == "pre":
            text = "".join(x for x in frame.buf or [] if isinstance(x, str)).replace("\r", "\n")
            text = text[1:] if text.startswith("\n") else text  # HTML drops the newline right after <pre>
            text = text.rstrip()
            if text.strip():
                runs = [len(r) for r in re.findall(r"`+", text)]
                fence = "`" * max(3, max(runs, default=0) + 1)
                self._emit(_MdBlock("pre", [fence, *text.split("\n"), fence]))

    @staticmethod
    def _table(table: _HtmlFrame) -> list[_MdBlock]:
        """A Markdown table, the first row as its header; a layout table (one column, one row, cells holding
        headings, tables or code, or very wide) as its cells' blocks one after the other."""
        rows = [r for r in table.rows if any(c.text for c in r)]
        width = max((sum(c.span for c in r) for r in rows), default=0)
        if table.layout or len(rows) < 2 or not 2 <= width <= _HTML_MAX_COLUMNS:
            return [*table.caption, *(b for r in table.rows for c in r for b in c.blocks)]

        def line(row: list[_HtmlFrame]) -> str:
            cells: list[str] = []
            for c in row:
                cells += [c.text.replace("|", "\\|")] + [""] * (c.span - 1)
            return "| " + " | ".join(cells + [""] * (width - len(cells))) + " |"

        lines = [line(rows[0]), "|" + "---|" * width, *(line(r) for r in rows[1:])]
        return [*table.caption, _MdBlock("table", lines)]


def parse_html(text: str, *, name: str = "document.html", default_id: str | None = None) -> ParsedDocument:
    """HTML: the text a visitor sees, as Markdown (see :class:`_HTMLToMarkdown`); hidden elements,
    ``<script>``, ``<style>``, ``<template>`` and ``<noscript>`` are dropped with their content. The title is
    the first ``<title>``'s text, else the first ``#`` heading, else the file name. An HTML document
    declares no facts (no id, dates or tags either): write the document in Markdown for that."""
    parser = _HTMLToMarkdown()
    parser.feed(text)
    parser.close()
    body = parser.markdown()
    if not body:
        raise InvalidInput(f"{name} has no visible text.", code="empty_file")
    h1 = re.search(r"^#\s+(.+)$", body, re.M)
    title = parser.title.strip() or (h1.group(1).strip() if h1 else Path(name).stem)
    doc_id = _check_id(default_id or slugify(Path(name).stem), name)
    return ParsedDocument(id=doc_id, title=title, body=body, content_format="html", source=name)


def parse_bytes(data: bytes, name: str, *, default_id: str | None = None) -> ParsedDocument:
    """Parse a file's bytes by its suffix; raises :class:`InvalidInput` naming the file."""
    suffix = Path(name).suffix.lower()
    kind = SUFFIXES.get(suffix)
    if kind is None:
        raise InvalidInput(
            f"{name}: unsupported file type {suffix or '(none)'}; use .md, .txt or .html.",
            code="unsupported_file",
        )
    text = _decode(data, name)
    if kind == "markdown":
        return parse_markdown(text, name=name, default_id=default_id)
    if kind == "html":
        return parse_html(text, name=name, default_id=default_id)
    return parse_text(text, name=name, default_id=default_id)


def parse_file(path: str | Path) -> ParsedDocument:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{p.name}: cannot be read ({exc.strerror}).", code="unreadable_file") from exc
    return parse_bytes(data, p.name)


# ---------------------------------------------------------------- folders


def iter_folder(root: Path) -> list[Path]:
    """Files to import, base documents first, then ``scheduled/`` ones (later revisions)."""
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name.lower() not in SKIP_FILES and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: (SCHEDULED_DIR in p.relative_to(root).parts[:-1], str(p)))


def import_folder(
    store: KnowledgeStore, path: str | Path, *, author: str, publish: bool = True, restore: bool = False
) -> ImportReport:
    """Import a file or a folder (recursively).  Each file is its own transaction."""
    root = Path(path)
    if not root.exists():
        raise InvalidInput(f"{root} does not exist.", code="path_not_found")
    files = [root] if root.is_file() else iter_folder(root)
    report = ImportReport()
    parsed: list[tuple[Path, ParsedDocument]] = []
    for f in files:
        rel = str(f.relative_to(root)) if root.is_dir() else f.name
        try:
            doc = parse_file(f)
            doc.source = rel
            parsed.append((f, doc))
        except HybrideskError as exc:
            # (the report names the file: "baddate.md: baddate.md: ..." said it twice)
            reason = exc.message.removeprefix(f"{f.name}: ").removeprefix(f"{f.name} ")
            report.errors.append(ImportProblem(rel, reason, exc.code))
    # scheduled revisions in order of their effective date, after every base document
    parsed.sort(
        key=lambda fd: (
            SCHEDULED_DIR in (fd[0].relative_to(root).parts[:-1] if root.is_dir() else ()),
            fd[1].effective_from or datetime.min.replace(tzinfo=UTC),
        )
    )
    now = datetime.now(UTC)
    seen: dict[tuple[str, str | None], str] = {}  # (id, declared start) -> the file that gave it
    for _f, doc in parsed:
        key = (doc.id, doc.effective_from.isoformat() if doc.effective_from else None)
        if key in seen:  # two files, one document: the second would silently replace the first
            report.errors.append(ImportProblem(
                doc.source or doc.id, f"same id {doc.id!r} (and start date) as {seen[key]}; not imported",
                "duplicate_id"))
            continue
        seen[key] = doc.source or doc.id
        try:
            outcome = store.import_parsed(doc, author=author, publish=publish, restore=restore)
        except HybrideskError as exc:
            report.errors.append(ImportProblem(doc.source or doc.id, exc.message, exc.code))
            continue
        if outcome == "drafted":
            if missing := facts_not_stated(doc.body, doc.facts):
                report.drafted.append(ImportProblem(
                    doc.source or doc.id, f"saved as a draft, not published: the text does not state "
                    f"{describe_facts(missing)}", "fact_not_in_text"))
            else:
                report.drafted.append(ImportProblem(
                    doc.source or doc.id, "saved as a draft, not published: the text contradicts a fact: "
                    f"{describe_contradictions(facts_contradicted(doc.body, doc.facts))}", "fact_contradicted"))
            continue
        if outcome == "updated" and publish and doc.effective_from is not None and doc.effective_from > now:
            outcome = "scheduled"  # a later revision waiting for its date, not a change in force now
        getattr(report, outcome).append(doc.id)
    for problem in report.errors:  # (the caller reports them; the CLI printed each twice at warning level)
        log.info("kb import: skipped %s: %s", problem.file, problem.reason)
    return report
