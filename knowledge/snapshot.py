"""An immutable, query-ready state of the index: chunk rows, revision dates, BM25 and vectors.

Readers take the current snapshot once per query and use only it, so a query running while
an update is being built sees the old state or the new one, never a mix.  Whether a revision
is in force is decided here at query time from its dates (same rule as
:func:`knowledge.store.in_force_statement`), so a scheduled revision takes effect at its time
without any rebuild, and a retired one disappears the moment its ``effective_until`` passes.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from knowledge.db import STATUS_PUBLISHED, STATUS_RETIRED
from knowledge.lexical import LexicalIndex

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-z])")


def lexical_text(text: str) -> str:
    """Text as BM25 sees it: glued words such as ``startedCreate`` (lost markup) are split."""
    return _CAMEL.sub(" ", text)


@dataclass(frozen=True)
class RevMeta:
    """What the index needs to know about a revision to decide whether it is in force."""

    id: int
    document_id: str
    number: int
    status: str
    title: str
    effective_from: datetime | None
    effective_until: datetime | None
    tags: tuple[str, ...] = ()
    audience: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "document_id": self.document_id,
            "number": self.number,
            "status": self.status,
            "title": self.title,
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "effective_until": self.effective_until.isoformat() if self.effective_until else None,
            "tags": list(self.tags),
            "audience": self.audience,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RevMeta:
        def when(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        return cls(
            id=int(d["id"]),
            document_id=d["document_id"],
            number=int(d["number"]),
            status=d["status"],
            title=d["title"],
            effective_from=when(d["effective_from"]),
            effective_until=when(d["effective_until"]),
            tags=tuple(d.get("tags") or ()),
            audience=d.get("audience"),
        )


class Snapshot:
    """Chunk rows + revision metadata + lexical index (+ vectors for the local backend)."""

    def __init__(
        self,
        generation: int,
        revisions: Sequence[RevMeta],
        rows: list[dict[str, Any]],
        vectors: np.ndarray | None,
        bm25: Any | None = None,
        model_id: str = "",
    ) -> None:
        self.generation = generation
        self.model_id = model_id
        self.revisions = {r.id: r for r in revisions}
        self.rows = rows
        self.vectors = vectors
        self._rev_ids = np.array(sorted(self.revisions), dtype=np.int64)
        self._rev_pos = {rid: i for i, rid in enumerate(self._rev_ids.tolist())}
        self.row_rev = np.array([self._rev_pos[r["revision_id"]] for r in rows], dtype=np.int64)
        self.row_by_chunk = {r["chunk_id"]: i for i, r in enumerate(rows)}
        self.lead_row = _lead_rows(rows, self.row_rev, len(self._rev_ids))
        self.bm25 = bm25 if bm25 is not None else build_bm25(rows)
        # Times at which the in-force set can change; between two of them it is constant.
        ts = {t for r in revisions for t in (r.effective_from, r.effective_until) if t is not None}
        self._bounds = sorted(ts)
        self._force_cache: dict[int, np.ndarray] = {}
        self._filter_cache: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    # ------------------------------------------------------------ in force

    def _compute_in_force(self, at: datetime) -> np.ndarray:
        best: dict[str, RevMeta] = {}
        for r in self.revisions.values():
            if r.status not in (STATUS_PUBLISHED, STATUS_RETIRED) or r.effective_from is None:
                continue
            if r.effective_from > at or (r.effective_until is not None and r.effective_until <= at):
                continue
            cur = best.get(r.document_id)
            if cur is None or (r.effective_from, r.number) > (cur.effective_from, cur.number):  # type: ignore[operator]
                best[r.document_id] = r
        ok = np.zeros(len(self._rev_ids), dtype=bool)
        for r in best.values():
            ok[self._rev_pos[r.id]] = True
        return ok

    def revisions_in_force(self, at: datetime) -> np.ndarray:
        """Boolean per revision position: in force at ``at`` (cached per interval between date boundaries)."""
        slot = bisect.bisect_right(self._bounds, at)
        ok = self._force_cache.get(slot)
        if ok is None:
            ok = self._compute_in_force(at)
            self._force_cache[slot] = ok
        return ok

    def revision_mask(self, at: datetime, filters: Mapping[str, Any] | None = None) -> np.ndarray:
        ok = self.revisions_in_force(at)
        if not filters:
            return ok
        key = (bisect.bisect_right(self._bounds, at), repr(sorted(filters.items())))
        cached = self._filter_cache.get(key)
        if cached is None:
            cached = ok.copy()
            for pos, rid in enumerate(self._rev_ids.tolist()):
                if cached[pos] and not matches_filters(self.revisions[rid], filters):
                    cached[pos] = False
            if len(self._filter_cache) > 256:  # filters come from a small set; stay bounded anyway
                self._filter_cache.clear()
            self._filter_cache[key] = cached
        return cached

    def row_mask(self, at: datetime, filters: Mapping[str, Any] | None = None) -> np.ndarray:
        """Boolean per chunk row: its revision is in force at ``at`` and passes ``filters``."""
        return self.revision_mask(at, filters)[self.row_rev] if len(self.rows) else np.zeros(0, dtype=bool)

    def revision_ids_at(self, positions: np.ndarray) -> list[int]:
        """Revision ids of the given revision positions (as used in ``row_rev``)."""
        return self._rev_ids[positions].tolist()

    def allowed_revision_ids(self, at: datetime, filters: Mapping[str, Any] | None = None) -> list[int]:
        return self._rev_ids[self.revision_mask(at, filters)].tolist()

    # ------------------------------------------------------------ lexical

    def bm25_scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros when no query term is in the vocabulary)."""
        if self.bm25 is None or not len(self.rows):
            return np.zeros(len(self.rows), dtype=np.float32)
        return self.bm25.scores(lexical_text(query))

    def derive_bm25(self, keep: list[int], new_rows: list[dict[str, Any]]) -> LexicalIndex | None:
        """The lexical index of rows ``keep`` of this snapshot followed by ``new_rows``.

        Only the new rows are tokenized (see :mod:`knowledge.lexical`); the next snapshot
        passes the result as its ``bm25`` instead of rebuilding it from every row.
        """
        if self.bm25 is None:
            return build_bm25([self.rows[i] for i in keep] + new_rows)
        return self.bm25.derive(keep, [lexical_text(r["text"]) for r in new_rows])


