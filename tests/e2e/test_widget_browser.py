"""The widget in a real browser: demo page, streamed answer with sources, reload, rating, handoff."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from widget_support import FULL_REPLY, RETURN_Q, W, open_widget, send

from bot.db.repositories import ConversationRepository, FeedbackRepository
from bot.web import live

pytestmark = pytest.mark.browser




def stored_conversation(page):
    return page.evaluate("() => JSON.parse(localStorage.getItem('hybridesk:' + location.origin))")


def test_chat_stream_sources_reload_rate_and_handoff(page, site, artifacts):
    open_widget(page, site)
    assert page.evaluate("() => document.activeElement.id") == "hybridesk-widget"  # focus moved into the widget
    assert "Larkspur" in page.inner_text(f"{W} .msg.greeting")
    send(page, RETURN_Q)
    assert page.inner_text(f"{W} .msg.customer .text") == RETURN_Q
    page.wait_for_selector(f"{W} .typing", state="visible")  # the typing indicator until the first token
    # streamed: a partial answer is visible (marked busy for screen readers) before the full one
    partial = page.wait_for_selector(f"{W} .msg.bot[aria-busy=true]").inner_text()
    final = page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
    bot = page.locator(f"{W} .msg.bot[data-id]:not(.greeting)")
    assert bot.locator(".text").inner_text() == FULL_REPLY
    assert 0 < len(partial) < len(FULL_REPLY) + 20
    assert final.get_attribute("href") == f"{site.url}/kb/returns-policy#who-can-return"
    assert final.inner_text() == "Returns policy › Who can return"
    assert final.get_attribute("rel") == "noopener noreferrer"
    page.screenshot(path=str(artifacts / "widget.png"))
    if os.environ.get("HYBRIDESK_UPDATE_DOCS"):  # the README's screenshot, renewed on request only
        docs = site.app.state.settings.kb_sample_dir.parents[1] / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copy(artifacts / "widget.png", docs / "widget.png")

    # rate the answer
    bot.locator("button[aria-label='Helpful answer']").click()
    page.wait_for_selector(f"{W} button[aria-label='Helpful answer'][aria-pressed=true]")
    conv = stored_conversation(page)
    message_id = int(bot.get_attribute("data-id"))
    with site.services.db.unit_of_work() as session:
        assert FeedbackRepository(session).for_message(message_id).rating == 1

    # reload: the conversation (and the rating) come back from the server
    page.reload()
    page.wait_for_selector(f"{W} .panel", state="visible")  # it was open: it stays open
    page.wait_for_selector(f"{W} .msg.bot[data-id='{message_id}'] .sources a")
    assert page.inner_text(f"{W} .msg.customer .text") == RETURN_Q
    assert page.get_attribute(f"{W} button[aria-label='Helpful answer']", "aria-pressed") == "true"
    assert stored_conversation(page)["id"] == conv["id"]

    # ask for a person, then an agent takes over and writes: it arrives live
    page.click(f"{W} button.human")
    page.wait_for_selector(f"{W} .panel.handoff_requested")
    assert "Waiting for a person" in page.inner_text(f"{W} .status")
    assert page.is_hidden(f"{W} button.human")
    with site.services.db.unit_of_work() as session:
        ConversationRepository(session).get(conv["id"]).mode = "human"
    agent = site.app.state.manager.receive(conv["id"], "Hi, Maya here from the support team.", role="agent")
    live.publish(conv["id"], live.mode_event("human"))
    live.publish(conv["id"], live.message_event(agent))
    page.wait_for_selector(f"{W} .panel.human")
    assert page.inner_text(f"{W} .msg.agent .text") == "Hi, Maya here from the support team."
    assert "chatting with a person" in page.inner_text(f"{W} .status")


def test_markup_is_rendered_as_text(page, site):
    open_widget(page, site)
    evil = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    send(page, evil)
    page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting)")
    conv = stored_conversation(page)
    agent = site.app.state.manager.receive(conv["id"], "<script>window.__pwned=2</script>ok", role="agent")
    live.publish(conv["id"], live.message_event(agent))
    page.wait_for_selector(f"{W} .msg.agent")
    assert page.inner_text(f"{W} .msg.customer .text") == evil
    assert page.inner_text(f"{W} .msg.agent .text") == "<script>window.__pwned=2</script>ok"
    counts = page.evaluate("""() => {
        const root = document.getElementById('hybridesk-widget').shadowRoot;
        return [root.querySelectorAll('.log img, .log b, .log script').length, window.__pwned === undefined];
    }""")
    assert counts == [0, True]


def test_oversized_message_shows_a_visible_error(page, site):
    open_widget(page, site)
    send(page, "a" * 2500)
    alert = page.wait_for_selector(f"{W} .alert[role=alert]", state="visible")
    assert "2000" in alert.inner_text()
    assert page.locator(f"{W} .msg.customer.failed").count() == 1
    assert page.is_hidden(f"{W} .typing")


def test_oversized_message_stays_in_the_box_to_be_shortened(page, site):
    """The error says "Please shorten it": the text is still in the box to shorten, not gone."""
    open_widget(page, site)
    long_text = "My lamp arrived broken. " * 110  # 2640 characters
    send(page, long_text)
    page.wait_for_selector(f"{W} .alert[role=alert]", state="visible")
    assert page.input_value(f"{W} textarea") == long_text.strip()


def test_dropped_stream_recovers_the_full_reply(page, site):
    open_widget(page, site)
    site.services.generator.delay = 0.15
    try:
        send(page, RETURN_Q)
        page.wait_for_selector(f"{W} .msg.bot[aria-busy=true]")
        page.context.set_offline(True)  # the connection drops mid-reply
        time.sleep(1.0)
        page.context.set_offline(False)
        bot = page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a", timeout=30_000)
    finally:
        site.services.generator.delay = 0.06
    assert bot is not None
    assert page.inner_text(f"{W} .msg.bot[data-id]:not(.greeting) .text") == FULL_REPLY


def test_keyboard_and_phone_width(browser, site):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(site.url + "/demo")
        page.focus(f"{W} .launcher")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"{W} .panel", state="visible")
        assert page.get_attribute(f"{W} .launcher", "aria-expanded") == "true"
        box = page.locator(f"{W} .panel").bounding_box()
        assert box["x"] >= 0 and box["width"] <= 375 and box["width"] >= 360
        send_box = page.locator(f"{W} form button").bounding_box()
        assert send_box["x"] + send_box["width"] <= 375 and send_box["y"] + send_box["height"] <= 740
        assert page.get_attribute(f"{W} .log", "role") == "log"
        assert page.get_attribute(f"{W} .log", "aria-live") == "polite"
        page.keyboard.type("What about delivery?")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
        page.keyboard.press("Escape")
        page.wait_for_selector(f"{W} .panel", state="hidden")
        assert page.evaluate("() => document.getElementById('hybridesk-widget').shadowRoot.activeElement.className") \
            == "launcher"
    finally:
        context.close()


def test_thumbs_down_with_a_comment(page, site):
    open_widget(page, site)
    send(page, "How long does delivery take?")
    bot = page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
    assert bot is not None
    page.click(f"{W} button[aria-label='Not helpful']")
    page.fill(f"{W} .why input", "I wanted express delivery")
    page.press(f"{W} .why input", "Enter")
    page.wait_for_selector(f"{W} .thanks")
    message_id = int(page.get_attribute(f"{W} .msg.bot[data-id]:not(.greeting)", "data-id"))
    with site.services.db.unit_of_work() as session:
        fb = FeedbackRepository(session).for_message(message_id)
        assert (fb.rating, fb.comment) == (-1, "I wanted express delivery")


def test_embedded_on_another_origin(page, site, tmp_path):
    """The shop's own site (another origin) embeds the widget with one script tag."""
    import functools
    import http.server
    import threading

    (tmp_path / "shop.html").write_text(
        "<!doctype html><html><head><style>div,p,button{color:red!important;font-size:40px!important}</style>"
        "</head><body><h1>Shop</h1>"
        f'<script src="{site.url}/static/widget.js" data-server="{site.url}" data-title="Shop help" '
        'data-color="rebeccapurple"></script></body></html>', encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/shop.html")
        page.click(f"{W} .launcher")
        send(page, RETURN_Q)
        link = page.wait_for_selector(f"{W} .msg.bot[data-id] .sources a")
        assert link.get_attribute("href") == f"{site.url}/kb/returns-policy#who-can-return"
        # the host page's !important rules do not reach into the widget
        size = page.evaluate("""() => getComputedStyle(document.getElementById('hybridesk-widget')
            .shadowRoot.querySelector('.msg.bot .text')).fontSize""")
        assert size == "15px"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_end_chat_with_satisfaction(page, site):
    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
    conv_id = stored_conversation(page)["id"]
    page.click(f"{W} button.end")
    page.click(f"{W} .survey button[aria-label='4 out of 5']")
    page.wait_for_selector(f"{W} .msg.system >> text=Chat ended")
    assert stored_conversation(page) is None  # the next message starts a new conversation
    with site.services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(conv_id)
        assert (conv.status, conv.satisfaction) == ("ended", 4)
    send(page, "How do I return a lamp?")
    page.wait_for_function("() => localStorage.getItem('hybridesk:' + location.origin) !== null")
    assert stored_conversation(page)["id"] != conv_id
    page.locator(f"{W} .msg.bot[data-id]:not(.greeting) .sources a").nth(1).wait_for()  # let the reply finish


def test_chat_ended_in_another_tab_says_how_to_start_a_new_one(page, site, monkeypatch):
    """A chat ended in another tab is shown as ended at once (its live event). Where that event never
    came (ended by a server process this tab's stream does not hear from), the next Send is refused; the box
    keeps the message and the next Send starts a new conversation, so the message says so."""
    from bot.web import routes_chat

    # the stream's fallback poll finds the quiet end below on its own within 15 s; should it fire
    # between the end and the Send (likelier on a loaded machine: a clean-clone CI run failed here, the
    # alert never shown), Send rightly starts a new chat without the alert this test waits for
    monkeypatch.setattr(routes_chat, "POLL_SECONDS", 120.0)

    def end_in_another_tab(conv):
        other_tab = page.context.new_page()  # same browser profile: the same stored conversation
        other_tab.goto(site.url + "/demo")
        status = other_tab.evaluate("""c => fetch('/api/conversations/' + c.id + '/end', {method: 'POST',
            headers: {'Authorization': 'Bearer ' + c.token, 'Content-Type': 'application/json'},
            body: '{}'}).then(r => r.status)""", conv)
        assert status == 200
        other_tab.close()

    def answered_in_a_new_chat(old_id):
        page.wait_for_function("() => localStorage.getItem('hybridesk:' + location.origin) !== null")
        assert stored_conversation(page)["id"] != old_id
        page.wait_for_selector(f"{W} .alert", state="hidden")
        page.locator(f"{W} .msg.bot[data-id]:not(.greeting) .sources a").last.wait_for()

    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
    conv = stored_conversation(page)
    end_in_another_tab(conv)
    page.wait_for_selector(f"{W} .msg.system >> text=This chat has ended. Write again any time to start a new chat.")
    send(page, "How do I return a lamp?")
    answered_in_a_new_chat(conv["id"])

    # ended without this tab hearing of it: Send is refused once, with the message kept for the next Send
    second = stored_conversation(page)
    site.app.state.manager.end(second["id"])  # no live event (the stream's poll would find it in 15 s)
    send(page, "Can I change my delivery address?")
    alert = page.wait_for_selector(f"{W} .alert", state="visible")
    assert alert.inner_text() == "This chat has ended. Press Send again to start a new chat."
    assert page.input_value(f"{W} textarea") == "Can I change my delivery address?"  # kept for that Send
    page.click(f"{W} form button[type=submit]")
    answered_in_a_new_chat(second["id"])

    # "Talk to a person" in an ended chat says the same, and pressing it again starts a new chat
    third = stored_conversation(page)
    site.app.state.manager.end(third["id"])
    page.click(f"{W} button.human")
    alert = page.wait_for_selector(f"{W} .alert", state="visible")
    assert alert.inner_text() == "This chat has ended. Press “Talk to a person” again to start a new chat."
    page.click(f"{W} button.human")
    page.wait_for_selector(f"{W} .panel.handoff_requested")
    assert stored_conversation(page)["id"] not in (conv["id"], second["id"], third["id"])


def test_an_agent_taking_over_mid_reply_removes_the_unfinished_bot_bubble(page, site):
    open_widget(page, site)
    site.services.generator.delay = 0.15
    try:
        send(page, RETURN_Q)
        page.wait_for_selector(f"{W} .msg.bot[aria-busy=true]")
        cid = stored_conversation(page)["id"]
        # an agent takes over (what the console's takeover stores and publishes)
        with site.services.db.unit_of_work() as session:
            ConversationRepository(session).get(cid).mode = "human"
        live.publish(cid, live.mode_event("human", "agent_took_over"))
        page.wait_for_selector(f"{W} .msg.bot[aria-busy=true]", state="detached")
        time.sleep(1.5)  # the rest of the reply would have streamed by now
    finally:
        site.services.generator.delay = 0.06
    assert page.locator(f"{W} .msg.bot:not(.greeting)").count() == 0  # no half reply beside the agent's


def test_an_agent_ending_the_chat_is_shown_at_once_and_the_next_message_starts_a_new_one(page, site):
    """The widget used to learn of it only when the customer's next message was refused."""
    from bot.console import takeover
    from bot.db.models import User

    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
    conv_id = stored_conversation(page)["id"]
    with site.services.db.unit_of_work() as session:
        agent = User(email="maya.widget@larkspur.example", display_name="Maya", role="agent", password_hash="x")
        session.add(agent)
        session.flush()
    takeover.take_over(site.services.db, conv_id, agent, publish=live.publish)
    page.wait_for_selector(f"{W} .panel.human")
    takeover.end_chat(site.app.state.manager, conv_id, agent, publish=live.publish)
    page.wait_for_selector(f"{W} .msg.system >> text=Maya from our support team has ended this chat.")
    page.wait_for_selector(f"{W} .msg.system >> text=This chat has ended. Write again any time to start a new chat.")
    assert stored_conversation(page) is None
    assert page.is_hidden(f"{W} button.end") and not page.is_hidden(f"{W} button.human")
    assert page.locator(f"{W} .panel.human").count() == 0
    time.sleep(2.5)  # the stream ended on purpose: no "connection lost", no reconnect to the old chat
    assert page.locator(f"{W} .conn").is_hidden()
    send(page, "How do I return a lamp?")
    page.wait_for_function("() => localStorage.getItem('hybridesk:' + location.origin) !== null")
    assert stored_conversation(page)["id"] != conv_id
    page.locator(f"{W} .msg.bot[data-id]:not(.greeting) .sources a").nth(1).wait_for()  # answered in the new chat
    page.wait_for_selector(f"{W} .alert", state="hidden")


def test_too_many_new_chats_from_one_address_says_how_long_to_wait(page, site):
    from web_fakes import chat_limits

    with chat_limits(site.app, new_conversations=(1, 0.01)):
        open_widget(page, site)
        send(page, "How long does delivery take?")
        page.wait_for_selector(f"{W} .msg.bot[data-id]:not(.greeting) .sources a")
        page.click(f"{W} button.end")
        page.click(f"{W} .survey button >> text=End without rating")
        page.wait_for_selector(f"{W} .msg.system >> text=Chat ended")
        send(page, "How do I return a lamp?")  # a second new conversation from this address: refused
        alert = page.wait_for_selector(f"{W} .alert", state="visible")
        assert alert.inner_text().startswith("You are sending messages too quickly. Please wait ")
        assert alert.inner_text().endswith(" s and try again.")
        page.wait_for_selector(f"{W} .msg.customer.failed >> text=Not sent")
        assert page.input_value(f"{W} textarea") == "How do I return a lamp?"


def test_a_chat_ended_while_the_page_was_closed_reopens_as_ended(browser, site):
    """Regression QA: it reopened "waiting for a person" with an End chat button that failed
    (POST /api/conversations/undefined/end)."""
    from bot.console import takeover
    from bot.db.models import User

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        open_widget(page, site)
        page.click(f"{W} button.human")
        page.wait_for_selector(f"{W} .panel.handoff_requested")
        conv_id = stored_conversation(page)["id"]
        page.goto("about:blank")  # the customer leaves; the browser keeps the conversation
        with site.services.db.unit_of_work() as session:
            agent = User(email="maya.queue@larkspur.example", display_name="Maya", role="agent", password_hash="x")
            session.add(agent)
            session.flush()
        takeover.end_chat(site.app.state.manager, conv_id, agent)  # "End chat (customer left)"
        page.goto(site.url + "/demo")
        if page.is_hidden(f"{W} .panel"):  # (the tab may remember the chat open)
            page.click(f"{W} .launcher")
        page.wait_for_selector(f"{W} .msg.system >> text=This chat has ended. Write again any time to start a new chat.")
        assert page.locator(f"{W} .panel.handoff_requested").count() == 0
        assert page.is_hidden(f"{W} button.end") and stored_conversation(page) is None
        send(page, "How long does delivery take?")
        page.wait_for_function("() => localStorage.getItem('hybridesk:' + location.origin) !== null")
        assert stored_conversation(page)["id"] != conv_id
    finally:
        context.close()
