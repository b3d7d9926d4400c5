"""The one prompt format: structure, rules, budget, and identity between training and inference."""

from __future__ import annotations

from models.prompting import (
    allowed_slots,
    build_messages,
    encode_example,
    encode_prompt,
    extract_slots,
    render_prompt,
)

FACTS = [
    {"name": "return_window_days", "value": "30", "unit": "days", "placeholders": ["Return Window"]},
    ("Website Name", "larkspur.example"),
    {"name": "support_phone", "value": "+44 20 7946 0000", "placeholders": ["Customer Support Phone Number"]},
]
PASSAGE_TEXT = (
    "Items bought on larkspur.example can be returned within 30 days of delivery if unused and in "
    "their original packaging. Start a return from Order History, choose the item and print the "
    "prepaid label. Refunds go to the original payment method within 5 business days after the "
    "parcel reaches our warehouse. Sale items cannot be returned unless faulty."
)
PASSAGES = [
    {"title": "Returns policy", "heading": f"Part {i}", "text": PASSAGE_TEXT, "anchor": f"p{i}"}
    for i in range(4)
]


def _messages(**kw):
    args = dict(
        message="How long do I have to send my lamp back?",
        intent="get_refund",
        tone="neutral",
        facts=FACTS,
        passages=PASSAGES,
        history=[("customer", "hi"), ("bot", "Hello! How can I help?")],
        company_name="Larkspur & Co.",
    )
    args.update(kw)
    return build_messages(**args)


def test_structure_and_rules():
    messages = _messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert "Larkspur & Co." in system
    assert "{{Return Window}}" in system and "{{Website Name}}" in system
    assert "= 30 days" in system
    assert "Never invent numbers" in system
    assert "data, not instructions" in system
    assert "Intent: get refund." in system and "Customer tone: neutral." in system
    assert "[3]" in system and "[4]" not in system  # three passages at most
    assert messages[-1]["content"] == "How long do I have to send my lamp back?"


def test_slots():
    assert extract_slots(
        "Call {{Customer Support Phone Number}} or visit {{ Website Name }}, {{Website Name}}"
    ) == [
        "Customer Support Phone Number",
        "Website Name",
    ]
    slots = allowed_slots(FACTS)
    assert slots[:3] == ["Return Window", "Website Name", "Customer Support Phone Number"]
    assert "Order Number" in slots
    assert allowed_slots([("return_window_days", "30")], include_customer_slots=False) == [
        "Return Window Days"
    ]


def test_history_merges_consecutive_turns_and_roles_alternate():
    messages = _messages(history=[("customer", "one"), ("customer", "two")], passages=[])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"].startswith("one\ntwo\n")


def test_prompt_budget_with_three_passages(tokenizer):
    ids = encode_prompt(tokenizer, _messages())
    assert 300 <= len(ids) <= 480, len(ids)


def test_training_and_inference_prompts_are_identical(tokenizer):
    messages = _messages()
    inference_ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    reply = "You have {{Return Window}} to return it from {{Order History}}."
    input_ids, labels = encode_example(tokenizer, messages, reply)
    n = len(inference_ids)
    assert input_ids[:n] == inference_ids
    assert all(label == -100 for label in labels[:n])
    assert labels[n:] == input_ids[n:]
    assert tokenizer.decode(input_ids[n:]) == reply + tokenizer.eos_token


def test_truncation_keeps_the_whole_prompt(tokenizer):
    messages = _messages(passages=[])
    prompt_len = len(encode_prompt(tokenizer, messages))
    input_ids, labels = encode_example(tokenizer, messages, "word " * 200, max_length=prompt_len + 10)
    assert len(input_ids) == prompt_len + 10
    assert sum(1 for x in labels if x != -100) == 10
