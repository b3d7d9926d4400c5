"""A first real conversation through every component: store, NLU, policy, rasa-sdk action,
LlamaIndex retrieval over the sample KB, the real SmolLM2 generator, guardrails, storage."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bot.conversation.actions import NO_WORDS_TEXT, WAITING_TEXT
from bot.db.models import Message, ModelCall

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(product):
    from bot.web.app import create_app

    app = create_app(product.settings, product)
    with TestClient(app) as c:
        yield c


def test_init_prints_admin_password_once(product):
    out = "\n".join(product.init_output)
    assert "password (shown once" in out
    from bot.bootstrap import ensure_admin

    lines: list[str] = []
    assert ensure_admin(product, "other@larkspur.example", lines.append) is None
    assert lines == []


def test_rest_webhook_reply_cites_a_sample_policy(client, product, no_network):
    r = client.post("/webhooks/rest/webhook",
                    json={"sender": "ann", "message": "How many days do I have to return an item?"})
    assert r.status_code == 200, r.text
    replies = r.json()
    assert len(replies) == 1
    reply = replies[0]
    assert reply["recipient_id"] == "ann"
    assert reply["text"].strip()
    assert "{{" not in reply["text"]
    sources = reply["custom"]["sources"]
    assert sources, "the reply must cite the knowledge base"
    known = {d.document_id for d in product.knowledge.list_documents()}
    assert all(s["document_id"] in known for s in sources)
    assert all(s["revision"] >= 1 and s["anchor"] for s in sources)
    assert no_network == []

    # stored: the customer's message and the reply with its metadata and a logged model call
    with product.db.unit_of_work() as session:
        msgs = session.query(Message).order_by(Message.id).all()
        customer = [m for m in msgs if m.role == "customer"][-1]
        bot = [m for m in msgs if m.role == "bot"][-1]
        assert customer.text.startswith("How many days")
        assert customer.intent and customer.tone and customer.intent_confidence is not None
        assert bot.status == "complete" and bot.reply_to_id == customer.id
        assert bot.citations and bot.guardrail_verdict in ("pass", "repaired", "fallback")
        assert bot.latency_ms and bot.latency_ms > 0
        kinds = {c.kind for c in session.query(ModelCall).filter(ModelCall.conversation_id == customer.conversation_id)}
        assert "nlu" in kinds


def test_rest_webhook_bad_input(client):
    assert client.post("/webhooks/rest/webhook", content=b"{not json").status_code == 422
    r = client.post("/webhooks/rest/webhook", json={"sender": "ann"})
    assert r.status_code == 422 and "message" in r.json()["error"]["message"]
    r = client.post("/webhooks/rest/webhook", json={"sender": "ann", "message": "   "})
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_message"
    r = client.post("/webhooks/rest/webhook", json={"sender": "ann", "message": "x" * 100_000})
    assert r.status_code == 413
    r = client.post("/webhooks/rest/webhook", json={"sender": "ann", "message": "y" * 5000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "message_too_long"
    assert client.get("/webhooks/rest/").json() == {"status": "ok"}


def test_handoff_request_flips_the_conversation(client, product):
    r = client.post("/webhooks/rest/webhook", json={"sender": "bob", "message": "I want to talk to a human please"})
    reply = r.json()[0]
    assert reply["custom"]["handoff"] is True
    assert reply["custom"]["action"] == "handoff"
    # asking again while queued: told so, not handed off a second time
    again = client.post("/webhooks/rest/webhook", json={"sender": "bob", "message": "Hello? I need a human"}).json()[0]
    assert again["custom"]["action"] == "handoff"
    assert again["text"] == WAITING_TEXT


def test_wordless_messages_never_page_a_person(client):
    for text in ("<img src=x onerror=alert(1)>", "🙂🙂", "<b></b>"):
        reply = client.post("/webhooks/rest/webhook", json={"sender": "cid-markup", "message": text}).json()[0]
        assert reply["custom"]["action"] == "clarify" and not reply["custom"]["handoff"]
        assert reply["text"] == NO_WORDS_TEXT


def test_terminal_chat_once(product, capsys):
    from bot.terminal import run_chat

    assert run_chat(product, sender="term-test", once="What payment methods do you accept?") == 0
    out = capsys.readouterr().out
    assert out.startswith("bot> ") and "source:" in out


def test_terminal_chat_loads_the_models_before_the_first_prompt(product, capsys, monkeypatch):
    from transformers.utils import logging as hf_logging

    from bot.terminal import run_chat

    typed = iter(["What payment methods do you accept?"])

    def fake_input(prompt: str) -> str:
        print(prompt, end="")
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    try:
        assert run_chat(product, sender="term-interactive") == 0
        out = capsys.readouterr()
        assert out.out.index("Loading the models...") < out.out.index("you> ") < out.out.index("bot> ")
        assert "source:" in out.out
        # no progress bars or library notices land in the conversation
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    finally:
        hf_logging.enable_progress_bar()
        hf_logging.set_verbosity_warning()


def test_an_order_is_shown_only_with_the_e_mail_address_it_was_placed_with(client):
    def say(text: str) -> dict:
        return client.post("/webhooks/rest/webhook", json={"sender": "order-owner", "message": text}).json()[0]

    asked = say("Where is my order LK-44098125?")
    assert asked["custom"]["action"] == "lookup_order" and "e-mail address" in asked["text"]
    assert "shipped" not in asked["text"]
    shown = say("t.wouters@mail.example")
    assert shown["custom"]["action"] == "lookup_order" and "shipped" in shown["text"], shown


def test_a_wrong_address_can_be_corrected_and_a_number_given_alone_is_looked_up(client):
    """QA: after one wrong address the corrected one was asked to rephrase, and a bare e-mail address
    was read as angry (which once handed the customer off mid-lookup)."""
    def say(sender: str, text: str) -> dict:
        return client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text}).json()[0]

    assert say("order-retry", "Where is my order LK-44098125?")["custom"]["action"] == "lookup_order"
    for wrong in ("a.bakker@inbox.example", "b.vanleeuwen@mail.example"):
        missed = say("order-retry", wrong)
        assert missed["custom"]["action"] == "lookup_order" and "couldn't find" in missed["text"], missed
    fixed = say("order-retry", "sorry, try t.wouters@mail.example")
    assert fixed["custom"]["action"] == "lookup_order" and "shipped" in fixed["text"], fixed
    # a number given on its own, written with a space: the lookup asks for the address
    asked = say("order-bare", "LK 44098125")
    assert asked["custom"]["action"] == "lookup_order" and "LK-44098125" in asked["text"], asked


def test_a_question_about_what_the_policy_rules_out_is_answered_no(client, product):
    """The real model says yes to it ("We accept all the payment methods you mentioned, including bank
    transfer"); the reply the customer reads is the policy's no, cited, with no yes left in it."""
    for sender, text in (("limits-1", "Can I pay by bank transfer?"), ("limits-2", "Can I pay cash on delivery?")):
        reply = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text}).json()[0]
        assert reply["custom"]["action"] == "answer", reply  # answered from the KB, not "please rephrase"
        assert reply["text"].startswith("I'm afraid not."), reply["text"]
        assert "We do not accept cash on delivery, cheques or payment by bank transfer" in reply["text"]
        assert not any(w in reply["text"] for w in ("Certainly", "Of course", "Absolutely", "including bank"))
        assert reply["custom"]["sources"][0]["document_id"] == "payment-methods"


