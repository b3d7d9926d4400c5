"""Hybrid retrieval (BM25 + MiniLM vectors) over what is in force at query time.

:class:`HybridRetriever` is a LlamaIndex ``BaseRetriever``: ``retrieve()`` (public) validates,
logs and times; ``_retrieve()`` does the work and returns ``NodeWithScore`` objects whose
metadata carries document id, revision, heading and anchor.  :meth:`HybridRetriever.search`
returns our own :class:`Passage` objects.

Fusion (measured in ``benchmarks/retrieval_quality.py``): BM25 scores are divided by the best
BM25 score of the query (so 1.0 = the best lexical match), cosine similarities are used as
they are, and the two are combined with a weight.  Chunk scores are then pooled per
document (best chunk plus a small share of the next ones), because a policy that matches
in several sections is more likely the right one.  A document's opening chunk (its title
and first section, which usually say what the whole document is about) counts once more,
with ``lead_weight``: a question that matches what a document is *about*, not only one of
its paragraphs, is more likely to be answered by it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from knowledge.db import as_utc, utcnow
from knowledge.errors import InvalidInput, TooLarge
from knowledge.index import Embedder, SyncedIndex
from knowledge.snapshot import Snapshot

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000
HISTORY_TURNS = 2


@dataclass(frozen=True)
class Passage:
    """A retrieved section with its score and where it comes from."""

    text: str
    score: float
    document_id: str
    revision: int
    title: str
    heading: str
    anchor: str
    heading_path: tuple[str, ...] = ()
    chunk_id: int | None = None

    def citation(self) -> dict[str, Any]:
        """What a reply cites: document, revision, section."""
        return {
            "document_id": self.document_id,
            "revision": self.revision,
            "title": self.title,
            "heading": self.heading,
            "anchor": self.anchor,
        }


@dataclass
class RetrievalConfig:
    """Knobs of the fusion; the defaults are the best setting measured on WixQA (see RESULTS)."""

    bm25_weight: float = 0.2
    fusion: str = "weighted"  # "weighted" (normalised score blend) or "rrf"
    rrf_k: int = 60
    candidates: int = 100
    doc_pool: float = 0.05  # share of a document's 2nd/3rd best chunks added to its best
    lead_weight: float = 0.3  # share of the document's opening chunk's fused score added to it
    history_weight: float = 0.35
    per_document: int | None = 2
    use_bm25: bool = True
    use_vector: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def history_text(history: Sequence[Any] | None, turns: int = HISTORY_TURNS) -> str:
    """The last user turns of a conversation (``str`` items or ``{"role", "content"}`` dicts)."""
    if not history:
        return ""
    texts: list[str] = []
    for item in history:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, Mapping):
            if item.get("role", "user") in ("user", "customer"):
                texts.append(str(item.get("content") or item.get("text") or ""))
        else:
            content = getattr(item, "content", None) or getattr(item, "text", None)
            if content and getattr(item, "role", "user") in ("user", "customer"):
                texts.append(str(content))
    return " ".join(t.strip() for t in texts[-turns:] if t and t.strip())[:MAX_QUERY_CHARS]


def check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("The question is empty.", code="empty_query")
    if len(query) > MAX_QUERY_CHARS:
        raise TooLarge(
            f"The question is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}.",
            code="query_too_long",
        )
    return re.sub(r"\s+", " ", query).strip()


class HybridRetriever(BaseRetriever):
    """BM25 + vector retrieval over a :class:`~knowledge.index.SyncedIndex` (local or pgvector)."""

    def __init__(
        self,
        index: SyncedIndex,
        embedder: Embedder,
        *,
        k: int = 5,
        config: RetrievalConfig | None = None,
    ) -> None:
        super().__init__()
        self.index = index
        self.embedder = embedder
        self.k = k
        self.config = config or RetrievalConfig()
        self.last_timing: dict[str, float] = {}

    # ------------------------------------------------------------ public

    def search(
        self,
        query: str,
        *,
        at: datetime | None = None,
        history: Sequence[Any] | None = None,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Passage]:
        """Passages in force at ``at`` (default: now) for ``query``, best first."""
        t0 = time.perf_counter()
        q = check_query(query)
        hist = history_text(history)
        when = as_utc(at) if at is not None else utcnow()
        passages = self._search(q, when, hist, k or self.k, filters, query_vector)
        self.last_timing["total_ms"] = (time.perf_counter() - t0) * 1000
        if log.isEnabledFor(logging.INFO):
            # the question is a customer's words (names, e-mail addresses, card numbers): only at DEBUG
            log.info(
                "kb retrieve q=%s history=%d at=%s k=%d -> %s (%.1f ms)",
                repr(q[:80]) if log.isEnabledFor(logging.DEBUG) else f"<{len(q)} chars>",
                len(hist),
                when.isoformat(),
                k or self.k,
                [f"{p.document_id}@r{p.revision}#{p.anchor}" for p in passages],
                self.last_timing["total_ms"],
            )
        return passages

    def retrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """LlamaIndex's public API (instrumented by LlamaIndex), plus our log line and timing."""
        t0 = time.perf_counter()
        nodes = super().retrieve(str_or_query_bundle)
        ms = (time.perf_counter() - t0) * 1000
        self.last_timing["total_ms"] = ms
        log.info("kb retrieve (llama-index) -> %s (%.1f ms)", [n.node.id_ for n in nodes], ms)
        return nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """LlamaIndex hook: the same search, as nodes carrying the citation in their metadata."""
        vec = None if query_bundle.embedding is None else np.asarray(query_bundle.embedding, dtype=np.float32)
        passages = self._search(check_query(query_bundle.query_str), utcnow(), "", self.k, None, vec)
        return [
            NodeWithScore(
                node=TextNode(
                    id_=f"{p.document_id}@{p.revision}#{p.chunk_id}",
                    text=p.text,
                    metadata=p.citation() | {"heading_path": list(p.heading_path)},
                ),
                score=p.score,
            )
            for p in passages
        ]

    # ------------------------------------------------------------ work

    def _search(
        self,
        query: str,
        at: datetime,
        hist: str,
        k: int,
        filters: Mapping[str, Any] | None,
        query_vector: np.ndarray | None,
    ) -> list[Passage]:
        cfg = self.config
        snap = self.index.current()  # one snapshot for the whole query: old or new, never a mix
        if not len(snap):
            return []
        timing = self.last_timing = {}
        t = time.perf_counter()
        mask = snap.row_mask(at, filters)
        if not mask.any():
            return []
        n = min(cfg.candidates, int(mask.sum()))
        lex: dict[int, float] = {}
        if cfg.use_bm25:
            scores = snap.bm25_scores(query)
            if hist:
                scores = scores + cfg.history_weight * snap.bm25_scores(hist)
            lex = _top(scores, mask, n)
        timing["bm25_ms"] = (time.perf_counter() - t) * 1000
        vec: dict[int, float] = {}
        if cfg.use_vector:
            t = time.perf_counter()
            qv = query_vector if query_vector is not None else self.embedder.query(query)
            if hist and query_vector is None:
                qv = qv + cfg.history_weight * self.embedder.query(hist)
                qv = qv / max(float(np.linalg.norm(qv)), 1e-12)
            timing["embed_ms"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            vec = self.index.vector_scores(snap, qv, mask, n)
            timing["vector_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        fused = self._fuse(lex, vec)
        ranked = self._pool_documents(snap, fused)
        out = self._passages(snap, ranked, k)
        timing["fuse_ms"] = (time.perf_counter() - t) * 1000
        return out

    def _fuse(self, lex: dict[int, float], vec: dict[int, float]) -> dict[int, float]:
        cfg = self.config
        if not lex or not vec:
            only = lex or vec
            top = max(only.values(), default=1.0) or 1.0
            return {i: s / top for i, s in only.items()} if only is lex else dict(only)
        if cfg.fusion == "rrf":
            out: dict[int, float] = {}
            for weight, scores in ((cfg.bm25_weight, lex), (1 - cfg.bm25_weight, vec)):
                for rank, i in enumerate(sorted(scores, key=scores.__getitem__, reverse=True)):
                    out[i] = out.get(i, 0.0) + weight / (cfg.rrf_k + rank + 1)
            return out
        top = max(lex.values()) or 1.0
        floor_vec = min(vec.values())
        w = cfg.bm25_weight
        keys = set(lex) | set(vec)
        # a row missing from one channel's candidates scores at most that channel's floor
        return {i: w * (lex.get(i, 0.0) / top) + (1 - w) * vec.get(i, floor_vec) for i in keys}

    def _pool_documents(self, snap: Snapshot, fused: dict[int, float]) -> list[tuple[int, float]]:
        """Rank chunks by their document's pooled score, then by their own score.

        Pooled score: best chunk + ``doc_pool`` x the next two + ``lead_weight`` x the fused
        score of the document's opening chunk (0 when that chunk is not among the candidates).
        Only rows in force are candidates, so all of a document's rows here share one revision.
        """
        cfg = self.config
        by_doc: dict[str, list[float]] = {}
        lead: dict[str, int] = {}
        for i, s in fused.items():
            doc = snap.rows[i]["document_id"]
            by_doc.setdefault(doc, []).append(s)
            if cfg.lead_weight and doc not in lead:
                lead[doc] = int(snap.lead_row[snap.row_rev[i]])
        pooled = {}
        for doc, scores in by_doc.items():
            scores.sort(reverse=True)
            pooled[doc] = scores[0] + cfg.doc_pool * sum(scores[1:3])
            if cfg.lead_weight:
                pooled[doc] += cfg.lead_weight * fused.get(lead[doc], 0.0)
        return sorted(
            fused.items(),
            key=lambda kv: (pooled[snap.rows[kv[0]]["document_id"]], kv[1]),
            reverse=True,
        )

    def _passages(self, snap: Snapshot, ranked: list[tuple[int, float]], k: int) -> list[Passage]:
        per_doc: dict[str, int] = {}
        out: list[Passage] = []
        limit = self.config.per_document
        for i, score in ranked:
            row = snap.rows[i]
            doc = row["document_id"]
            if limit is not None and per_doc.get(doc, 0) >= limit:
                continue
            per_doc[doc] = per_doc.get(doc, 0) + 1
            rev = snap.revisions[row["revision_id"]]
            path = tuple(row["heading_path"])
            out.append(
                Passage(
                    text=row["body"],
                    score=round(float(score), 6),
                    document_id=doc,
                    revision=row["revision"],
                    title=rev.title,
                    heading=path[-1] if path else rev.title,
                    anchor=row["anchor"],
                    heading_path=path,
                    chunk_id=row["chunk_id"],
                )
            )
            if len(out) >= k:
                break
        return out


def _top(scores: np.ndarray, mask: np.ndarray, n: int) -> dict[int, float]:
    """The best ``n`` allowed rows with a positive score."""
    allowed = np.flatnonzero(mask & (scores > 0))
    if not len(allowed):
        return {}
    sub = scores[allowed]
    top = np.argpartition(-sub, n - 1)[:n] if len(sub) > n else np.arange(len(sub))
    return {int(allowed[i]): float(sub[i]) for i in top}
