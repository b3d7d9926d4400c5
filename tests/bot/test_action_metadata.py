"""The answer action behind a Rasa deployment: the message metadata is then the customer's own
(Rasa's REST ``metadata``, Socket.IO ``customData``), so it must not pick the answer's time or load
an adapter from an arbitrary path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher


class RecordingResponder:
    """Stands in for the responder: remembers the adapter it was built with and the time it answered for."""

    seen: list[dict[str, Any]] = []

    def __init__(self, knowledge: Any, generator: Any, **kwargs: Any) -> None:
        self.adapter_id = kwargs.get("adapter_id")

    def answer(self, **kwargs: Any) -> Any:
        self.seen.append({"adapter_id": self.adapter_id, "at": kwargs["at"]})
        return SimpleNamespace(text="Returns are accepted within 30 days.", citations=[], guardrail={}, verdict="pass",
                               model_id="fake", adapter_id=self.adapter_id, prompt="", raw_output="",
                               prompt_tokens=1, completion_tokens=1, generation_ms=1.0, error=None)


@pytest.fixture
def answer(monkeypatch):
    from bot.conversation import responder
    from bot.conversation.actions import ActionAnswerFromPolicy
    from bot.services import set_runtime_services

    monkeypatch.setattr(responder, "Responder", RecordingResponder)
    RecordingResponder.seen = []
    settings = SimpleNamespace(company_name="Larkspur & Co.", max_new_tokens=64, generation_timeout_s=10.0)
    set_runtime_services(SimpleNamespace(knowledge=object(), generator=object(), settings=settings,
                                         active_adapter_id=lambda: "larkspur-v8", product_words=frozenset))

    def run(metadata: dict[str, Any]) -> dict[str, Any]:
        latest = {"text": "How long do I have to return a lamp?", "metadata": metadata,
                  "intent": {"name": "check_refund_policy", "confidence": 0.9}, "entities": []}
        tracker = Tracker("rasa-user-1", {}, latest, [{"event": "user", "text": latest["text"]}], False, None, {},
                          "action_listen")
        asyncio.run(ActionAnswerFromPolicy().run(CollectingDispatcher(), tracker, {}))
        return RecordingResponder.seen[-1]

    yield run
    set_runtime_services(None)


def test_a_future_time_in_the_metadata_does_not_answer_from_unannounced_policies(answer):
    before = datetime.now(UTC)
    for sent in ("2031-01-01T00:00:00+00:00", "2031-01-01T00:00:00", "not a date"):
        at = answer({"at": sent})["at"]
        assert before - timedelta(seconds=1) <= at <= datetime.now(UTC), sent
    past = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # the in-process manager's own timestamp is kept
    assert answer({"at": past.isoformat()})["at"] == past


def test_an_adapter_path_in_the_metadata_is_not_loaded(answer):
    for sent in ("/tmp/evil-adapter", "../../../tmp/evil-adapter", "larkspur-v8/../../x", "", None, 42):
        assert answer({"adapter_id": sent})["adapter_id"] == "larkspur-v8", sent
    assert answer({"adapter_id": "larkspur-v9"})["adapter_id"] == "larkspur-v9"  # a registry name still works


def test_an_out_of_scope_question_answered_from_the_kb_tells_the_model_its_best_known_intent():
    from bot.conversation.actions import _prompt_intent

    def tracker(intent: str, ranking: list) -> Tracker:
        latest = {"text": "Can I pay cash on delivery?", "intent": {"name": intent, "confidence": 0.2},
                  "intent_ranking": ranking, "metadata": {}}
        return Tracker("s", {}, latest, [], False, None, {}, "action_listen")

    ranking = [{"name": "check_payment_methods", "confidence": 0.2}, {"name": "payment_issue", "confidence": 0.1}]
    assert _prompt_intent(tracker("out_of_scope", ranking)) == "check_payment_methods"
    assert _prompt_intent(tracker("out_of_scope", [])) == "out_of_scope"
    assert _prompt_intent(tracker("out_of_scope", [{"name": 5}, "junk"])) == "out_of_scope"  # Rasa-side junk
    assert _prompt_intent(tracker("track_order", ranking)) == "track_order"
