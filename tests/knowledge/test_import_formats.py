"""Importing HTML and plain-text policies: what a visitor does not see stays out, structure the bot reads
(numbered steps, bold screen names, tables) stays in, and a .txt file's front matter is read as a .md file's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from knowledge.errors import InvalidInput
from knowledge.ingest import import_folder, parse_bytes, parse_html, parse_markdown, parse_text
from knowledge.store import KnowledgeStore

SAMPLE = Path(__file__).resolve().parents[2] / "knowledge" / "sample"


def body(html: str) -> str:
    return parse_html(html, name="page.html").body


# ---------------------------------------------------------------- hidden HTML


@pytest.mark.parametrize(
    "hidden",
    [
        '<div style="display:none">Internal note: staff discount code STAFF50</div>',
        '<div style="color: red; DISPLAY : None !important">Internal note: STAFF50</div>',
        '<div style="display:/* off */none">STAFF50</div>',
        "<p hidden>Internal note: STAFF50</p>",
        '<div hidden="until-found">STAFF50</div>',
        '<section aria-hidden="true"><h2>Staff</h2><p>Code STAFF50</p></section>',
        '<p style="visibility:hidden">STAFF50</p>',
        "<template><p>Internal note: STAFF50</p></template>",
        "<noscript><p>Internal note: STAFF50</p></noscript>",
        "<dialog><p>Internal note: STAFF50</p></dialog>",
        # nested elements and void elements inside the hidden part do not end it early
        '<div style="display:none"><div><p>Note<br>the code<img src="x.png" alt="">:<hr>'
        "<input type=hidden value=1> <b>STAFF50</b></p></div> and STAFF50 again</div>",
        '<ul><li>Free gift wrap</li><li hidden>Staff: STAFF50</li></ul>',
        '<table><tr><th>Code</th><th>For</th></tr><tr><td hidden>STAFF50</td><td>staff</td></tr></table>',
        # a hidden element never closed: hidden to the end of what holds it, as in a browser
        '<div><p>Note <span aria-hidden="true">STAFF50</div>',
    ],
)
def test_hidden_html_is_not_imported(hidden: str) -> None:
    """QA: the bot quoted "Internal note: staff discount code STAFF50", a `display:none` part of a page."""
    doc = parse_html(f"<html><body><h1>Gift wrapping</h1>{hidden}<p>Gift wrapping costs €3.50.</p></body></html>",
                     name="gift-wrapping.html")
    assert "STAFF50" not in doc.body and "Internal" not in doc.body
    assert doc.body.startswith("# Gift wrapping") and doc.body.endswith("Gift wrapping costs €3.50.")


def test_hidden_html_ends_where_its_element_ends() -> None:
    """Text after a hidden part is kept, also when HTML leaves the hidden element's end tag out; an end tag
    that does not belong to it (a `</div>` in a table cell) does not end it."""
    html = (
        "<p hidden>STAFF50<div>Shown after an unclosed hidden paragraph.</div>"
        "<ul><li hidden>STAFF50<li>Shown item</ul>"
        "<table><tr><th>A</th><th>B</th></tr><tr><td hidden>STAFF50<td>Shown cell</td></tr></table>"
        "<div hidden><table><tr><td>x</div>STAFF50</td></tr></table></div>"
        '<p style="display:none;display:block">Shown: the last declaration wins.</p>'
        "<dialog open>Shown dialog</dialog>"
    )
    text = body(html)
    assert "STAFF50" not in text
    for shown in ("Shown after an unclosed hidden paragraph.", "- Shown item", "Shown cell",
                  "Shown: the last declaration wins.", "Shown dialog"):
        assert shown in text


def test_a_page_with_only_hidden_text_has_no_visible_text() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_html('<div hidden>Only STAFF50</div><template>x</template>', name="staff.html")
    assert exc.value.code == "empty_file" and exc.value.message == "staff.html has no visible text."


def test_the_title_is_the_text_of_the_first_real_title() -> None:
    """QA: `<title>Gift wrapping<script>alert(1)</script></title>` gave the title "Gift wrappingalert(1)"."""
    html = ("<html><head><title>Gift wrapping<script>alert(1)</script></title></head>"
            '<body><svg><title>Close icon</title></svg><h1>Wrapping</h1><p>We wrap gifts.</p></body></html>')
    doc = parse_html(html, name="gifts.html")
    assert doc.title == "Gift wrapping" and "alert" not in doc.body and "icon" not in doc.body
    # no <title>: the first heading, then the file name
    assert parse_html("<h2>Sub</h2><h1>Wrapping</h1><p>x</p>", name="gifts.html").title == "Wrapping"
    assert parse_html("<p>We wrap gifts.</p>", name="gifts.html").title == "gifts"
    # a <head> without </head> ends where the page starts
    assert body("<head><title>T</title><meta charset=utf-8><h1>Hi</h1><p>Text</p>") == "# Hi\n\nText"


# ---------------------------------------------------------------- structure


def test_tables_become_markdown_tables() -> None:
    """QA: table cells were glued together ("ItemPrice", "Small€3.50")."""
    html = ("<table><caption>Gift wrapping prices</caption><thead><tr><th>Item</th><th>Price</th></tr></thead>"
            "<tbody><tr><td>Small</td><td>&euro;3.50</td></tr><tr><td>Large<br>(over 40 cm)</td><td>€5</td></tr>"
            "<tr><td colspan=2>Ribbon | bow included</td></tr></tbody></table>")
    assert body(html) == ("Gift wrapping prices\n\n| Item | Price |\n|---|---|\n| Small | €3.50 |\n"
                          "| Large (over 40 cm) | €5 |\n| Ribbon \\| bow included |  |")
    # no <th>: the first row is the header; a cell's list is one line; an empty row is left out
    html = ("<table><tr><td>Plan</td><td>Includes</td></tr><tr><td></td><td> </td></tr>"
            "<tr><td><b>Gold</b></td><td><ul><li>gift box</li><li>card</li></ul></td></tr></table>")
    assert body(html) == "| Plan | Includes |\n|---|---|\n| **Gold** | gift box; card |"


def test_a_layout_table_is_read_cell_by_cell() -> None:
    """A table laying out a page (one column, headings in cells) is not a data table: its cells in order."""
    html = ("<table><tr><td><h2>Returns</h2><p>Within 30 days.</p></td><td><h2>Refunds</h2><p>In 5 days.</p></td>"
            "</tr></table><table><tr><td>Only one column</td></tr><tr><td>Second row</td></tr></table>")
    assert body(html) == "## Returns\n\nWithin 30 days.\n\n## Refunds\n\nIn 5 days.\n\nOnly one column\n\nSecond row"


def test_ordered_lists_stay_numbered_and_the_bot_finds_the_procedure() -> None:
    """QA: <ol> items became bullets, so the bot's guardrails saw no numbered procedure."""
    from bot.conversation.responder import procedure

    html = ("<h2>Starting a return</h2><ol><li>Sign in and open <strong>My Account › Returns</strong>.</li>"
            "<li><p>Press <b>Start a return</b>.</p><p>Pick the items.</p></li>"
            "<li>Print the label<ul><li>or show the QR code</li></ul></li></ol>"
            '<ol start="4"><li>Drop it off.<li value="9">Wait.</ol><ul><li>A bullet</li><li></li></ul>')
    text = body(html)
    assert text == ("## Starting a return\n\n1. Sign in and open **My Account › Returns**.\n"
                    "2. Press **Start a return**. Pick the items.\n3. Print the label\n   - or show the QR code\n\n"
                    "4. Drop it off.\n9. Wait.\n\n- A bullet")
    found = procedure("How do I start a return?", [{"text": text, "heading": "Starting a return", "title": "Returns"}])
    assert found is not None and found[1][:2] == ["Sign in and open My Account › Returns.",
                                                  "Press Start a return. Pick the items."]


