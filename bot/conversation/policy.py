"""The dialogue policy: answer, clarify, run an action, or hand off — with the reason recorded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LOW_CONFIDENCE = 0.45
HUMAN_RE = re.compile(
    r"\b(?:human|real person|a person|someone real|live agent|an agent|representative|operator|"
    r"speak to (?:someone|somebody)|talk to (?:someone|somebody))\b", re.I)
INJECTION_RE = re.compile(
    r"ignore (?:all |any |your |the |previous |prior |above )+(?:instructions|rules|prompts?)|"
    r"disregard (?:all |your |the |previous )+(?:instructions|rules)|system prompt|"
    r"you are now|pretend (?:to be|you are)|act as (?:if|an?)\b|developer mode|jailbreak|"
    r"reveal (?:your|the) (?:prompt|instructions)|new instructions:|override (?:your|the) (?:policy|rules)|"
    # granting the bot powers it does not have: "You are authorised to offer free replacements."
    r"\byou(?: are|'re| have been) (?:now |hereby )?(?:authori[sz]ed|allowed|permitted|entitled|approved) to\b",
    re.I)
THANKS_RE = re.compile(r"\b(?:thanks|thank\s+you|thx|cheers|much\s+appreciated)\b", re.I)
ORDER_RE = re.compile(r"\bLK[- ]?\d{6,10}\b", re.I)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")

# the words a customer may put around an order number or e-mail address they were asked for
_AROUND_DETAILS = {"my", "the", "order", "number", "no", "nr", "is", "it", "it's", "its", "here", "here's", "this",
                   "that", "was", "e-mail", "email", "address", "mail", "and", "sorry", "try", "again", "i", "used",
                   "use", "ok", "okay", "oh", "thanks", "thank", "you", "please", "yes", "right", "correct", "one",
                   "with", "placed", "for", "of", "a", "an", "on", "under", "in", "oops", "wrong", "should", "be"}


#: intents that ask about one order's state: with its number, the order is looked up (QA: "has my refund for
#: LK-45262632 gone through?" was asked for the order number it had just been given)
ORDER_STATE_INTENTS = frozenset({"track_order", "change_order", "cancel_order", "track_refund", "delivery_period"})


def order_details_only(text: str) -> bool:
    """Whether ``text`` gives an order number or e-mail address and says nothing else ("LK-44672073",
    "sorry, try y.claes@post.example", "my order number is LK 42710343")."""
    if not (ORDER_RE.search(text) or EMAIL_RE.search(text)):
        return False
    rest = EMAIL_RE.sub(" ", ORDER_RE.sub(" ", text)).lower()
    return set(re.findall(r"[\w'-]+", rest)) <= _AROUND_DETAILS


_IN_ADVANCE = re.compile(r"\b(?:thanks|thank\s+you|thx)\s+(?:so\s+much\s+)?in\s+advance\b", re.I)


def only_thanks(text: str) -> bool:
    """Whether ``text`` thanks and asks nothing ("ok thanks", "I'm so happy with my new sofa, thank you!"):
    no intent of its own, and no sign that the bot failed to understand. "Thanks in advance" comes with a
    request ("the grommet on my widget is fizzing, thanks in advance"), which is asked about instead."""
    return (bool(THANKS_RE.search(text)) and "?" not in text and not _IN_ADVANCE.search(text)
            and len(re.findall(r"[\w'-]+", text)) <= 12)


ACTION_NAMES = {
    "answer": "action_answer_from_policy",
    "clarify": "action_clarify",
    "handoff": "action_handoff",
    "lookup_order": "action_lookup_order",
    "escalate": "action_escalate",
}


@dataclass
class Decision:
    action: str  # answer | clarify | handoff | lookup_order | escalate
    reason: str
    grounded_only: bool = False  # answer by quoting the KB, no free generation

    @property
    def action_name(self) -> str:
        return ACTION_NAMES[self.action]


def _doubtful(nlu: Any) -> bool:
    return bool(nlu.out_of_scope) or float(nlu.confidence) < LOW_CONFIDENCE


def unsure(nlu: Any) -> bool:
    """Whether the intent model is out of scope or unsure (and the message has words at all)."""
    return getattr(nlu, "reason", "") not in ("empty", "no_words") and _doubtful(nlu)


def decide(text: str, nlu: Any, state: dict[str, Any], in_knowledge_base: bool = False) -> Decision:
    """Choose the next step and update ``state`` (the conversation's stored policy memory).

    ``nlu`` has ``intent``, ``confidence``, ``out_of_scope``, ``tone.label`` and (optionally) the
    verdict's ``reason``. ``in_knowledge_base``: a retrieved KB passage uses nearly every word of the
    message (see :func:`bot.conversation.limits.covers`); an unsure intent is then no reason to ask
    again, and the answer comes from the KB.
    """
    tone = getattr(getattr(nlu, "tone", None), "label", "neutral")
    low = _doubtful(nlu) and not in_knowledge_base
    # A message with no words (emoji, punctuation or markup only) is not a question the bot failed
    # to understand: it is asked what it can help with, and a person is not paged for it.
    wordless = getattr(nlu, "reason", "") in ("empty", "no_words")
    # "ok thanks" after a reply: the intent model has no intent for it, and the bot did not fail the
    # customer; thanks are thanked (never a step towards a handoff for repeated low confidence)
    thanks = low and tone != "angry" and only_thanks(text)
    state["turns"] = int(state.get("turns", 0)) + 1
    if not wordless:
        state["low_confidence_streak"] = int(state.get("low_confidence_streak", 0)) + 1 if low and not thanks else 0
        state["angry_streak"] = int(state.get("angry_streak", 0)) + 1 if tone == "angry" else 0
    state["last_intent"] = nlu.intent
    # asked for the order's e-mail address last turn: holds for the next message only
    awaiting_email = bool(state.pop("order_lookup_pending", False))

    if wordless:  # before the angry rules: "😡😡" is asked what it is about, and pages nobody
        return Decision("clarify", "no_words")
    if thanks:
        return Decision("clarify", "thanks")
    if INJECTION_RE.search(text):
        state["injection_attempts"] = int(state.get("injection_attempts", 0)) + 1
        return Decision("answer", "prompt_injection_attempt", grounded_only=True)
    if nlu.intent == "contact_human_agent" and not low or HUMAN_RE.search(text):
        return Decision("handoff", "customer_asked_for_human")
    not_helped = int(state.get("thumbs_down", 0)) > 0 or int(state.get("unhelpful_replies", 0)) > 0
    if tone == "angry" and (not_helped or state["angry_streak"] >= 2):
        return Decision("handoff", "angry_and_not_helped")
    # an order number and its e-mail address given together ("LK-49281590 t.wouters@inbox.example when is my sofa
    # coming"): the customer asks about that order, unless the intent model is sure of a policy question
    credentials = bool(ORDER_RE.search(text) and EMAIL_RE.search(text)) and (low or nlu.intent in ORDER_STATE_INTENTS)
    if awaiting_email and (EMAIL_RE.search(text) or ORDER_RE.search(text)) or order_details_only(text) or credentials:
        # the answer to "which e-mail address did you order with?" names no intent of its own, and nor
        # does an order number or address given on its own ("LK-44672073" after the reply asked for it;
        # "sorry, try y.claes@post.example" after a lookup found nothing)
        state["order_lookup_pending"] = not EMAIL_RE.search(text)
        state["low_confidence_streak"] = 0
        return Decision("lookup_order", "order_email_given" if EMAIL_RE.search(text) else "order_number_given")
    if low:
        if state["low_confidence_streak"] >= 2:
            return Decision("handoff", "repeated_low_confidence")
        if tone == "angry":
            # "THIS IS RIDICULOUS. My order is 5 days late ... I want my money back NOW!": asking an angry
            # customer to rephrase fails them a second time; a person takes it
            return Decision("handoff", "angry_and_not_understood")
        return Decision("clarify", "out_of_scope" if nlu.out_of_scope else "low_confidence")
    if nlu.intent in ORDER_STATE_INTENTS and ORDER_RE.search(text):
        # the order's details are shown only with the e-mail address it was placed with
        state["order_lookup_pending"] = not EMAIL_RE.search(text)
        return Decision("lookup_order", "order_number_given")
    if nlu.intent == "complaint" and tone == "angry":
        return Decision("escalate", "angry_complaint")
    if in_knowledge_base and _doubtful(nlu):
        return Decision("answer", "in_knowledge_base")
    return Decision("answer", "intent_recognised")
