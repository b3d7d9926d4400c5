"""The bot's work as rasa-sdk actions.

The conversation manager runs them in process through rasa-sdk's ``ActionExecutor``; a Rasa
deployment can call the very same classes through rasa-sdk's action server::

    python -m rasa_sdk --actions bot.conversation.actions --port 5055 --interface 127.0.0.1

Actions read what they need from the tracker: the latest message (text, intent) and its
metadata (``tone``, ``grounded_only``, ``conversation_id``, ``policy_reason``, the conversation's
``mode``). Their output is one bot message whose ``custom`` payload carries citations and the
guardrail verdict. Behind a Rasa deployment the metadata comes from the customer's channel, so the
answer's time (``at``) is never later than now and an ``adapter_id`` is taken only as a plain
registry name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.conversation.policy import EMAIL_RE, ORDER_RE, only_thanks

log = logging.getLogger(__name__)

HANDOFF_TEXT = (
    "I'm connecting you with a member of our support team now. They'll see this conversation, "
    "so you won't need to repeat yourself."
)
ESCALATE_TEXT = (
    "I'm sorry — that is not the experience we want you to have. I've passed your complaint to a "
    "senior member of our support team, who will pick this conversation up."
)
WAITING_TEXT = (
    "You're in the queue for a member of our support team, and they'll reply here as soon as one is "
    "free; they will see everything you write. Until then I can still answer questions about our policies."
)
NO_WORDS_TEXT = (
    "I couldn't find any words in that message. What can I help you with: an order, a delivery, "
    "a return or refund, a payment or invoice, or your account?"
)
CLARIFY_TEXT = (
    "I want to be sure I help with the right thing. Is your question about an order, a delivery, "
    "a return or refund, a payment or invoice, or your account?"
)

SORRY_TEXT = "I'm sorry this has been frustrating, and that I haven't been able to sort it out."
#: to a customer who is upset at their first message, before the bot has tried anything (a smashed vase)
SORRY_FIRST_TEXT = "I'm sorry about this, and I want to make sure it gets sorted out properly."
THANKS_TEXT = "You're welcome, and thank you for letting us know! Is there anything else I can help you with?"
OTHER_LANGUAGE_TEXT = (
    "I'm sorry, I can only answer in English. Ask me about an order, a delivery, a return or refund, a "
    "payment or your account, or ask for a person: our support team may be able to help in your language."
)
# frequent words of the languages Larkspur's customers write in besides English (Dutch, German, French,
# Spanish), none of them an English word
_FOREIGN_WORDS = frozenset(re.findall(r"\S+",
    "ik mijn waar wat hoe het een niet kan mag bestelling pakket graag bedankt ich ist meine wo wie nicht "
    "und bitte bestellung paket kann ein eine der das je mon ma mes est où commande pas colis merci "
    "veux mi mis dónde donde está esta cuánto cuanto cuesta pedido envío envio quiero gracias qué cómo "
    # (QA: "Combien de temps ai-je pour retourner un article ?", "Wie lange dauert die Lieferung nach
    # Deutschland?", "Hoe lang duurt de levering?" were asked to rephrase, in English)
    "de des du le les une pour comment combien temps retourner livraison bonjour voudrais avec dans quand "
    "dem den lange dauert lieferung nach möchte wann warum rücksendung zurückgeben hoe lang duurt levering "
    "bezorging wil wanneer terugsturen retourneren por para tiempo devolver"))
_ENGLISH_WORDS = frozenset(re.findall(
    r"\S+", "i my is the a an what where how when can do does you your order to of and in it for with are"))


def other_language(text: str) -> bool:
    """Whether ``text`` reads as another language than English ("Wo ist meine Bestellung?")."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    foreign = sum(w in _FOREIGN_WORDS for w in words)
    return foreign >= 2 and foreign > sum(w in _ENGLISH_WORDS for w in words)


def _history(tracker: Tracker, limit: int = 6) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for event in tracker.events:
        if event.get("event") == "user" and event.get("text"):
            out.append(("customer", event["text"]))
        elif event.get("event") == "bot" and event.get("text"):
            out.append(("assistant", event["text"]))
    # the latest user message is the one we answer, not history
    if out and out[-1] == ("customer", tracker.latest_message.get("text")):
        out = out[:-1]
    return out[-limit:]


