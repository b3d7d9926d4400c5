"""KB editor: create, edit, stale edits, publish -> public page, schedule, retire, diff, preview, test."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from console_support import login

BODY = """# Gift wrap

## Prices

Gift wrap costs €4.50 per item.

## Occasions

We wrap for birthdays and weddings.
"""
FACTS = """- name: gift_wrap_price
  value: "€4.50"
  description: Price of gift wrap per item
  placeholders: ["Gift Wrap Price"]
"""
HOSTILE = """# Hostile

## Section

<script>alert(1)</script> <b onmouseover="x()">bold</b> [click](javascript:alert(1)) ![i](javascript:alert(2))
"""


def _create(client, csrf, **overrides):
    data = {"csrf_token": csrf, "document_id": "gift-wrap", "title": "Gift wrap", "body": BODY, "facts": FACTS,
            "tags": "gifts, wrap", "action": "publish"}
    data.update(overrides)
    return client.post("/console/kb/new", data=data, follow_redirects=False)


def _edit_form(client, doc_id):
    page = client.get(f"/console/kb/{doc_id}/edit").text
    base = int(re.search(r'name="base_revision" value="(\d+)"', page).group(1))
    return page, base


def test_create_publish_edit_and_public_page_follows(console):
    client = console.client()
    csrf = login(client, "editor")
    r = _create(client, csrf)
    assert r.status_code == 303 and r.headers["location"] == "/console/kb/gift-wrap?done=published"
    public = console.client().get("/kb/gift-wrap")  # anonymous: the public page
    assert public.status_code == 200 and "€4.50 per item" in public.text
    assert 'id="prices"' in public.text  # anchors match the chunker's citation anchors
    # kept by browsers only on condition: revalidated on every view, 304 while unchanged
    assert public.headers["cache-control"] == "public, no-cache" and "max-age" not in public.headers["cache-control"]
    etag = public.headers["etag"]
    unchanged = console.client().get("/kb/gift-wrap", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    head = console.client().head("/kb/gift-wrap")
    assert head.status_code == 200 and head.headers["etag"] == etag
    assert console.services.knowledge.facts()["gift_wrap_price"].value == "€4.50"

    page, base = _edit_form(client, "gift-wrap")
    assert "gift_wrap_price" in page and base == 1
    new_body = BODY.replace("€4.50", "€3.00")
    r = client.post("/console/kb/gift-wrap/edit", follow_redirects=False, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": new_body,
        "facts": FACTS.replace("€4.50", "€3.00"), "change_note": "cheaper", "action": "save"})
    assert r.status_code == 303
    # saved as a draft: the public page still shows revision 1
    assert "€4.50 per item" in console.client().get("/kb/gift-wrap").text
    assert console.client().get("/kb/gift-wrap?rev=2").status_code == 404  # drafts are never public
    doc_page = client.get("/console/kb/gift-wrap?rev=2").text
    assert "Publish r2" in doc_page
    r = client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 2, "base_revision": 2},
                    follow_redirects=False)
    assert r.status_code == 303
    public = console.client().get("/kb/gift-wrap", headers={"If-None-Match": etag})
    assert public.status_code == 200 and public.headers["etag"] != etag  # published: the new page at once
    public = public.text
    assert "€3.00 per item" in public and "€4.50" not in public
    old = console.client().get("/kb/gift-wrap?rev=1")
    assert old.headers["etag"] != etag  # the same revision, now with "Read the current version"
    assert old.status_code == 200 and "€4.50 per item" in old.text and "Read the current version" in old.text
    assert console.services.knowledge.facts()["gift_wrap_price"].value == "€3.00"

    diff = client.get("/console/kb/gift-wrap/diff?r1=1&r2=2").text
    assert "-Gift wrap costs €4.50 per item." in diff and "+Gift wrap costs €3.00 per item." in diff
    assert "gift_wrap_price" in diff  # fact changes listed
    history = client.get("/console/kb/gift-wrap").text
    assert "cheaper" in history and "r2" in history


def test_stale_edit_is_refused_with_a_clear_conflict(console):
    alice, bob = console.client(), console.client()
    csrf_a, csrf_b = login(alice, "editor"), login(bob, "admin")
    _create(alice, csrf_a)
    _, base_a = _edit_form(alice, "gift-wrap")
    _, base_b = _edit_form(bob, "gift-wrap")
    ok = bob.post("/console/kb/gift-wrap/edit", data={"csrf_token": csrf_b, "base_revision": base_b,
                                                       "title": "Gift wrap", "body": BODY + "\nBob's line.\n",
                                                       "action": "publish"}, follow_redirects=False)
    assert ok.status_code == 303
    stale = alice.post("/console/kb/gift-wrap/edit", data={"csrf_token": csrf_a, "base_revision": base_a,
                                                            "title": "Gift wrap", "body": BODY + "\nAlice.\n"},
                       headers={"Accept": "text/html"})
    assert stale.status_code == 409
    assert "changed while you were editing" in stale.text and "admin@larkspur.example" in stale.text
    assert [r.number for r in console.services.knowledge.history("gift-wrap")] == [1, 2]  # nothing overwritten
    # publishing from a stale page is refused the same way
    r = alice.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf_a, "revision": 1, "base_revision": 1})
    assert r.status_code == 409 and r.json()["error"]["code"] == "stale_edit"


def test_schedule_and_retire(console):
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf, action="save")
    assert console.client().get("/kb/gift-wrap").status_code == 404  # a draft only
    later = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 1, "base_revision": 1,
                                                       "at": later})
    rev = console.services.knowledge.get("gift-wrap", 1)
    assert rev.status == "published" and rev.effective_from > datetime.now(UTC) + timedelta(days=6)
    assert console.client().get("/kb/gift-wrap").status_code == 404  # scheduled, not yet in force
    client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 1, "base_revision": 1,
                                                       "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")})
    assert console.client().get("/kb/gift-wrap").status_code == 200
    r = client.post("/console/kb/gift-wrap/retire", data={"csrf_token": csrf, "note": "no more wrapping",
                                                          "confirm": "now"}, follow_redirects=False)
    assert r.status_code == 303
    assert console.client().get("/kb/gift-wrap").status_code == 404
    assert console.client().get("/kb/gift-wrap?rev=1").status_code == 200  # old citations keep working


def test_a_scheduled_retirement_is_cancelled_from_the_documents_page(console):
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    later = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    assert client.post("/console/kb/gift-wrap/retire", data={"csrf_token": csrf, "at": later},
                       follow_redirects=False).status_code == 303
    page = client.get("/console/kb/gift-wrap").text
    assert "retiring" in page and "/console/kb/gift-wrap/unretire" in page
    # without the CSRF token: refused, nothing changed
    assert client.post("/console/kb/gift-wrap/unretire", data={}).status_code == 403
    assert console.services.knowledge.get("gift-wrap", 1).status == "retired"
    r = client.post("/console/kb/gift-wrap/unretire", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    rev = console.services.knowledge.get("gift-wrap", 1)
    assert rev.status == "published" and rev.effective_until is None
    page = client.get("/console/kb/gift-wrap").text
    assert "/console/kb/gift-wrap/unretire" not in page and "/console/kb/gift-wrap/retire" in page
    # once nothing is scheduled, cancelling says why
    r = client.post("/console/kb/gift-wrap/unretire", data={"csrf_token": csrf})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_retiring"


def test_a_scheduled_revision_is_not_public_before_it_takes_effect(console):
    """``/kb/{id}?rev=N`` serves revisions that have been in force; an announced-later change stays private."""
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    _page, base = _edit_form(client, "gift-wrap")
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    r = client.post("/console/kb/gift-wrap/edit", follow_redirects=False, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY.replace("€4.50", "€9.90"),
        "effective_from": later, "action": "publish"})
    assert r.status_code == 303
    assert console.services.knowledge.get("gift-wrap", 2).status == "published"  # scheduled
    public = console.client()
    assert "€4.50" in public.get("/kb/gift-wrap").text
    r = public.get("/kb/gift-wrap?rev=2")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_published"
    assert "€9.90" not in r.text
    # a new document scheduled for later has no public page at any revision
    assert _create(client, csrf, document_id="gift-cards", title="Gift cards", facts="",
                   effective_from=later).status_code == 303
    assert public.get("/kb/gift-cards?rev=1").status_code == 404
    assert public.get("/kb/gift-wrap?rev=1").status_code == 200


def test_bad_documents_are_refused_with_reasons(console):
    client = console.client()
    csrf = login(client, "editor")
    r = _create(client, csrf, document_id="Not A Slug")
    assert r.status_code == 422 and "slug" in r.json()["error"]["message"]
    r = _create(client, csrf, facts="- name: Bad Name\n  value: 1\n")
    assert r.status_code == 422 and "snake_case" in r.json()["error"]["message"]
    r = _create(client, csrf, facts="- [unclosed")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_facts"
    r = _create(client, csrf, facts="- name: start\n  value: 2026-02-30\n")  # YAML raises ValueError here
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_facts"
    r = _create(client, csrf, facts="- name: start\n  value: 1\n  description: [a, b]\n")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_facts"
    r = _create(client, csrf, effective_from="next tuesday")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_date"
    assert _create(client, csrf).status_code == 303
    assert _create(client, csrf).status_code == 409  # the id exists


def test_hostile_markdown_renders_inert_in_preview_and_public_page(console):
    client = console.client()
    csrf = login(client, "editor")
    preview = client.post("/console/kb/preview", json={"text": HOSTILE, "title": "Hostile"},
                          headers={"X-CSRF-Token": csrf})
    assert preview.status_code == 200
    html = preview.json()["html"]
    assert "<script>" not in html and "<b onmouseover" not in html  # shown as text, not parsed as tags
    assert 'href="javascript:' not in html and 'src="javascript:' not in html
    assert "&lt;script&gt;" in html and "&lt;b onmouseover" in html
    assert client.post("/console/kb/preview", json={"text": "x"}).status_code == 403  # CSRF header needed
    _create(client, csrf, document_id="hostile", title="Hostile", body=HOSTILE, facts="")
    public = console.client().get("/kb/hostile")
    assert public.status_code == 200
    assert "<script>alert" not in public.text and 'href="javascript:' not in public.text
    assert "<b onmouseover" not in public.text
    assert "script-src 'self'" in public.headers["content-security-policy"]


def _save_cheaper_draft(client, csrf):
    """Gift wrap r1 published at €4.50; r2 a draft at €3.00 with a new section."""
    _create(client, csrf)
    _, base = _edit_form(client, "gift-wrap")
    r = client.post("/console/kb/gift-wrap/edit", follow_redirects=False, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "action": "save",
        "facts": FACTS.replace("€4.50", "€3.00"),
        "body": BODY.replace("€4.50", "€3.00") + "\n## Gift messages\n\nWe add a handwritten gift message card for free.\n"})
    assert r.status_code == 303


def _stored_rows(console) -> dict[str, int]:
    import sqlalchemy as sa

    with console.services.db.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("conversations", "messages", "model_calls")}


def test_test_a_question_runs_retrieval_and_the_bot_on_draft_and_published(console):
    client = console.client()
    csrf = login(client, "editor")
    _save_cheaper_draft(client, csrf)
    generator = console.services.generator
    # The model writes the price as a {{slot}}; the guardrail fills it from each side's facts.
    generator.default = "Gift wrap costs {{Gift Wrap Price}} per item, and we wrap for birthdays and weddings."
    before = _stored_rows(console)
    question = {"q": "How much does gift wrap cost?", "rev": 2}

    page = client.get("/console/kb/gift-wrap/test", params=question)
    assert page.status_code == 200
    published, draft = page.text.split("With draft r2 (draft)", 1)
    assert "Published (what customers get now)" in published
    assert "€4.50" in published and "€3.00" not in published
    assert "€3.00" in draft and "(draft)" in draft and "€4.50" not in draft
    assert "/console/kb/gift-wrap/test/reply?" in page.text  # the replies are fetched by the page
    assert generator.calls == []  # retrieval only: the page itself does not wait for the model

    draft_reply = client.get("/console/kb/gift-wrap/test/reply", params=question | {"side": "draft"}).json()
    live_reply = client.get("/console/kb/gift-wrap/test/reply", params=question | {"side": "published"}).json()
    assert "€3.00 per item" in draft_reply["text"] and "€4.50" not in draft_reply["text"]
    assert "€4.50 per item" in live_reply["text"] and "€3.00" not in live_reply["text"]
    assert draft_reply["text"] != live_reply["text"]
    assert draft_reply["verdict"] != "fallback" and not draft_reply["timed_out"]
    assert {c["revision"] for c in draft_reply["citations"] if c["document_id"] == "gift-wrap"} == {2}
    assert {c["revision"] for c in live_reply["citations"] if c["document_id"] == "gift-wrap"} == {1}
    # the draft's facts and text reached the model's prompt; the published prompt has the old ones
    draft_prompt, live_prompt = (call["messages"][0]["content"] for call in generator.calls)
    assert "€3.00" in draft_prompt and "€4.50" not in draft_prompt
    assert "€4.50" in live_prompt and "€3.00" not in live_prompt

    # without JavaScript: both replies written before the page is sent
    page = client.get("/console/kb/gift-wrap/test", params=question | {"replies": 1}).text
    published, draft = page.split("With draft r2 (draft)", 1)
    assert "Gift wrap costs €4.50 per item" in published and "Gift wrap costs €3.00 per item" in draft

    # nothing was published or stored in conversations
    assert _stored_rows(console) == before
    assert console.services.knowledge.get("gift-wrap", 2).status == "draft"
    assert "€4.50 per item" in console.client().get("/kb/gift-wrap").text


def test_test_a_question_slow_model_falls_back_with_a_clear_message(console):
    client = console.client()
    csrf = login(client, "editor")
    _save_cheaper_draft(client, csrf)
    generator = console.services.generator
    generator.default = "Gift wrap costs {{Gift Wrap Price}} per item, " + "and more " * 50
    scripted = generator._stream

    def slow(*args, **kwargs):
        for piece in scripted(*args, **kwargs):
            time.sleep(0.01)  # a slow model: 100 words take 1 s (a warm scripted one took well under 1 ms in all)
            yield piece

    generator._stream = slow
    console.services.settings.kb_test_timeout_s = 0.05  # every reply runs past the limit
    r = client.get("/console/kb/gift-wrap/test/reply", params={"q": "How much does gift wrap cost?", "rev": 2})
    reply = r.json()
    assert r.status_code == 200 and reply["timed_out"] and reply["verdict"] == "fallback"
    assert "did not finish within" in reply["note"]
    assert "€3.00" in reply["text"]  # the draft's own words, quoted


def test_test_a_question_bad_input(console):
    client = console.client()
    csrf = login(client, "editor")
    _save_cheaper_draft(client, csrf)
    url = "/console/kb/gift-wrap/test/reply"
    r = client.get(url, params={"q": "price?", "side": "tomorrow"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_side"
    r = client.get(url, params={"q": "   "})
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_query"
    assert client.get(url, params={"q": "x" * 501}).status_code == 422
    assert client.get(url, params={"q": "price?", "rev": 9}).status_code == 404
    assert client.get("/console/kb/nope/test?q=x").status_code == 404
    assert client.get("/console/kb/nope/test/reply?q=x").status_code == 404
    agent = console.client()
    login(agent, "agent")
    assert agent.get(url, params={"q": "price?"}).status_code == 403


def test_invalid_form_field_shows_an_html_error_page_in_the_browser(console):
    """A form field the route refuses (here a 600-character title) is explained on the console's
    error page, not shown to the editor as raw JSON; API clients keep the JSON error."""
    client = console.client()
    csrf = login(client, "editor")
    data = {"csrf_token": csrf, "document_id": "gift-wrap", "title": "T" * 600, "body": BODY, "action": "save"}
    r = client.post("/console/kb/new", data=data, headers={"Accept": "text/html,application/xhtml+xml"},
                    follow_redirects=False)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert "Please check your input" in r.text
    assert "title" in r.text and "500 characters" in r.text
    assert '{"error"' not in r.text
    r = client.post("/console/kb/new", data=data, headers={"Accept": "application/json"}, follow_redirects=False)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_public_policy_errors_speak_to_customers(console):
    """The public page's errors name no CLI command and send a customer to the help centre,
    not to the console's sign-in."""
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    public = console.client()  # a customer: no console session
    html = {"Accept": "text/html"}
    for url in ("/kb/gift-wrap?rev=99", "/kb/no-such-policy", "/kb/no-such-policy?rev=1"):
        r = public.get(url, headers=html)
        assert r.status_code == 404, url
        assert "hybridesk kb" not in r.text, url
        assert 'href="/console' not in r.text, url
        assert 'href="/"' in r.text, url
    assert "no revision 99" in public.get("/kb/gift-wrap?rev=99", headers=html).text
    assert public.get("/kb/gift-wrap?rev=99").json()["error"]["code"] == "unknown_revision"
    # the console's own error pages keep their console links
    assert 'href="/console"' in client.get("/console/kb/no-such-doc", headers=html).text


