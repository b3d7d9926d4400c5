"""Generation backends: the scripted fake, the OpenAI-compatible client (SSE), in-process transformers."""

from __future__ import annotations

import json

import httpx
import pytest

from knowledge.errors import HybrideskError, NotFound, Unavailable
from models.generation import (
    Generator,
    OpenAICompatibleGenerator,
    ScriptedGenerator,
    TransformersGenerator,
)
from models.prompting import build_messages

MESSAGES = build_messages(message="How do I cancel my order?", intent="cancel_order", tone="neutral")


def test_scripted_streams_word_by_word_and_records_calls():
    gen = ScriptedGenerator().enqueue("Open {{Order History}} and press cancel.")
    assert isinstance(gen, Generator)
    stream = gen.stream(MESSAGES, adapter_id="v1", max_new_tokens=50)
    pieces = list(stream)
    assert pieces == ["Open ", "{{Order ", "History}} ", "and ", "press ", "cancel."]
    result = stream.result
    assert result.text == "Open {{Order History}} and press cancel."
    assert result.completion_tokens == 6 and result.prompt_tokens > 0
    assert result.adapter_id == "v1" and result.finish_reason == "stop" and result.duration_s >= 0
    assert gen.calls[0]["adapter_id"] == "v1" and gen.calls[0]["messages"] == MESSAGES


def test_scripted_cap_stop_and_failure():
    gen = ScriptedGenerator(default="one two three four STOP five")
    capped = gen.generate(MESSAGES, max_new_tokens=2)
    assert capped.text == "one two " and capped.finish_reason == "length"
    stopped = gen.generate(MESSAGES, stop=["STOP"])
    assert stopped.text == "one two three four " and stopped.finish_reason == "stop"
    gen.enqueue("a b c", fail_after=2)
    stream = gen.stream(MESSAGES)
    with pytest.raises(Unavailable):
        list(stream)
    stream.close()
    assert stream.result.text == "a b " and stream.result.finish_reason == "error"
    with pytest.raises(HybrideskError):
        ScriptedGenerator().generate(MESSAGES)


def _sse(chunks: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_openai_compatible_parses_sse_and_usage():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["body"] = json.loads(request.content)
        body = _sse(
            [
                {"choices": [{"delta": {"role": "assistant"}}]},
                {"choices": [{"delta": {"content": "Hello"}}]},
                {"choices": [{"delta": {"content": " there"}, "finish_reason": "length"}]},
                {"choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 2}},
            ]
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    gen = OpenAICompatibleGenerator(
        "http://127.0.0.1:9/v1", "smollm2", transport=httpx.MockTransport(handler)
    )
    stream = gen.stream(MESSAGES, adapter_id="larkspur-v1", max_new_tokens=2, stop=["\n\n"])
    assert list(stream) == ["Hello", " there"]
    r = stream.result
    assert (r.prompt_tokens, r.completion_tokens, r.finish_reason) == (120, 2, "length")
    assert seen["url"] == "http://127.0.0.1:9/v1/chat/completions"
    assert seen["body"]["model"] == "larkspur-v1" and seen["body"]["stream"] is True
    assert seen["body"]["max_tokens"] == 2 and seen["body"]["stop"] == ["\n\n"]


def test_openai_compatible_errors():
    gen = OpenAICompatibleGenerator(
        "http://127.0.0.1:9",
        "m",
        transport=httpx.MockTransport(lambda r: httpx.Response(404, text="no such model")),
    )
    with pytest.raises(NotFound, match="no such model"):
        gen.generate(MESSAGES)

    def boom(request):
        raise httpx.ConnectError("refused")

    gen = OpenAICompatibleGenerator("http://127.0.0.1:9", "m", transport=httpx.MockTransport(boom))
    with pytest.raises(Unavailable, match="Cannot reach"):
        gen.generate(MESSAGES)


@pytest.mark.slow
def test_transformers_stream_matches_generate_and_hf(base_model):
    import torch

    model, tokenizer = base_model
    gen = TransformersGenerator(None, model=model, tokenizer=tokenizer, model_id="smollm2")
    stream = gen.stream(MESSAGES, max_new_tokens=12)
    pieces = list(stream)
    result = stream.result
    assert "".join(pieces) == result.text and result.completion_tokens == 12
    assert result.finish_reason == "length" and result.first_token_s is not None
    # same greedy tokens as transformers' own generate
    ids = tokenizer(result.prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True) == result.text
    assert result.prompt_tokens == ids["input_ids"].shape[1]
    with pytest.raises(NotFound):
        gen.generate(MESSAGES, adapter_id="does-not-exist", max_new_tokens=2)