def _metadata(tracker: Tracker) -> dict[str, Any]:
    return tracker.latest_message.get("metadata") or {}


# Behind a Rasa deployment the metadata is the customer's own (the REST channel's ``metadata``,
# Socket.IO's ``customData``): only the in-process manager's values are trusted as they are.
ADAPTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _answer_time(meta: dict[str, Any]) -> datetime:
    """The time to answer for: the metadata's ``at``, never later than now (a future time would
    answer from policy revisions scheduled but not announced yet)."""
    now = datetime.now(UTC)
    try:
        at = datetime.fromisoformat(str(meta["at"])) if meta.get("at") else now
    except ValueError:
        return now
    return min(at if at.tzinfo else at.replace(tzinfo=UTC), now)


def _adapter_id(meta: dict[str, Any]) -> str | None:
    """An adapter named in the metadata, only as a plain registry name (never a path to load)."""
    wanted = meta.get("adapter_id")
    if isinstance(wanted, str) and ADAPTER_ID_RE.match(wanted) and ".." not in wanted:
        return wanted
    return None


def _prompt_intent(tracker: Tracker) -> str:
    """The intent the model is told. For a question the intent model called out of scope but the KB
    speaks about (answered all the same), its best known intent: the model was never trained on
    "out_of_scope", and retrieval, not the intent, supplies the facts."""
    intent = (tracker.latest_message.get("intent") or {}).get("name") or "unknown"
    if intent == "out_of_scope":
        ranking = tracker.latest_message.get("intent_ranking") or []
        known = [r.get("name") for r in ranking if isinstance(r, dict) and isinstance(r.get("name"), str)
                 and r.get("name") not in ("out_of_scope", "")]
        return known[0] if known else intent
    return intent


def _streaming(dispatcher: CollectingDispatcher) -> bool:
    return getattr(dispatcher, "_stream_sink", None) is not None


async def _stream_blocking(dispatcher: CollectingDispatcher, work, timeout_s: float | None = None) -> Any:
    """Run ``work(on_piece)`` in a thread and forward its pieces as rasa-sdk stream chunks."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    streaming = _streaming(dispatcher)

    def deliver(item: tuple[str, Any]) -> None:
        # after a timeout the awaiting coroutine (and maybe its loop) is gone: drop late pieces
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def on_piece(piece: str) -> None:
        if streaming:
            deliver(("piece", piece))

    def target() -> None:
        try:
            result = work(on_piece)
            deliver(("done", result))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            deliver(("error", exc))

    threading.Thread(target=target, name="hybridesk-answer", daemon=True).start()
    if streaming:
        await dispatcher.stream_start()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    while True:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            kind, value = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            if streaming:
                dispatcher._stream_active = False
            raise TimeoutError(f"the answer took longer than {timeout_s:.0f} s") from None
        if kind == "piece":
            await dispatcher.stream_chunk(text=value)
            continue
        if streaming:
            dispatcher._stream_active = False  # chunks were delivered in band; no replay
        if kind == "error":
            raise value
        return value


class ActionAnswerFromPolicy(Action):
    """Answer with the fine-tuned model, grounded in the knowledge base's current facts."""

    def name(self) -> str:
        return "action_answer_from_policy"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        from bot.conversation.responder import Responder
        from bot.services import runtime_services

        services = runtime_services()
        meta = _metadata(tracker)
        intent = _prompt_intent(tracker)
        text = tracker.latest_message.get("text") or ""
        at = _answer_time(meta)
        responder = Responder(
            services.knowledge, services.generator, company_name=services.settings.company_name,
            max_new_tokens=services.settings.max_new_tokens,
            adapter_id=_adapter_id(meta) or services.active_adapter_id(),
            timeout_s=services.settings.generation_timeout_s,
            products=services.product_words(),
        )
        customer_values = {}
        order = ORDER_RE.search(text)
        if order:
            customer_values = {"Order Number": order.group(0), "Order Number Anonymized": order.group(0),
                               "Purchase ID Anonymized": order.group(0)}

        def work(on_piece):
            return responder.answer(
                text=text, intent=intent, tone=meta.get("tone", "neutral"), history=_history(tracker),
                on_piece=on_piece, grounded_only=bool(meta.get("grounded_only")),
                customer_values=customer_values, at=at,
            )

        # The responder stops a slow generation itself and quotes the policy instead; this outer
        # limit only catches a generator that hangs without producing anything.
        result = await _stream_blocking(dispatcher, work, services.settings.generation_timeout_s * 1.5 + 2)
        dispatcher.utter_message(
            text=result.text,
            json_message={
                "citations": result.citations,
                "guardrail": result.guardrail,
                "verdict": result.verdict,
                "model_id": result.model_id,
                "adapter_id": result.adapter_id,
                "prompt": result.prompt,
                "raw_output": result.raw_output,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "generation_ms": result.generation_ms,
                "error": result.error,
            },
        )
        return [SlotSet("last_verdict", result.verdict)]


