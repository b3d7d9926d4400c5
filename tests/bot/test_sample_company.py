"""The sample company that ships with hybridesk: its KB covers every intent and resolves every slot."""

from __future__ import annotations

import json
import re
from pathlib import Path

from knowledge.ingest import SKIP_FILES, parse_bytes

ROOT = Path(__file__).resolve().parents[2]
KB = ROOT / "knowledge" / "sample"
INTENTS = {
    "cancel_order", "change_order", "change_shipping_address", "check_cancellation_fee", "check_invoice",
    "check_payment_methods", "check_refund_policy", "complaint", "contact_customer_service",
    "contact_human_agent", "create_account", "delete_account", "delivery_options", "delivery_period",
    "edit_account", "get_invoice", "get_refund", "newsletter_subscription", "payment_issue", "place_order",
    "recover_password", "registration_problems", "review", "set_up_shipping_address", "switch_account",
    "track_order", "track_refund",
}


def _docs():
    for path in sorted(KB.glob("*.md")):
        if path.name.lower() in SKIP_FILES:
            continue
        yield path, parse_bytes(path.read_bytes(), path.name)


def test_at_least_25_documents_cover_every_intent():
    docs = list(_docs())
    assert len(docs) >= 25
    covered = {t.split(":", 1)[1] for _p, d in docs for t in d.tags if t.startswith("intent:")}
    assert covered >= INTENTS, f"intents without a policy: {sorted(INTENTS - covered)}"


def test_fact_names_unique_and_values_in_body():
    seen: dict[str, str] = {}
    for _path, doc in _docs():
        for fact in doc.facts:
            assert fact.name not in seen, f"{fact.name} defined by {seen.get(fact.name)} and {doc.id}"
            seen[fact.name] = doc.id
            assert str(fact.value) in doc.body, f"{doc.id}: {fact.name} value not stated in the text"
    assert len(seen) >= 60


def test_every_ticket_slot_resolves_to_a_fact_or_customer_data():
    from bot.conversation.guardrails import CUSTOMER_SLOTS, slot_key

    slots = {slot_key(p) for _path, doc in _docs() for f in doc.facts for p in (f.placeholders or [])}
    tickets = [json.loads(line) for line in (ROOT / "models/sample/tickets.jsonl").read_text().splitlines() if line]
    assert len(tickets) >= 300
    assert {t["intent"] for t in tickets} == INTENTS
    unknown = set()
    for t in tickets:
        for slot in re.findall(r"\{\{\s*([^{}]+?)\s*\}\}", t["agent_reply"]):
            if slot_key(slot) not in slots and slot_key(slot) not in CUSTOMER_SLOTS:
                unknown.add(slot)
    assert not unknown, f"ticket slots the KB cannot resolve: {sorted(unknown)}"
