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


def _states(text: str, value: str) -> bool:
    """Whether ``text`` (plain) gives ``value`` (plain) whole: "2%" is not in "12%", "€5" not in "€5.95"
    nor "30" in "300"; a value starting or ending with a letter or digit is read as a whole word."""
    head = r"(?<![\w.,])" if value[:1].isalnum() else ""
    tail = r"(?![\d%]|[.,]\d)" if value[-1:].isdigit() else r"(?!\w)" if value[-1:].isalnum() else ""
    return re.search(head + re.escape(value) + tail, text) is not None


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


def parse_text(text: str, *, name: str = "document.txt", default_id: str | None = None) -> ParsedDocument:
    """Plain text: the first line is the title when it is short; paragraphs are kept."""
    lines = text.strip().splitlines()
    first = lines[0].strip()
    if len(first) <= 120 and len(lines) > 1:
        title, body = first, "\n".join(lines[1:]).strip() or first
    else:
        title, body = Path(name).stem.replace("-", " ").capitalize(), text.strip()
    doc_id = _check_id(default_id or slugify(Path(name).stem), name)
    return ParsedDocument(id=doc_id, title=title, body=body, content_format="text", source=name)


class _HTMLToMarkdown(HTMLParser):
    """Keeps headings (as Markdown headings), paragraphs and list items; drops scripts and styles."""

    _DROP = {"script", "style", "noscript", "template", "svg", "head"}
    _BLOCK = {"p", "div", "section", "article", "br", "tr", "table", "ul", "ol", "li", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title = ""
        self._drop = 0
        self._in_title = False
        self._heading: int | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._DROP:
            self._drop += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self.out.append("\n\n" + "#" * self._heading + " ")
        elif tag in self._BLOCK:
            self.out.append("\n\n- " if tag == "li" else "\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._DROP:
            self._drop = max(0, self._drop - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = None
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._drop:
            self.out.append(re.sub(r"\s+", " ", data))

    def markdown(self) -> str:
        text = "".join(self.out)
        lines = [ln.strip() for ln in text.splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def parse_html(text: str, *, name: str = "document.html", default_id: str | None = None) -> ParsedDocument:
    """HTML: visible text with headings kept; ``<script>``/``<style>`` content is dropped."""
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
    store: KnowledgeStore, path: str | Path, *, author: str, publish: bool = True
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
            report.errors.append(ImportProblem(rel, exc.message, exc.code))
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
            outcome = store.import_parsed(doc, author=author, publish=publish)
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
    for problem in report.errors:
        log.warning("kb import: skipped %s: %s", problem.file, problem.reason)
    return report
