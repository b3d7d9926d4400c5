"""Transcript search and filters, the conversation view, corrections and their export."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from console_support import build_console, csrf_from, login, seed_conversation

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)> <a href="javascript:alert(1)">click</a>'


def _ids(console, **params) -> set[str]:
    from bot.console.transcripts import TranscriptFilter, search_transcripts

    with console.services.db.unit_of_work() as session:
        page = search_transcripts(session, TranscriptFilter.from_params(params))
        return {r.id for r in page.rows}


def test_search_and_every_filter(console):
    s = console.services
    now = datetime.now(UTC)
    refund, _ = seed_conversation(s, customer="I want a refund for the broken kettle", intent="get_refund",
                                  tone="angry", thumbs=-1, created_at=now - timedelta(days=3))
    track, track_reply = seed_conversation(s, customer="Where is my parcel?", intent="track_order",
                                           adapter="larkspur-v2", created_at=now - timedelta(days=1))
    oos, _ = seed_conversation(s, customer="What's the weather on Mars?", out_of_scope=True,
                               created_at=now - timedelta(hours=5))
    human, _ = seed_conversation(s, customer="Let me talk to a person", intent="contact_human_agent",
                                 handoff_reason="customer_asked_for_human", mode="handoff_requested",
                                 created_at=now - timedelta(hours=1))
    from bot.console.corrections import create_correction

    create_correction(s.db, user_id=console.users["agent"], message_id=track_reply, reason="wrong_tone",
                      corrected_text="Your parcel is with the courier.")

    assert _ids(console) == {refund, track, oos, human}
    assert _ids(console, q="kettle") == {refund}
    assert _ids(console, q="refunds") == {refund}  # stemmed
    assert _ids(console, q="parc") == {track}  # prefix of the last word
    assert _ids(console, q='"; DROP TABLE messages; --') == set()  # no FTS syntax from users
    assert _ids(console, intent="track_order") == {track}
    assert _ids(console, tone="angry") == {refund}
    assert _ids(console, thumbs_down="1") == {refund}
    assert _ids(console, flagged="1") == {track}
    assert _ids(console, handed_off="1") == {human}
    assert _ids(console, out_of_scope="1") == {oos}
    assert _ids(console, adapter="larkspur-v2") == {track}
    two_days_ago = (now - timedelta(days=2)).date().isoformat()
    assert _ids(console, **{"from": two_days_ago}) == {track, oos, human}
    assert _ids(console, to=two_days_ago) == {refund}
    assert _ids(console, q="refund", tone="neutral") == set()


def test_keyset_pagination_visits_every_conversation_once(console):
    from bot.console.transcripts import TranscriptFilter, search_transcripts

    base = datetime(2026, 3, 1, tzinfo=UTC)
    made = {seed_conversation(console.services, created_at=base + timedelta(minutes=i // 2))[0] for i in range(11)}
    seen: list[str] = []
    cursor = None
    with console.services.db.unit_of_work() as session:
        while True:
            page = search_transcripts(session, TranscriptFilter(), cursor, limit=3)
            seen += [r.id for r in page.rows]
            cursor = page.next_cursor
            if not cursor:
                break
    assert len(seen) == len(set(seen)) == 11 and set(seen) == made


def test_pages_go_back_as_well_as_forward(console):
    """The pager had "first page" and "next page" only: an agent three pages in could not step back."""
    import html
    import re

    from bot.console.transcripts import TranscriptFilter, search_transcripts

    base = datetime(2025, 6, 1, tzinfo=UTC)  # older than every other test's conversations: the last pages
    made = [seed_conversation(console.services, created_at=base + timedelta(minutes=i // 2))[0] for i in range(8)]
    with console.services.db.unit_of_work() as session:
        forward, cursor = [], None
        while True:
            page = search_transcripts(session, TranscriptFilter(), cursor, limit=3)
            forward.append([r.id for r in page.rows])
            assert (page.prev_cursor is None) == (cursor is None)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        # back from the last page, one page at a time: the same pages in reverse, then the first page
        back, before = [forward[-1]], page.prev_cursor
        while before:
            page = search_transcripts(session, TranscriptFilter(), None, limit=3, before=before)
            back.append([r.id for r in page.rows])
            before = page.prev_cursor
    assert back == forward[::-1]
    assert set(made) <= {c for p in forward for c in p}

    # in the console, with a filter (the list shows 50 a page)
    for i in range(55):
        seed_conversation(console.services, intent="pager_probe", created_at=base + timedelta(seconds=i))
    client = console.client()
    login(client, "agent")
    first = client.get("/console/transcripts?intent=pager_probe")
    assert 'rel="prev"' not in first.text and 'rel="next"' in first.text
    second = client.get(html.unescape(re.search(r'href="([^"]+)" rel="next"', first.text).group(1)))
    assert "cursor=" in str(second.url) and "a later page" in second.text
    assert "matching conversations on this page" in second.text  # not "20+ conversations match"
    prev_url = html.unescape(re.search(r'href="([^"]+)" rel="prev"', second.text).group(1))
    assert "intent=pager_probe" in prev_url and "before=" in prev_url  # the filters go along
    again = client.get(prev_url)
    assert again.status_code == 200 and 'rel="prev"' not in again.text  # back on the first page
    rows = re.findall(r'href="/console/conversations/([^"#?]+)"', first.text)
    assert rows and re.findall(r'href="/console/conversations/([^"#?]+)"', again.text) == rows
    assert client.get("/console/transcripts?before=not-a-cursor").status_code == 422


def test_list_page_links_to_next_page_and_rejects_bad_cursor(console):
    client = console.client()
    login(client, "agent")
    for _ in range(3):
        seed_conversation(console.services)
    r = client.get("/console/transcripts?cursor=not-a-cursor")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_cursor"
    assert client.get("/console/transcripts?q=order&intent=track_order&tone=neutral&from=2020-01-01").status_code == 200


def test_conversation_view_shows_metadata_and_escapes_hostile_text(console):
    client = console.client()
    login(client, "agent")
    citation = {"document_id": "returns-policy", "revision": 3, "title": "Returns policy",
                "heading": "Who can return", "anchor": "who-can-return"}
    conv_id, bot_id = seed_conversation(console.services, customer=XSS, reply="You have 30 days.",
                                        citations=[citation], latency_ms=812)
    page = client.get(f"/console/conversations/{conv_id}")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert" not in html and "<img src=x" not in html and 'href="javascript:' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "/kb/returns-policy?rev=3#who-can-return" in html  # the exact revision
    for shown in ("track_order", "0.91", "neutral", "grounded", "larkspur-v1", "812 ms"):
        assert shown in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # the list shows the hostile preview escaped too
    listing = client.get("/console/transcripts").text
    assert "<script>alert" not in listing and "&lt;script&gt;" in listing


def test_correction_flow_export_and_kb_suggestions(console, tmp_path):
    agent, editor = console.client(), console.client()
    csrf = login(agent, "agent")
    login(editor, "editor")
    conv_id, bot_id = seed_conversation(console.services, customer="How long do I have to return a lamp?",
                                        intent="check_refund_policy", reply="You have 14 days.")
    r = agent.post(f"/console/messages/{bot_id}/corrections", follow_redirects=False, data={
        "csrf_token": csrf, "reason": "wrong_fact", "corrected_text": "You have 30 days from delivery.",
        "note": "policy says 30", "conversation_id": conv_id})
    assert r.status_code == 303
    _, other = seed_conversation(console.services, customer="Do you sell gift wrap?", reply="Yes.")
    assert agent.post(f"/console/messages/{other}/corrections", data={
        "csrf_token": csrf, "reason": "missing_policy", "note": "no gift wrap policy in the KB"},
        headers={"Accept": "application/json"}).status_code == 201
    _, third = seed_conversation(console.services, customer="cancel my order pls", intent="track_order")
    assert agent.post(f"/console/messages/{third}/corrections", data={
        "csrf_token": csrf, "reason": "wrong_intent", "corrected_intent": "cancel_order",
        "corrected_text": "I can cancel it for you."}).status_code == 200  # followed redirect
    # bad input is refused with a clear message
    bad = agent.post(f"/console/messages/{bot_id}/corrections", data={"csrf_token": csrf, "reason": "rude"})
    assert bad.status_code == 422 and "Choose why" in bad.json()["error"]["message"]
    customer_msg = bot_id - 1
    refused = agent.post(f"/console/messages/{customer_msg}/corrections", data={
        "csrf_token": csrf, "reason": "wrong_fact", "corrected_text": "x"})
    assert refused.status_code == 422

    page = agent.get("/console/corrections").text
    assert "You have 30 days from delivery." in page and "How long do I have to return a lamp?" in page
    suggestions = editor.get("/console/kb").text
    assert "no gift wrap policy in the KB" in suggestions and "You have 30 days from delivery." in suggestions
    assert "I can cancel it for you." not in suggestions  # wrong_intent is not a KB suggestion

    from bot.cli_corrections import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "out" / "corrections.jsonl"
    out.parent.mkdir()  # (export-corrections refuses a folder that does not exist)
    args = parser.parse_args(["tickets", "export-corrections", "--out", str(out)])
    assert args.handler(args, SimpleNamespace(db=console.services.db)) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(rec) for rec in lines] == [
        {"customer_message", "intent", "corrected_reply", "reason", "message_id", "created_at"}] * 2
    first, second = lines
    assert first["customer_message"] == "How long do I have to return a lamp?"
    assert first["intent"] == "check_refund_policy" and first["reason"] == "wrong_fact"
    assert first["corrected_reply"] == "You have 30 days from delivery." and first["message_id"] == bot_id
    assert datetime.fromisoformat(first["created_at"]).tzinfo is not None
    assert second["intent"] == "cancel_order"  # the agent's corrected intent is what training learns
    # only --only-new marks what it exported, and the next --only-new skips it (an export with nothing new
    # leaves the file as it was); the HTTP export gives the same format
    args = parser.parse_args(["tickets", "export-corrections", "--out", str(out), "--only-new"])
    args.handler(args, SimpleNamespace(db=console.services.db))
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    other = tmp_path / "out" / "again.jsonl"
    args = parser.parse_args(["tickets", "export-corrections", "--out", str(other), "--only-new"])
    args.handler(args, SimpleNamespace(db=console.services.db))
    assert not other.exists()
    csrf = csrf_from(agent.get("/console/corrections").text)
    r = agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf})
    assert r.status_code == 200 and len(r.text.splitlines()) == 2
    assert r.headers["content-disposition"] == 'attachment; filename="corrections.jsonl"'


def test_corrections_export_marks_them_exported_only_on_a_post_with_the_csrf_token(console):
    """Exporting marks corrections exported ("new only" skips them next time): a link from another
    site, which a browser follows with the session cookie (SameSite=Lax), must not do it."""
    agent = console.client()
    csrf = login(agent, "agent")
    _, bot_id = seed_conversation(console.services, reply="Returns take 14 days.")
    r = agent.post(f"/console/messages/{bot_id}/corrections", follow_redirects=False, data={
        "csrf_token": csrf, "reason": "wrong_fact", "corrected_text": "You have 30 days from delivery."})
    assert r.status_code == 303
    assert agent.get("/console/corrections/export.jsonl?only_new=true").status_code == 405
    assert agent.post("/console/corrections/export.jsonl", data={"only_new": "true"}).status_code == 403
    page = agent.get("/console/corrections").text
    assert 'action="/console/corrections/export.jsonl"' in page and 'method="post"' in page
    new = agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf_from(page), "only_new": "true"})
    assert new.status_code == 200 and len(new.text.splitlines()) == 1
    again = agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf, "only_new": "true"})
    assert again.status_code == 200 and again.text == ""


def test_analytics_page_and_csv(console):
    client = console.client()
    login(client, "agent")
    s = console.services
    seed_conversation(s, thumbs=1, latency_ms=100)
    seed_conversation(s, thumbs=-1, latency_ms=300)
    seed_conversation(s, customer="=HYPERLINK(\"http://evil\")", out_of_scope=True, latency_ms=200)
    seed_conversation(s, handoff_reason="customer_asked_for_human", mode="human", latency_ms=900)
    page = client.get("/console/analytics")
    assert page.status_code == 200
    assert "75.0%" in page.text and "25.0%" in page.text and "customer_asked_for_human" in page.text
    assert "<svg" in page.text
    csv_text = client.get("/console/analytics.csv").text
    rows = {tuple(line.split(",")[:2]): line.split(",", 2)[2] for line in csv_text.strip().splitlines()[1:]}
    assert rows[("summary", "conversations")] == "4"
    assert rows[("summary", "deflection_rate")] == "0.7500"
    assert rows[("summary", "thumbs_down")] == "1"
    assert rows[("summary", "median_latency_ms")] == "200.0000"
    assert rows[("top_intent", "track_order")] == "3"
    assert any(k[0] == "top_out_of_scope" and k[1].startswith("\"'=hyperlink") for k in rows)  # no formula
    assert client.get("/console/analytics?from=2026-02-01&to=2026-01-01").status_code == 422


def test_p95_latency_is_not_below_a_quarter_of_the_replies(console):
    """With 4 replies of 100/200/300/900 ms, one in four took 900 ms: the 95th percentile is 900,
    not 300 (it was read at index int(0.95 * (n - 1)), which never reaches the slowest replies when
    there are fewer than 20)."""
    client = console.client()
    login(client, "agent")
    for ms in (100, 300, 200, 900):
        seed_conversation(console.services, latency_ms=ms)
    rows = {tuple(line.split(",")[:2]): line.split(",", 2)[2]
            for line in client.get("/console/analytics.csv").text.strip().splitlines()[1:]}
    assert rows[("summary", "p95_latency_ms")] == "900.0000"
    assert rows[("summary", "median_latency_ms")] == "200.0000"


def _punctuation_is_searched_literally(console) -> None:
    s = console.services
    quoted, _ = seed_conversation(s, customer='Is the "deluxe" kettle in stock?')
    starred, _ = seed_conversation(s, customer="Voucher code SAVE*10 does not work")
    percent, _ = seed_conversation(s, customer="Is the 20% discount still on?")
    underscored, _ = seed_conversation(s, customer="My order ref is LK_4471")
    plain, _ = seed_conversation(s, customer="Where is my parcel?")
    assert len(_ids(console)) == 5
    assert _ids(console, q='"') == {quoted}  # used to return every conversation
    assert _ids(console, q="*") == {starred}
    assert _ids(console, q="%") == {percent}  # a LIKE wildcard, matched as itself
    assert _ids(console, q="_") == {underscored}
    assert _ids(console, q="%%") == set() and _ids(console, q="**") == set()
    assert _ids(console, q=" % ") == {percent}
    assert _ids(console, q="kettle") == {quoted}  # words still go through the word index
    assert _ids(console, q="   ") == {quoted, starred, percent, underscored, plain}  # blank: no filter


def test_punctuation_only_search_is_literal(console):
    _punctuation_is_searched_literally(console)


@pytest.mark.postgres
def test_punctuation_only_search_is_literal_on_postgres(pg_url, tmp_path):
    c = build_console(pg_url, tmp_path)
    try:
        _punctuation_is_searched_literally(c)
    finally:
        c.services.close()


def test_agents_are_told_when_the_model_stops_writing_the_replies(console):
    # an adapter damaged after activation: every reply falls back to quoting the policy, which looks
    # fine to customers; the failed generation calls (logged by the manager) are shown to agents
    from bot.console.health import WINDOW
    from bot.conversation.manager import ConversationManager

    client = console.client()
    login(client, "agent")
    conv_id, bot_id = seed_conversation(console.services)

    def log_call(error: str | None) -> None:
        with console.services.db.unit_of_work() as session:
            ConversationManager._log_call(session, bot_id, conv_id, {"adapter_id": "larkspur-v8", "prompt": []},
                                          error)

    assert "model-alert" not in client.get("/console/transcripts").text  # no calls yet
    log_call(None)
    log_call("Unavailable: llama.cpp could not switch to adapter 'larkspur-v8' (-1).\nTraceback ...")
    log_call("Unavailable: llama.cpp could not switch to adapter 'larkspur-v8' <b>(-1)</b>.")
    html = client.get("/console/transcripts").text
    assert "model-alert" in html and "last 2 replies" in html and "adapter larkspur-v8" in html
    assert "&lt;b&gt;(-1)&lt;/b&gt;" in html and "<b>(-1)</b>" not in html  # the error text is escaped
    assert "Traceback" not in html  # the latest error's first line only
    assert "model-alert" in client.get(f"/console/conversations/{conv_id}").text
    for _ in range(WINDOW):
        log_call("TimeoutError: generation timed out")
    assert f"last {WINDOW} or more replies" in client.get("/console/transcripts").text
    # the next reply the model writes clears it
    log_call(None)
    assert "model-alert" not in client.get("/console/transcripts").text


def test_a_corrected_intent_is_a_label_and_a_reply_corrected_twice_exports_once(console):
    from bot.console.corrections import export_records

    agent = console.client()
    csrf = login(agent, "agent")
    _, bot_id = seed_conversation(console.services, customer="where is my refund", reply="Returns take 14 days.")
    json_accept = {"Accept": "application/json"}
    for hostile in ("<i>returns</i>", "Track Refund", "track-refund"):
        r = agent.post(f"/console/messages/{bot_id}/corrections", headers=json_accept, data={
            "csrf_token": csrf, "reason": "wrong_intent", "corrected_intent": hostile, "corrected_text": "x"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_intent", hostile
    for text in ("zz", "Your refund is on its way; it shows 3-7 business days after we issue it."):
        assert agent.post(f"/console/messages/{bot_id}/corrections", headers=json_accept, data={
            "csrf_token": csrf, "reason": "wrong_intent", "corrected_intent": "track_refund",
            "corrected_text": text}).status_code == 201
    records = export_records(console.services.db)
    # one training example per reply: the newer correction replaces the stray one
    assert [(r["intent"], r["corrected_reply"][:16]) for r in records] == [("track_refund", "Your refund is o")]


def test_a_date_range_that_ends_before_it_starts_is_refused(console):
    agent = console.client()
    login(agent, "agent")
    r = agent.get("/console/transcripts?from=2026-12-06&to=2026-12-01", headers={"Accept": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_date" and "before the start" in r.text


def test_customers_waiting_for_a_person_are_listed_longest_waiting_first(console):
    from bot.db.repositories import ConversationRepository

    agent = console.client()
    login(agent, "agent")
    now = datetime.now(UTC)
    newer, _ = seed_conversation(console.services, customer="I want a human please", mode="handoff_requested",
                                 handoff_reason="customer_asked_for_human")
    older, _ = seed_conversation(console.services, customer="<b>THIS IS RIDICULOUS</b>", mode="handoff_requested",
                                 handoff_reason="angry_and_not_helped")
    held, _ = seed_conversation(console.services, customer="held one", mode="human")
    ended, _ = seed_conversation(console.services, customer="gave up", mode="handoff_requested")
    with console.services.db.unit_of_work() as session:
        repo = ConversationRepository(session)
        repo.get(newer).state = {"handoff_at": (now - timedelta(minutes=2)).isoformat()}
        repo.get(older).state = {"handoff_at": (now - timedelta(minutes=9)).isoformat()}
        repo.get(ended).status = "ended"
    data = agent.get("/console/waiting.json").json()
    assert data["count"] == 2
    assert [w["conversation_id"] for w in data["waiting"]] == [older, newer]
    assert data["waiting"][0]["last_customer_message"] == "<b>THIS IS RIDICULOUS</b>"
    page = agent.get("/console/transcripts").text
    assert 'Waiting for a person (<span id="waiting-count">2</span>)' in page
    assert page.index(f"/console/conversations/{older}") < page.index(f"/console/conversations/{newer}")
    assert "&lt;b&gt;THIS IS RIDICULOUS&lt;/b&gt;" in page and held not in page.split("</section>")[0]
    # signed out: nobody's queue
    assert console.client().get("/console/waiting.json").status_code == 401


def test_the_last_export_can_be_downloaded_again(console):
    agent = console.client()
    csrf = login(agent, "agent")
    json_accept = {"Accept": "application/json"}
    for reply in ("Returns take 14 days.", "Delivery is free."):
        _, bot_id = seed_conversation(console.services, reply=reply)
        agent.post(f"/console/messages/{bot_id}/corrections", headers=json_accept, data={
            "csrf_token": csrf, "reason": "wrong_fact", "corrected_text": f"Corrected: {reply}"})
    assert agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf, "last_again": "true"}).text == ""
    first = agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf, "only_new": "true"})
    assert len(first.text.splitlines()) == 2
    # the download failed: "new only" has nothing left, the last export is still there
    assert agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf, "only_new": "true"}).text == ""
    again = agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf, "last_again": "true"})
    assert again.text == first.text
    assert "Download the last export again" in agent.get("/console/corrections").text


def test_a_corrected_intent_must_be_one_the_bot_knows(console):
    # QA (training path): "where_is_my_parcel_xyz" was accepted and trained on as a prompt the bot never sends
    from bot.console.corrections import create_correction
    from knowledge.errors import InvalidInput

    _, bot_id = seed_conversation(console.services)
    known = {"track_order", "track_refund", "get_refund"}
    with pytest.raises(InvalidInput) as err:
        create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id,
                          reason="wrong_intent", corrected_intent="track_ordr", known_intents=known,
                          corrected_text="It is on its way.")
    assert err.value.code == "unknown_intent" and "track_order" in err.value.message
    saved = create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id,
                              reason="wrong_intent", corrected_intent="track_order", known_intents=known,
                              corrected_text="It is on its way.")
    assert saved >= 1


def test_a_conversations_mode_reads_as_words(console):
    # console QA: agents scanning the list read raw values ("handoff_requested")
    conv_id, _ = seed_conversation(console.services, mode="handoff_requested", handoff_reason="customer_asked")
    agent = console.client()
    login(agent, "agent")
    page = agent.get("/console/transcripts").text
    assert '<span class="badge mode-handoff_requested">waiting for a person</span>' in page
    assert ">handoff_requested<" not in page
    conv = agent.get(f"/console/conversations/{conv_id}").text
    assert 'data-mode="handoff_requested">waiting for a person</strong>' in conv


def test_a_refused_correction_comes_back_in_the_form_with_what_was_typed(console):
    """An intent the server refused gave a dead-end "Please check your input" page; what was typed came
    back only with the browser's Back button."""
    import html
    import re

    agent = console.client()
    csrf = login(agent, "agent")
    conv_id, bot_id = seed_conversation(console.services)
    form = {"csrf_token": csrf, "conversation_id": conv_id, "reason": "wrong_intent", "corrected_intent": "Track Order",
            "corrected_text": "Your parcel <b>left</b> our warehouse today.", "note": "customer meant tracking"}
    browser = {"Accept": "text/html,application/xhtml+xml"}
    r = agent.post(f"/console/messages/{bot_id}/corrections", data=form, headers=browser, follow_redirects=False)
    assert r.status_code == 422 and "<h1>Conversation" in r.text  # the conversation page, not an error page
    page = r.text
    opened = page.split(f'action="/console/messages/{bot_id}/corrections"')[0].rsplit("<details", 1)[1]
    assert opened.startswith(' class="correct" open>')
    field = re.search(r'<input name="corrected_intent"[^>]*>', page).group(0)
    assert 'value="Track Order"' in field and 'aria-invalid="true"' in field
    assert f'aria-describedby="fix-{bot_id}-error"' in field
    error = re.search(rf'<span id="fix-{bot_id}-error" class="error" role="alert">([^<]+)</span>', page).group(1)
    assert "lower-case letters" in html.unescape(error)
    assert "Your parcel &lt;b&gt;left&lt;/b&gt; our warehouse today." in page  # typed, and escaped
    assert 'value="customer meant tracking"' in page
    assert re.search(r'<option value="wrong_intent" selected>', page)
    # corrected, it saves as before; JSON clients keep the JSON error
    assert agent.post(f"/console/messages/{bot_id}/corrections", data=form,
                      headers={"Accept": "application/json"}).status_code == 422
    ok = agent.post(f"/console/messages/{bot_id}/corrections", data={**form, "corrected_intent": "track_order"},
                    headers=browser, follow_redirects=False)
    assert ok.status_code == 303
