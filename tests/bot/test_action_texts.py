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
