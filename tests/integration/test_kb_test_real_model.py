"""The KB editor's "test a question" with the real models: the draft's facts change the real reply."""

from __future__ import annotations

import pytest

from knowledge.ingest import FactSpec

pytestmark = pytest.mark.slow

QUESTION = "How many days do I have to return an item?"


def test_draft_and_published_replies_with_the_real_model(product, no_network):
    from bot.console import kb_test

    latest = product.knowledge.get("returns-policy")
    facts = [FactSpec(f.name, "45" if f.name == "return_window_days" else f.value, f.unit, f.description,
                      list(f.placeholders)) for f in latest.facts]
    draft = product.knowledge.add_revision(
        "returns-policy", latest.content.replace("**30** days", "**45** days"), author="editor@larkspur.example",
        facts=facts, change_note="longer return window (test)")
    assert draft.status == "draft"

    published_side, draft_side = kb_test.retrieval_sides(product, "returns-policy", QUESTION, draft.number)
    assert {"name": "return_window_days", "value": "45"}.items() <= next(
        f for f in draft_side.facts if f["name"] == "return_window_days").items()
    assert next(f for f in published_side.facts if f["name"] == "return_window_days")["value"] == "30"

    replies = {side: kb_test.bot_reply(product, "returns-policy", QUESTION, draft.number, side, timeout_s=300)
               for side in ("draft", "published")}
    for reply in replies.values():
        assert reply.model_id and not reply.timed_out and reply.error is None, reply
        assert "{{" not in reply.text
    assert "45" in replies["draft"].text and "45" not in replies["published"].text
    assert replies["draft"].text != replies["published"].text
    assert any(c["document_id"] == "returns-policy" and c["revision"] == draft.number
               for c in replies["draft"].citations)
    # the customer-facing knowledge base is unchanged
    live = product.knowledge.retrieve(QUESTION, k=3)
    assert all(p.revision != draft.number for p in live if p.document_id == "returns-policy")
    assert product.knowledge.facts()["return_window_days"].value == "30"
    assert no_network == []