class ActionClarify(Action):
    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher, tracker, domain) -> list:
        meta = _metadata(tracker)
        said = tracker.latest_message.get("text") or ""
        if meta.get("mode") == "handoff_requested":
            text = WAITING_TEXT  # "is anyone there?" from a customer in the queue
        elif meta.get("policy_reason") == "no_words":
            text = NO_WORDS_TEXT
        elif only_thanks(said):  # (not "Thanks in advance! My widget is fizzing": that one is asked about)
            text = THANKS_TEXT
        elif other_language(said):
            text = OTHER_LANGUAGE_TEXT
        else:
            text = CLARIFY_TEXT
        dispatcher.utter_message(text=text, json_message={"verdict": "pass", "citations": []})
        return []


class ActionHandoff(Action):
    """Hand the conversation to a person; the manager flips the conversation into handoff mode."""

    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher, tracker, domain) -> list:
        meta = _metadata(tracker)
        reason = meta.get("policy_reason", "customer_asked_for_human")
        # Already in the agents' queue: say so, rather than announcing the handoff again.
        text = WAITING_TEXT if meta.get("mode") == "handoff_requested" else HANDOFF_TEXT
        if reason.startswith("angry") and text == HANDOFF_TEXT:
            # not the bare announcement to a customer who is fed up; "I haven't been able to sort it out" only
            # after the bot has answered something (not to "my package arrived and the vase is smashed")
            sorry = SORRY_TEXT if reason == "angry_and_not_helped" else SORRY_FIRST_TEXT
            text = f"{sorry} {text}"
        dispatcher.utter_message(text=text, json_message={"handoff": True, "reason": reason,
                                                           "verdict": "pass", "citations": []})
        return [SlotSet("handoff_requested", True)]


class ActionEscalate(Action):
    def name(self) -> str:
        return "action_escalate"

    async def run(self, dispatcher, tracker, domain) -> list:
        waiting = _metadata(tracker).get("mode") == "handoff_requested"
        dispatcher.utter_message(text=WAITING_TEXT if waiting else ESCALATE_TEXT,
                                 json_message={"handoff": True, "reason": "escalated",
                                               "verdict": "pass", "citations": []})
        return [SlotSet("handoff_requested", True)]


class ActionLookupOrder(Action):
    """Look up an order in the sample store's order table, for the customer who placed it.

    The order number alone shows nothing: the customer also gives the e-mail address the order was
    placed with (in the same message or a later one), so a guessed number reveals no one's order.
    Until both match, the reply is the same whether the order exists or not.
    """

    def name(self) -> str:
        return "action_lookup_order"

    async def run(self, dispatcher, tracker, domain) -> list:
        from bot.db.repositories import OrderRepository
        from bot.services import runtime_services

        said = _customer_turns(tracker)  # newest first
        number = next((m.group(0) for t in said if (m := ORDER_RE.search(t))), None)
        if number is None:
            dispatcher.utter_message(text="Could you give me your order number? It starts with LK-.",
                                     json_message={"verdict": "pass", "citations": []})
            return []
        number = "LK-" + number.upper()[2:].lstrip(" -")  # "lk 42710343" -> "LK-42710343"
        email = next((m.group(0) for t in said if (m := EMAIL_RE.search(t))), None)
        if email is None:
            dispatcher.utter_message(
                text=f"Thanks! To keep your order details private, please tell me the e-mail address you "
                     f"used for order {number}.",
                json_message={"verdict": "pass", "citations": [], "order_number": number, "verified": False})
            return [SlotSet("order_number", number)]
        services = runtime_services()
        with services.db.unit_of_work() as session:
            order = OrderRepository(session).get(number)
            verified = order is not None and hmac.compare_digest(
                (order.email or "").strip().lower().encode(), email.strip().lower().encode())
            late_rule = _late_parcel_rule(services.knowledge) if verified else None
            reply, citations = _describe_order(number, order if verified else None, late_rule=late_rule)
        dispatcher.utter_message(text=reply, json_message={"verdict": "pass", "citations": citations,
                                                           "order_number": number, "verified": verified})
        return [SlotSet("order_number", number)]


