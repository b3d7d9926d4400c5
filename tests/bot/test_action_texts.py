"""What the clarify and handoff actions say, run through rasa-sdk's real Tracker and dispatcher."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.conversation import actions
from bot.conversation.actions import ActionClarify, ActionHandoff, other_language


def _say(action, text: str, **metadata) -> str:
    tracker = Tracker("ann", {}, {"text": text, "metadata": metadata}, [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages[0]["text"]


def test_clarify_says_what_fits_the_message():
    assert _say(ActionClarify(), "Tell me about quantum physics") == actions.CLARIFY_TEXT
    assert _say(ActionClarify(), "🙂", policy_reason="no_words") == actions.NO_WORDS_TEXT
    # QA: thanks got "I want to be sure I help with the right thing..."
    assert _say(ActionClarify(), "I'M SO HAPPY WITH MY NEW SOFA, THANK YOU!") == actions.THANKS_TEXT
    # regression QA: "thanks in advance" comes with a question, which is asked about, not thanked
    for request in ("Hello, the grommet on my widget is fizzing, thanks in advance",
                    "Thanks in advance! The wobbly thingamajig I got from you has gone all funny, what now?"):
        assert _say(ActionClarify(), request) == actions.CLARIFY_TEXT, request
    assert not actions.other_language("Delivery to Los Angeles or Las Vegas?")
    # QA: a Dutch or German question got the English clarify text, with no word on the language
    assert _say(ActionClarify(), "Waar is mijn pakket?") == actions.OTHER_LANGUAGE_TEXT
    # QA: "is anyone there?" from a customer in the queue was asked to rephrase
    assert _say(ActionClarify(), "hello? is anyone there?", mode="handoff_requested") == actions.WAITING_TEXT


def test_a_customer_handed_off_for_being_fed_up_hears_an_apology_first():
    angry = _say(ActionHandoff(), "I'm taking my business elsewhere", policy_reason="angry_and_not_helped")
    assert angry == f"{actions.SORRY_TEXT} {actions.HANDOFF_TEXT}"
    # QA: "my package arrived and the vase is smashed" (read as angry and not understood, at the first message)
    # was told "I haven't been able to sort it out" before the bot had tried anything
    first = _say(ActionHandoff(), "my package arrived and the vase is smashed", policy_reason="angry_and_not_understood")
    assert first == f"{actions.SORRY_FIRST_TEXT} {actions.HANDOFF_TEXT}" and "haven't been able" not in first
    assert _say(ActionHandoff(), "a person please", policy_reason="customer_asked_for_human") == actions.HANDOFF_TEXT
    queued = _say(ActionHandoff(), "useless!!", policy_reason="angry_and_not_helped", mode="handoff_requested")
    assert queued == actions.WAITING_TEXT


@pytest.mark.parametrize(("text", "other"), [
    ("Wo ist meine Bestellung?", True), ("¿Cuánto cuesta el envío?", True), ("Où est ma commande ?", True),
    ("Waar is mijn pakket?", True), ("Where is my order?", False), ("I want my pakket", False),
    ("Merci!", False), ("Is het mogelijk?", False),  # one word proves nothing
    ("Combien de temps ai-je pour retourner un article ?", True), ("Wie lange dauert die Lieferung nach Deutschland?",
                                                                  True),
    ("Hoe lang duurt de levering?", True), ("Bonjour, je voudrais retourner une lampe, comment faire ?", True),
    ("Can I return a lamp I bought at La Maison de Paris?", False), ("Does the Lange sofa come in blue?", False),
])
def test_another_language_is_told_apart_by_its_common_words(text, other):
    assert other_language(text) is other


def _order(status: str = "shipped", due: str = "2026-12-03T18:00:00+00:00"):
    from datetime import datetime
    from types import SimpleNamespace

    return SimpleNamespace(status=status, carrier="HomeHaul", tracking_code="HH-939482",
                           estimated_delivery=datetime.fromisoformat(due))


LATE_RULE = actions.LateRule(3, {"document_id": "order-tracking", "revision": 2, "anchor": "parcel-late-or-stuck",
                                 "title": "Tracking your order", "heading": None})


@pytest.mark.parametrize(("today", "says", "cited"), [
    ("2026-12-02", None, False),  # not due yet
    ("2026-12-03", None, False),  # due today
    ("2026-12-04", "That was 1 business day ago. If it has not arrived 3 business days after that date", True),
    ("2026-12-06", "That was 1 business day ago.", True),  # Friday counts, the weekend does not
    ("2026-12-08", "That was 3 business days ago, so your parcel is late.", True),
    # QA: an order 10 days past its estimate was shown with the date and nothing else
    ("2026-12-17", "That was 10 business days ago, so your parcel is late. When a parcel has not arrived 3 "
                   "business days after its estimated delivery date, we open an investigation", True),
])
def test_an_order_past_its_estimated_date_is_called_late_in_the_kbs_terms(today, says, cited):
    from datetime import date

    text, citations = actions._describe_order("LK-44098125", _order(), late_rule=LATE_RULE,
                                              today=date.fromisoformat(today))
    assert text.startswith("Order LK-44098125 is currently shipped. It travels with HomeHaul")
    assert "Estimated delivery: 03 December 2026." in text
    if says is None:
        assert "ago" not in text and "late" not in text
    else:
        assert says in text, text
    assert citations == ([LATE_RULE.citation] if cited else [])


def test_a_delivered_order_or_one_without_the_kbs_rule_is_not_called_late():
    from datetime import date

    late = date(2026, 12, 17)
    delivered, cites = actions._describe_order("LK-1", _order("delivered"), late_rule=LATE_RULE, today=late)
    assert "late" not in delivered and "Estimated" not in delivered and cites == []
    no_rule, cites = actions._describe_order("LK-1", _order(), late_rule=None, today=late)
    assert no_rule.endswith("Estimated delivery: 03 December 2026. That date has passed.") and cites == []


def test_the_late_parcel_rule_is_the_kbs_fact_in_force(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from sample_kb import kb_service

    sample = Path(__file__).resolve().parents[2] / "knowledge" / "sample" / "order-tracking.md"
    for kb in kb_service(tmp_path_factory, "late", [sample]):
        rule = actions._late_parcel_rule(kb)
        assert rule is not None and rule.days == 3
        assert rule.citation["document_id"] == "order-tracking" and rule.citation["title"] == "Tracking your order"
        # the editors change the rule: the next lookup says the new number, no restart
        edited = sample.read_text(encoding="utf-8").replace(
            'name: late_parcel_days\n    value: "3"', 'name: late_parcel_days\n    value: "5"').replace(
            "arrived **3** business days", "arrived **5** business days")
        kb.import_bytes(edited.encode(), sample.name, author="test")
        kb.publish("order-tracking")
        assert actions._late_parcel_rule(kb).days == 5
    assert actions._late_parcel_rule(object()) is None  # no KB to read: no rule, and no error
