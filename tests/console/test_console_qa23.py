"""Console QA round 23: the KB page's suggestions without customers' personal data, long unbroken words
that widened console pages, invisible characters in corrections and display names, out-of-scope
"questions" that ask nothing, corrections of discarded drafts, and the sign-in lockout's advice.

Server behaviour through the real app (TestClient); layout in Debian's Chromium.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from console_support import PASSWORD, build_console, csrf_from, login, seed_conversation

from knowledge.errors import InvalidInput

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
#: every character the conversation manager takes out of chat messages (bot.conversation.manager._INVISIBLE)
INVISIBLE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff"
PERSONAL = ("My name is Maria Lopez, mail maria.lopez@example.com or call +31 20 555 0142; order LK-48213377, "
            "card 4111 1111 1111 1111. Where is my refund?")
DETAILS = ("Maria", "Lopez", "maria.lopez@example.com", "555 0142", "LK-48213377", "4111 1111 1111 1111")


def _correct(console, bot_id: int, **fields):
    from bot.console.corrections import create_correction

    return create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id, **fields)


# ---------------------------------------------------------------- 1. the KB page's suggestions


def test_editors_see_the_suggestions_from_corrections_without_personal_data(console):
    _, bot_id = seed_conversation(console.services, customer=PERSONAL,
                                  reply="Hello Maria, your order LK-48213377 was refunded on Monday.")
    _correct(console, bot_id, reason="missing_policy",
             corrected_text="Hi Maria, refunds for LK-48213377 reach card 4111 1111 1111 1111 within 5 days.",
             note="Maria Lopez (maria.lopez@example.com) asked twice")

    editor = console.client()
    login(editor, "editor")
    page = editor.get("/console/kb", headers=HTML).text
    suggestions = page.split("Suggestions from agents")[1]
    assert "Where is my refund?" in suggestions and "within 5 days" in suggestions and "asked twice" in suggestions
    for detail in DETAILS:
        assert detail not in suggestions, detail
    for placeholder in ("Customer Name", "Customer Email", "Customer Phone", "Order Number", "Card Number"):
        assert "{{" + placeholder + "}}" in suggestions, placeholder

    # agents, who read the transcripts anyway, see the corrections as written
    agent = console.client()
    login(agent, "agent")
    listing = agent.get("/console/corrections", headers=HTML).text
    assert "maria.lopez@example.com" in listing and "LK-48213377" in listing


# ---------------------------------------------------------------- 2. long words and the layout


@pytest.mark.browser
def test_a_long_unbroken_word_does_not_widen_a_console_page(browser, tmp_path, artifacts):
    """A 1,900-character word in the waiting queue made /console/transcripts 1,710 px wide at 1,280 px,
    a 3,000-character word in a correction the corrections table 45,000 px wide."""
    from web_fakes import ServerThread

    console = build_console(f"sqlite:///{tmp_path / 'wide.db'}", tmp_path)
    seed_conversation(console.services, customer="x" * 1900, mode="handoff_requested",
                      handoff_reason="customer_asked_for_human")
    conv_id, bot_id = seed_conversation(console.services, customer="Where is my order?", reply="y" * 3000)
    _correct(console, bot_id, reason="wrong_fact", corrected_text="z" * 3000, note="n" * 3000)
    with console.services.db.unit_of_work() as session:
        from bot.db.models import User

        session.get(User, console.users["agent2"]).display_name = "w" * 120
    try:
        with ServerThread(console.app) as server:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{server.url}/console/login")
            page.fill("input[name=email]", "admin@larkspur.example")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda u: "/console/login" not in u)
            for path in ("/console/transcripts", "/console/corrections", "/console/kb", "/console/users",
                         f"/console/conversations/{conv_id}"):
                page.goto(server.url + path)
                page.screenshot(path=str(artifacts / f"qa23-long-word{path.replace('/', '-')[:40]}.png"))
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 1280, f"{path} is {width} px wide"
                for region in page.locator(".table-scroll").all():  # nor does a table scroll sideways in its box
                    inner, outer = region.evaluate("e => [e.scrollWidth, e.clientWidth]")
                    assert inner <= outer + 1, f"a table of {path} is {inner} px wide in {outer} px"
                if path == "/console/transcripts":
                    box = page.locator("#waiting-list a").first.bounding_box()
                    assert box and box["x"] + box["width"] <= 1280
                if path == "/console/corrections":
                    # short text beside the long word keeps a readable width ("Where is my order?")
                    cell = page.locator("table.list tbody td.free-text").first
                    assert cell.evaluate("e => e.getBoundingClientRect().width") >= 100
    finally:
        console.services.close()


def test_the_export_and_the_suggestions_give_the_companys_own_contacts_as_kb_slots(console):
    # the company's phone number and address in a corrected reply are the KB's, not a customer's: the services
    # pass the KB's contact facts in (once through a process-wide registry, which a second container replaced)
    from pathlib import Path

    from models.pii import PHONE, SUPPORT_EMAIL, SUPPORT_PHONE

    sample = Path(__file__).resolve().parents[2] / "knowledge" / "sample" / "contact-customer-service.md"
    console.services.knowledge.import_bytes(sample.read_bytes(), sample.name, author="editor", publish=True)
    _, bot_id = seed_conversation(console.services, customer="Hi, Maria here. How do I reach a person?",
                                  reply="Hello Maria, use the chat.")
    _correct(console, bot_id, reason="missing_policy",
             corrected_text="Hi Maria, phone 020 555 0142 or write to help@larkspur.example.")
    agent = console.client()
    login(agent, "agent")
    form = {"csrf_token": csrf_from(agent.get("/console/corrections").text)}
    exported = agent.post("/console/corrections/export.jsonl", data=form).text
    assert f"phone {SUPPORT_PHONE} or write to {SUPPORT_EMAIL}" in exported, exported
    assert PHONE not in exported and "Maria" not in exported
    editor = console.client()
    login(editor, "editor")
    page = editor.get("/console/kb").text
    assert "555 0142" not in page and "Customer Support Phone Number" in page, page


# ---------------------------------------------------------------- 3. invisible characters


def test_corrections_lose_the_invisible_characters_chat_messages_lose(console):
    from bot.console.corrections import export_records
    from bot.db.models import Correction

    _, bot_id = seed_conversation(console.services, reply="You have 14 days.")
    _correct(console, bot_id, reason="wrong_fact", corrected_text=f"You have {INVISIBLE}30\u202e days.\u2069",
             note=f"\ufeffpolicy\u200b says 30{INVISIBLE}")
    with console.services.db.unit_of_work() as session:
        row = session.scalars(sa.select(Correction).where(Correction.message_id == bot_id)).one()
        assert (row.corrected_text, row.note) == ("You have 30 days.", "policy says 30")
    exported = json.dumps(export_records(console.services.db, mark=False), ensure_ascii=False)
    assert "You have 30 days." in exported and not any(ch in exported for ch in INVISIBLE)
    # the zero-width joiner of an emoji sequence stays, as it does in chat messages
    _correct(console, bot_id, reason="wrong_tone", corrected_text="Thanks! \U0001f469\u200d\U0001f4bb")
    with console.services.db.unit_of_work() as session:
        assert "\u200d" in session.scalars(sa.select(Correction.corrected_text).where(
            Correction.reason == "wrong_tone")).one()


def test_display_names_lose_the_invisible_characters(console):
    from bot.cli_users import add_user
    from bot.db.models import User
    from bot.db.repositories import UserRepository

    with console.services.db.unit_of_work() as session:
        add_user(session, "ria@larkspur.example", "agent", PASSWORD, f"\u202eRia{INVISIBLE} de\u200b Vries\n")
        add_user(session, "inv@larkspur.example", "agent", PASSWORD, INVISIBLE)  # nothing left: the default
    with console.services.db.unit_of_work() as session:
        users = UserRepository(session)
        assert users.by_email("ria@larkspur.example").display_name == "Ria de Vries"
        assert users.by_email("inv@larkspur.example").display_name == "inv"

    # the console's Users page adds users through the same function
    admin = console.client()
    csrf = login(admin, "admin")
    r = admin.post("/console/users", data={"csrf_token": csrf, "email": "sam@larkspur.example", "role": "agent",
                                           "password": PASSWORD, "display_name": "Sam\u202e Smith\u2066"},
                   follow_redirects=False)
    assert r.status_code == 303
    with console.services.db.unit_of_work() as session:
        assert UserRepository(session).by_email("sam@larkspur.example").display_name == "Sam Smith"
        # a name stored before names were cleaned is shown without them ("... joined the chat", the header)
        session.get(User, console.users["agent2"]).display_name = "Agent\u202e 2"
    agent2 = console.client()
    login(agent2, "agent2")
    assert "Agent 2" in agent2.get("/console/transcripts", headers=HTML).text


# ---------------------------------------------------------------- 4. out-of-scope "questions"


def _seed_out_of_scope(console, created_at: datetime) -> None:
    from bot.db.models import Message

    said = [("!!!", "no_words", "angry"), ("👍", "no_words", "positive"), ("🙂🙂", "no_words", "positive"),
            ("thanks", "thanks", "positive"), ("ok", "out_of_scope", "neutral"), ("hi there", "out_of_scope", "neutral"),
            ("Do you sell boats?", "out_of_scope", "neutral"), ("do you sell  BOATS?", "low_confidence", "neutral"),
            # web QA: answered from the KB all the same, it was listed as what the KB is missing
            ("What is your returns window?", "in_knowledge_base", "neutral")]
    for text, reason, tone in said:
        _, bot_id = seed_conversation(console.services, customer=text, out_of_scope=True, tone=tone,
                                      created_at=created_at)
        with console.services.db.unit_of_work() as session:
            customer = session.get(Message, session.get(Message, bot_id).reply_to_id)
            customer.policy_action, customer.policy_reason = "clarify", reason


def test_messages_that_ask_nothing_are_not_top_out_of_scope_questions(console):
    from bot.console import analytics

    now = datetime.now(UTC)
    _seed_out_of_scope(console, now - timedelta(days=3))
    _seed_out_of_scope(console, now - timedelta(minutes=2))  # today: computed live
    first = now.date() - timedelta(days=5)
    with console.services.db.unit_of_work() as session:
        rolled = analytics.compute(session, first, now.date())
    with console.services.db.unit_of_work() as session:
        direct = analytics.compute_direct(session, first, now.date())
    assert rolled == direct
    assert direct.top_out_of_scope == [("do you sell boats?", 4)]
    assert direct.engaged == 18  # (they are still conversations with a customer message)


def test_a_day_rolled_up_by_the_older_definition_is_computed_again(console):
    from bot.console import analytics
    from bot.db.models import AnalyticsDay

    now = datetime.now(UTC)
    day: date = (now - timedelta(days=3)).date()
    _seed_out_of_scope(console, now - timedelta(days=3))
    with console.services.db.unit_of_work() as session:
        analytics.compute(session, day, day)
    with console.services.db.unit_of_work() as session:  # as the code before this change stored it
        row = session.get(AnalyticsDay, day)
        row.out_of_scope = {"!!!": 1, "👍": 1, "thanks": 1, "ok": 1, "do you sell boats?": 2}
        row.computed_at = datetime(2026, 12, 1, tzinfo=UTC)
    with console.services.db.unit_of_work() as session:
        assert analytics.compute(session, day, day).top_out_of_scope == [("do you sell boats?", 2)]
    with console.services.db.unit_of_work() as session:
        assert session.get(AnalyticsDay, day).computed_at > datetime(2026, 12, 1, tzinfo=UTC)


# ---------------------------------------------------------------- 5. discarded drafts


def test_a_discarded_draft_cannot_be_corrected_nor_exported(console):
    from bot.console.corrections import export_records
    from bot.db.models import Correction, Message

    _, bot_id = seed_conversation(console.services, reply="Your refund is on its way, it was iss")
    _, kept_id = seed_conversation(console.services, reply="You have 14 days.")
    _correct(console, bot_id, reason="wrong_fact", corrected_text="Stored before the refusal.")
    _correct(console, kept_id, reason="wrong_fact", corrected_text="You have 30 days.")
    with console.services.db.unit_of_work() as session:
        session.get(Message, bot_id).status = "discarded"  # an agent took the chat over mid-reply

    agent = console.client()
    csrf = login(agent, "agent")
    form = {"csrf_token": csrf, "reason": "wrong_fact", "corrected_text": "Refunds take 5 days."}
    r = agent.post(f"/console/messages/{bot_id}/corrections", data=form, headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["code"] == "reply_discarded"
    page = agent.post(f"/console/messages/{bot_id}/corrections", data=form, headers=HTML)
    assert page.status_code == 422 and "discarded" in page.text
    with pytest.raises(InvalidInput) as pending:
        with console.services.db.unit_of_work() as session:
            session.get(Message, bot_id).status = "pending"
        _correct(console, bot_id, reason="wrong_fact", corrected_text="Refunds take 5 days.")
    assert pending.value.code == "reply_not_complete"
    with console.services.db.unit_of_work() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Correction)
                              .where(Correction.message_id == bot_id)) == 1
    # the correction saved before the refusal existed is not training data either
    assert [r["corrected_reply"] for r in export_records(console.services.db, mark=False)] == ["You have 30 days."]


# ---------------------------------------------------------------- 6. the lockout's advice


def test_the_lockout_message_says_what_lifts_it(console):
    client = console.client()
    for _ in range(5):
        page = client.get("/console/login")
        client.post("/console/login", data={"email": "agent@larkspur.example", "password": "guess",
                                            "csrf_token": csrf_from(page.text)})
    page = client.get("/console/login")
    blocked = client.post("/console/login", data={"email": "agent@larkspur.example", "password": PASSWORD,
                                                  "csrf_token": csrf_from(page.text)}, headers=JSON)
    assert blocked.status_code == 429
    message = blocked.json()["error"]["message"]
    # the console has no password reset: an admin sets one on the command line, which lifts the lock
    assert "hybridesk users set-password" in message and "lifts this lock" in message