def _lead_rows(rows: list[dict[str, Any]], row_rev: np.ndarray, n_revisions: int) -> np.ndarray:
    """Row index of each revision's opening chunk (lowest ordinal; ``-1`` for a revision without rows)."""
    lead = np.full(n_revisions, -1, dtype=np.int64)
    if not rows:
        return lead
    ordinals = np.array([r.get("ordinal", 0) for r in rows], dtype=np.int64)
    order = np.lexsort((ordinals, row_rev))  # by revision, then ordinal (stable for ties)
    revs = row_rev[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = revs[1:] != revs[:-1]
    lead[revs[first]] = order[first]
    return lead


def matches_filters(rev: RevMeta, filters: Mapping[str, Any]) -> bool:
    """``tags``: any of them; ``audience``: equal, or the revision is for everyone; ``document_id``."""
    tags = filters.get("tags")
    if tags:
        wanted = {tags} if isinstance(tags, str) else set(tags)
        if not wanted & set(rev.tags):
            return False
    audience = filters.get("audience")
    if audience and rev.audience not in (None, audience):
        return False
    doc = filters.get("document_id")
    if doc:
        wanted_docs = {doc} if isinstance(doc, str) else set(doc)
        if rev.document_id not in wanted_docs:
            return False
    return True


def build_bm25(rows: list[dict[str, Any]], *, split_glued: bool = True) -> LexicalIndex | None:
    """BM25 over the rows' indexed text (``None`` when empty).

    Same scores as LlamaIndex's ``BM25Retriever`` over the same texts; kept as a
    :class:`~knowledge.lexical.LexicalIndex` so that the next snapshot can be derived from it.
    """
    if not rows:
        return None
    prep = lexical_text if split_glued else str
    return LexicalIndex.build([prep(r["text"]) for r in rows])
