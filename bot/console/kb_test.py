"""The KB editor's "test a question": retrieval and the bot's reply, draft vs. published, side by side.

Both sides go through the bot's own answering path: :class:`bot.conversation.responder.Responder`
(retrieval, the shared prompt format, the configured generator with the active adapter, and the
guardrail :class:`~bot.conversation.guardrails.Grounder` that fills ``{{Slots}}`` from KB facts and
drops unbacked claims). The published side reads the knowledge base as customers get it now;
the draft side reads :meth:`knowledge.service.KnowledgeService.preview`, in which the draft
revision is in force for this test only. Nothing is published and nothing is stored in
conversations.

Retrieval takes milliseconds; a reply takes seconds on a small CPU. The page therefore shows the
passages at once and fetches each side's reply separately (JSON), one after the other; a reply
that runs past ``Settings.kb_test_timeout_s`` is cut and replaced by the policy quote the bot
falls back to, and the page says so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.conversation.policy import decide
from bot.conversation.responder import Responder
from knowledge.errors import InvalidInput

log = logging.getLogger(__name__)

SIDES = ("draft", "published")
MAX_QUESTION_CHARS = 500
TIMEOUT_NOTE = ("The model did not finish within {s:.0f} s on this server, so this is the policy quote the bot "
                "falls back to when a reply takes too long. Try again when the server is less busy.")


@dataclass
class Side:
    """One column of the comparison."""

    key: str  # "draft" | "published"
    label: str
    passages: list[dict[str, Any]] = field(default_factory=list)
    facts: list[dict[str, Any]] = field(default_factory=list)  # the facts the model is given


@dataclass
class Reply:
    """The bot's reply on one side (what the JSON endpoint returns)."""

    side: str
    text: str
    verdict: str
    citations: list[dict[str, Any]]
    intent: str
    tone: str
    policy_action: str | None
    policy_reason: str | None
    adapter_id: str | None
    model_id: str | None
    generation_ms: float | None
    timed_out: bool = False
    error: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_question(question: str) -> str:
    question = " ".join((question or "").split())
    if not question:
        raise InvalidInput("Type a question to test.", code="empty_query", field="q")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInput(f"Keep the question under {MAX_QUESTION_CHARS} characters.", code="query_too_long",
                           field="q")
    return question


def check_side(side: str) -> str:
    if side not in SIDES:
        raise InvalidInput("side must be 'draft' or 'published'.", code="bad_side", field="side")
    return side


def draft_label(draft: Any) -> str:
    if draft.status == "draft":
        return f"With draft r{draft.number} (draft)"
    return f"With r{draft.number} ({draft.status}) in force"


PUBLISHED_LABEL = "Published (what customers get now)"


def _knowledge(services: Any, draft: Any, side: str) -> Any:
    if side == "published":
        return services.knowledge
    return services.knowledge.preview([(draft.document_id, draft.number)])


def _responder(services: Any, knowledge: Any, timeout_s: float | None = None) -> Responder:
    settings = services.settings
    return Responder(knowledge, services.generator, company_name=settings.company_name,
                     max_new_tokens=settings.max_new_tokens, adapter_id=services.active_adapter_id(),
                     timeout_s=timeout_s)


def retrieval_sides(services: Any, doc_id: str, question: str, revision: int | None = None
                    ) -> tuple[Side, Side]:
    """What the bot would retrieve (passages + the facts put in its prompt), published vs. draft."""
    question = check_question(question)
    draft = services.knowledge.get(doc_id, revision)
    now = datetime.now(UTC)
    sides = []
    for key, label in (("published", PUBLISHED_LABEL), ("draft", draft_label(draft))):
        knowledge = _knowledge(services, draft, key)
        passages, facts = _responder(services, knowledge).retrieve(question, [], now)
        for p in passages:
            p["draft"] = (key == "draft" and p.get("document_id") == doc_id and p.get("revision") == draft.number
                          and draft.status == "draft")
        sides.append(Side(key, label, passages, facts))
    return sides[0], sides[1]


def _understand(services: Any, question: str) -> tuple[str, str, Any]:
    """Intent, tone and the policy's decision, as the conversation manager would get them."""
    try:
        result = services.nlu.current().predict(question, history=[])
    except Exception as exc:  # no NLU trained (or a test double): answer as a plain question
        log.info("kb test: NLU unavailable (%s); using intent 'unknown'", exc)
        return "unknown", "neutral", None
    return result.intent, result.tone.label, decide(question, result, {})


def bot_reply(services: Any, doc_id: str, question: str, revision: int | None, side: str,
              *, timeout_s: float) -> Reply:
    """The reply the bot would give on ``side`` (synchronous: run it in a worker thread).

    Generation stops after ``timeout_s`` (the reply then falls back to quoting the policy, as it
    would in a live chat, and ``timed_out`` is set).
    """
    question, side = check_question(question), check_side(side)
    draft = services.knowledge.get(doc_id, revision)
    knowledge = _knowledge(services, draft, side)
    intent, tone, decision = _understand(services, question)
    responder = _responder(services, knowledge, timeout_s)
    started = time.perf_counter()
    result = responder.answer(text=question, intent=intent, tone=tone, history=[],
                              grounded_only=bool(decision and decision.grounded_only), at=datetime.now(UTC))
    timed_out = bool(result.error and result.error.startswith("TimeoutError"))
    note = None
    if timed_out:
        note = TIMEOUT_NOTE.format(s=timeout_s)
    elif result.error:
        note = "The model failed, so this is the policy quote the bot falls back to."
    elif decision is not None and decision.action != "answer":
        note = (f"In a live chat the policy would {decision.action} here ({decision.reason}); this is the answer "
                "it gives once the question is clear.")
    log.info("kb test %s %s r%s: %s in %.0f ms (%s)", side, doc_id, draft.number, result.verdict,
             (time.perf_counter() - started) * 1000, "timed out" if timed_out else "ok")
    return Reply(side=side, text=result.text, verdict=result.verdict, citations=result.citations, intent=intent,
                 tone=tone, policy_action=decision.action if decision else None,
                 policy_reason=decision.reason if decision else None, adapter_id=result.adapter_id,
                 model_id=result.model_id, generation_ms=result.generation_ms, timed_out=timed_out,
                 error=result.error, note=note)


def too_slow(side: str, timeout_s: float) -> Reply:
    """The answer when the worker did not come back at all (a generator that hangs)."""
    return Reply(side=side, text="", verdict="timeout", citations=[], intent="", tone="", policy_action=None,
                 policy_reason=None, adapter_id=None, model_id=None, generation_ms=None, timed_out=True,
                 note=f"No reply within {timeout_s:.0f} s: the model is busy or stuck. Try again in a moment.")
