"""The same behaviour on PostgreSQL: store semantics, and the pgvector backend (HNSW)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from kb_helpers import doc, load_small_kb

from knowledge.db import KnowledgeBase
from knowledge.errors import ConfigurationError, NotFound
from knowledge.ingest import FactSpec
from knowledge.store import KnowledgeStore

pytestmark = pytest.mark.postgres

QUESTIONS = [
    "How many days do I have to send an item back?",
    "how long does delivery take",
    "what is your phone number",
    "do gift cards expire",
    "my lamp broke after a year, is it covered",
]
RETURNS_V2 = (
    "# Returns policy\n\n## Who can return\nYou can return any unused item within 60 days of delivery "
    "for a full refund.\n\n## How refunds are paid\nRefunds go back to the original payment method "
    "within 5 business days after we receive the parcel."
)


def test_store_semantics_on_postgres(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    KnowledgeBase.metadata.create_all(engine)
    store = KnowledgeStore(engine)
    jan = datetime(2026, 1, 1, tzinfo=UTC)
    fact = FactSpec("support_phone", "555-0100", None, None, ["Customer Support Phone Number"])
    store.create_document(
        doc("contact", "## Phone\nCall 555-0100.", facts=[fact]), author="a", publish=True, at=jan
    )
    store.add_revision(
        "contact",
        "## Phone\nCall 555-0199.",
        author="b",
        facts=[FactSpec("support_phone", "555-0199", None, None, ["Customer Support Phone Number"])],
    )
    later = datetime.now(UTC) + timedelta(days=10)
    store.publish("contact", at=later)
    assert store.resolve_placeholder("{{customer support phone number}}").value == "555-0100"
    assert store.resolve_placeholder("Customer Support Phone Number", at=later).value == "555-0199"
    assert store.get("contact", 1).effective_from == jan  # timezone-aware round trip
    assert [r.number for r in store.in_force(later + timedelta(seconds=1))] == [2]
    store.retire("contact")
    assert store.in_force() == [] and store.in_force(later + timedelta(days=1)) == []
    with pytest.raises(NotFound):
        store.history("missing")
    engine.dispose()


@pytest.mark.slow
def test_pgvector_backend_matches_the_local_backend(make_service, pg_url: str, sqlite_url: str) -> None:
    pg = make_service(pg_url, backend="pgvector")
    load_small_kb(pg)
    local = make_service(sqlite_url)
    load_small_kb(local)
    for q in QUESTIONS:
        a = [(p.document_id, p.anchor) for p in pg.retrieve(q, k=3)]
        b = [(p.document_id, p.anchor) for p in local.retrieve(q, k=3)]
        assert a[0] == b[0], q
        assert {d for d, _ in a} == {d for d, _ in b}, q

    with pg.engine.connect() as conn:
        indexes = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'kb_chunk_embeddings'")
        )
        assert any("hnsw" in row[0] for row in indexes)

    # an edit is retrievable at once, and re-embeds only the changed section
    pg.add_revision("returns-policy", RETURNS_V2, author="editor", publish=True)
    assert pg.index.last_sync["embedded"] == 1
    got = pg.retrieve("how many days to return an item", k=5)
    assert {p.revision for p in got if p.document_id == "returns-policy"} == {2}
    assert "60 days" in got[0].text
    # retired: never again
    pg.retire("warranty")
    assert "warranty" not in {p.document_id for p in pg.retrieve("warranty claim for a broken lamp", k=10)}
    # filters work in SQL too
    got = pg.retrieve("discount for employees", k=5, filters={"audience": "staff"})
    assert got[0].document_id == "staff-discounts"


def test_pgvector_backend_refuses_sqlite(make_service, sqlite_url: str) -> None:
    svc = make_service(sqlite_url, backend="pgvector")
    with pytest.raises(ConfigurationError):
        svc.retrieve("anything")