def test_bold_is_kept_for_screen_names_and_italics_are_plain() -> None:
    """QA: the bot recognises screen names ("**My Account › Points**") by their bold."""
    html = ("<p>Open <b>My Account › Points</b>, then press<strong> Redeem </strong>and <b>Sa</b><b>ve</b>. "
            "<em>Vouchers</em> <i>expire</i>.</p><h2><b>Points</b> explained</h2><p><b> </b>End</p>")
    # spaces go outside the marks; an italic's "*" would reach customers: the bot's quotes strip "**" only
    assert body(html) == ("Open **My Account › Points**, then press **Redeem** and **Save**. Vouchers expire.\n\n"
                          "## Points explained\n\nEnd")


def test_preformatted_text_keeps_its_whitespace() -> None:
    html = "<p>Paste:</p><pre>\nIBAN   NL91 ABNA 0417 1643 00\n  Ref: <b>LK-1234</b>\n</pre><pre>```</pre>"
    assert body(html) == "Paste:\n\n```\nIBAN   NL91 ABNA 0417 1643 00\n  Ref: LK-1234\n```\n\n````\n```\n````"


def test_headings_links_entities_and_line_breaks() -> None:
    html = ("<h1>Contact</h1><h3>By\npost</h3><h6>Small print</h6><h2></h2>"
            '<p>Larkspur &amp; Co.<br>Keizersgracht&nbsp;1<br/>Utrecht</p>'
            '<p>Read the <a href="https://larkspur.example/returns">returns&nbsp;policy</a> or '
            '<a href="mailto:help@larkspur.example">help@larkspur.example</a>. Price: &euro;3.50, re&shy;fund.</p>'
            "<dl><dt>Hours</dt><dd>9 to 5</dd></dl>")
    # a link keeps its text, not its address: a URL the bot may give is a fact, and quoted passages are plain text
    assert body(html) == ("# Contact\n\n### By post\n\n###### Small print\n\nLarkspur & Co.\nKeizersgracht 1\n"
                          "Utrecht\n\nRead the returns policy or help@larkspur.example. Price: €3.50, refund.\n\n"
                          "Hours\n\n9 to 5")


