"""One small NLU model, trained once per session on a slice of the sample company's tickets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "models" / "sample" / "tickets.jsonl"

INTENTS = ["track_order", "get_refund", "delivery_options", "delivery_period", "recover_password",
           "cancel_order", "get_invoice", "contact_human_agent"]

# Hand-written emotion examples: enough for the tone head to learn something in a second.
TONE_EXAMPLES = [
    ("I am so angry, this is outrageous and I hate it", "anger"),
    ("furious with you people, absolutely livid", "anger"),
    ("this makes me mad, what a disgrace", "anger"),
    ("I'm fuming, worst service ever", "anger"),
    ("what a wonderful day, I love it", "joy"),
    ("so happy with my new lamp, it is beautiful", "joy"),
    ("this is delightful, made my day", "joy"),
    ("yay it arrived and it's perfect", "joy"),
    ("things will get better, stay positive", "optimism"),
    ("I'm hopeful it will work out soon", "optimism"),
    ("looking forward to a brighter week", "optimism"),
    ("keep going, we can do this", "optimism"),
    ("I feel so sad and lonely tonight", "sadness"),
    ("heartbroken, my favourite mug broke", "sadness"),
    ("feeling down and miserable today", "sadness"),
    ("I miss the old days, it hurts", "sadness"),
    ("how do I update my billing address", "neutral"),
    ("what are your opening hours", "neutral"),
    ("I would like to check the status of an order", "neutral"),
    ("can I pay with a credit card", "neutral"),
    ("where can I find my invoice", "neutral"),
    ("is there a fee for changing an order", "neutral"),
]

OUT_OF_SCOPE = ["What's the weather going to be like tomorrow?", "Tell me a joke about cats.",
                "Who won the football match last night?", "Can you help me with my maths homework?",
                "What is the meaning of life?", "Recommend me a good movie to watch tonight."]


def small_examples(per_intent: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in TICKETS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    out: list[tuple[str, str]] = []
    for intent in INTENTS:
        out += [(r["customer_message"], intent) for r in rows if r["intent"] == intent][:per_intent]
    return out


@pytest.fixture(scope="session")
def nlu_model(tmp_path_factory: pytest.TempPathFactory):
    """A real NLU (real MiniLM) trained on 8 intents x 8 tickets, saved to a temp folder."""
    if not TICKETS.exists():
        pytest.skip(f"sample tickets not found at {TICKETS}")
    from bot.conversation.nlu import NLU

    out = tmp_path_factory.mktemp("nlu") / "v-test-1"
    return NLU.train(small_examples(), out, out_of_scope=OUT_OF_SCOPE, tone_examples=TONE_EXAMPLES,
                     version="v-test-1")


TONE_VALIDATION = [
    ("I am livid, this is an outrage", "anger"),
    ("so angry right now, hate this", "anger"),
    ("what a lovely surprise, I'm thrilled", "joy"),
    ("love it, best day ever", "joy"),
    ("it will all work out, I'm hopeful", "optimism"),
    ("better days are coming", "optimism"),
    ("I feel so low and sad", "sadness"),
    ("crying all night, so miserable", "sadness"),
]


@pytest.fixture(scope="session")
def nlu_branched(tmp_path_factory: pytest.TempPathFactory):
    """A real NLU whose tone model has a 1-layer fine-tuned tone branch (a few seconds of training)."""
    if not TICKETS.exists():
        pytest.skip(f"sample tickets not found at {TICKETS}")
    from bot.conversation.nlu import NLU

    out = tmp_path_factory.mktemp("nlu-branch") / "v-branch"
    return NLU.train(small_examples(4), out, out_of_scope=OUT_OF_SCOPE, tone_examples=TONE_EXAMPLES * 4,
                     tone_validation=TONE_VALIDATION, tone_branch_layers=1, version="v-branch")


@pytest.fixture(scope="session")
def tone_data() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training, validation) tone examples: the small labelled sets the fixtures above train on."""
    return TONE_EXAMPLES * 4, TONE_VALIDATION