def _customer_turns(tracker: Tracker) -> list[str]:
    """What the customer wrote, newest first: the latest message, then earlier user events."""
    latest = tracker.latest_message.get("text") or ""
    earlier = [e.get("text") or "" for e in reversed(tracker.events or []) if e.get("event") == "user"]
    if earlier and earlier[0] == latest:
        earlier = earlier[1:]
    return [latest, *earlier[:6]]


#: the KB fact that says after how many business days past its estimate a parcel counts as late
LATE_PARCEL_FACT = "late_parcel_days"


@dataclass(frozen=True)
class LateRule:
    """After how many business days past its estimate a parcel is late, and where the KB says so."""

    days: int
    citation: dict[str, Any]


def _late_parcel_rule(knowledge: Any) -> LateRule | None:
    """The KB's late-parcel fact in force now (:data:`LATE_PARCEL_FACT`, a whole number of days), or None."""
    try:
        fact = knowledge.facts().get(LATE_PARCEL_FACT)
        if fact is None or not str(fact.value).strip().isdigit():
            return None
        title = knowledge.get(fact.document_id, fact.revision).title
    except Exception:  # the order's status is still worth showing without it
        log.warning("could not read the late-parcel rule from the knowledge base", exc_info=True)
        return None
    return LateRule(int(str(fact.value).strip()), {**fact.citation(), "title": title, "heading": None})


def _business_days_after(day: date, today: date) -> int:
    """Monday-to-Friday days after ``day`` up to and including ``today`` (0 when ``today`` is not later)."""
    return int(np.busday_count(day + timedelta(days=1), today + timedelta(days=1))) if today > day else 0


def _describe_order(number: str, order: Any, *, late_rule: LateRule | None = None,
                    today: date | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The order's status for the customer, and the KB sections it cites.

    An order still on its way after its estimated delivery date is called late, in the KB's terms: how
    many business days past the date it is, and, once that reaches the late-parcel fact's number
    (``late_rule``, "3" in the sample KB), that the company opens an investigation with the carrier
    (QA: an order 10 days past its estimate was shown with the date and nothing else)."""
    if order is None:
        return (f"I couldn't find an order {number} placed with that e-mail address. Please check both in "
                "your order confirmation; if it still doesn't work, I can connect you with a person.", [])
    parts = [f"Order {number} is currently **{order.status}**."]
    citations: list[dict[str, Any]] = []
    if order.carrier and order.tracking_code and order.status in ("shipped", "delivered"):
        parts.append(f"It travels with {order.carrier}, tracking code {order.tracking_code}.")
    if order.estimated_delivery and order.status not in ("delivered", "cancelled", "returned"):
        parts.append(f"Estimated delivery: {order.estimated_delivery:%d %B %Y}.")
        due = order.estimated_delivery.date()
        late = _business_days_after(due, today or datetime.now(UTC).date())
        if late and late_rule is not None:
            limit = late_rule.days
            days = f"{late} business day{'s' if late != 1 else ''}"
            if late >= limit:
                parts.append(
                    f"That was {days} ago, so your parcel is late. When a parcel has not arrived {limit} business "
                    "days after its estimated delivery date, we open an investigation with the carrier, and if it "
                    "is lost we send a replacement or refund you in full, whichever you prefer. Ask for a person "
                    "here and our team will start it.")
            else:
                parts.append(
                    f"That was {days} ago. If it has not arrived {limit} business days after that date, let us "
                    "know and we will open an investigation with the carrier.")
            citations.append(late_rule.citation)
        elif late:
            parts.append("That date has passed.")
    return " ".join(parts).replace("**", ""), citations