def test_the_sample_policies_rendered_as_html_import_as_their_markdown() -> None:
    """Every sample document rendered to HTML (tables, numbered steps, bold screen names) imports back as
    the Markdown it was written in: an HTML knowledge base reads to the bot as a Markdown one does."""
    md = MarkdownIt("commonmark").enable("table")
    paths = sorted(p for p in SAMPLE.rglob("*.md") if p.name not in {"README.md", "SLOTS.md"})
    assert len(paths) > 30
    for path in paths:
        doc = parse_markdown(path.read_text(encoding="utf-8"), name=path.name)
        html = f"<!doctype html><html><head><title>{doc.title}</title></head><body>{md.render(doc.body)}</body></html>"
        imported = parse_html(html, name=path.with_suffix(".html").name)
        assert (imported.title, imported.body) == (doc.title, doc.body), path.name


def test_html_documents_declare_no_facts() -> None:
    """HTML has no place for facts (or id, dates, tags): a <meta> tag is not read as one."""
    doc = parse_html('<head><meta name="facts" content="return_window_days: 30"><meta name="id" content="x">'
                     "</head><body><p>Returns within 30 days.</p></body>", name="returns.html")
    assert (doc.id, doc.facts, doc.effective_from, doc.tags) == ("returns", [], None, [])


# ---------------------------------------------------------------- plain text with front matter

TEXT_WITH_FRONT_MATTER = """---
id: gift-wrapping
title: Gift wrapping
effective_from: 2026-02-01
tags: [gifts]
facts:
  - name: gift_wrap_price
    value: "€3.50"
    description: price of gift wrapping
---
Gift wrapping
We wrap any item for €3.50.
"""


