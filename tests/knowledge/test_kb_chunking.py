"""Heading-aware chunks with stable anchors."""

from __future__ import annotations

from knowledge.chunking import anchor_for, chunk_markdown, slugify

BODY = """# Returns policy

Intro paragraph about returns.

## Who can return
Anyone with a receipt.

### Exceptions
Gift cards cannot be returned.

```
# not a heading
```

## Refunds?
Refunds take 5 days.
"""


def test_sections_paths_and_anchors() -> None:
    chunks = chunk_markdown(BODY, "Returns policy")
    got = [(c.heading_path, c.anchor) for c in chunks]
    assert got == [
        ((), "overview"),
        (("Who can return",), "who-can-return"),
        (("Who can return", "Exceptions"), "who-can-return--exceptions"),
        (("Refunds?",), "refunds"),
    ]
    assert "# not a heading" in chunks[2].body
    assert chunks[1].text.startswith("Returns policy > Who can return\n")
    assert chunks[1].heading == "Who can return"
    assert [c.ordinal for c in chunks] == [0, 1, 2, 3]


def test_anchors_are_stable_when_text_changes() -> None:
    a = chunk_markdown(BODY, "Returns policy")
    b = chunk_markdown(BODY.replace("5 days", "7 days"), "Returns policy")
    assert [c.anchor for c in a] == [c.anchor for c in b]
    changed = [x.ordinal for x, y in zip(a, b, strict=True) if x.content_hash != y.content_hash]
    assert changed == [3]  # only the edited section gets a new hash (and a new embedding)


def test_long_sections_are_split_under_the_same_anchor() -> None:
    long = "## Details\n" + " ".join(f"Sentence number {i} is here." for i in range(200))
    chunks = chunk_markdown(long, "T", max_words=100)
    assert len(chunks) > 1
    assert {c.anchor for c in chunks} == {"details"}
    assert all(len(c.body.split()) <= 100 for c in chunks)


def test_slugs() -> None:
    assert slugify("Who can return?") == "who-can-return"
    assert slugify("Ünïcode  & Co.") == "unicode-co"
    assert anchor_for(()) == "overview"


def test_a_facts_anchor_is_the_section_that_states_it_not_the_first_with_its_digit():
    from knowledge.chunking import anchor_containing

    body = ("## With an account\n\n1. Sign in.\n2. Open Orders.\n3. Press Track parcel.\n\n"
            "## Peak times\n\nIn the 30 days before Christmas parcels can take longer.\n\n"
            "## Parcel late or stuck\n\nIf your parcel has not arrived **3** business days after the estimate, "
            "contact us.\n")
    chunks = chunk_markdown(body, "Tracking your order")
    # step "3." and "30" hold the digit; the bold figure is the statement
    assert anchor_containing(chunks, "3") == "parcel-late-or-stuck"
    plain = body.replace("**3**", "3")
    assert anchor_containing(chunk_markdown(plain, "Tracking your order"), "3") == "parcel-late-or-stuck"
    assert anchor_containing(chunks, "Track parcel") == "with-an-account"  # a name is found where it is
    assert anchor_containing(chunks, "9") is None