def test_schedule_fields_say_their_times_are_utc(console):
    """A datetime-local field sends no time zone and the server reads it as UTC: every schedule
    field says so (an editor in Utrecht typing 09:00 otherwise publishes at 10:00 local time)."""
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf, action="save").status_code == 303  # a draft: the publish form shows
    pages = [client.get("/console/kb/new").text, client.get("/console/kb/gift-wrap").text,
             client.get("/console/kb/gift-wrap/edit").text]
    labels = [m for page in pages for m in re.findall(r"<label>([^<]*)<input type=\"datetime-local\"", page)]
    assert len(labels) == 5, labels
    assert all("UTC" in label for label in labels), labels


def test_an_end_date_that_can_never_be_published_is_refused_when_the_draft_is_saved(console):
    """'Effective until' before 'effective from' (or, with no start date, before now: the draft takes
    effect when published) used to save a draft that only publishing refused."""
    client = console.client()
    csrf = login(client, "editor")
    soon, later = (datetime.now(UTC) + timedelta(days=d) for d in (10, 20))
    fmt = "%Y-%m-%dT%H:%M"
    backwards = {"effective_from": later.strftime(fmt), "effective_until": soon.strftime(fmt), "action": "save"}
    past = {"effective_until": (datetime.now(UTC) - timedelta(days=1)).strftime(fmt), "action": "save"}
    for dates in (backwards, past):
        r = _create(client, csrf, **dates)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_date", dates
        assert "Effective until" in r.json()["error"]["message"] and ".md" not in r.json()["error"]["message"]
        page = client.post(
            "/console/kb/new", headers={"Accept": "text/html"}, follow_redirects=False,
            data={"csrf_token": csrf, "document_id": "gift-wrap", "title": "Gift wrap", "body": BODY} | dates)
        assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
        assert "Effective until" in page.text and "Nothing was saved" in page.text
    assert console.services.knowledge.list_documents() == []  # nothing stored
    assert _create(client, csrf, action="publish").status_code == 303
    _, base = _edit_form(client, "gift-wrap")
    for dates in (backwards, past):
        r = client.post("/console/kb/gift-wrap/edit", data={
            "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY} | dates)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_date"
    assert [r.number for r in console.services.knowledge.history("gift-wrap")] == [1]
    # a retired document's past end date is not offered again in the editor
    client.post("/console/kb/gift-wrap/retire", data={"csrf_token": csrf, "confirm": "now"})
    page, _ = _edit_form(client, "gift-wrap")
    assert 'name="effective_until" value=""' in page


def _badges(html: str) -> list[str]:
    return re.findall(r'<span class="badge status-[a-z]+">([^<]*)</span>', html)


def test_badges_say_when_a_published_revision_is_scheduled_expired_or_retired(console):
    """A revision published from a future date showed the badge "published" (it is not in force yet)."""
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf, action="save")
    later = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=7)
    client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 1, "base_revision": 1,
                                                       "at": later.strftime("%Y-%m-%dT%H:%M")})
    scheduled = f"scheduled · from {later:%Y-%m-%d %H:%M} UTC"
    assert _badges(client.get("/console/kb/gift-wrap").text) == [scheduled, scheduled]  # heading and history
    assert scheduled in _badges(client.get("/console/kb").text)
    assert 'class="badge status-scheduled"' in client.get("/console/kb").text
    assert "published" not in _badges(client.get("/console/kb/gift-wrap/test").text)[0]

    client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 1, "base_revision": 1,
                                                       "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")})
    assert _badges(client.get("/console/kb/gift-wrap").text) == ["published", "published"]
    client.post("/console/kb/gift-wrap/retire", data={"csrf_token": csrf, "confirm": "now"})
    assert all(b.startswith("retired · since ") and b.endswith(" UTC")
               for b in _badges(client.get("/console/kb/gift-wrap").text))

    # published with an end date that has passed: expired, not "published"
    start, end = (datetime.now(UTC) - timedelta(days=d) for d in (3, 1))
    fmt = "%Y-%m-%dT%H:%M"
    assert _create(client, csrf, document_id="old-offer", effective_from=start.strftime(fmt),
                   effective_until=end.strftime(fmt), facts="").status_code == 303
    assert _badges(client.get("/console/kb/old-offer").text)[0] == f"expired · since {end:%Y-%m-%d %H:%M} UTC"