def test_a_question_about_something_the_shop_sells_is_covered_by_the_policy_on_items(product):
    """"Can I return a lamp?": the returns policy speaks of items, not lamps; the shop's orders say a lamp
    is one of its items (the intent model was seen to call the question out of scope)."""
    from bot.conversation.manager import ConversationManager

    manager = ConversationManager(product)
    assert "lamp" in product.product_words() and "chair" in product.product_words()
    assert manager._in_knowledge_base("Can I return a lamp?", [])
    assert manager._in_knowledge_base("I want to return a chair", [])
    assert not manager._in_knowledge_base("Tell me a joke about a lamp.", [])
    read = product._products
    product._products = (float("inf"), frozenset())  # without the product names: not covered
    try:
        assert not manager._in_knowledge_base("Can I return a lamp?", [])
    finally:
        product._products = read


def test_markup_around_a_question_does_not_change_how_it_is_answered(client, product, monkeypatch):
    # web QA: "<script>alert(2)</script> <b>What</b> is your returns window?" got a question back and the plain
    # one the 30 days (with the product's NLU, which calls both out of scope): the intent model read it rendered,
    # the knowledge-base check and the policy read the tags
    import bot.conversation.manager as manager

    seen: list[tuple[str, str]] = []
    decide, in_kb = manager.decide, manager.ConversationManager._in_knowledge_base
    monkeypatch.setattr(manager, "decide", lambda text, *a, **kw: seen.append(("policy", text)) or decide(text, *a, **kw))
    monkeypatch.setattr(manager.ConversationManager, "_in_knowledge_base",
                        lambda self, text, history: seen.append(("kb", text)) or in_kb(self, text, history))
    monkeypatch.setattr(manager, "unsure", lambda _nlu: True)  # the knowledge base is asked, whatever the NLU says
    text = "<script>alert(2)</script> <b>What</b> is your returns window?"
    r = client.post("/webhooks/rest/webhook", json={"sender": "markup-q", "message": text})
    assert r.status_code == 200, r.text
    assert {" ".join(t.split()) for _, t in seen} == {"What is your returns window?"}, seen
    assert {k for k, _ in seen} == {"policy", "kb"}
    with product.db.unit_of_work() as session:
        customer = session.query(Message).filter(Message.role == "customer").order_by(Message.id.desc()).first()
        assert customer.text == text  # stored as sent
        assert customer.policy_action == "answer"
    assert "<script>" not in r.json()[0]["text"]


