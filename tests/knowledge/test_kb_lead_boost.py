"""The lead-section boost: a document's opening chunk counts once more in its document score.

Synthetic vectors and a fake embedder (query vectors are passed in), so no model is loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from knowledge.index import Embedder, LocalIndex, normalize
from knowledge.retrieval import HybridRetriever, RetrievalConfig
from knowledge.snapshot import RevMeta, Snapshot

JAN = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


class NoModel:
    model_name = "none"

    def get_query_embedding(self, text: str) -> list[float]:  # pragma: no cover - never called
        raise AssertionError("query vectors are given in these tests")


def _vec(cos: float) -> np.ndarray:
    """A unit vector whose cosine with the query vector e0 is ``cos``."""
    return np.array([cos, float(np.sqrt(1 - cos * cos)), 0.0], dtype=np.float32)


def _row(chunk_id: int, rev: int, doc: str, ordinal: int, heading: str) -> dict:
    return {
        "chunk_id": chunk_id,
        "revision_id": rev,
        "document_id": doc,
        "revision": 1,
        "ordinal": ordinal,
        "heading_path": [heading],
        "anchor": heading.lower(),
        "body": f"{doc} {heading}",
        "text": f"{doc} {heading}",
        "hash": f"h{chunk_id}",
    }


def _retriever(tmp_path: Path, rows: list[dict], cosines: list[float], revs: list[RevMeta], **cfg):
    vectors = normalize(np.vstack([_vec(c) for c in cosines]))
    index = LocalIndex(tmp_path / "idx", Embedder(NoModel()))
    index.install(Snapshot(1, revs, rows, vectors))
    config = RetrievalConfig(use_bm25=False, **cfg)
    return HybridRetriever(index, index.embedder, config=config)


QUERY = np.array([1.0, 0.0, 0.0], dtype=np.float32)


def test_lead_row_is_the_lowest_ordinal_of_each_revision() -> None:
    revs = [RevMeta(i, f"d{i}", 1, "published", "T", JAN, None) for i in (1, 2, 3)]
    # rows out of order on purpose; revision 3 has no rows
    rows = [_row(10, 2, "d2", 1, "b"), _row(11, 1, "d1", 0, "a"), _row(12, 2, "d2", 0, "a")]
    snap = Snapshot(1, revs, rows, None, bm25=object())
    assert snap.lead_row.tolist() == [1, 2, -1]


def test_document_whose_opening_matches_wins_with_the_boost(tmp_path: Path) -> None:
    revs = [
        RevMeta(1, "about-returns", 1, "published", "Returns", JAN, None),
        RevMeta(2, "one-paragraph", 1, "published", "Misc", JAN, None),
    ]
    rows = [
        _row(1, 1, "about-returns", 0, "Overview"),  # the opening section: on topic
        _row(2, 1, "about-returns", 1, "Details"),
        _row(3, 2, "one-paragraph", 0, "Intro"),  # off topic
        _row(4, 2, "one-paragraph", 1, "Aside"),  # one paragraph that matches a bit better
    ]
    cosines = [0.62, 0.70, 0.05, 0.74]
    plain = _retriever(tmp_path, rows, cosines, revs, lead_weight=0.0)
    boosted = _retriever(tmp_path, rows, cosines, revs, lead_weight=0.3)
    assert plain.search("q", at=NOW, query_vector=QUERY)[0].document_id == "one-paragraph"
    top = boosted.search("q", at=NOW, query_vector=QUERY)
    assert top[0].document_id == "about-returns"
    # passages keep their own chunk score: the boost only reorders documents
    assert top[0].score == pytest.approx(0.70, abs=1e-5) and top[0].heading == "Details"


def test_boost_uses_the_opening_chunk_of_the_revision_in_force(tmp_path: Path) -> None:
    """An old revision's opening chunk never lends its score to the current revision."""
    revs = [
        RevMeta(1, "policy", 1, "published", "Policy", JAN, None),
        RevMeta(2, "policy", 2, "published", "Policy", datetime(2026, 3, 1, tzinfo=UTC), None),
        RevMeta(3, "other", 1, "published", "Other", JAN, None),
    ]
    rows = [
        _row(1, 1, "policy", 0, "Old opening"),  # superseded, very on topic
        _row(2, 2, "policy", 0, "New opening"),  # current, off topic
        _row(3, 2, "policy", 1, "Section"),
        _row(4, 3, "other", 0, "Opening"),
        _row(5, 3, "other", 1, "Section"),
    ]
    cosines = [0.99, 0.10, 0.70, 0.50, 0.66]
    r = _retriever(tmp_path, rows, cosines, revs, lead_weight=0.3, doc_pool=0.0)
    got = r.search("q", at=NOW, query_vector=QUERY, k=4)
    assert all(p.heading != "Old opening" for p in got)
    # other: 0.66 + 0.3 x 0.50 = 0.81 beats policy: 0.70 + 0.3 x 0.10 = 0.73
    assert got[0].document_id == "other"
    # and at a time when revision 1 was in force, its own opening counts
    past = r.search("q", at=datetime(2026, 2, 1, tzinfo=UTC), query_vector=QUERY, k=2)
    assert past[0].document_id == "policy" and past[0].heading == "Old opening"