def _save(client, csrf, base, body, action="save", **extra):
    price = re.search(r"€\d+\.\d\d", body).group(0)  # the fact says what the text says
    data = {"csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": body,
            "facts": FACTS.replace("€4.50", price), "action": action}
    data.update(extra)
    return client.post("/console/kb/gift-wrap/edit", data=data, follow_redirects=False)


def test_the_edit_form_starts_from_the_revision_in_force_and_names_newer_ones(console):
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf)  # r1, in force
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    _, base = _edit_form(client, "gift-wrap")
    assert _save(client, csrf, base, BODY.replace("€4.50", "€9.99"), effective_from=later,
                 action="publish").status_code == 303  # r2, scheduled
    page, base = _edit_form(client, "gift-wrap")
    # a typo fixed here must not publish r2's €9.99 early: the form holds r1's text, and says r2 exists
    assert "€4.50 per item" in page and "€9.99" not in page and base == 2
    assert 'id="newer-revisions"' in page and "r2: scheduled" in page and "replaces what you publish now" in page
    assert _save(client, csrf, 2, BODY.replace("# Gift wrap", "# Gift wrapping")).status_code == 303  # r3, a draft
    page, base = _edit_form(client, "gift-wrap")
    assert "# Gift wrapping" not in page and "r3: draft" in page and base == 3
    # the draft is one click away, and the form then starts from it
    assert 'href="/console/kb/gift-wrap/edit?revision=3"' in page
    draft = client.get("/console/kb/gift-wrap/edit?revision=3").text
    assert "# Gift wrapping" in draft and 'id="newer-revisions"' not in draft
    assert client.get("/console/kb/gift-wrap/edit?revision=99").status_code == 404


