"""Heading-aware chunking: one chunk per section, long sections split at paragraph boundaries.

Each chunk keeps its heading path and a stable anchor (the slug of the heading path below the
document title), so a citation keeps pointing at the same section across revisions as long as
the headings stay the same.  The indexed ``text`` carries the title and heading path: both
BM25 and the embedding model see what the section is *about*, which is the single biggest
quality gain measured in ``benchmarks/retrieval_quality.py``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

MAX_WORDS = 100  # best of 100..400 on WixQA (benchmarks/results/knowledge.md); MiniLM reads 256 pieces
MIN_WORDS = 12  # a paragraph shorter than this is merged into its neighbour
INTRO_ANCHOR = "overview"

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^(```|~~~)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk as produced by :func:`chunk_markdown` (not yet bound to a stored revision)."""

    ordinal: int
    heading_path: tuple[str, ...]
    anchor: str
    body: str
    text: str
    content_hash: str = field(default="")

    @property
    def heading(self) -> str:
        return self.heading_path[-1] if self.heading_path else ""


def slugify(value: str) -> str:
    """Lower-case ASCII slug: ``"Who can return?" -> "who-can-return"``."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^a-zA-Z0-9]+", "-", value).strip("-").lower()
    return value or "section"


def anchor_for(heading_path: tuple[str, ...] | list[str]) -> str:
    """Stable anchor of a heading path: the slugs joined with ``--`` (``overview`` at the top)."""
    if not heading_path:
        return INTRO_ANCHOR
    return "--".join(slugify(h) for h in heading_path)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def indexed_text(title: str, heading_path: tuple[str, ...], body: str) -> str:
    """What BM25 and the embedding model see: title, heading path, then the section body."""
    head = " > ".join([title, *heading_path]) if title else " > ".join(heading_path)
    return f"{head}\n{body}".strip()


def split_sections(markdown: str) -> list[tuple[int, str, list[str]]]:
    """Split Markdown into ``(level, heading, body_lines)``; level 0 is text before any heading.

    Headings inside fenced code blocks are not headings.
    """
    sections: list[tuple[int, str, list[str]]] = [(0, "", [])]
    in_fence = False
    for line in markdown.splitlines():
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            sections.append((len(m.group(1)), m.group(2).strip(), []))
        else:
            sections[-1][2].append(line)
    return sections


def _paragraphs(lines: list[str]) -> list[str]:
    paras, cur = [], []
    for line in lines:
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            paras.append("\n".join(cur))
            cur = []
    if cur:
        paras.append("\n".join(cur))
    return paras


def _split_long(paragraph: str, max_words: int) -> list[str]:
    """Split a paragraph longer than ``max_words`` at sentence (then word) boundaries."""
    if len(paragraph.split()) <= max_words:
        return [paragraph]
    out, cur, n = [], [], 0
    for sentence in _SENTENCE.split(paragraph):
        words = sentence.split()
        while len(words) > max_words:  # one enormous "sentence": cut it by words
            if cur:
                out.append(" ".join(cur))
                cur, n = [], 0
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if n + len(words) > max_words and cur:
            out.append(" ".join(cur))
            cur, n = [], 0
        cur.extend(words)
        n += len(words)
    if cur:
        out.append(" ".join(cur))
    return out


def pack_paragraphs(paragraphs: list[str], max_words: int = MAX_WORDS) -> list[str]:
    """Greedily pack paragraphs into pieces of at most ``max_words`` words."""
    pieces: list[str] = []
    cur: list[str] = []
    n = 0
    for para in paragraphs:
        for part in _split_long(para, max_words):
            w = len(part.split())
            if cur and n + w > max_words and n >= MIN_WORDS:
                pieces.append("\n\n".join(cur))
                cur, n = [], 0
            cur.append(part)
            n += w
    if cur:
        pieces.append("\n\n".join(cur))
    return pieces


def chunk_markdown(markdown: str, title: str = "", *, max_words: int | None = None) -> list[ChunkSpec]:
    """Chunk a Markdown body by its headings.

    A leading H1 equal to the document title is dropped from the heading path (it would only
    repeat the title).  Sections with no text of their own (a heading followed directly by a
    sub-heading) produce no chunk; their heading still appears in the sub-sections' paths.
    """
    max_words = max_words or MAX_WORDS
    chunks: list[ChunkSpec] = []
    stack: list[tuple[int, str]] = []
    for level, heading, lines in split_sections(markdown):
        if level:
            while stack and stack[-1][0] >= level:
                stack.pop()
            is_title = level == 1 and not stack and heading.strip().lower() == title.strip().lower()
            if not is_title:
                stack.append((level, heading))
        path = tuple(h for _, h in stack)
        for piece in pack_paragraphs(_paragraphs(lines), max_words):
            text = indexed_text(title, path, piece)
            chunks.append(
                ChunkSpec(
                    ordinal=len(chunks),
                    heading_path=path,
                    anchor=anchor_for(path),
                    body=piece,
                    text=text,
                    content_hash=content_hash(text),
                )
            )
    return chunks


_LIST_MARKER = re.compile(r"(?m)^\s*\d{1,2}[.)]\s")


def anchor_containing(chunks: list[ChunkSpec], needle: str) -> str | None:
    """Anchor of the chunk that states ``needle`` (a fact's value, case-insensitive), if any.

    A short value is easily found where it is not stated: "3" in step "3." of a list, or inside "30"
    (the late-parcel rule's 3 business days was cited as the first section with a step 3). So the first
    chunk with the value in bold (``**3**``, as policies write their figures) wins, then the first with it
    as a figure of its own outside list numbers, and only then the first that contains it at all."""
    n = needle.strip().lower()
    if not n:
        return None
    bold = f"**{n}**"
    whole = re.compile(rf"(?<![\w.,]){re.escape(n)}(?!\w|[.,]\d)")
    for found in (lambda body: bold in body, lambda body: whole.search(_LIST_MARKER.sub(" ", body)) is not None,
                  lambda body: n in body):
        for c in chunks:
            if found(c.body.lower()):
                return c.anchor
    return None
