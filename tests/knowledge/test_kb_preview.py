"""``KnowledgeService.preview``: retrieval and facts "as if" a draft were in force, nothing published."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from hashing_embedding import HashingEmbedding
from kb_helpers import load_small_kb

from knowledge.db import KnowledgeBase
from knowledge.errors import InvalidInput, NotFound
from knowledge.ingest import FactSpec

RETURNS_V2 = (
    "# Returns policy\n\n## Who can return\nYou can return any unused item within 60 days of delivery "
    "for a full refund.\n\n## How refunds are paid\nRefunds go back to the original payment method "
    "within 5 business days after we receive the parcel."
)
ENGRAVING = "# Engraving\n\n## Engraving service\nWe engrave initials on any copper pan for a fee of $7."


def _service(url: str, backend: str, tmp_path: Path):
    from knowledge.service import KnowledgeService

    engine = sa.create_engine(url)
    KnowledgeBase.metadata.create_all(engine)
    svc = KnowledgeService(engine, tmp_path / "index", backend=backend, embed_model=HashingEmbedding(384, "hashing-preview-test"))
    load_small_kb(svc)
    return svc


def _check_preview(svc) -> None:
    window = FactSpec("return_window_days", "60", "days", None, ["Return Window"])
    svc.add_revision("returns-policy", RETURNS_V2, author="editor", facts=[window])  # a draft
    svc.store.create_document(  # a brand-new document, never published
        __import__("kb_helpers").doc("engraving", ENGRAVING, title="Engraving"), author="editor")
    generation = svc.store.generation()
    question = "how many days do I have to return an unused item"

    live = svc.retrieve(question, k=3)
    assert live[0].document_id == "returns-policy" and live[0].revision == 1 and "30 days" in live[0].text
    view = svc.preview([("returns-policy", 2)])
    got = view.retrieve(question, k=3)
    assert got[0].document_id == "returns-policy" and got[0].revision == 2 and "60 days" in got[0].text
    assert all(p.revision == 2 for p in got if p.document_id == "returns-policy")  # r1 hidden
    assert {p.document_id for p in view.retrieve("delivery times for express shipping", k=3)} >= {"shipping-policy"}
    assert view.facts()["return_window_days"].value == "60"
    assert "return_window_days" not in svc.facts()
    assert view.resolve_placeholder("{{Return Window}}").value == "60"
    # the asked fact is matched among the preview's facts (the bot states it from them), not the live ones
    matched = {f.name: f for f, _ in view.match_facts("what is the return window in days", k=10)}
    assert matched["return_window_days"].value == "60" and matched["return_window_days"].revision == 2
    assert "return_window_days" not in {f.name for f, _ in svc.match_facts("what is the return window in days", k=10)}
    assert [r.number for r in view.in_force() if r.document_id == "returns-policy"] == [2]

    # a draft of a new document is found in the preview only
    assert "engraving" not in {p.document_id for p in svc.retrieve("engrave initials on a copper pan", k=3)}
    got = svc.preview([("engraving", None)]).retrieve("engrave initials on a copper pan", k=3)
    assert got[0].document_id == "engraving" and "$7" in got[0].text

    # nothing was written, and the shared index still serves the published text
    assert svc.store.generation() == generation
    assert svc.store.get("returns-policy", 2).status == "draft"
    assert svc.retrieve(question, k=1)[0].revision == 1

    # the responder reads a cited document's sections and title through get(): the preview's own revision
    preview = svc.preview([("returns-policy", 2)])
    assert preview.get("returns-policy").number == 2 and preview.get("returns-policy", 1).number == 1
    assert preview.retriever.embedder is svc.retriever.embedder

    with pytest.raises(InvalidInput):
        svc.preview([("returns-policy", 1), ("returns-policy", 2)])
    with pytest.raises(InvalidInput):
        svc.preview([])
    with pytest.raises(NotFound):
        svc.preview([("no-such-doc", None)])


def test_preview_on_sqlite_local_index(sqlite_url: str, tmp_path: Path) -> None:
    svc = _service(sqlite_url, "local", tmp_path)
    _check_preview(svc)
    # cached per (revisions, index generation); publishing moves the index on
    a = svc._preview_retriever([svc.get("returns-policy", 2)])
    assert svc._preview_retriever([svc.get("returns-policy", 2)]) is a
    svc.publish("returns-policy", 2)
    assert svc._preview_retriever([svc.get("returns-policy", 2)]) is not a
    svc.engine.dispose()


@pytest.mark.postgres
def test_preview_on_postgres_pgvector(pg_url: str, tmp_path: Path) -> None:
    svc = _service(pg_url, "pgvector", tmp_path)
    _check_preview(svc)
    svc.engine.dispose()
