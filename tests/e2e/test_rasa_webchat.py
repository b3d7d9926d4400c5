"""A real third-party Rasa widget (rasa-webchat 1.0.1 from npm) talks to hybridesk unchanged.

The package is installed with npm at test time into test-artifacts/ (gitignored, reused when
already there); its lib/index.js is served by a separate static server on another port, so the
widget connects cross-origin, as it would from a shop's own site.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from bot.db.repositories import ConversationRepository, MessageRepository

pytestmark = pytest.mark.browser

VERSION = "1.0.1"


@pytest.fixture(scope="session")
def rasa_webchat_js(artifacts: Path) -> Path:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: rasa-webchat cannot be fetched (apt-get install npm)")
    prefix = artifacts / "rasa-webchat"
    lib = prefix / "node_modules" / "rasa-webchat" / "lib" / "index.js"
    meta = prefix / "node_modules" / "rasa-webchat" / "package.json"
    if not (lib.exists() and json.loads(meta.read_text())["version"] == VERSION):
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "package.json").write_text('{"name": "hybridesk-webchat-test", "private": true}\n')
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", f"rasa-webchat@{VERSION}"],
            cwd=prefix, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"npm install rasa-webchat@{VERSION} failed:\n{proc.stderr[-2000:]}")
    return lib


@pytest.fixture
def store_page(rasa_webchat_js, site, tmp_path):
    """A shop page on its own origin embedding rasa-webchat, pointed at hybridesk's Socket.IO channel."""
    shutil.copy(rasa_webchat_js, tmp_path / "index.js")
    (tmp_path / "index.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop with rasa-webchat</title></head>
<body><h1>Larkspur &amp; Co. (Rasa widget)</h1><div id="webchat"></div>
<script src="index.js"></script>
<script>
  WebChat.default({{
    initPayload: "/get_started",
    customData: {{ language: "en", store: "larkspur" }},
    socketUrl: "{site.url}",
    socketPath: "/socket.io/",
    title: "Larkspur & Co.",
    params: {{ storage: "session" }},
    customMessageDelay: function () {{ return 50; }}  // its default waits up to 3 s per message
  }}, null);
</script></body></html>""", encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    httpd.shutdown()
    httpd.server_close()


def test_rasa_webchat_multi_turn_conversation(page, site, store_page):
    expect_ = pytest.importorskip("playwright.sync_api").expect
    # nothing leaves the machine: the widget's own external requests (fonts...) are refused
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1")
               else route.abort())
    page.goto(store_page)
    page.click(".rw-launcher")
    responses = page.locator(".rw-response .rw-message-text")
    responses.filter(has_text="Larkspur & Co. assistant").wait_for()  # the reply to initPayload

    def ask(text: str, expect: str) -> None:
        before = responses.count()
        page.fill(".rw-new-message", text)
        page.press(".rw-new-message", "Enter")
        page.locator(".rw-client .rw-message-text", has_text=text).last.wait_for()
        expect_(responses).to_have_count(before + 1, timeout=30_000)
        assert expect in responses.last.inner_text()

    ask("How long do I have to return a lamp?", "within 30 days of delivery")
    ask("And how long does standard delivery take?", "3 to 5 working days")
    # markup is shown as typed, and read as rendered (a yes/no question, read so, gets no scripted yes; the
    # fake KB here has no facts to answer one with)
    ask("<b>How long do I have to return it?</b>", "within 30 days")
    assert page.locator(".rw-client .rw-message-text", has_text="<b>How long do I have to return it").count() == 1

    session_id = page.evaluate("() => JSON.parse(sessionStorage.getItem('chat_session')).session_id")
    with site.services.db.unit_of_work() as session:
        conv = ConversationRepository(session).by_sender("socketio", session_id)
        assert conv is not None and conv.channel == "socketio"
        assert conv.customer_metadata == {"language": "en", "store": "larkspur"}
        history = [(m.role, m.text) for m in MessageRepository(session).history(conv.id)]
    assert [r for r, _ in history] == ["customer", "bot"] * 3
    assert history[0][1] == "How long do I have to return a lamp?"

    # a reload keeps the same session, and so the same conversation
    page.reload()
    page.locator(".rw-client .rw-message-text", has_text="standard delivery").wait_for()
    ask("Thanks, and where do I start a return?", "order page")
    with site.services.db.unit_of_work() as session:
        assert MessageRepository(session).history(conv.id)[-2].text == "Thanks, and where do I start a return?"
