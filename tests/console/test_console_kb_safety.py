"""KB editor safety and accessibility (console QA items 4, 7, 13-15, 17-20, 23).

Retiring now takes a deliberate second step; form errors are shown on the form at their field; a text
that contradicts its own fact ("within 45 days", then "within 21 days") is not published; every action
says what it did; dates say UTC; one ``<h1>`` per page; the preview is not a live region.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from console_support import PASSWORD, build_console, login

HTML = {"Accept": "text/html,application/xhtml+xml"}
JSON = {"Accept": "application/json"}
FMT = "%Y-%m-%dT%H:%M"
SAMPLE = Path(__file__).resolve().parents[2] / "knowledge" / "sample"

BODY = """# Gift wrap

## Prices

Gift wrap costs €4.50 per item.
"""
FACTS = """- name: gift_wrap_price
  value: "€4.50"
  description: Price of gift wrap per item
"""

RETURNS_BODY = """# Returns policy

You can return most items within **45** days of delivery and get your money back.

## What you get back

| Reason | Refund |
|---|---|
| Change of mind, within 21 days | 100% of the item price, minus €5.95 for the return label |
| Faulty, damaged or wrong item | 100% of the item price; return label free |
"""
RETURNS_FACTS = """- name: return_window_days
  value: "45"
  unit: days
  description: Days after delivery within which an item can be returned