def test_a_misspelt_word_is_read_as_the_kb_spells_it_and_stored_as_sent(client, product):
    # QA: "i forgot my pasword" was asked what it was about; "password" got the reset steps
    r = client.post("/webhooks/rest/webhook", json={"sender": "typo", "message": "i forgot my pasword"})
    reply = r.json()[0]
    assert "Reset your password" in reply["text"], reply["text"]
    assert {s["document_id"] for s in reply["custom"]["sources"]} >= {"passwords-and-sign-in"}
    with product.db.unit_of_work() as session:
        customer = session.query(Message).filter(Message.role == "customer").order_by(Message.id.desc()).first()
        assert customer.text == "i forgot my pasword"  # what the customer wrote is what is kept
        call = (session.query(ModelCall).filter(ModelCall.message_id == customer.id, ModelCall.kind == "nlu")
                .one())
        assert call.prompt["read_as"] == "i forgot my password"


def test_a_short_figure_question_is_read_with_the_message_before_it(client, product):
    # QA: "how long is the lock" right after "i keep getting locked out of my account" was asked what it was
    # about (the product's intent model has no intent for it); read with that message, the KB answers it
    from bot.conversation.manager import ConversationManager

    manager = ConversationManager(product)
    before = [("customer", "i keep getting locked out of my account"), ("bot", "After 5 failed sign-in attempts...")]
    assert not manager._in_knowledge_base("how long is the lock", [])
    assert manager._in_knowledge_base("how long is the lock", before)
    assert not manager._in_knowledge_base("what's the weather like?", before)  # not a short figure question

    def say(text: str) -> dict:
        return client.post("/webhooks/rest/webhook", json={"sender": "lock", "message": text}).json()[0]

    say("i keep getting locked out of my account")
    reply = say("how long is the lock")
    assert reply["custom"]["action"] == "answer", reply
    assert "15 minutes" in reply["text"], reply["text"]
