"""The console in headless Chromium: sign in, review, take over a live chat, correct, edit the KB.

Debian's Chromium (``/usr/bin/chromium``) through Playwright; screenshots go to ``test-artifacts/``.
The customer side talks to the real chat API over HTTP while the agent uses the console.
"""

from __future__ import annotations

import time

import httpx
import pytest
from console_support import PASSWORD, build_console, seed_conversation
from web_fakes import ServerThread

pytestmark = pytest.mark.browser


def _signed_in(browser, url: str, email: str):
    """A fresh browser page signed in to the console at ``url`` as ``email``."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{url}/console/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/console/login" not in u)
    return page


def test_agent_signs_in_takes_over_a_live_chat_and_edits_the_kb(browser, artifacts, tmp_path):
    from bot.web import live

    console = build_console(f"sqlite:///{tmp_path / 'browser.db'}", tmp_path)
    console.app.state.live = live.default_hub()
    seed_conversation(console.services, customer='<script>alert("x")</script> where is my sofa?', thumbs=-1)
    with ServerThread(console.app) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        started = api.post("/api/conversations", json={}).json()
        auth = {"Authorization": f"Bearer {started['token']}"}
        conv_id = started["conversation_id"]

        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
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
        page.screenshot(path=str(artifacts / "console.png"), full_page=True)

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
        page.screenshot(path=str(artifacts / "console-takeover.png"), full_page=True)
        page.click("text=Hand back to the bot")
        page.wait_for_selector("#conv-mode.mode-bot")
        assert not dialogs  # no script from the hostile transcript ran

        # an editor writes a policy with a live preview and publishes it; the public page follows
        editor = _signed_in(browser, server.url, "editor@larkspur.example")
        editor.goto(f"{server.url}/console/kb/new")
        editor.fill("input[name=document_id]", "gift-wrap")
        editor.fill("#doc-title", "Gift wrap")
        editor.fill("#md-source", "# Gift wrap\n\n## Prices\n\nWrapping costs **€4.50**. <script>alert(1)</script>\n")
        editor.wait_for_selector("#md-preview strong:has-text('€4.50')")
        assert "<script>" in editor.inner_text("#md-preview")  # shown as text
        editor.screenshot(path=str(artifacts / "kb-editor.png"), full_page=True)
        editor.click("button[value=publish]")
        editor.wait_for_url("**/console/kb/gift-wrap")
        editor.goto(f"{server.url}/kb/gift-wrap#prices")
        assert "Wrapping costs €4.50." in editor.inner_text("article.policy")
        api.close()
    console.services.close()


def test_go_back_on_an_error_page_returns_to_the_form_with_the_text_kept(browser, tmp_path):
    """A refused KB save shows the form again with what the editor typed and the error at its field
    (it used to be an error page whose "Go back" link went to the console home, and the draft was lost)."""
    console = build_console(f"sqlite:///{tmp_path / 'back.db'}", tmp_path)
    with ServerThread(console.app) as server:
        page = _signed_in(browser, server.url, "editor@larkspur.example")
        page.goto(f"{server.url}/console/kb/new")
        page.fill("input[name=document_id]", "gift-wrap")
        page.fill("#doc-title", "Gift wrap")
        page.fill("#md-source", "# Gift wrap\n\n## Prices\n\nA long policy the editor typed.\n")
        page.fill("textarea[name=facts]", "- [unclosed")
        page.click("button[value=save]")
        page.wait_for_selector("text=not valid YAML")
        assert page.url.endswith("/console/kb/new")
        assert "A long policy the editor typed." in page.input_value("#md-source")
    console.services.close()


def test_an_empty_agent_reply_is_explained_inline_not_in_an_alert(browser, tmp_path):
    """Sending a blank reply popped a browser alert() with the widget's customer wording."""
    console = build_console(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path)
    conv_id, _ = seed_conversation(console.services)
    with ServerThread(console.app) as server:
        page = _signed_in(browser, server.url, "agent@larkspur.example")
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/console/conversations/{conv_id}")
        page.click("text=Take over")
        page.wait_for_selector("#agent-form")
        page.fill("#agent-form textarea", "   ")
        page.click("#agent-form button")
        problem = page.wait_for_selector("#agent-form-error", state="visible")
        assert problem.inner_text() == "Write a message to send."
        page.fill("#agent-form textarea", "Hello, Agent here.")  # typing clears it; a real reply goes out
        assert page.is_hidden("#agent-form-error")
        page.click("#agent-form button")
        page.wait_for_selector("#messages >> text=Hello, Agent here.")
        assert dialogs == []
    console.services.close()


def test_a_conversation_page_says_when_another_agent_takes_it_over(browser, tmp_path):
    from bot.console.takeover import take_over
    from bot.db.models import User

    console = build_console(f"sqlite:///{tmp_path / 'stale.db'}", tmp_path)
    conv_id, _ = seed_conversation(console.services)
    with ServerThread(console.app) as server:
        page = _signed_in(browser, server.url, "agent@larkspur.example")
        page.goto(f"{server.url}/console/conversations/{conv_id}")
        assert page.is_hidden("#conv-changed") and page.is_visible("text=Take over")
        with console.services.db.unit_of_work() as session:
            other = session.query(User).filter_by(email="agent2@larkspur.example").one()
            session.expunge(other)
        take_over(console.services.db, conv_id, other)  # the other agent, elsewhere
        page.wait_for_selector("#conv-changed", state="visible")
        assert "an agent holds it now" in page.inner_text("#conv-changed")
        page.click("#conv-changed a")  # reload: the controls are the current ones
        page.wait_for_selector("text=held by")
        assert page.is_hidden("text=Take over") and page.is_hidden("#conv-changed")
    console.services.close()
