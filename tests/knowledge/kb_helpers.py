"""Helpers shared by the knowledge tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from knowledge.ingest import FactSpec, ParsedDocument


def doc(
    doc_id: str,
    body: str,
    *,
    title: str | None = None,
    tags: list[str] | None = None,
    audience: str | None = None,
    facts: list[FactSpec] | None = None,
    effective_from: Any = None,
) -> ParsedDocument:
    """A parsed document for tests (Markdown body)."""
    return ParsedDocument(
        id=doc_id,
        title=title or doc_id.replace("-", " ").capitalize(),
        body=body,
        tags=tags or [],
        audience=audience,
        facts=facts or [],
        effective_from=effective_from,
    )


SMALL_KB = {
    "returns-policy": (
        "Returns policy",
        "# Returns policy\n\n## Who can return\nYou can return any unused item within 30 days of delivery "
        "for a full refund.\n\n## How refunds are paid\nRefunds go back to the original payment method "
        "within 5 business days after we receive the parcel.",
        ["returns", "refunds"],
        "customers",
    ),
    "shipping-policy": (
        "Shipping policy",
        "# Shipping policy\n\n## Delivery times\nStandard delivery takes 3 to 5 business days; express "
        "delivery arrives the next business day.\n\n## Shipping costs\nShipping is free on orders over $50; "
        "below that a flat fee of $4.95 applies.",
        ["shipping"],
        "customers",
    ),
    "contact-us": (
        "Contact us",
        "# Contact us\n\n## Phone\nCall our support line at 555-0100, Monday to Friday from 9 am to 5 pm.\n\n"
        "## Live chat\nThe live chat on larkspur.example answers around the clock.",
        ["contact"],
        None,
    ),
    "gift-cards": (
        "Gift cards",
        "# Gift cards\n\n## Buying a gift card\nGift cards come in amounts from $10 to $500 and never "
        "expire.\n\n## Redeeming\nEnter the gift card code at checkout; any remaining balance stays on the card.",
        ["payments"],
        None,
    ),
    "warranty": (
        "Warranty",
        "# Warranty\n\n## What is covered\nFurniture and lighting carry a two-year warranty against "
        "manufacturing defects.\n\n## Making a claim\nSend a photo of the defect and your order number to "
        "warranty@larkspur.example.",
        ["warranty"],
        "customers",
    ),
    "staff-discounts": (
        "Staff discount rules",
        "# Staff discount rules\n\n## Eligibility\nEmployees get 25% off kitchenware after their probation "
        "period.",
        ["internal"],
        "staff",
    ),
}


def load_small_kb(target: Any, *, author: str = "tester") -> None:
    """Create and publish SMALL_KB through a KnowledgeService or KnowledgeStore."""
    from datetime import UTC, datetime

    store = getattr(target, "store", target)
    for doc_id, (title, body, tags, audience) in SMALL_KB.items():
        store.create_document(
            doc(doc_id, body, title=title, tags=tags, audience=audience),
            author=author,
            publish=True,
            at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    if hasattr(target, "refresh"):
        target.refresh()
