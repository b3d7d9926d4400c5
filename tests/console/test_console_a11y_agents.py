"""The agents' and admins' console pages for keyboard and screen-reader users (console QA items 1-3,
5, 6, 8-13, 16, 19-23): the waiting queue updated in place, the conversation as a live log,
one correction per double click, a notice after every action, the password rule, enabling a
disabled user, a skip link, reflow at 320 px, and titles that say what the page is.

Server behaviour through the real app (TestClient); browser behaviour in Debian's Chromium.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from console_support import PASSWORD, build_console, csrf_from, login, seed_conversation

from knowledge.errors import InvalidInput

HTML = {"Accept": "text/html"}


def _corrections(console, message_id: int) -> list:
    from bot.db.models import Correction

    with console.services.db.unit_of_work() as session:
        return [(c.reason, c.corrected_text) for c in session.query(Correction).filter_by(message_id=message_id)]


def _done(response) -> str | None:
    """The ``done`` code of a redirect's target."""
    return parse_qs(urlsplit(response.headers["location"]).query).get("done", [None])[0]


def _user(console, name: str):
    from bot.db.models import User

    with console.services.db.unit_of_work() as session:
        user = session.get(User, console.users[name])
        session.expunge(user)
        return user


# ---------------------------------------------------------------- server side


def test_a_correction_sent_twice_is_stored_once_and_the_redirect_returns_to_the_reply(console):
    agent = console.client()
    csrf = login(agent, "agent")
    conv_id, bot_id = seed_conversation(console.services, reply="You have 14 days.")
    form = {"csrf_token": csrf, "reason": "wrong_fact", "corrected_text": "You have 30 days.",
            "note": "policy says 30", "conversation_id": conv_id}
    first = agent.post(f"/console/messages/{bot_id}/corrections", data=form, follow_redirects=False)
    second = agent.post(f"/console/messages/{bot_id}/corrections", data=form, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert _corrections(console, bot_id) == [("wrong_fact", "You have 30 days.")]
    # back at the corrected reply, with the notice (the query before the fragment)
    location = first.headers["location"]
    assert location.startswith(f"/console/conversations/{conv_id}?") and location.endswith(f"#msg-{bot_id}")
    assert _done(first) == "correction_saved"
    page = agent.get(location.split("#")[0])
    assert 'id="done-notice"' in page.text and "Correction saved." in page.text
    # the JSON API is idempotent too: the same id
    ids = {agent.post(f"/console/messages/{bot_id}/corrections", data=form,
                      headers={"Accept": "application/json"}).json()["id"] for _ in range(2)}
    assert len(ids) == 1 and len(_corrections(console, bot_id)) == 1
    # a different correction, or another agent's, is a new one
    agent.post(f"/console/messages/{bot_id}/corrections", data={**form, "corrected_text": "30 days."})
    other = console.client()
    other_csrf = login(other, "agent2")
    other.post(f"/console/messages/{bot_id}/corrections", data={**form, "csrf_token": other_csrf})
    assert len(_corrections(console, bot_id)) == 3


def test_the_same_correction_concurrently_is_stored_once(console):
    from concurrent.futures import ThreadPoolExecutor

    from bot.console.corrections import create_correction

    _, bot_id = seed_conversation(console.services)

    def save(_):
        return create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id,
                                 reason="wrong_tone", corrected_text="Sorry about that! It is on its way.")

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(save, range(4)))
    assert len(ids) == 1 and len(_corrections(console, bot_id)) == 1