def test_a_text_file_with_front_matter_is_read_as_markdown_is() -> None:
    """QA: a .txt file starting with YAML front matter was imported with the title "---" and its YAML as text."""
    doc = parse_bytes(TEXT_WITH_FRONT_MATTER.encode(), "wrapping.txt")
    assert (doc.id, doc.title, doc.tags, doc.content_format) == ("gift-wrapping", "Gift wrapping", ["gifts"], "text")
    assert doc.effective_from == datetime(2026, 2, 1, tzinfo=UTC)
    assert [(f.name, f.value) for f in doc.facts] == [("gift_wrap_price", "€3.50")]
    assert doc.body == "Gift wrapping\nWe wrap any item for €3.50."
    # the same rules as a .md file's: without a title, a "# " heading or the file name
    md = parse_markdown(TEXT_WITH_FRONT_MATTER.replace("title: Gift wrapping\n", ""), name="wrapping.md")
    txt = parse_text(TEXT_WITH_FRONT_MATTER.replace("title: Gift wrapping\n", ""), name="wrapping.txt")
    assert (txt.id, txt.title, txt.body, txt.facts) == (md.id, md.title, md.body, md.facts) == (
        "gift-wrapping", "Wrapping", "Gift wrapping\nWe wrap any item for €3.50.", md.facts)
    # and the same ```facts blocks
    assert parse_text("---\nid: x\n---\nOpen 9 to 5.\n```facts\n- name: opens_at\n  value: '9'\n```\n",
                      name="x.txt").facts[0].name == "opens_at"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("---\nid: x\nbody without end", "bad_front_matter"),
        ("---\nid: [broken\n---\nbody", "bad_front_matter"),
        ("---\n- a list\n---\nbody", "bad_front_matter"),
        ("---\nid: x\n---\n", "empty_file"),
        ("---\nid: Not A Slug\n---\nbody", "bad_document_id"),
        ("---\nid: x\neffective_from: 31/12/2026\n---\nbody", "bad_date"),
        ("---\nid: x\nfacts:\n  - name: a\n    value: yes\n---\nbody", "bad_facts"),
    ],
)
def test_bad_front_matter_in_a_text_file_is_refused_as_in_markdown(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as as_text:
        parse_bytes(text.encode(), "hours.txt")
    with pytest.raises(InvalidInput) as as_markdown:
        parse_markdown(text, name="hours.txt")
    assert (as_text.value.code, as_text.value.message) == (code, as_markdown.value.message)
    assert "hours.txt" in as_text.value.message


def test_a_text_file_without_front_matter_is_read_as_before() -> None:
    doc = parse_text("Opening hours\nWe are open 9 to 5.\n\nClosed on Sundays.", name="hours.txt")
    assert (doc.id, doc.title, doc.body, doc.facts) == ("hours", "Opening hours",
                                                        "We are open 9 to 5.\n\nClosed on Sundays.", [])
    # a rule of dashes is no front matter
    doc = parse_text("----------\nOpening hours\n----------\nWe are open 9 to 5.", name="hours.txt")
    assert doc.title == "----------" and "We are open 9 to 5." in doc.body


def test_a_folder_of_text_and_html_policies_imports_with_the_text_files_facts(
        tmp_path: Path, store: KnowledgeStore) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "wrapping.txt").write_text(TEXT_WITH_FRONT_MATTER, encoding="utf-8")
    (root / "late.txt").write_text(TEXT_WITH_FRONT_MATTER.replace("gift-wrapping", "late-wrapping")
                                   .replace("gift_wrap_price", "late_wrap_price").replace("for €3.50", "for €4"),
                                   encoding="utf-8")
    (root / "staff.html").write_text(
        '<h1>Staff</h1><p>Ask at the desk.</p><div style="display:none">Code STAFF50</div>', encoding="utf-8")
    report = import_folder(store, root, author="importer")
    assert sorted(report.imported) == ["gift-wrapping", "staff"] and not report.errors
    # the fact a text file declares is checked against its text as a Markdown file's is
    assert [d.code for d in report.drafted] == ["fact_not_in_text"] and "late_wrap_price" in report.drafted[0].reason
    assert store.facts_at(datetime(2026, 6, 1, tzinfo=UTC))["gift_wrap_price"].value == "€3.50"
    staff = store.get("staff").content
    assert "Ask at the desk." in staff and "STAFF50" not in staff
