"""What the widget's browser tests share: its selectors, a scripted reply, opening it and sending."""

from __future__ import annotations

W = "#hybridesk-widget"  # the shadow host; Playwright's CSS engine pierces the open shadow root
RETURN_Q = "How long do I have to return a lamp?"
FULL_REPLY = ("You can return most items within 30 days of delivery. "
              "Start the return from your order page and we will refund you within 5 working days.")


def open_widget(page, site, path="/demo"):
    page.goto(site.url + path)
    page.click(f"{W} .launcher")
    page.wait_for_selector(f"{W} .panel", state="visible")


def send(page, text):
    page.fill(f"{W} textarea", text)
    page.press(f"{W} textarea", "Enter")
