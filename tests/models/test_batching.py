"""Continuous batching and prefix reuse give the same greedy replies as one call at a time."""

from __future__ import annotations

import threading

import pytest

from knowledge.errors import NotFound
from models.batching import PrefixCache
from models.generation import TransformersGenerator
from models.prompting import build_messages

FACTS = [("return_window_days", "30"), ("support_phone", "+1 555 0100"), ("standard_delivery_days", "3-5")]
QUESTIONS = [
    "How do I cancel my order?",
    "How many days do I have to return a lamp?",
    "What is your phone number?",
    "How long does delivery take?",
    "Can I change the delivery address after ordering?",
]


def _messages(question: str) -> list[dict[str, str]]:
    return build_messages(message=question, intent="general", tone="neutral", facts=FACTS)


def test_prefix_cache_finds_longest_prefix_and_leaves_one_token():
    import torch

    cache = PrefixCache(capacity=2, min_tokens=3)
    layers = [(torch.zeros(1, 1, 6, 2), torch.zeros(1, 1, 6, 2))]
    cache.store("a", [1, 2, 3, 4, 5, 6], layers)
    n, got = cache.lookup("a", [1, 2, 3, 4, 9])
    assert n == 4 and got[0][0].shape[2] == 4
    n, _ = cache.lookup("a", [1, 2, 3, 4, 5, 6])  # identical prompt: the last token is recomputed
    assert n == 5
    assert cache.lookup("b", [1, 2, 3, 4, 9]) == (0, None)  # another adapter never shares
    assert cache.lookup("a", [1, 2, 7]) == (0, None)  # too short a match to be worth it
    cache.store("a", [7, 7, 7], layers)
    cache.store("a", [8, 8, 8], layers)
    assert cache.lookup("a", [1, 2, 3, 4, 9]) == (0, None)  # evicted (capacity 2)


@pytest.mark.slow
def test_concurrent_batched_replies_match_one_at_a_time(base_model):
    model, tokenizer = base_model
    alone = TransformersGenerator(None, model=model, tokenizer=tokenizer, max_batch=0)
    expected = [alone.generate(_messages(q), max_new_tokens=24).text for q in QUESTIONS]

    batched = TransformersGenerator(None, model=model, tokenizer=tokenizer, max_batch=8)
    results: dict[int, str] = {}
    lengths = [24, 24, 9, 24, 17]  # rows leave the batch at different steps

    def ask(i: int) -> None:
        results[i] = batched.generate(_messages(QUESTIONS[i]), max_new_tokens=lengths[i]).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    engine = batched.engine
    assert engine.max_rows_seen >= 2, "the concurrent requests were never decoded together"
    for i, text in results.items():
        # greedy decoding is deterministic; padding only changes summation order, so compare the
        # words of each (possibly shorter) reply with the prefix of the one-at-a-time reply
        want = expected[i].split()
        got = text.split()
        assert got[: len(got) - 1] == want[: len(got) - 1], (QUESTIONS[i], text, expected[i])
    # the system prompt's rules are shared: later prompts reused an earlier prompt's KV cache
    assert engine.prefix_tokens_reused > 0
    assert engine.prefix_tokens_reused < engine.prompt_tokens
    batched.close()


@pytest.mark.slow
def test_closing_a_stream_frees_its_row_and_unknown_adapter_fails(base_model):
    model, tokenizer = base_model
    gen = TransformersGenerator(None, model=model, tokenizer=tokenizer, max_batch=4)
    stream = gen.stream(_messages(QUESTIONS[0]), max_new_tokens=100)
    first = next(stream)
    stream.close()
    assert first and stream.result.completion_tokens < 100
    # the worker keeps serving after a reader left early
    result = gen.generate(_messages(QUESTIONS[1]), max_new_tokens=3)
    assert result.completion_tokens == 3 and result.finish_reason == "length"
    with pytest.raises(NotFound):
        gen.generate(_messages(QUESTIONS[1]), adapter_id="does-not-exist", max_new_tokens=2)
    gen.close()
