"""The console in headless Chromium: sign in, review, take over a live chat, correct, edit the KB.

Debian's Chromium (``/usr/bin/chromium``) through Playwright; screenshots go to ``test-artifacts/``.
The customer side talks to the real chat API over HTTP while the agent uses the console.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from console_support import PASSWORD, build_console, seed_conversation

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HYBRIDESK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class _Server:
    """uvicorn on a free loopback port in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def test_agent_signs_in_takes_over_a_live_chat_and_edits_the_kb(chromium, tmp_path):
    from bot.web import live

    console = build_console(f"sqlite:///{tmp_path / 'browser.db'}", tmp_path)
    console.app.state.live = live.default_hub()
    ARTIFACTS.mkdir(exist_ok=True)
    seed_conversation(console.services, customer='<script>alert("x")</script> where is my sofa?', thumbs=-1)
    with _Server(console.app) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        started = api.post("/api/conversations", json={}).json()
        auth = {"Authorization": f"Bearer {started['token']}"}
        conv_id = started["conversation_id"]

        page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(15_000)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/console/transcripts")
        assert "/console/login" in page.url  # sent to sign in
        page.fill("input[name=email]", "agent@larkspur.example")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/transcripts")
        assert page.locator("table.list tbody tr").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

        # take over the customer's live conversation; the customer's next message arrives live
        page.goto(f"{server.url}/console/conversations/{conv_id}")
        page.click("text=Take over")
        page.wait_for_selector("#agent-form")
        assert api.post(f"/api/conversations/{conv_id}/messages", json={"text": "Is anyone there?"},
                        headers=auth).status_code == 202
        page.wait_for_selector("text=Is anyone there?")
        page.fill("#agent-form textarea", "Hi, this is Agent from Larkspur. How can I help?")
        page.click("#agent-form button")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            history = api.get(f"/api/conversations/{conv_id}/messages", headers=auth).json()["messages"]
            if any(m["role"] == "agent" for m in history):
                break
            time.sleep(0.2)
        assert [m["text"] for m in history if m["role"] == "agent"] == [
            "Hi, this is Agent from Larkspur. How can I help?"]
        page.wait_for_selector("text=Hi, this is Agent from Larkspur.")
        page.screenshot(path=str(ARTIFACTS / "console-takeover.png"), full_page=True)
        page.click("text=Hand back to the bot")
        page.wait_for_selector("#conv-mode.mode-bot")
        assert not dialogs  # no script from the hostile transcript ran

        # an editor writes a policy with a live preview and publishes it; the public page follows
        editor = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
        editor.goto(f"{server.url}/console/login")
        editor.fill("input[name=email]", "editor@larkspur.example")
        editor.fill("input[name=password]", PASSWORD)
        editor.click("button[type=submit]")
        editor.goto(f"{server.url}/console/kb/new")
        editor.fill("input[name=document_id]", "gift-wrap")
        editor.fill("#doc-title", "Gift wrap")
        editor.fill("#md-source", "# Gift wrap\n\n## Prices\n\nWrapping costs **€4.50**. <script>alert(1)</script>\n")
        editor.wait_for_selector("#md-preview strong:has-text('€4.50')")
        assert "<script>" in editor.inner_text("#md-preview")  # shown as text
        editor.screenshot(path=str(ARTIFACTS / "kb-editor.png"), full_page=True)
        editor.click("button[value=publish]")
        editor.wait_for_url("**/console/kb/gift-wrap")
        editor.goto(f"{server.url}/kb/gift-wrap#prices")
        assert "Wrapping costs €4.50." in editor.inner_text("article.policy")
        api.close()
    console.services.close()
