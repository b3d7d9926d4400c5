"""The widget on a phone, in a real browser: a host page wider than the screen, the full-screen panel
as a modal dialog (the focus stays in it, the launcher under it is hidden) and no zoom into the box.

Chromium's mobile emulation (`is_mobile`) lays a page that is wider than the screen out in a wider
layout viewport, as a phone's browser does: position:fixed is relative to that one, the screen
shows the visual viewport.
"""

from __future__ import annotations

import pytest
from widget_support import W, send

pytestmark = pytest.mark.browser

PHONE = {"width": 320, "height": 568}
FINISHED_REPLY = f"{W} .msg.bot[data-id]:not(.greeting) .rate"
SHADOW = "document.getElementById('hybridesk-widget').shadowRoot"
VISUAL_VIEWPORT = "() => [visualViewport.offsetLeft, visualViewport.offsetTop, visualViewport.width, visualViewport.height]"


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def wide_page(page, site):
    """A host page of the site's origin with a 600 px wide banner (wider than the phone)."""
    html = ('<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1">'
            '</head><body><div style="width:600px;height:1500px;background:#eee">A wide banner</div>'
            f'<a href="#more">More</a><script src="{site.url}/static/widget.js" data-server="{site.url}">'
            '</script></body></html>')
    page.route(site.url + "/wide.html", lambda route: route.fulfill(body=html, content_type="text/html"))
    return site.url + "/wide.html"


def on_screen(page, selector):
    """The element's box on the screen (Playwright's boxes are in the visual viewport), asserted inside it."""
    box = page.locator(f"{W} {selector}").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"] + 0.5, (selector, box)
    return box


def hit(page, box):
    """What a tap in the middle of the box reaches."""
    page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


# -- the demo page and a host page wider than the phone -------------------------------------------
def test_demo_page_fits_a_320px_phone(phone, site):
    """The store nav's links had no space between them and could not wrap: the page was 349 px wide
    and the open panel had Send and the close button off the screen."""
    phone.goto(site.url + "/demo")
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    assert phone.evaluate("() => innerWidth") == PHONE["width"]  # no wider layout viewport
    hit(phone, on_screen(phone, ".launcher"))
    phone.wait_for_selector(f"{W} .panel", state="visible")
    assert on_screen(phone, ".panel") == {"x": 0, "y": 0, **PHONE}
    on_screen(phone, "form button[type=submit]")
    hit(phone, on_screen(phone, "button.close"))
    phone.wait_for_selector(f"{W} .panel", state="hidden")


def test_full_screen_panel_fits_the_screen_of_a_page_wider_than_the_phone(phone, site):
    """The panel was 100vw wide at right:0 of the layout viewport, which such a page makes wider (and
    taller) than the screen: Send and the close button were off the screen, the panel's top too."""
    phone.goto(wide_page(phone, site))
    assert phone.evaluate("() => innerWidth") > PHONE["width"]  # the case: fixed is not the screen
    phone.mouse.wheel(150, 200)  # the customer has moved about the page
    phone.wait_for_function("() => visualViewport.offsetLeft > 0 && visualViewport.offsetTop > 0")
    hit(phone, on_screen(phone, ".launcher"))
    phone.wait_for_selector(f"{W} .panel", state="visible")
    assert on_screen(phone, ".panel") == {"x": 0, "y": 0, **PHONE}
    rect = phone.evaluate(f"() => {{ const r = {SHADOW}.querySelector('.panel').getBoundingClientRect();"
                          " return [r.x, r.y, r.width, r.height]; }")
    assert rect == phone.evaluate(VISUAL_VIEWPORT)  # exactly what is on the screen

    hit(phone, on_screen(phone, "textarea"))
    send(phone, "How long does delivery take?")
    phone.wait_for_selector(FINISHED_REPLY)
    phone.fill(f"{W} textarea", "And to Belgium?")
    hit(phone, on_screen(phone, "form button[type=submit]"))  # Send is there to tap
    phone.locator(FINISHED_REPLY).nth(1).wait_for()
    assert phone.locator(f"{W} .msg.customer .text").all_inner_texts() == [
        "How long does delivery take?", "And to Belgium?"]

    # pinch zoom: the panel follows what is on the screen
    cdp = phone.context.new_cdp_session(phone)
    cdp.send("Emulation.setPageScaleFactor", {"pageScaleFactor": 2})
    phone.wait_for_function("() => visualViewport.scale === 2")
    phone.wait_for_function(f"""() => {{ const r = {SHADOW}.querySelector('.panel').getBoundingClientRect();
        return r.x === visualViewport.offsetLeft && r.width === visualViewport.width
            && r.y === visualViewport.offsetTop && r.height === visualViewport.height; }}""")
    hit(phone, on_screen(phone, "button.close"))
    phone.wait_for_selector(f"{W} .panel", state="hidden")
    on_screen(phone, ".launcher")  # also on the screen