def test_takeover_handback_and_sign_out_say_what_they_did(console):
    agent = console.client()
    csrf = login(agent, "agent")
    conv_id, _ = seed_conversation(console.services)
    r = agent.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _done(r) == "taken_over"
    page = agent.get(r.headers["location"]).text
    assert "You hold this chat now" in page
    # the reply box has a real label and is described by its error paragraph
    assert re.search(r'<label for="agent-text"[^>]*>Your reply to the customer</label>', page)
    box = re.search(r"<textarea[^>]*id=\"agent-text\"[^>]*>", page).group(0)
    assert 'aria-describedby="agent-form-error' in box
    r = agent.post(f"/console/conversations/{conv_id}/handback", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _done(r) == "handed_back"
    assert "Handed back to the bot." in agent.get(r.headers["location"]).text
    r = agent.post("/console/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/console/login?done=signed_out"
    assert "You are signed out." in agent.get(r.headers["location"]).text
    # an unknown code shows nothing
    assert "You are signed out." not in agent.get("/console/login?done=bogus").text


@pytest.mark.parametrize("password", [" " * 10, " " * 40, "\t \u00a0" * 5, "   abc    ", "abcdefgh  "])
def test_blank_or_space_padded_passwords_are_refused_everywhere(console, password):
    from bot.cli_users import add_user, check_password

    with pytest.raises(InvalidInput) as exc:
        check_password(password)
    assert exc.value.code == "weak_password"
    with pytest.raises(InvalidInput), console.services.db.unit_of_work() as session:
        add_user(session, "spaces@larkspur.example", "agent", password)
    # the console's Users page: the form again, the message at the password field, nothing created
    admin = console.client()
    csrf = login(admin, "admin")
    r = admin.post("/console/users", data={"csrf_token": csrf, "email": "spaces@larkspur.example",
                                           "role": "editor", "password": password}, headers=HTML)
    assert r.status_code == 422
    assert re.search(r'<input type="password"[^>]*aria-invalid="true" aria-describedby="password-error"', r.text)
    assert 'id="password-error"' in r.text and "spaces" in r.text.split('id="password-error"')[1][:200]
    assert 'value="spaces@larkspur.example"' in r.text  # what was typed is kept
    assert "<title>Error:" in r.text
    assert "spaces@larkspur.example</td>" not in admin.get("/console/users").text
    # the API keeps its JSON error
    r = admin.post("/console/users", data={"csrf_token": csrf, "email": "spaces@larkspur.example",
                                           "password": password}, headers={"Accept": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "weak_password"
    check_password("correct horse battery")  # spaces inside are fine,
    check_password(" twelve chars ")  # and so are spaces at the ends of 10+ other characters


def test_admins_disable_and_enable_users_with_named_buttons_and_notices(console):
    admin, agent = console.client(), console.client()
    csrf = login(admin, "admin")
    page = admin.get("/console/users").text
    assert "<th>Actions</th>" in page and "<th></th>" not in page
    agent_id = console.users["agent"]
    disable = re.search(rf'<form method="post" action="/console/users/{agent_id}/disable"\s+data-confirm="([^"]+)"', page)
    assert disable and "agent@larkspur.example" in disable.group(1)
    assert 'Disable<span class="visually-hidden"> agent@larkspur.example</span>' in page
    r = admin.post(f"/console/users/{agent_id}/disable", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _done(r) == "user_disabled"
    assert r.headers["location"].endswith(f"#user-{agent_id}")
    page = admin.get(r.headers["location"].split("#")[0]).text
    assert "User disabled" in page
    assert f'action="/console/users/{agent_id}/enable"' in page
    assert 'Enable<span class="visually-hidden"> agent@larkspur.example</span>' in page
    assert not _user(console, "agent").active
    r = admin.post(f"/console/users/{agent_id}/enable", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _done(r) == "user_enabled"
    assert _user(console, "agent").active
    login(agent, "agent")  # can sign in again
    # only admins, and with the CSRF token
    assert agent.post(f"/console/users/{agent_id}/enable", data={"csrf_token": csrf}).status_code in (401, 403)
    assert admin.post("/console/users/999999/enable", data={"csrf_token": csrf},
                      headers={"Accept": "application/json"}).status_code == 404
    r = admin.post("/console/users", data={"csrf_token": csrf, "email": "new@larkspur.example", "role": "agent",
                                           "password": "a good long password"}, follow_redirects=False)
    assert r.status_code == 303 and _done(r) == "user_added"


def test_page_titles_name_the_conversation_and_say_error(console):
    agent = console.client()
    login(agent, "agent")
    conv_id, _ = seed_conversation(console.services)
    title = re.search(r"<title>(.*?)</title>", agent.get(f"/console/conversations/{conv_id}").text).group(1)
    assert title != "Conversation · hybridesk" and conv_id[:8] in title and title.startswith("Conversation ")
    missing = agent.get("/console/conversations/nope", headers=HTML)
    assert missing.status_code == 404
    assert re.search(r"<title>(.*?)</title>", missing.text).group(1).startswith("Error: Not found")
    bad = agent.get("/console/analytics?from=2026-12-01&to=2026-11-01", headers=HTML)
    assert bad.status_code == 422 and "<title>Error: " in bad.text


def test_transcripts_rows_have_one_link_and_tables_scroll_in_a_labelled_region(console):
    agent = console.client()
    login(agent, "agent")
    conv_id, _ = seed_conversation(console.services, customer="Where is my lamp?")
    page = agent.get("/console/transcripts").text
    table = page[page.index("<table"):page.index("</table>")]
    assert table.count(f'href="/console/conversations/{conv_id}"') == 1
    assert re.search(r'<div class="table-scroll" tabindex="0" role="region" aria-label="[^"]+">\s*<table', page)
    # the waiting queue is not one big live region; a small status region sums up its changes
    waiting = page[page.index('<section id="waiting"'):page.index("</section>")]
    assert "aria-live" not in waiting.split(">")[0] and 'id="waiting-status"' in waiting
    assert 'href="#main"' in page and '<main id="main"' in page  # the skip link and its target


def test_a_search_says_how_many_conversations_match_and_titles_the_page(console):
    agent = console.client()
    login(agent, "agent")
    seed_conversation(console.services, customer="Where is my lamp?")
    seed_conversation(console.services, customer="Where is my sofa?")
    page = agent.get("/console/transcripts?q=lamp").text
    assert re.search(r'<p id="result-count" role="status">1 conversation matches.</p>', page)
    assert "<title>Transcripts matching “lamp” · hybridesk</title>" in page
    assert "No conversation matches." in agent.get("/console/transcripts?q=teapot").text
    assert 'id="result-count"' not in agent.get("/console/transcripts").text  # no search, no count


def test_export_new_only_with_nothing_new_says_so_in_the_browser(console):
    from bot.console.corrections import create_correction

    agent = console.client()
    login(agent, "agent")
    _, bot_id = seed_conversation(console.services)
    create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id,
                      reason="wrong_fact", corrected_text="Right.")
    csrf = csrf_from(agent.get("/console/corrections").text)
    form = {"csrf_token": csrf, "only_new": "true"}
    first = agent.post("/console/corrections/export.jsonl", data=form, headers=HTML)
    assert first.status_code == 200 and len(first.text.splitlines()) == 1
    again = agent.post("/console/corrections/export.jsonl", data=form, headers=HTML, follow_redirects=False)
    assert again.status_code == 303 and _done(again) == "nothing_to_export"
    assert "No new corrections to export" in agent.get(again.headers["location"]).text
    assert agent.post("/console/corrections/export.jsonl", data=form).text == ""  # a script: the empty file


def test_an_agent_ends_a_chat_they_hold(console):
    agent, other = console.client(), console.client()
    csrf = login(agent, "agent")
    other_csrf = login(other, "agent2")
    conv_id, _ = seed_conversation(console.services)
    agent.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf})
    page = agent.get(f"/console/conversations/{conv_id}").text
    assert f'action="/console/conversations/{conv_id}/end"' in page and "data-confirm=" in page
    refused = other.post(f"/console/conversations/{conv_id}/end", data={"csrf_token": other_csrf},
                         headers={"Accept": "application/json"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_holder"
    r = agent.post(f"/console/conversations/{conv_id}/end", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _done(r) == "chat_ended"
    page = agent.get(r.headers["location"]).text
    assert "Chat ended." in page and "status ended" in page
    assert 'id="agent-form"' not in page and "/end" not in page.split('id="messages"')[0].split("<h1>")[1]
    assert any(e["type"] == "message" and "ended this chat" in e["message"]["text"]
               for cid, e in console.hub.events if cid == conv_id)
    # ended: no agent message, and ending again is harmless
    assert agent.post(f"/console/conversations/{conv_id}/messages", data={"csrf_token": csrf, "text": "hi"},
                      headers={"Accept": "application/json"}).status_code == 409
    again = agent.post(f"/console/conversations/{conv_id}/end", data={"csrf_token": csrf},
                       headers={"Accept": "application/json"})
    assert again.status_code == 200 and again.json()["ended_now"] is False
    # ... and says it had ended already (security QA: anyone's "end" said "Chat ended.")
    late = other.post(f"/console/conversations/{conv_id}/end", data={"csrf_token": other_csrf}, follow_redirects=False)
    assert late.status_code == 303 and _done(late) == "chat_already_ended"


# ---------------------------------------------------------------- in Chromium

browser_test = pytest.mark.browser


def _page(browser, url: str, who: str, width: int = 1280, clock: bool = False):
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    if clock:
        page.clock.install()
    page.goto(f"{url}/console/login")
    page.fill("input[name=email]", f"{who}@larkspur.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/console/login" not in u)
    return page


def _focused(page) -> str:
    return page.evaluate("() => { const e = document.activeElement; return e.id || e.getAttribute('href') || "
                         "e.tagName; }")


@pytest.fixture
def served(tmp_path):
    from web_fakes import ServerThread

    console = build_console(f"sqlite:///{tmp_path / 'a11y.db'}", tmp_path)
    with ServerThread(console.app) as server:
        yield console, server.url
    console.services.close()


@browser_test
def test_the_waiting_queue_refreshes_in_place_and_keeps_the_focus(browser, served):
    console, url = served
    first, _ = seed_conversation(console.services, customer="I want to talk to a human please",
                                 mode="handoff_requested", handoff_reason="customer_asked_for_human")
    page = _page(browser, url, "agent", clock=True)
    page.goto(f"{url}/console/transcripts")
    assert page.get_attribute("#waiting", "aria-live") is None
    assert page.get_attribute("#waiting-status", "role") == "status"
    page.evaluate("""() => { window.__changes = 0; new MutationObserver(m => { window.__changes += m.length; })
        .observe(document.getElementById('waiting'), {childList: true, subtree: true, characterData: true,
                                                     attributes: true}); }""")
    link = f'#waiting-list a[href="/console/conversations/{first}"]'
    page.focus(link)

    def refresh():
        with page.expect_response("**/console/waiting.json"):
            page.clock.run_for(10_500)
        page.wait_for_timeout(300)  # the response's handlers

    refresh()  # nothing changed: the page is not touched, nothing is announced
    assert page.evaluate("window.__changes") == 0
    assert page.evaluate(f"document.activeElement === document.querySelector('{link}')")
    assert page.inner_text("#waiting-status") == ""

    second, _ = seed_conversation(console.services, customer="Can a person help me?", mode="handoff_requested",
                                  handoff_reason="customer_asked_for_human")
    refresh()  # a new customer: added, the focused link stays focused, one short summary
    assert page.locator("#waiting-list li").count() == 2
    assert page.evaluate(f"document.activeElement === document.querySelector('{link}')")
    assert page.inner_text("#waiting-status") == "1 new customer waiting, 2 in total"
    assert page.inner_text("#waiting-count") == "2"
    # the customers' words, server-rendered or added by the script, are isolated from the line around them
    assert page.eval_on_selector_all("#waiting-list a", "as => as.map(a => getComputedStyle(a).unicodeBidi)") == [
        "isolate", "isolate"]
    page.keyboard.press("Tab")  # the keyboard carries on from where it was
    assert _focused(page) == f"/console/conversations/{second}"

    from bot.console.takeover import take_over

    page.focus(link)
    take_over(console.services.db, first, _user(console, "agent2"))  # someone else took the focused one
    refresh()
    assert page.locator("#waiting-list li").count() == 1
    assert _focused(page) == f"/console/conversations/{second}"  # the next customer, not <body>
    assert page.inner_text("#waiting-status") == "1 customer no longer waiting, 1 in total"


@browser_test
def test_a_taken_over_chat_is_a_live_log_and_the_reply_box_gets_the_focus(browser, served, artifacts):
    import httpx

    console, url = served
    api = httpx.Client(base_url=url, timeout=10)
    started = api.post("/api/conversations", json={}).json()
    conv_id, auth = started["conversation_id"], {"Authorization": f"Bearer {started['token']}"}
    page = _page(browser, url, "agent")
    page.goto(f"{url}/console/conversations/{conv_id}")
    log = page.locator("#messages").locator("xpath=ancestor::*[@role='log']")
    assert log.count() == 1 and log.get_attribute("aria-live") == "polite"
    page.click("text=Take over")
    page.wait_for_selector("#agent-form")
    page.wait_for_selector("#done-notice:has-text('You hold this chat now')")
    assert _focused(page) == "agent-text"  # ready to write
    assert "done=" not in page.url  # a reload does not say it again
    box = page.get_by_label("Your reply to the customer")
    assert box.get_attribute("id") == "agent-text"
    assert api.post(f"/api/conversations/{conv_id}/messages", json={"text": "Thanks! It is order LK 42710343"},
                    headers=auth).status_code == 202
    page.wait_for_selector("#message-log >> text=Thanks! It is order LK 42710343")  # inside the log
    box.fill("Let me look that up for you.")
    page.keyboard.press("Tab")
    page.click("#agent-form button[type=submit]")
    page.wait_for_selector("#agent-form-status:has-text('Message sent.')")
    assert page.get_attribute("#agent-form-status", "role") == "status"
    page.wait_for_selector("#message-log >> text=Let me look that up for you.")
    page.screenshot(path=str(artifacts / "a11y-conversation.png"), full_page=True)
    api.close()


@browser_test
def test_double_clicking_save_correction_stores_one_and_returns_to_the_reply(browser, served):
    console, url = served
    conv_id, bot_id = seed_conversation(console.services, reply="You have 14 days.")
    page = _page(browser, url, "agent")
    page.goto(f"{url}/console/conversations/{conv_id}")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/corrections" in r.url else None)
    item = page.locator(f"#msg-{bot_id}")
    item.locator("summary").click()
    item.locator("textarea[name=corrected_text]").fill("You have 30 days.")
    item.locator("button[type=submit]").dblclick()
    page.wait_for_url(re.compile(rf".*#msg-{bot_id}$"))
    page.wait_for_selector("#done-notice:has-text('Correction saved.')")
    assert len(posts) == 1  # the browser sent it once (and the server would store it once anyway)
    assert len(_corrections(console, bot_id)) == 1
    assert _focused(page) == f"msg-{bot_id}"  # the agent's place in a long chat


@browser_test
def test_skip_link_named_buttons_and_a_confirmation_before_disabling(browser, served):
    console, url = served
    page = _page(browser, url, "admin")
    page.goto(f"{url}/console/users")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    assert page.is_visible("a.skip-link")  # shown when focused
    page.keyboard.press("Enter")
    assert _focused(page) == "main"
    dialogs: list[str] = []
    answer = {"accept": False}
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept() if answer["accept"] else d.dismiss()))
    button = page.get_by_role("button", name="Disable agent2@larkspur.example")
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert dialogs and "agent2@larkspur.example" in dialogs[0]
    assert _user(console, "agent2").active and "/users" in page.url  # cancelled: nothing happened
    answer["accept"] = True
    button.click()
    page.wait_for_selector("#done-notice:has-text('User disabled')")
    assert not _user(console, "agent2").active
    enable = page.get_by_role("button", name="Enable agent2@larkspur.example")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Enable agent2@larkspur.example"
    enable.click()  # no confirmation needed to undo
    page.wait_for_selector("#done-notice:has-text('User enabled')")
    assert len(dialogs) == 2 and _user(console, "agent2").active


@browser_test
@pytest.mark.parametrize("path", ["/console/transcripts", "/console/users", "/console/corrections",
                                  "/console/analytics", "CONVERSATION", "/console/kb", "/console/kb/returns-policy"])
def test_pages_reflow_at_320_px(browser, served, artifacts, path):
    from pathlib import Path

    from bot.console.corrections import create_correction

    console, url = served
    # (QA: the KB list was 564 px wide at 320, its tags column off-screen; a document page 342 px)
    sample = Path(__file__).resolve().parents[2] / "knowledge" / "sample" / "returns-policy.md"
    console.services.knowledge.import_bytes(sample.read_bytes(), sample.name, author="editor", publish=True)
    conv_id, bot_id = seed_conversation(console.services, handoff_reason="customer_asked_for_human", mode="human",
                                        customer="A long question " * 12)
    create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id,
                      reason="wrong_fact", corrected_text="Right " * 40)
    page = _page(browser, url, "admin", width=320)
    page.goto(url + (f"/console/conversations/{conv_id}" if path == "CONVERSATION" else path))
    width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(artifacts / f"a11y-320{path.replace('/', '-')}.png"), full_page=True)
    assert width <= 320, f"{path} scrolls sideways: {width}px"
    for region in page.locator(".table-scroll").all():  # a wide table scrolls in its own box, by keyboard too
        assert region.get_attribute("tabindex") == "0" and region.get_attribute("role") == "region"
        assert region.get_attribute("aria-label")


def test_a_not_found_page_does_not_repeat_a_crafted_address(console):
    # security QA: /console/conversations/<any sentence> showed "No conversation '<the sentence>'."
    agent = console.client()
    login(agent, "agent")
    html = {"Accept": "text/html"}
    crafted = agent.get("/console/conversations/Your%20session%20expired%20-%20sign%20in%20at%20evil.example",
                        headers=html)
    assert crafted.status_code == 404 and "session expired" not in crafted.text
    assert "Nothing here has that address" in crafted.text
    # web QA: an id made of words is a sentence too ("Session-expired.Sign-in-again-at-..."): no id is repeated
    worded = agent.get("/console/conversations/Session-expired.Sign-in-again-at-larkspur-support.example",
                       headers=html)
    assert worded.status_code == 404 and "Sign-in-again" not in worded.text
    assert "There is no conversation with that id" in worded.text
    # KB QA: an editor's unknown document sent them to a command line; a too-long test question said only
    # "Please check the form"
    editor = console.client()
    login(editor, "editor")
    page = editor.get("/console/kb/no-such-policy", headers=html)
    assert page.status_code == 404 and "hybridesk kb list" not in page.text and "Knowledge base page" in page.text
    console.services.knowledge.import_bytes(b"# Gift wrap\n\nWe wrap gifts for free.", "gift-wrap.md",
                                            author="editor", publish=True)
    # web QA: an unknown revision sent them to `hybridesk kb history`
    for url in ("/console/kb/gift-wrap?rev=99", "/console/kb/gift-wrap/diff?r1=1&r2=99"):
        missing = editor.get(url, headers=html)
        assert missing.status_code == 404 and "hybridesk kb" not in missing.text, (url, missing.text)
        assert "its History lists the revisions" in missing.text
    long_question = editor.get("/console/kb/gift-wrap/test", params={"q": "x" * 600}, headers=html)
    assert long_question.status_code == 422 and "too long: at most 500 characters" in long_question.text


def test_what_a_signed_in_browser_fetches_is_not_cached(console):
    # security QA: messages.json, waiting.json, analytics.csv and the export had no Cache-Control
    agent = console.client()
    login(agent, "agent")
    conv_id, _ = seed_conversation(console.services)
    for url in ("/console/waiting.json", f"/console/conversations/{conv_id}/messages.json", "/console/analytics.csv"):
        r = agent.get(url)
        assert r.status_code == 200 and r.headers.get("cache-control") == "no-store", (url, r.headers)
    assert "no-store" not in agent.get("/static/console/console.css").headers.get("cache-control", "")