"""


def _create(client, csrf, headers=None, **overrides):
    data = {"csrf_token": csrf, "document_id": "gift-wrap", "title": "Gift wrap", "body": BODY, "facts": FACTS,
            "action": "publish"}
    data.update(overrides)
    return client.post("/console/kb/new", data=data, headers=headers or {}, follow_redirects=False)


def _in_force(console, doc_id="gift-wrap") -> bool:
    return any(r.document_id == doc_id for r in console.services.knowledge.in_force())


def _tag(html: str, attr: str, value: str) -> str:
    """The opening tag of the element with ``attr="value"``."""
    m = re.search(rf'<(?:input|textarea|select)\b[^>]*\b{attr}="{re.escape(value)}"[^>]*>', html)
    assert m, f"no field with {attr}={value!r}"
    return m.group(0)


def _title(html: str) -> str:
    return re.search(r"<title>([^<]*)</title>", html).group(1)


# ---------------------------------------------------------------- item 4: retiring now is a second step


def test_retiring_now_asks_for_a_confirmation_naming_the_document_and_the_time(console):
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    page = client.get("/console/kb/gift-wrap").text
    retire_form = re.search(r'<form[^>]*action="/console/kb/gift-wrap/retire"[^>]*>', page).group(0)
    # asked once, by the server's page below: no browser confirm() before it as well
    assert "data-confirm=" not in retire_form

    # the form sent as Enter in the note field sends it: no date, no confirmation
    r = client.post("/console/kb/gift-wrap/retire", headers=HTML, follow_redirects=False,
                    data={"csrf_token": csrf, "at": "", "note": "typo check"})
    assert r.status_code == 200 and _in_force(console)  # nothing retired
    assert _title(r.text).startswith("Retire Gift wrap now?")
    assert "Retire “Gift wrap” now?" in r.text and "customers stop getting answers from it" in r.text
    assert re.search(r"at \d{4}-\d\d-\d\d \d\d:\d\d UTC", r.text)  # the time, with its zone
    assert 'name="confirm" value="now"' in r.text and 'value="typo check"' in r.text  # the note is kept
    assert ">Retire now</button>" in r.text and '<a class="button secondary" href="/console/kb/gift-wrap">Cancel</a>' in r.text
    # an API client gets a refusal, not a retirement
    r = client.post("/console/kb/gift-wrap/retire", headers=JSON, data={"csrf_token": csrf})
    assert r.status_code == 409 and r.json()["error"]["code"] == "confirmation_required" and _in_force(console)
    # a time a moment ago is now: confirmed too
    moment_ago = (datetime.now(UTC) - timedelta(minutes=1)).strftime(FMT)
    r = client.post("/console/kb/gift-wrap/retire", headers=HTML, data={"csrf_token": csrf, "at": moment_ago})
    assert r.status_code == 200 and "Retire now" in r.text and _in_force(console)

    # the second, deliberate step retires it
    r = client.post("/console/kb/gift-wrap/retire", headers=HTML, follow_redirects=False,
                    data={"csrf_token": csrf, "note": "typo check", "confirm": "now"})
    assert r.status_code == 303 and r.headers["location"] == "/console/kb/gift-wrap?done=retired"
    assert not _in_force(console)
    assert console.services.knowledge.get("gift-wrap").status == "retired"


def test_a_retirement_at_a_later_time_needs_no_confirmation_and_can_be_cancelled(console):
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    later = (datetime.now(UTC) + timedelta(days=7)).strftime(FMT)
    r = client.post("/console/kb/gift-wrap/retire", headers=HTML, follow_redirects=False,
                    data={"csrf_token": csrf, "at": later})
    assert r.status_code == 303 and r.headers["location"] == "/console/kb/gift-wrap?done=retirement_scheduled"
    r = client.post("/console/kb/gift-wrap/unretire", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/console/kb/gift-wrap?done=retirement_cancelled" and _in_force(console)


# ---------------------------------------------------------------- item 7: errors at their field


def test_form_errors_rerender_the_form_with_the_input_and_the_error_at_the_field(console):
    client = console.client()
    csrf = login(client, "editor")
    typed = BODY + "\nA sentence the editor typed.\n"
    r = _create(client, csrf, headers=HTML, body=typed, facts="- [unclosed", action="save")
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert _title(r.text).startswith("Error:")
    facts = _tag(r.text, "name", "facts")
    assert 'aria-invalid="true"' in facts and 'aria-describedby="err-facts"' in facts and "autofocus" in facts
    assert re.search(r'<p class="error field-error" id="err-facts">[^<]*not valid YAML', r.text)
    assert "A sentence the editor typed." in r.text and "- [unclosed" in r.text  # what was typed is kept
    assert 'value="gift-wrap"' in _tag(r.text, "name", "document_id")
    assert 'aria-invalid' not in _tag(r.text, "name", "title")  # only the wrong field is marked

    # a duplicate id: 409, at the id field
    assert _create(client, csrf).status_code == 303
    r = _create(client, csrf, headers=HTML, title="Gift wrap again")
    assert r.status_code == 409 and _title(r.text).startswith("Error:")
    doc_id = _tag(r.text, "name", "document_id")
    assert 'aria-invalid="true"' in doc_id and "err-document_id" in doc_id
    assert re.search(r'id="err-document_id">[^<]*already exists', r.text) and 'value="Gift wrap again"' in r.text

    # a text that does not state its fact: 422 on the edit form, the facts field marked
    page = client.get("/console/kb/gift-wrap/edit").text
    base = re.search(r'name="base_revision" value="(\d+)"', page).group(1)
    r = client.post("/console/kb/gift-wrap/edit", headers=HTML, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY.replace("€4.50", "€3.00"),
        "facts": FACTS, "action": "publish"})
    assert r.status_code == 422 and _title(r.text).startswith("Error: Edit Gift wrap")
    assert 'aria-invalid="true"' in _tag(r.text, "name", "facts") and "gift_wrap_price (€4.50)" in r.text
    assert "€3.00 per item" in r.text
    assert [x.number for x in console.services.knowledge.history("gift-wrap")] == [1]
    # an end date already past: said once at its field (QA: "Effective until: Effective until (...) has ...")
    r = client.post("/console/kb/gift-wrap/edit", headers=HTML, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY, "facts": FACTS,
        "effective_until": "2020-01-01T00:00", "action": "save"})
    assert r.status_code == 422
    assert re.search(r'id="err-effective_until">Effective until \(2020-01-01 00:00 UTC\) has already passed', r.text)


def test_a_publish_or_retire_date_in_the_past_is_shown_at_its_field(console):
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    page = client.get("/console/kb/gift-wrap/edit").text
    base = re.search(r'name="base_revision" value="(\d+)"', page).group(1)
    client.post("/console/kb/gift-wrap/edit", data={"csrf_token": csrf, "base_revision": base, "title": "Gift wrap",
                                                     "body": BODY.replace("€4.50", "€5.00"),
                                                     "facts": FACTS.replace("€4.50", "€5.00"), "action": "save"})
    past = (datetime.now(UTC) - timedelta(days=5)).strftime(FMT)
    r = client.post("/console/kb/gift-wrap/publish", headers=HTML,
                    data={"csrf_token": csrf, "revision": 2, "base_revision": 2, "at": past})
    assert r.status_code == 422 and _title(r.text).startswith("Error:")
    at = _tag(r.text, "id", "publish-at")
    assert 'aria-invalid="true"' in at and "err-publish_at" in at and f'value="{past}"' in at
    assert re.search(r'id="err-publish_at">publish at is in the past', r.text)
    # a problem that is not the date's (here a stale page) is shown above the forms
    r = client.post("/console/kb/gift-wrap/publish", headers=HTML,
                    data={"csrf_token": csrf, "revision": 2, "base_revision": 1})
    assert r.status_code == 409 and _title(r.text).startswith("Error:")
    assert re.search(r'id="err-publish" role="alert">Nothing was published: gift-wrap changed while you were', r.text)
    r = client.post("/console/kb/gift-wrap/retire", headers=HTML,
                    data={"csrf_token": csrf, "at": past, "note": "old"})
    assert r.status_code == 422 and _title(r.text).startswith("Error:")
    at = _tag(r.text, "id", "retire-at")
    assert 'aria-invalid="true"' in at and "err-retire_at" in at and f'value="{past}"' in at
    assert 'value="old"' in r.text and re.search(r'id="err-retire_at">retire at is in the past', r.text)
    assert _in_force(console) and console.services.knowledge.get("gift-wrap", 2).status == "draft"


# ---------------------------------------------------------------- item 17: a text contradicting its fact


def test_a_figure_that_contradicts_the_fact_keeps_the_revision_a_draft(console):
    client = console.client()
    csrf = login(client, "editor")
    data = {"document_id": "returns-policy", "title": "Returns policy", "body": RETURNS_BODY, "facts": RETURNS_FACTS}
    r = _create(client, csrf, headers=JSON, **data)
    assert r.status_code == 422 and r.json()["error"]["code"] == "fact_contradicted"
    message = r.json()["error"]["message"]
    assert "return_window_days is 45 days" in message and "21 days" in message and "Change of mind" in message
    # shown on the form, at the policy text
    r = _create(client, csrf, headers=HTML, **data)
    assert r.status_code == 422 and 'aria-invalid="true"' in _tag(r.text, "name", "body")
    assert re.search(r'id="err-body">[^<]*21 days', r.text)
    # a draft may be saved; publishing it is refused, from the console and from the store
    assert _create(client, csrf, action="save", **data).status_code == 303
    r = client.post("/console/kb/returns-policy/publish", headers=JSON,
                    data={"csrf_token": csrf, "revision": 1, "base_revision": 1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "fact_contradicted"
    from knowledge.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        console.services.knowledge.publish("returns-policy", 1)
    assert refused.value.code == "fact_contradicted"
    assert not _in_force(console, "returns-policy")
    # with the row corrected it publishes
    page = client.get("/console/kb/returns-policy/edit").text
    base = re.search(r'name="base_revision" value="(\d+)"', page).group(1)
    r = client.post("/console/kb/returns-policy/edit", follow_redirects=False, data={
        "csrf_token": csrf, "base_revision": base, "title": "Returns policy", "facts": RETURNS_FACTS,
        "body": RETURNS_BODY.replace("within 21 days", "within 45 days"), "action": "publish"})
    assert r.status_code == 303 and _in_force(console, "returns-policy")


def test_the_contradiction_check_leaves_other_facts_figures_alone():
    from knowledge.ingest import FactSpec, facts_contradicted, iter_folder, parse_file

    warranty = FactSpec("warranty_months", "24", "months", "Larkspur warranty period on all products")
    frames = FactSpec("furniture_frame_warranty_years", "5", "years", "Extended warranty on solid-wood frames")
    body = ("All products carry a warranty of **24** months.\n\nFrames of solid-wood furniture are covered "
            "for **5** years.\n")
    assert facts_contradicted(body, [warranty, frames]) == []
    # a figure that is another fact's value ("2 business days" as a whole value) is that fact's
    complaint = FactSpec("complaint_resolution_days", "10", "business days", "Business days to resolve a complaint")
    response = FactSpec("complaint_response_time", "2 business days", None, "Time to a first answer")
    text = "We answer your complaint within 2 business days.\n\nWe resolve a complaint within 10 business days.\n"
    assert facts_contradicted(text, [complaint, response]) == []
    assert [c.figure for c in facts_contradicted(text, [complaint])] == ["2 business days"]
    # the shipped sample KB is clean
    for path in iter_folder(SAMPLE):
        doc = parse_file(path)
        assert facts_contradicted(doc.body, doc.facts) == [], path.name


def test_an_import_keeps_a_contradicting_file_as_a_draft(console, tmp_path):
    from knowledge.ingest import import_folder

    text = "---\nid: returns-policy\ntitle: Returns policy\nfacts:\n" + "".join(
        "  " + line + "\n" for line in RETURNS_FACTS.splitlines()) + "---\n" + RETURNS_BODY
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "returns.md").write_text(text, encoding="utf-8")
    report = import_folder(console.services.knowledge.store, folder, author="importer")
    assert report.imported == [] and [d.code for d in report.drafted] == ["fact_contradicted"]
    assert "21 days" in report.drafted[0].reason
    assert [r.status for r in console.services.knowledge.history("returns-policy")] == ["draft"]


# ---------------------------------------------------------------- item 6: every action says what it did


def test_each_kb_action_redirects_with_a_notice(console):
    client = console.client()
    csrf = login(client, "editor")
    r = _create(client, csrf, action="save")
    assert r.headers["location"] == "/console/kb/gift-wrap?done=draft_saved"
    assert "Draft saved." in client.get(r.headers["location"]).text
    later = (datetime.now(UTC) + timedelta(days=30)).strftime(FMT)
    r = client.post("/console/kb/gift-wrap/publish", follow_redirects=False,
                    data={"csrf_token": csrf, "revision": 1, "base_revision": 1, "at": later})
    assert r.headers["location"] == "/console/kb/gift-wrap?done=scheduled"
    r = client.post("/console/kb/gift-wrap/unschedule", follow_redirects=False, data={"csrf_token": csrf, "revision": 1})
    assert r.headers["location"] == "/console/kb/gift-wrap?rev=1&done=schedule_cancelled"
    page = client.get(r.headers["location"]).text
    assert "The schedule was cancelled" in page
    # the draft keeps its start: the publish form says an empty date means that time, not now
    start = console.services.knowledge.get("gift-wrap", 1).effective_from
    assert f"Effective from (UTC; empty: its own start, {start:%Y-%m-%d %H:%M} UTC)" in page
    r = client.post("/console/kb/gift-wrap/publish", follow_redirects=False,
                    data={"csrf_token": csrf, "revision": 1, "base_revision": 1,
                          "at": datetime.now(UTC).strftime(FMT)})
    assert r.headers["location"] == "/console/kb/gift-wrap?done=published"
    page = client.get("/console/kb/gift-wrap/edit").text
    base = re.search(r'name="base_revision" value="(\d+)"', page).group(1)
    r = client.post("/console/kb/gift-wrap/edit", follow_redirects=False, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY, "facts": FACTS,
        "effective_from": later, "action": "publish"})
    assert r.headers["location"] == "/console/kb/gift-wrap?done=scheduled"


# ---------------------------------------------------------------- items 5, 19, 20, 23, 13-15: markup


def test_kb_pages_have_one_h1_and_say_utc(console):
    client = console.client()
    csrf = login(client, "editor")
    later = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=30)
    assert _create(client, csrf, action="save", effective_from=later.strftime(FMT)).status_code == 303
    doc = client.get("/console/kb/gift-wrap").text
    edit = client.get("/console/kb/gift-wrap/edit").text
    for page in (doc, edit, client.get("/console/kb/new").text):
        assert len(re.findall(r"<h1\b", page)) == 1
    assert '<h2 id="policy-overview">Gift wrap</h2>' in doc and '<h3 id="policy-prices">Prices</h3>' in doc  # one level down
    preview = client.post("/console/kb/preview", json={"text": BODY, "title": "Gift wrap"},
                          headers={"X-CSRF-Token": csrf}).json()["html"]
    assert "<h1" not in preview and "<h2" in preview
    # every date says its zone
    meta = re.search(r'<p class="muted">gift-wrap · by.*?</p>', doc, re.S).group(0)
    assert f"declared start {later:%Y-%m-%d %H:%M} UTC" in meta
    assert re.search(r"· \d{4}-\d\d-\d\d \d\d:\d\d UTC", meta)  # created
    history = doc.split("<h2>History</h2>")[1]
    assert re.search(r'<div class="muted">\d{4}-\d\d-\d\d \d\d:\d\d UTC', history)
    client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 1, "base_revision": 1})
    doc = client.get("/console/kb/gift-wrap").text
    assert f"effective {later:%Y-%m-%d %H:%M} UTC" in doc
    assert f"It stays a draft with its start, {later:%Y-%m-%d %H:%M} UTC" in doc


def test_kb_markup_labels_the_id_the_diff_the_question_and_the_replies(console):
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    new = client.get("/console/kb/new").text
    doc_id = _tag(new, "name", "document_id")
    assert 'aria-describedby="document-id-hint"' in doc_id and 'title="Lower-case letters' in doc_id
    assert re.search(r'id="document-id-hint">[^<]*lower-case letters a–z, digits 0–9, hyphens', new)
    # the preview is not a live region (it would be read out after every pause in typing)
    preview = re.search(r'<article id="md-preview"[^>]*>', new).group(0)
    assert "aria-live" not in preview

    page = client.get("/console/kb/gift-wrap/edit").text
    base = re.search(r'name="base_revision" value="(\d+)"', page).group(1)
    client.post("/console/kb/gift-wrap/edit", data={"csrf_token": csrf, "base_revision": base, "title": "Gift wrap",
                                                     "body": BODY.replace("€4.50", "€3.00"),
                                                     "facts": FACTS.replace("€4.50", "€3.00"), "action": "save"})
    diff = client.get("/console/kb/gift-wrap/diff?r1=1&r2=2").text
    pre = re.search(r'<pre class="diff"[^>]*>', diff).group(0)
    assert 'tabindex="0"' in pre and 'role="region"' in pre and 'aria-label="Changes to the text from r1 to r2' in pre

    test = client.get("/console/kb/gift-wrap/test", params={"rev": 2}).text
    assert re.search(r'<label for="kb-test-q">[^<]+</label>', test) and 'id="kb-test-q"' in _tag(test, "name", "q")
    test = client.get("/console/kb/gift-wrap/test", params={"rev": 2, "q": "How much is gift wrap?"}).text
    boxes = re.findall(r'<div class="bot-reply"[^>]*>', test)
    assert len(boxes) == 2 and all('aria-live="polite"' in b and 'aria-busy="true"' in b for b in boxes)


# ---------------------------------------------------------------- in Chromium


@pytest.mark.browser
def test_in_chromium_enter_in_the_note_field_does_not_retire_and_the_preview_is_quiet(browser, tmp_path):
    from web_fakes import ServerThread

    console = build_console(f"sqlite:///{tmp_path / 'retire.db'}", tmp_path)
    with ServerThread(console.app) as server:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(15_000)
        dialogs: list[str] = []
        # a confirm() from the console's script is accepted: the server's own step must still hold
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.goto(f"{server.url}/console/login")
        page.fill("input[name=email]", "editor@larkspur.example")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/console/login" not in u)

        page.goto(f"{server.url}/console/kb/new")
        # not a live region, nor inside one
        assert page.evaluate("document.getElementById('md-preview').closest('[aria-live]') === null")
        page.fill("input[name=document_id]", "gift-wrap")
        page.fill("#doc-title", "Gift wrap")
        page.fill("#md-source", BODY)
        page.fill("textarea[name=facts]", "- [unclosed")
        page.click("button[value=save]")
        page.wait_for_selector("#err-facts")
        assert page.title().startswith("Error:")
        assert page.evaluate("document.activeElement.name") == "facts"  # the invalid field has the focus
        assert page.input_value("#md-source") == BODY
        page.fill("textarea[name=facts]", FACTS)
        page.click("button[value=publish]")
        page.wait_for_url(lambda u: "/console/kb/gift-wrap" in u)  # (the script may drop ?done= from the address)
        assert "Published" in page.inner_text("#done-notice")
        assert len(page.locator("h1").all()) == 1

        page.focus("form[action$='/retire'] input[name=note]")
        page.keyboard.type("typo check")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Retire now")
        assert _in_force(console)  # Enter in the note field retired nothing
        assert "Gift wrap" in page.inner_text("h1")
        page.click("a:text-is('Cancel')")
        page.wait_for_url(lambda u: u.endswith("/console/kb/gift-wrap"))
        assert _in_force(console)
        # retiring now is asked once, on the server's page (it used to be a confirm() and then that page)
        page.click("form[action$='/retire'] button[type=submit]")
        page.click("button:text-is('Retire now')")
        page.wait_for_url(lambda u: u.endswith("/console/kb/gift-wrap") or "done=" in u)
        assert not _in_force(console) and dialogs == []
    console.services.close()


def test_a_policy_heading_cannot_take_an_id_the_console_uses():
    # security QA: a draft with "## Waiting list" got id="waiting-list", and console.js put the queue of
    # waiting customers (their last messages) into the policy page
    from bot.console.markdown import render_markdown
    from bot.web.routes_kb import _console_html

    html = str(_console_html(render_markdown("# T\n\n## Waiting list\n\nSee [above](#waiting-list).", "T")))
    assert 'id="waiting-list"' not in html and 'id="policy-waiting-list"' in html
    assert 'href="#policy-waiting-list"' in html


def test_a_title_longer_than_the_database_holds_is_a_form_error(console):
    # security QA: the form took 500 characters for a title the column holds 300 of (a 500 on PostgreSQL)
    client = console.client()
    csrf = login(client, "editor")
    r = _create(client, csrf, headers=HTML, title="T" * 301)
    assert r.status_code == 422 and 'aria-invalid="true"' in _tag(r.text, "name", "title")
    assert "keep it under 301" in r.text and not _in_force(console)
    assert _create(client, csrf, title="T" * 300).status_code == 303


def test_a_policy_as_long_as_a_revision_may_be_is_rendered_to_its_last_section():
    # web QA: a 231,000-character policy's pages stopped at 200,000 characters; the bot cited its last section
    from bot.console.markdown import render_markdown
    from knowledge.store import MAX_CONTENT_CHARS

    part = "## Part {i}\n\n" + "Words about deliveries and returns. " * 30 + "\n\n"
    body = "# Terms\n\n" + "".join(part.format(i=i) for i in range(300)) + "## Final section\n\nSaturdays cost extra.\n"
    assert 200_000 < len(body) <= MAX_CONTENT_CHARS
    html = str(render_markdown(body, "Terms"))
    assert 'id="final-section"' in html and "Saturdays cost extra." in html