def test_desktop_layout_is_unchanged(page, site):
    page.goto(site.url + "/demo")
    launcher = page.locator(f"{W} .launcher").bounding_box()
    assert launcher == {"x": 1280 - 80, "y": 800 - 80, "width": 60, "height": 60}
    page.click(f"{W} .launcher")
    panel = page.locator(f"{W} .panel").bounding_box()
    assert panel == {"x": 1280 - 20 - 380, "y": 800 - 92 - 560, "width": 380, "height": 560}


# -- the full-screen panel is a modal dialog --------------------------------------------------------
FOCUS = f"""() => {{
    const a = {SHADOW}.activeElement;
    return document.activeElement.id === 'hybridesk-widget' && a
        ? (a.id || a.className || a.textContent) + (a.closest('.panel') ? '' : ' (outside the panel)')
        : 'page: ' + document.activeElement.tagName;
}}"""


def tab_round(page, key, presses):
    stops = []
    for _ in range(presses):
        page.keyboard.press(key)
        stops.append(page.evaluate(FOCUS))
    return stops


def test_full_screen_panel_is_a_modal_dialog(phone, site):
    """Tab from the box went to Send, then to the launcher hidden behind the panel, then into the
    host page's links behind it."""
    phone.goto(site.url + "/demo")
    launcher = phone.locator(f"{W} .launcher")
    launcher.focus()
    phone.keyboard.press("Enter")
    phone.wait_for_selector(f"{W} .panel", state="visible")
    assert phone.get_attribute(f"{W} .panel", "aria-modal") == "true"
    assert phone.get_attribute(f"{W} .panel", "role") == "dialog"
    # the launcher under the panel: neither seen, nor reached with Tab, nor in the accessibility tree
    assert launcher.is_hidden()
    assert "Open chat" not in phone.locator("body").aria_snapshot()
    assert "Close chat: " not in phone.locator("body").aria_snapshot()
    assert phone.evaluate(FOCUS) == "hd-input"

    stops = tab_round(phone, "Tab", 8)
    assert stops[:2] == ["Send", "close"], stops  # then round to the panel's first control
    assert all("outside" not in s and not s.startswith("page") for s in stops), stops
    assert set(stops) == {"Send", "close", "human", "log", "hd-input"}, stops
    back = tab_round(phone, "Shift+Tab", 8)
    assert all("outside" not in s and not s.startswith("page") for s in back), back
    assert stops[-1] == "human"
    assert back[:5] == ["close", "Send", "hd-input", "log", "human"], back  # round the other way

    phone.keyboard.press("Escape")  # closes, and the focus goes back to the launcher
    phone.wait_for_selector(f"{W} .panel", state="hidden")
    assert phone.evaluate(FOCUS) == "launcher (outside the panel)"
    assert launcher.is_visible()
    assert launcher.get_attribute("aria-expanded") == "false"
    assert "Open chat: " in phone.locator("body").aria_snapshot()  # the check above can see it


def test_survey_and_answer_controls_are_inside_the_round(phone, site):
    phone.goto(site.url + "/demo")
    hit(phone, on_screen(phone, ".launcher"))
    phone.wait_for_selector(f"{W} .panel", state="visible")
    send(phone, "How long does delivery take?")
    phone.wait_for_selector(FINISHED_REPLY)
    hit(phone, on_screen(phone, "button.end"))
    phone.wait_for_selector(f"{W} .survey", state="visible")
    stops = tab_round(phone, "Tab", 20)
    assert all("outside" not in s and not s.startswith("page") for s in stops), stops
    assert "back" in stops  # the survey's last button, then round to the first
    assert stops[stops.index("back") + 1] == "close"


@pytest.mark.parametrize("size", [(1280, 800), (1280, 400)], ids=["wide", "short"])
def test_panel_beside_the_page_is_not_modal(browser, site, size):
    """Where the page stays usable beside the panel, the focus may leave it as before; where the panel
    covers the launcher (a short viewport), Tab does not stop at the hidden launcher."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(site.url + "/demo")
        page.click(f"{W} .launcher")
        page.wait_for_selector(f"{W} .panel", state="visible")
        assert page.get_attribute(f"{W} .panel", "aria-modal") != "true"
        stops = tab_round(page, "Tab", 2)
        assert stops[0] == "Send"
        if height >= 600:  # not covered: the launcher comes next, as before
            assert stops[1] == "launcher (outside the panel)"
            assert page.locator(f"{W} .launcher").is_visible()
        else:  # covered: hidden, the focus goes on to the browser or the page
            assert page.locator(f"{W} .launcher").is_hidden()
            assert "launcher" not in stops[1] and stops[1] not in ("close", "human"), stops
    finally:
        context.close()


# -- iOS zooms into a box whose text is smaller than 16px ---------------------------------------------
def test_message_box_text_is_16px_on_a_phone(phone, page, site):
    style = "() => getComputedStyle(ROOT.querySelector('textarea')).fontSize".replace("ROOT", SHADOW)
    phone.goto(site.url + "/demo")
    assert phone.evaluate(style) == "16px"
    page.goto(site.url + "/demo")  # a desktop without touch keeps its 15px
    assert page.evaluate(style) == "15px"
