"""The widget in a real browser: the fixes for the widget QA report (/tmp/qa-widget/REPORT.md).

Short viewports (200 % zoom), the "Not sent" state and resending, the connection-lost state,
screen-reader semantics, text colour on a light accent, right-to-left text, the length counter and
not scrolling away from what the customer is reading. Also: new messages while the panel is
closed, Escape on the launcher, "Not sent" messages across a reload, and host CSS that is inherited.
"""

from __future__ import annotations

import pytest
from widget_support import FULL_REPLY, RETURN_Q, W, open_widget, send

from bot.web import live

pytestmark = pytest.mark.browser

FINISHED = f"{W} .msg.bot[data-id]:not(.greeting) .rate"  # a finished bot reply (with or without sources)
SHADOW = "document.getElementById('hybridesk-widget').shadowRoot"


def host_page(page, site, **data):
    """A page of the site's origin that embeds the widget with these data- attributes."""
    attrs = " ".join(f'data-{k}="{v}"' for k, v in data.items())
    html = (f'<!doctype html><html><body><h1>Shop</h1><script src="{site.url}/static/widget.js" '
            f'data-server="{site.url}" {attrs}></script></body></html>')
    page.route(site.url + "/host.html", lambda route: route.fulfill(body=html, content_type="text/html"))
    return "/host.html"


@pytest.fixture
def slow_replies(site):
    site.services.generator.delay = 0.15
    yield
    site.services.generator.delay = 0.06


