"""The shipped sample company KB (knowledge/sample) imports cleanly and is retrievable."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "knowledge" / "sample"
pytestmark = pytest.mark.slow


def _docs() -> list[Path]:
    if not SAMPLE.is_dir():
        return []
    return [p for p in SAMPLE.rglob("*.md") if p.name.lower() not in {"readme.md", "slots.md"}]


@pytest.mark.skipif(
    len(_docs()) < 25, reason="knowledge/sample has fewer than 25 documents (still being written)"
)
def test_sample_kb_imports_and_answers(make_service, sqlite_url: str) -> None:
    svc = make_service(sqlite_url)
    report = svc.import_folder(SAMPLE, author="test")
    assert report.errors == [], report.errors
    facts = svc.facts()
    assert facts, "the sample KB defines no facts"
    for fact in facts.values():
        for alias in fact.placeholders:
            assert svc.resolve_placeholder(alias) is not None, alias
    live = svc.in_force()[:12]  # a dozen title searches are enough to catch a broken index
    hits = 0
    for rev in live:
        got = svc.retrieve(rev.title, k=3)
        hits += rev.document_id in {p.document_id for p in got}
    assert hits >= 0.9 * len(live)
