"""Stored XSS payloads stay inert text in the widget and in the agent console (real Chromium)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

W = "#hybridesk-widget"
PAYLOADS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
    "<svg/onload=window.__xss=3>",
    '"><iframe src="javascript:window.__xss=4"></iframe>',
    "[click me](javascript:window.__xss=5) **bold** <a href=javascript:window.__xss=6>x</a>",
    "<details open ontoggle=window.__xss=7>",
    "{{7*7}} ${7*7} <style>*{display:none}</style>",
]
SENTINEL_JS = """() => ({
  xss: window.__xss,
  injected: [...document.querySelectorAll('img[src=x], iframe, svg[onload], details[ontoggle], a[href^="javascript"]')]
      .length + (document.querySelector('#hybridesk-widget')?.shadowRoot?.querySelectorAll(
      'img[src=x], iframe, svg[onload], details[ontoggle], a[href^="javascript"], script').length || 0),
})"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from reliability_support import make_app
    from web_fakes import ServerThread

    from bot.services import set_runtime_services

    app, services = make_app(tmp_path_factory.mktemp("xss"), unlimited=True)
    with ServerThread(app) as server:
        server.app, server.services = app, services
        yield server
    set_runtime_services(None)
    services.close()


def _watch_dialogs(page) -> list[str]:
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(d.message), d.dismiss()))
    return seen


def test_xss_payloads_are_inert_in_the_widget_and_the_console(browser, site):
    from reliability_support import ADMIN_EMAIL, ADMIN_PASSWORD

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    dialogs = _watch_dialogs(page)
    page.goto(site.url + "/demo")
    page.click(f"{W} .launcher")
    page.wait_for_selector(f"{W} .panel", state="visible")
    for payload in PAYLOADS:
        page.fill(f"{W} textarea", payload)
        page.press(f"{W} textarea", "Enter")
        page.wait_for_function(
            "(n) => document.querySelector('#hybridesk-widget').shadowRoot"
            ".querySelectorAll('.msg.bot[data-id]:not(.greeting)').length >= n", arg=PAYLOADS.index(payload) + 1)
    conv = page.evaluate("() => JSON.parse(localStorage.getItem('hybridesk:' + location.origin))")
    # an agent message carrying payloads too (another role, another rendering path)
    site.app.state.manager.receive(conv["id"], PAYLOADS[0] + " " + PAYLOADS[4], role="agent")
    page.reload()  # the stored history comes back from the server
    page.wait_for_selector(f"{W} .panel", state="visible")
    page.wait_for_function("(n) => document.querySelector('#hybridesk-widget').shadowRoot"
                           ".querySelectorAll('.msg.customer .text').length >= n", arg=len(PAYLOADS))
    texts = page.locator(f"{W} .msg.customer .text").all_inner_texts()
    for payload in PAYLOADS:
        assert any(payload.strip() in t for t in texts), payload  # shown as the literal text typed
    state = page.evaluate(SENTINEL_JS)
    assert state["xss"] is None and state["injected"] == 0, state
    assert not dialogs

    # the console: sign in, open the transcript list and the conversation
    console = context.new_page()
    console_dialogs = _watch_dialogs(console)
    console.goto(site.url + "/console/login")
    console.fill("input[name=email]", ADMIN_EMAIL)
    console.fill("input[name=password]", ADMIN_PASSWORD)
    console.click("button[type=submit]")
    console.wait_for_url("**/console**")
    for path in ("/console/transcripts", f"/console/conversations/{conv['id']}",
                 f"/console/transcripts?q={PAYLOADS[0]}"):
        console.goto(site.url + path)
        console.wait_for_load_state("networkidle")
        state = console.evaluate(SENTINEL_JS)
        assert state["xss"] is None and state["injected"] == 0, (path, state)
        if path.startswith("/console/conversations/"):
            assert "window.__xss=2" in console.inner_text("body")  # the script tag is shown as text, not run
    assert not console_dialogs
    context.close()
