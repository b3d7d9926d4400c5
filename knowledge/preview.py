"""Read the knowledge base "as if" some revisions were in force, without publishing them.

The KB editor's "test a question" runs retrieval and the bot on a draft before anyone publishes
it. :meth:`knowledge.service.KnowledgeService.preview` returns a :class:`KnowledgePreview`: a
read-only view with the same read API the bot uses (``retrieve``, ``facts``,
``resolve_placeholder``, ``in_force``) in which each given revision replaces whatever revision of
its document is in force (the document's other revisions are hidden). Nothing is written: the
store, the shared index and every other reader are untouched.

How retrieval sees a revision that is not in the index: the view builds a private
:class:`~knowledge.snapshot.Snapshot` from the index's current one plus the revision's chunks
(embedded on the fly, reusing stored vectors of unchanged sections), with the overriding
revisions marked in force at any time. BM25 is rebuilt over the combined rows so term statistics
are exactly those the index would have after publishing. Vector search runs on the real index
for the published rows (local numpy or pgvector) and in memory for the preview's own rows.
Previews are cached per (revisions, index generation): revisions are immutable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.db import STATUS_DRAFT, STATUS_PUBLISHED
from knowledge.errors import InvalidInput
from knowledge.index import Embedder, SyncedIndex, rev_meta
from knowledge.records import Fact, RevisionInfo, normalize_slot
from knowledge.retrieval import HybridRetriever, Passage, RetrievalConfig
from knowledge.snapshot import Snapshot

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.service import KnowledgeService

#: an overriding revision counts as in force from the beginning of time, with no end
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)
MAX_OVERRIDES = 20
CACHE_SIZE = 8


class PreviewIndex:
    """A private snapshot for one preview; quacks like the :class:`SyncedIndex` a retriever needs.

    Rows ``[0, extra_start)`` are the shared snapshot's rows, in the same order, so the shared
    index scores them against its own snapshot (no copy of its vectors); rows from
    ``extra_start`` on are the preview's own chunks, scored here against ``extra_vectors``.
    """

    backend = "preview"

    def __init__(self, base: SyncedIndex, base_snap: Snapshot, snap: Snapshot, extra_vectors: np.ndarray) -> None:
        self.base = base
        self.base_snap = base_snap
        self.snap = snap
        self.extra_start = len(base_snap.rows)
        self.extra_vectors = extra_vectors

    def current(self) -> Snapshot:
        return self.snap

    @property
    def generation(self) -> int:
        return self.snap.generation

    def vector_scores(self, snap: Snapshot, query_vec: np.ndarray, row_mask: np.ndarray, n: int
                      ) -> dict[int, float]:
        base_mask = row_mask[:self.extra_start]
        out = self.base.vector_scores(self.base_snap, query_vec, base_mask, n) if base_mask.any() else {}
        extra = np.flatnonzero(row_mask[self.extra_start:])
        if len(extra) and self.extra_vectors.size:
            sims = self.extra_vectors[extra] @ query_vec
            out = dict(out)
            for j, s in zip(extra.tolist(), sims.tolist(), strict=True):
                out[self.extra_start + j] = float(s)
        if len(out) > n:
            out = dict(sorted(out.items(), key=lambda kv: -kv[1])[:n])
        return out


def build_preview_index(base: SyncedIndex, snap: Snapshot, embedder: Embedder, revisions: Sequence[RevisionInfo],
                        chunk_rows: list[dict[str, Any]]) -> PreviewIndex:
    """``snap`` (the shared index's current snapshot) with ``revisions`` in force in place of their
    documents' revisions; ``chunk_rows`` are the chunks of those not already in ``snap``."""
    docs = {r.document_id for r in revisions}
    ids = {r.id for r in revisions}
    metas = []
    for meta in snap.revisions.values():
        if meta.id in ids:
            continue  # re-added below as in force
        # the document's other revisions are hidden from the preview
        metas.append(replace(meta, status=STATUS_DRAFT) if meta.document_id in docs else meta)
    for r in revisions:
        metas.append(replace(rev_meta(r), status=STATUS_PUBLISHED, effective_from=ALWAYS, effective_until=None))
    extra = [row for row in chunk_rows if row["revision_id"] not in snap.revisions]
    extra_vectors = _vectors(snap, embedder, extra)
    # vectors=None: the shared rows are scored on the shared snapshot, the extra rows by PreviewIndex
    preview = Snapshot(snap.generation, metas, snap.rows + extra, None, model_id=snap.model_id)
    return PreviewIndex(base, snap, preview, extra_vectors)


def _vectors(snap: Snapshot, embedder: Embedder, rows: list[dict[str, Any]]) -> np.ndarray:
    """Vectors of the preview's rows, reusing the snapshot's vector of any unchanged section."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    known: dict[str, np.ndarray] = {}
    if snap.vectors is not None:
        need = {r["hash"] for r in rows}
        known = {row["hash"]: snap.vectors[i] for i, row in enumerate(snap.rows) if row["hash"] in need}
    todo = {r["hash"]: r["text"] for r in rows if r["hash"] not in known}
    if todo:
        known |= dict(zip(todo, embedder.texts(list(todo.values())), strict=True))
    return np.vstack([known[r["hash"]] for r in rows]).astype(np.float32)


class KnowledgePreview:
    """The KB as it would read with ``revisions`` in force (built by ``KnowledgeService.preview``)."""

    def __init__(self, service: KnowledgeService, revisions: Sequence[RevisionInfo]) -> None:
        self.service = service
        self.revisions = tuple(revisions)
        self.documents = {r.document_id for r in self.revisions}

    # ------------------------------------------------------------ retrieval

    def retrieve(self, query: str, *, at: datetime | None = None, history: Sequence[Any] | None = None,
                 k: int = 5, filters: Mapping[str, Any] | None = None) -> list[Passage]:
        """Like :meth:`KnowledgeService.retrieve`, with the preview's revisions in force."""
        return self.service._preview_retriever(self.revisions).search(
            query, at=at, history=history, k=k, filters=filters)

    @property
    def retriever(self) -> HybridRetriever:
        """The preview's retriever (its ``embedder`` is the shared one)."""
        return self.service._preview_retriever(self.revisions)

    def get(self, doc_id: str, revision: int | None = None) -> RevisionInfo:
        """Like :meth:`KnowledgeService.get`: a previewed document's revision is the one previewed."""
        for r in self.revisions:
            if r.document_id == doc_id and revision in (None, r.number):
                return r
        return self.service.get(doc_id, revision)

    # ------------------------------------------------------------ facts

    def facts(self, at: datetime | None = None) -> dict[str, Fact]:
        """Facts in force at ``at``, the preview's documents' replaced by the preview revisions' facts."""
        facts = {n: f for n, f in self.service.facts(at).items() if f.document_id not in self.documents}
        for r in self.revisions:
            for f in r.facts:
                facts[f.name] = f
        return dict(sorted(facts.items()))

    def match_facts(self, question: str, *, at: datetime | None = None, k: int = 3) -> list[tuple[Fact, float]]:
        """Like :meth:`KnowledgeService.match_facts`, over the preview's :meth:`facts`.

        The bot states an asked fact in the KB's words when its reply leaves it out; the editor's
        "test a question" must do the same with the draft's values.
        """
        return self.service.fact_matcher().rank(question, self.facts(at), k=k)

    def resolve_placeholder(self, slot: str, at: datetime | None = None) -> Fact | None:
        """Same matching as :meth:`KnowledgeStore.resolve_placeholder`, over :meth:`facts`."""
        key = normalize_slot(slot)
        if not key:
            return None
        facts = self.facts(at)
        for f in facts.values():
            if any(normalize_slot(p) == key for p in f.placeholders):
                return f
        return next((f for f in facts.values() if normalize_slot(f.name) == key), None)

    def in_force(self, at: datetime | None = None) -> list[RevisionInfo]:
        live = [r for r in self.service.in_force(at) if r.document_id not in self.documents]
        return sorted(live + list(self.revisions), key=lambda r: r.document_id)


class PreviewCache:
    """Preview indexes by (revision ids, shared index generation), least recently used dropped."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[tuple[int, ...], int], HybridRetriever] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: tuple[tuple[int, ...], int], build: Any) -> HybridRetriever:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        built = build()  # outside the lock: embedding a long draft takes a moment
        with self._lock:
            self._items[key] = built
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return built


def check_overrides(revisions: Sequence[RevisionInfo]) -> None:
    if not revisions:
        raise InvalidInput("Name at least one revision to preview.", code="empty_preview")
    if len(revisions) > MAX_OVERRIDES:
        raise InvalidInput(f"Preview at most {MAX_OVERRIDES} revisions at once.", code="preview_too_large")
    seen: set[str] = set()
    for r in revisions:
        if r.document_id in seen:
            raise InvalidInput(f"Two revisions of {r.document_id!r} in one preview; pick one.",
                               code="duplicate_document")
        seen.add(r.document_id)


def make_retriever(index: PreviewIndex, embedder: Embedder, config: RetrievalConfig) -> HybridRetriever:
    return HybridRetriever(index, embedder, config=config)  # type: ignore[arg-type] - duck-typed index