def test_publishing_or_retiring_in_the_past_is_refused(console):
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf)
    _, base = _edit_form(client, "gift-wrap")
    _save(client, csrf, base, BODY.replace("€4.50", "€5.00"))  # r2, a draft
    json_accept = {"Accept": "application/json"}
    past = (datetime.now(UTC) - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M")
    r = client.post("/console/kb/gift-wrap/publish", headers=json_accept,
                    data={"csrf_token": csrf, "revision": 2, "base_revision": 2, "at": past})
    assert r.status_code == 422 and r.json()["error"]["code"] == "date_in_past"
    r = client.post("/console/kb/gift-wrap/retire", headers=json_accept, data={"csrf_token": csrf, "at": past})
    assert r.status_code == 422 and r.json()["error"]["code"] == "date_in_past"
    knowledge = console.services.knowledge
    assert [(r.number, r.status) for r in knowledge.history("gift-wrap")] == [(1, "published"), (2, "draft")]
    assert knowledge.facts()["gift_wrap_price"].revision == 1
    # a minute ago, as a form's clock shows it, is now
    just_now = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    r = client.post("/console/kb/gift-wrap/publish", headers=json_accept,
                    data={"csrf_token": csrf, "revision": 2, "base_revision": 2, "at": just_now})
    assert r.status_code in (200, 303) and knowledge.facts()["gift_wrap_price"].revision == 2


def test_a_revision_retired_before_its_scheduled_start_says_retired():
    from bot.console.kb_editor import revision_badge

    now = datetime(2026, 12, 6, tzinfo=UTC)
    text, kind = revision_badge("retired", datetime(2027, 1, 1, tzinfo=UTC), now - timedelta(hours=1), now)
    assert kind == "retired" and text.startswith("retired")
    assert revision_badge("published", datetime(2027, 1, 1, tzinfo=UTC), None, now)[1] == "scheduled"


def test_an_empty_or_reserved_document_id_is_refused(console):
    client = console.client()
    csrf = login(client, "editor")
    json_accept = {"Accept": "application/json"}
    for doc_id in ("", "  ", "new", "preview"):
        r = client.post("/console/kb/new", headers=json_accept, data={
            "csrf_token": csrf, "document_id": doc_id, "title": "T", "body": BODY, "action": "save"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_document_id", (doc_id, r.text)
    assert [d.document_id for d in console.services.knowledge.list_documents()] == []


def test_a_long_policy_can_be_saved_and_an_oversized_form_gets_a_page_to_go_back_from(console):
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf)
    _, base = _edit_form(client, "gift-wrap")
    long_body = BODY + "\n".join(f"Gift wrap note {i}: we fold the paper by hand › €4.50." for i in range(2000))
    assert len(long_body.encode()) > 100_000  # over the chat API's 64 KiB limit
    assert _save(client, csrf, base, long_body).status_code == 303
    assert console.services.knowledge.get("gift-wrap").content.count("Gift wrap note") == 2000
    huge = client.post("/console/kb/gift-wrap/edit", headers={"Accept": "text/html"},
                       content=b"x" * (5 * 1024 * 1024), follow_redirects=False)
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")
    assert "Go back" in huge.text and "Nothing was saved" in huge.text
    # elsewhere, and without a console session, the usual limit stands
    chat = console.client().post("/api/conversations", content=b"x" * 70_000,
                                 headers={"Content-Type": "application/json"})
    assert chat.status_code == 413 and chat.json()["error"]["code"] == "too_large"
    anonymous = console.client().post("/console/kb/gift-wrap/edit", content=b"x" * 70_000,
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert anonymous.status_code == 413
    from bot.web.auth import SESSION_COOKIE
    from bot.web.limits import SESSION_COOKIE as cookie_prefix

    assert cookie_prefix == f"{SESSION_COOKIE}=".encode()  # the middleware looks for the console's cookie


def test_a_fact_the_text_does_not_state_is_not_published(console):
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf)
    _, base = _edit_form(client, "gift-wrap")
    json_accept = {"Accept": "application/json"}
    # the text says €3.00, the fact still €4.50: the bot would say €4.50 citing a page that says €3.00
    data = {"csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY.replace("€4.50", "€3.00"),
            "facts": FACTS, "action": "publish"}
    r = client.post("/console/kb/gift-wrap/edit", data=data, headers=json_accept)
    assert r.status_code == 422 and r.json()["error"]["code"] == "fact_not_in_text"
    assert "gift_wrap_price (€4.50)" in r.json()["error"]["message"]
    # a draft may be saved, and is refused again when published
    assert client.post("/console/kb/gift-wrap/edit", data=data | {"action": "save"}, follow_redirects=False,
                       headers=json_accept).status_code == 303
    r = client.post("/console/kb/gift-wrap/publish", headers=json_accept,
                    data={"csrf_token": csrf, "revision": 2, "base_revision": 2})
    assert r.status_code == 422 and r.json()["error"]["code"] == "fact_not_in_text"
    assert console.services.knowledge.facts()["gift_wrap_price"].revision == 1


def test_a_scheduled_revision_can_be_taken_back_to_draft(console):
    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf)
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    _, base = _edit_form(client, "gift-wrap")
    _save(client, csrf, base, BODY.replace("€4.50", "€9.99"), effective_from=later, action="publish")
    page = client.get("/console/kb/gift-wrap?rev=2").text
    assert "Cancel the schedule of r2" in page
    json_accept = {"Accept": "application/json"}
    r = client.post("/console/kb/gift-wrap/unschedule", data={"csrf_token": csrf, "revision": 2},
                    follow_redirects=False)
    assert r.status_code == 303
    knowledge = console.services.knowledge
    assert [(x.number, x.status) for x in knowledge.history("gift-wrap")] == [(1, "published"), (2, "draft")]
    assert knowledge.in_force(datetime.now(UTC) + timedelta(days=31))[0].number == 1  # r1 stays
    # only a revision waiting to take effect can be
    r = client.post("/console/kb/gift-wrap/unschedule", data={"csrf_token": csrf, "revision": 1}, headers=json_accept)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_scheduled"
    assert "Cancel the schedule" not in client.get("/console/kb/gift-wrap?rev=2").text


def test_a_replaced_revision_says_superseded_and_a_stale_publish_says_nothing_was_published(console):
    from bot.console.kb_editor import revision_badge

    client = console.client()
    csrf = login(client, "editor")
    _create(client, csrf)
    _, base = _edit_form(client, "gift-wrap")
    _save(client, csrf, base, BODY.replace("€4.50", "€5.00"), action="publish")  # r2 replaces r1
    page = client.get("/console/kb/gift-wrap?rev=1").text
    assert "superseded by r2" in page
    now = datetime.now(UTC)
    assert revision_badge("published", now - timedelta(days=1), None, now, in_force=2, number=2)[0] == "published"
    _save(client, csrf, 2, BODY.replace("€4.50", "€6.00"))  # r3, a draft
    r = client.post("/console/kb/gift-wrap/publish", headers={"Accept": "application/json"},
                    data={"csrf_token": csrf, "revision": 3, "base_revision": 2})
    assert r.status_code == 409 and "Nothing was published" in r.json()["error"]["message"]
    assert "text was not saved" not in r.json()["error"]["message"]


def test_the_document_page_names_other_policies_that_repeat_or_point_to_it(console):
    """A value changed here but repeated in another policy would still reach customers in that policy's
    words: the page lists such sentences, and those that refer to this policy (to check before retiring)."""
    client = console.client()
    csrf = login(client, "editor")
    assert _create(client, csrf).status_code == 303
    other = ("# Gifts\n\n## Wrapping\n\nWrapping costs €4.50 for each gift, see \"Gift wrap\".\n\n"
             "## Returns\n\nA return label costs €4.50.\n\nGift wrap is <b>lovely</b>.\n")
    assert _create(client, csrf, document_id="gifts", title="Gifts", body=other, facts="").status_code == 303
    page = client.get("/console/kb/gift-wrap").text
    assert "Other policies to check" in page and "refers to this policy" in page
    assert "states €4.50" not in page  # nothing changed yet

    _page, base = _edit_form(client, "gift-wrap")
    r = client.post("/console/kb/gift-wrap/edit", follow_redirects=False, data={
        "csrf_token": csrf, "base_revision": base, "title": "Gift wrap", "body": BODY.replace("€4.50", "€3.00"),
        "facts": FACTS.replace("€4.50", "€3.00"), "action": "save"})
    assert r.status_code == 303
    for url in ("/console/kb/gift-wrap?rev=2", "/console/kb/gift-wrap"):  # the draft, then the one in force
        if url == "/console/kb/gift-wrap":
            client.post("/console/kb/gift-wrap/publish", data={"csrf_token": csrf, "revision": 2, "base_revision": 2})
        page = client.get(url).text
        listed = page.split("Other policies to check")[1].split("<h2>History")[0]
        assert "states €4.50, the old gift_wrap_price" in listed, url
        assert "Wrapping costs €4.50 for each gift" in listed and 'href="/console/kb/gifts"' in listed
        assert "return label" not in listed  # €4.50 too, but about something else
    assert "Other policies to check" not in client.get("/console/kb/gifts").text