# -- short viewports ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1280, 400), (640, 360)], ids=["1280x400", "200pct-zoom"])
def test_short_viewport_keeps_the_box_and_send_button_visible(browser, site, size):
    """At 200 % zoom the panel was capped at 100vh-112px: with a long draft and the error alert the
    log shrank to 28 px and the form was cut off below the Send button."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        open_widget(page, site)
        send(page, "My lamp arrived broken.\n" * 120)  # too long: an alert, and the text back in the box
        page.wait_for_selector(f"{W} .alert", state="visible")
        assert page.input_value(f"{W} textarea").startswith("My lamp arrived broken.")
        panel = page.locator(f"{W} .panel").bounding_box()
        button = page.locator(f"{W} form button[type=submit]").bounding_box()
        box = page.locator(f"{W} textarea").bounding_box()
        log = page.locator(f"{W} .log").bounding_box()
        for b in (button, box):
            assert b["y"] >= 0 and b["y"] + b["height"] <= height, (b, height)  # inside the viewport
            assert b["x"] >= 0 and b["x"] + b["width"] <= width
            assert b["y"] + b["height"] <= panel["y"] + panel["height"] + 0.5  # not clipped by the panel
        assert button["height"] >= 24
        # the Send button is what a click there reaches (nothing covers or clips it)
        hit = page.evaluate("""([x, y]) => {
            const e = document.getElementById('hybridesk-widget').shadowRoot.elementFromPoint(x, y);
            return e && e.textContent;
        }""", [button["x"] + button["width"] / 2, button["y"] + button["height"] - 4])
        assert hit == "Send"
        assert log["height"] >= 40  # the conversation is still readable
        assert panel["height"] >= height - 1  # full height
    finally:
        context.close()


# -- "Not sent" and resending ------------------------------------------------------------------
def test_failed_message_says_not_sent_and_a_resend_leaves_no_duplicate(page, site):
    open_widget(page, site)
    page.context.set_offline(True)
    send(page, "OFFLINE: how do I return a lamp?")
    failed = page.wait_for_selector(f"{W} .msg.customer.failed")
    assert "Not sent" in failed.inner_text()  # visible text, not only an aria-label
    assert page.is_visible(f"{W} .alert")
    assert page.input_value(f"{W} textarea") == "OFFLINE: how do I return a lamp?"
    page.context.set_offline(False)
    page.click(f"{W} form button[type=submit]")  # send it again, as the alert suggests
    page.wait_for_selector(FINISHED)
    bubbles = page.locator(f"{W} .msg.customer")
    assert bubbles.count() == 1
    assert bubbles.locator(".text").inner_text() == "OFFLINE: how do I return a lamp?"
    assert page.locator(f"{W} .msg.customer.failed").count() == 0
    assert "Not sent" not in bubbles.inner_text()
    assert page.is_hidden(f"{W} .alert")  # the error does not outlive the successful send


def test_retry_on_the_bubble_resends_it_in_place(page, site):
    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(FINISHED)
    page.context.set_offline(True)
    send(page, "OFFLINE: can I return it?")
    page.wait_for_selector(f"{W} .msg.customer.failed")
    page.context.set_offline(False)
    page.click(f"{W} .msg.customer.failed button >> text=Retry")
    page.locator(FINISHED).nth(1).wait_for()
    texts = page.locator(f"{W} .msg.customer .text").all_inner_texts()
    assert texts == ["How long does delivery take?", "OFFLINE: can I return it?"]
    assert page.locator(f"{W} .msg.customer.failed").count() == 0
    assert page.input_value(f"{W} textarea") == ""  # the copy in the box went with the resend
    assert page.is_hidden(f"{W} .alert")


# -- connection lost -----------------------------------------------------------------------------
def test_connection_lost_is_shown_instead_of_endless_typing_dots(page, site, slow_replies):
    open_widget(page, site)
    send(page, RETURN_Q)
    page.wait_for_selector(f"{W} .msg.bot[aria-busy=true]")
    # the connection drops mid-reply (Chromium's offline mode keeps an open response going, so the
    # server ends the stream, and no new connection gets through until the test says so)
    page.context.set_offline(True)
    streams = site.app.state.event_streams
    try:
        streams.close_all()
        conn = page.wait_for_selector(f"{W} .conn", state="visible")
        assert conn.inner_text() == "Connection lost, retrying…"
        assert conn.get_attribute("role") == "status"  # announced
        assert page.is_hidden(f"{W} .typing")
        page.wait_for_timeout(1500)
    finally:
        streams.closing = False
        page.context.set_offline(False)
    page.wait_for_selector(f"{W} .conn", state="hidden", timeout=10_000)  # cleared on recovery
    page.wait_for_selector(FINISHED, timeout=30_000)
    assert page.inner_text(f"{W} .msg.bot[data-id]:not(.greeting) .text") == FULL_REPLY


# -- screen readers ------------------------------------------------------------------------------
LIVE_REGIONS = """() => {
    const root = document.getElementById('hybridesk-widget').shadowRoot;
    return [...root.querySelectorAll('[aria-live], [role=log], [role=status], [role=alert]')]
        .filter(e => e.getAttribute('aria-live') !== 'off')
        .map(e => ({cls: e.className, text: e.textContent}));
}"""


def test_screen_reader_semantics(page, site):
    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(f"{W} .typing", state="visible")
    # the typing indicator is announced once: as text in the log, not as a second live region
    assert page.locator(f"{W} .typing").inner_text() == "Assistant is typing" or \
        page.locator(f"{W} .typing").text_content() == "Assistant is typing"
    assert page.get_attribute(f"{W} .typing", "role") is None
    assert page.get_attribute(f"{W} .typing", "aria-label") is None
    page.wait_for_selector(FINISHED)
    reply = page.inner_text(f"{W} .msg.bot[data-id]:not(.greeting) .text")
    regions = page.evaluate(LIVE_REGIONS)
    with_reply = [r["cls"] for r in regions if reply[:40] in r["text"]]
    assert with_reply == ["log"], regions  # the reply is read out once, by the log
    assert page.get_attribute(f"{W} .log", "role") == "log"
    # the customer's own messages have a speaker for assistive technology, visually hidden
    who = page.locator(f"{W} .msg.customer .who")
    assert who.text_content() == "You:"
    box = who.bounding_box()
    assert box is None or (box["width"] <= 1 and box["height"] <= 1)
    assert "You:" in page.locator(f"{W} .msg.customer").aria_snapshot()
    assert page.locator(f"{W} .msg.customer").get_attribute("aria-label") is None

    # after ending the chat, the focus stays in the widget (the survey that had it is gone)
    page.click(f"{W} button.end")
    page.click(f"{W} .survey button[aria-label='4 out of 5']")
    page.wait_for_selector(f"{W} .msg.system >> text=Chat ended")
    active = page.evaluate("() => document.getElementById('hybridesk-widget').shadowRoot.activeElement?.id")
    assert active == "hd-input"


def test_survey_has_a_way_back_to_the_chat(page, site):
    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(FINISHED)
    page.click(f"{W} button.end")
    page.click(f"{W} .survey button >> text=Back to chat")
    page.wait_for_selector(f"{W} .survey", state="hidden")
    assert page.evaluate("() => document.getElementById('hybridesk-widget').shadowRoot.activeElement?.id") \
        == "hd-input"


# -- colour contrast -------------------------------------------------------------------------------
CONTRASTS = """() => {
    const root = document.getElementById('hybridesk-widget').shadowRoot;
    const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = c => { const v = rgb(c).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92
        : Math.pow((x + 0.055) / 1.055, 2.4); }); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    const pair = (sel, bgSel) => { const s = getComputedStyle(root.querySelector(sel));
        return ratio(s.color, getComputedStyle(root.querySelector(bgSel || sel)).backgroundColor); };
    return {title: pair('h2', 'header'), send: pair('form button'), launcher: pair('.launcher'),
            customer: pair('.msg.customer'), human: pair('button.human', 'header')};
}"""


@pytest.mark.parametrize("color", ["#ffd700", "#2f5d50", "white", "hsl(190 90% 60%)"])
def test_text_on_the_accent_colour_is_readable(page, site, color):
    open_widget(page, site, host_page(page, site, color=color))
    send(page, "How long does delivery take?")
    page.wait_for_selector(f"{W} .msg.customer")
    ratios = page.evaluate(CONTRASTS)
    assert all(r >= 4.5 for r in ratios.values()), ratios
    if color == "#2f5d50":  # the default look is unchanged: white on the dark green
        assert page.evaluate("""() => getComputedStyle(document.getElementById('hybridesk-widget')
            .shadowRoot.querySelector('form button')).color""") == "rgb(255, 255, 255)"
    page.wait_for_selector(FINISHED)


# -- small ones: right-to-left, length counter, scrolling ---------------------------------------
def test_right_to_left_text_and_the_length_counter(page, site):
    open_widget(page, site)
    assert page.get_attribute(f"{W} textarea", "dir") == "auto"
    hebrew = "שלום, איך אני מחזיר שטיח?"
    page.fill(f"{W} textarea", hebrew)
    assert page.evaluate("""() => getComputedStyle(document.getElementById('hybridesk-widget')
        .shadowRoot.querySelector('textarea')).direction""") == "rtl" or \
        page.evaluate("""() => document.getElementById('hybridesk-widget').shadowRoot
            .querySelector('textarea').matches(':dir(rtl)')""")
    page.press(f"{W} textarea", "Enter")
    text = page.wait_for_selector(f"{W} .msg.customer .text")
    assert text.get_attribute("dir") == "auto"
    assert page.evaluate("""() => document.getElementById('hybridesk-widget').shadowRoot
        .querySelector('.msg.customer .text').matches(':dir(rtl)')""")
    page.wait_for_selector(FINISHED)
    assert page.get_attribute(f"{W} .msg.bot[data-id]:not(.greeting) .text", "dir") == "auto"

    # the server's limit is shown before sending, not only in the 413 afterwards
    assert page.is_hidden(f"{W} .count")
    page.fill(f"{W} textarea", "a" * 1900)
    assert page.inner_text(f"{W} .count") == "1900 / 2000 characters"
    page.fill(f"{W} textarea", "\U0001F600" * 2001)  # counted as characters, as the server does
    counter = page.locator(f"{W} .count")
    assert counter.inner_text().startswith("2001 / 2000 characters")
    assert "over" in counter.get_attribute("class")
    assert "hd-count" in page.get_attribute(f"{W} textarea", "aria-describedby")


def test_streaming_does_not_pull_a_reader_back_to_the_bottom(browser, site, slow_replies):
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        open_widget(page, site)
        for i in range(3):
            send(page, f"Question {i}: how long does delivery take?")
            page.locator(FINISHED).nth(i).wait_for(timeout=30_000)
        send(page, RETURN_Q)
        page.wait_for_selector(f"{W} .msg.bot[aria-busy=true]")
        scrollable = page.evaluate("""() => { const log = document.getElementById('hybridesk-widget')
            .shadowRoot.querySelector('.log'); return log.scrollHeight > log.clientHeight + 100; }""")
        assert scrollable
        page.evaluate("() => { document.getElementById('hybridesk-widget').shadowRoot.querySelector('.log').scrollTop = 0; }")
        page.locator(FINISHED).nth(3).wait_for(timeout=30_000)  # the reply streamed on and finished
        assert page.evaluate("() => document.getElementById('hybridesk-widget').shadowRoot.querySelector('.log').scrollTop") \
            == 0
        # the customer's own next message brings the log back to the bottom
        page.fill(f"{W} textarea", "thanks")
        page.press(f"{W} textarea", "Enter")
        at_bottom = page.evaluate("""() => { const l = document.getElementById('hybridesk-widget').shadowRoot
            .querySelector('.log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 5; }""")
        assert at_bottom
        page.locator(FINISHED).nth(4).wait_for(timeout=30_000)
    finally:
        context.close()


# -- new messages while the panel is closed -----------------------------------------------------
NOTICES = """text => [...ROOT.querySelectorAll('[aria-live], [role=status], [role=log], [role=alert]')]
    .filter(e => e.textContent.includes(text))
    .map(e => ({cls: e.className, role: e.getAttribute('role'), live: e.getAttribute('aria-live'),
                shown: e.checkVisibility() && !e.closest('[hidden]')}))""".replace("ROOT", SHADOW)


def agent_writes(page, site, text):
    conv = page.evaluate("() => JSON.parse(localStorage.getItem('hybridesk:' + location.origin))")
    message = site.app.state.manager.receive(conv["id"], text, role="agent")
    live.publish(conv["id"], live.message_event(message))


def test_closed_widget_tells_screen_readers_about_new_messages(page, site):
    """The badge is aria-hidden and the live regions sat inside the display:none panel, so a
    screen-reader user was never told that support replied while the chat was closed."""
    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(FINISHED)
    page.click(f"{W} button.close")
    page.wait_for_selector(f"{W} .panel", state="hidden")
    launcher = page.locator(f"{W} .launcher")
    assert "new message" not in launcher.get_attribute("aria-label")

    agent_writes(page, site, "Hi, Maya here from the support team.")
    page.wait_for_function(f"() => {SHADOW}.querySelector('.launcher').getAttribute('aria-label')"
                           ".endsWith(', 1 new message')")
    assert launcher.get_attribute("aria-label").startswith("Open chat: ")
    assert page.is_visible(f"{W} .launcher .badge")
    notices = page.evaluate(NOTICES, "New message from support")
    assert len(notices) == 1, notices  # announced once, politely, by a region that is not hidden
    assert notices[0]["shown"] and notices[0]["role"] == "status" and notices[0]["live"] != "assertive"

    agent_writes(page, site, "Could you tell me your order number?")
    page.wait_for_function(f"() => {SHADOW}.querySelector('.launcher').getAttribute('aria-label')"
                           ".endsWith(', 2 new messages')")
    # not said twice (the notice goes again after a few seconds, so it may be gone by now)
    assert page.evaluate(f"() => {SHADOW}.querySelector('[role=status].sr').textContent") in (
        "New message from support", "")

    page.click(f"{W} .launcher")  # opening reads the messages: the count goes
    page.wait_for_selector(f"{W} .panel", state="visible")
    assert "new message" not in launcher.get_attribute("aria-label")
    assert page.is_hidden(f"{W} .launcher .badge")


# -- Escape ----------------------------------------------------------------------------------------
def active_class(page):
    return page.evaluate(f"() => {SHADOW}.activeElement?.className")


def test_escape_closes_the_panel_from_the_launcher_and_from_inside(page, site):
    """Escape closed the panel only when the focus was inside it, not on the launcher."""
    open_widget(page, site)
    page.focus(f"{W} .launcher")  # the panel is open, the focus on the launcher
    page.keyboard.press("Escape")
    page.wait_for_selector(f"{W} .panel", state="hidden")
    assert page.get_attribute(f"{W} .launcher", "aria-expanded") == "false"
    assert active_class(page) == "launcher"
    page.keyboard.press("Escape")  # closed already: nothing happens
    assert page.is_hidden(f"{W} .panel") and active_class(page) == "launcher"

    page.keyboard.press("Enter")
    page.wait_for_selector(f"{W} .panel", state="visible")
    page.focus(f"{W} button.human")
    page.keyboard.press("Escape")
    page.wait_for_selector(f"{W} .panel", state="hidden")
    assert active_class(page) == "launcher"


# -- "Not sent" across a reload ---------------------------------------------------------------------
UNSENT = "() => Object.keys(sessionStorage).filter(k => k.includes('unsent') && sessionStorage.getItem(k) !== '[]')"


@pytest.mark.parametrize("earlier", [True, False], ids=["in-a-conversation", "first-message"])
def test_a_message_that_was_not_sent_survives_a_reload(page, site, earlier):
    open_widget(page, site)
    texts = []
    if earlier:
        send(page, "How long does delivery take?")
        page.wait_for_selector(FINISHED)
        texts.append("How long does delivery take?")
    page.context.set_offline(True)
    send(page, "OFFLINE: can I return it?")
    page.wait_for_selector(f"{W} .msg.customer.failed")
    page.context.set_offline(False)
    texts.append("OFFLINE: can I return it?")

    page.reload()
    failed = page.wait_for_selector(f"{W} .msg.customer.failed")
    if earlier:
        page.wait_for_selector(FINISHED)
    assert page.locator(f"{W} .msg.customer .text").all_inner_texts() == texts  # after the history
    assert "Not sent" in failed.inner_text()
    page.click(f"{W} .msg.customer.failed button >> text=Retry")
    page.locator(FINISHED).nth(len(texts) - 1).wait_for()
    assert page.locator(f"{W} .msg.customer.failed").count() == 0
    assert page.evaluate(UNSENT) == []  # sent: no longer kept

    page.reload()
    page.locator(FINISHED).nth(len(texts) - 1).wait_for()
    assert page.locator(f"{W} .msg.customer .text").all_inner_texts() == texts  # once, from the server
    assert page.locator(f"{W} .msg.customer.failed").count() == 0


# -- host page CSS -------------------------------------------------------------------------------------
HOSTILE = ("*{letter-spacing:3px;word-spacing:12px!important;text-transform:uppercase;font-style:italic;"
           "line-height:4!important;text-align:right;text-indent:40px}"
           "div{padding:30px;border:5px solid red;margin:20px}body{direction:rtl}")


def hostile_page(page, site, widget=True):
    script = f'<script src="{site.url}/static/widget.js" data-server="{site.url}"></script>' if widget else ""
    html = (f"<!doctype html><html><head><style>{HOSTILE}</style></head><body><h1>Shop</h1>"
            f'<p style="height:1500px">Products</p>{script}</body></html>')
    path = "/hostile.html" if widget else "/plain.html"
    page.route(site.url + path, lambda route: route.fulfill(body=html, content_type="text/html"))
    return path


def test_host_page_css_does_not_reach_the_widget(page, site):
    """The host's `* {letter-spacing}` was inherited through the shadow host, and `div {padding}`
    gave the host element a box that added blank space at the bottom of the page."""
    page.goto(site.url + hostile_page(page, site, widget=False))
    height = page.evaluate("() => document.documentElement.scrollHeight")
    open_widget(page, site, hostile_page(page, site))
    assert page.evaluate("() => document.documentElement.scrollHeight") == height  # no box in the page
    styles = page.evaluate("""() => {
        const root = ROOT, pick = s => { const c = getComputedStyle(s);
            return [c.letterSpacing, c.wordSpacing, c.textTransform, c.fontStyle, c.direction, c.textIndent]; };
        const text = root.querySelector('.msg.bot .text');
        return {text: pick(text), box: pick(root.querySelector('textarea')), launcher: pick(root.querySelector('.launcher')),
                lineHeight: getComputedStyle(text).lineHeight, fontSize: getComputedStyle(text).fontSize,
                align: getComputedStyle(root.querySelector('.msg.bot')).textAlign};
    }""".replace("ROOT", SHADOW))
    normal = ["normal", "0px", "none", "normal", "ltr", "0px"]
    assert styles["text"] == normal and styles["launcher"] == normal, styles
    assert styles["box"][:4] == normal[:4], styles
    assert (styles["fontSize"], styles["lineHeight"]) == ("15px", "21.75px")
    assert styles["align"] in ("left", "start")
    launcher = page.locator(f"{W} .launcher").bounding_box()
    assert (round(launcher["x"] + launcher["width"]), round(launcher["y"] + launcher["height"])) == (1280 - 20, 800 - 20)
    panel = page.locator(f"{W} .panel").bounding_box()
    assert round(panel["x"] + panel["width"]) == 1280 - 20
    send(page, "How long does delivery take?")
    page.wait_for_selector(FINISHED)


# -- two tabs, one stored conversation ----------------------------------------------------------------
def stored(page):
    return page.evaluate("() => JSON.parse(localStorage.getItem('hybridesk:' + location.origin))")


def customer_texts(site, conversation_id):
    return [m.text for m in site.app.state.manager.history(conversation_id) if m.role == "customer"]


def test_a_second_tab_follows_the_conversation_the_first_one_starts(page, site):
    """Tabs A and B showed one conversation; A ended it and started a new one, X. B, still on the old
    one, was not told it had ended; its next message got a 409, and its forget() removed X from
    localStorage, so its next message started a third conversation and X was lost to the customer."""
    tab_a = page
    open_widget(tab_a, site)
    send(tab_a, "How long does delivery take?")
    tab_a.wait_for_selector(FINISHED)
    first = stored(tab_a)
    tab_b = page.context.new_page()  # same browser profile: the same stored conversation
    tab_b.set_default_timeout(15_000)
    open_widget(tab_b, site)
    tab_b.wait_for_selector(FINISHED)

    tab_a.click(f"{W} button.end")
    tab_a.click(f"{W} .survey button >> text=End without rating")
    tab_a.wait_for_selector(f"{W} .msg.system >> text=Chat ended")
    # B is told at once, in the conversation, not only when a message of its own fails
    notice = tab_b.wait_for_selector(f"{W} .msg.system")
    assert notice.inner_text() == "This chat has ended. Write again any time to start a new chat."
    assert tab_b.is_hidden(f"{W} button.end")

    send(tab_a, "Can I return a lamp?")
    tab_a.locator(FINISHED).nth(1).wait_for()
    second = stored(tab_a)
    assert second["id"] != first["id"]
    # B follows A's new conversation (as a reload would), and its next message goes there
    tab_b.locator(FINISHED).nth(1).wait_for()
    assert tab_b.locator(f"{W} .msg.customer .text").all_inner_texts() == [
        "How long does delivery take?", "Can I return a lamp?"]
    send(tab_b, "And a rug?")
    tab_b.locator(FINISHED).nth(2).wait_for()
    assert tab_b.is_hidden(f"{W} .alert")
    assert stored(tab_b)["id"] == stored(tab_a)["id"] == second["id"]
    assert customer_texts(site, second["id"]) == ["Can I return a lamp?", "And a rug?"]
    tab_a.wait_for_selector(f"{W} .msg.customer >> text=And a rug?")  # one conversation, live in both
    tab_b.close()


def test_a_tab_that_missed_the_change_keeps_the_new_conversation(page, site):
    """forget() removed whatever conversation was stored. It now removes only its own, and a tab
    starting a conversation joins the one another tab stored instead of replacing it."""
    open_widget(page, site)
    send(page, "How long does delivery take?")
    page.wait_for_selector(FINISHED)
    old = stored(page)
    # another tab ends the chat and starts a new one; this tab misses the storage event (a write in
    # the tab itself fires none there) and the stream's "ended" event, as a tab the browser froze in the
    # background can (ended here without a live event; the stream's poll would find it in 15 s)
    site.app.state.manager.end(old["id"])
    other = page.evaluate("""old => fetch('/api/conversations', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: '{}'})
        .then(r => r.json()).then(c => {
            const s = {id: c.conversation_id, token: c.token, ratings: {}};
            localStorage.setItem('hybridesk:' + location.origin, JSON.stringify(s));
            return s;
        })""", old)

    send(page, "Can I return a lamp?")
    alert = page.wait_for_selector(f"{W} .alert", state="visible")
    assert alert.inner_text() == "This chat has ended. Press Send again to start a new chat."
    assert page.input_value(f"{W} textarea") == "Can I return a lamp?"  # kept for that Send
    assert stored(page)["id"] == other["id"]  # the other tab's conversation is still stored

    page.click(f"{W} form button[type=submit]")
    page.locator(FINISHED).nth(1).wait_for()
    assert stored(page)["id"] == other["id"]  # joined, not replaced
    assert customer_texts(site, other["id"]) == ["Can I return a lamp?"]
    assert page.locator(f"{W} .msg.customer .text").all_inner_texts() == [
        "How long does delivery take?", "Can I return a lamp?"]
    assert page.locator(f"{W} .msg.customer.failed").count() == 0
    assert page.is_hidden(f"{W} .alert")
