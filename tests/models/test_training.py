"""A tiny LoRA run: base weights unchanged, adapter weights changed, loss down, save/reload identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.errors import InvalidInput
from models.config import TrainConfig
from models.prompting import build_messages, encode_prompt, extract_slots
from models.tickets import Ticket
from models.training import build_examples, make_batches

TICKETS = [
    Ticket(
        "test",
        "How do I cancel my order?",
        "Open {{Order History}}, pick the order and press {{Cancel Order}}.",
        "cancel_order",
    ),
    Ticket(
        "test",
        "Where is my parcel?",
        "Follow it live in {{Order History}} under {{Track Order}}.",
        "track_order",
    ),
    Ticket(
        "test",
        "Can I pay with PayPal?",
        "Yes! All options are listed on {{Payment Methods}}.",
        "check_payment_methods",
    ),
    Ticket(
        "test",
        "I forgot my password",
        "No worries: use {{Forgot Password}} on {{Website Name}}.",
        "recover_password",
    ),
    Ticket(
        "test",
        "How can I reach you?",
        "Call {{Customer Support Phone Number}} or use {{Live Chat}}.",
        "contact_customer_service",
    ),
    Ticket(
        "test",
        "I want my money back",
        "Start a refund from {{Order History}}; see {{Refund Policy}}.",
        "get_refund",
    ),
]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    args = dict(
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        batch_size=2,
        max_steps=5,
        learning_rate=5e-3,
        warmup_ratio=0.0,
        val_fraction=0.0,
        dtype="float32",
        max_length=256,
        output_root=str(tmp_path / "adapters"),
        version="tiny-v1",
        checkpoint_every=0,
        distractor_slots=1,
    )
    args.update(kw)
    return TrainConfig(**args)


def test_training_examples_use_the_inference_prompt(tokenizer, tmp_path):
    cfg = _cfg(tmp_path)
    facts = [("Order History", None), ("Cancel Order", None)]
    examples, dropped = build_examples(
        TICKETS[:1], tokenizer, cfg, facts_fn=lambda t: facts, tone_fn=lambda s: "neutral"
    )
    assert dropped == 0
    prompt = encode_prompt(
        tokenizer,
        build_messages(
            message=TICKETS[0].customer_message, intent="cancel_order", tone="neutral", facts=facts
        ),
    )
    ex = examples[0]
    assert ex.input_ids[: len(prompt)] == prompt
    assert ex.labels[: len(prompt)] == [-100] * len(prompt)
    assert all(x != -100 for x in ex.labels[len(prompt) :])


def test_kb_context_gives_a_share_of_examples_the_bots_prompt(tokenizer, tmp_path):
    passages = [{"text": "Cancel under My Account › Orders before dispatch.", "title": "Cancelling an order"}]
    kb_facts = [{"name": "ui_orders", "value": "My Account › Orders", "placeholders": ["Order History"]}]
    asked = []

    def context(text):
        asked.append(text)
        return passages, kb_facts

    ticket = TICKETS[0]
    examples, _ = build_examples([ticket], tokenizer, _cfg(tmp_path, kb_context=1.0, max_length=512),
                                 context_fn=context, tone_fn=lambda s: "neutral")
    own = [s for s in extract_slots(ticket.agent_reply) if s != "Order History"]
    prompt = encode_prompt(tokenizer, build_messages(
        message=ticket.customer_message, intent=ticket.intent, tone="neutral",
        facts=kb_facts + [(s, None) for s in own], passages=passages))
    assert asked == [ticket.customer_message]
    assert examples[0].input_ids[: len(prompt)] == prompt  # the facts, the passage, and the reply's slots
    # a share of 0 (the default) never asks the KB; a share of one half asks for about half
    asked.clear()
    build_examples(TICKETS, tokenizer, _cfg(tmp_path), context_fn=context)
    assert asked == []
    many = TICKETS * 20
    build_examples(many, tokenizer, _cfg(tmp_path, kb_context=0.5, max_length=512), context_fn=context)
    assert 0.3 * len(many) < len(asked) < 0.7 * len(many)
    with pytest.raises(InvalidInput, match="kb_context"):
        _cfg(tmp_path, kb_context=1.5)


def test_packing_and_bucketing_cover_every_reply_token(tokenizer, tmp_path):
    import random

    examples, _ = build_examples(TICKETS, tokenizer, _cfg(tmp_path))
    want = sum(sum(1 for x in e.labels if x != -100) for e in examples)
    for packing in (False, True):
        batches = make_batches(examples, _cfg(tmp_path, packing=packing), random.Random(0), 2)
        got = sum(int((b["labels"] != -100).sum()) for b in batches)
        assert got == want
    packed = make_batches(examples, _cfg(tmp_path, packing=True, max_length=512), random.Random(0), 2)
    assert sum(b["input_ids"].shape[0] for b in packed) < len(examples)  # several examples share a row


def test_a_continued_run_holds_out_its_parents_tickets_whatever_the_seed(tokenizer, tmp_path):
    from models.training import split_train_val

    examples, _ = build_examples(TICKETS, tokenizer, _cfg(tmp_path))
    parent_val = {examples[1].digest, examples[4].digest}
    for seed in (13, 14, 99):
        train_set, val_set = split_train_val(examples, _cfg(tmp_path, seed=seed, val_fraction=0.3), parent_val)
        assert {e.digest for e in val_set} == parent_val
        assert not {e.digest for e in train_set} & parent_val and len(train_set) == len(examples) - 2
    # without a parent the seed decides
    splits = {
        tuple(e.digest for e in split_train_val(examples, _cfg(tmp_path, seed=seed, val_fraction=0.3))[1])
        for seed in range(6)
    }
    assert len(splits) > 1
    # a parent trained on everything (val_fraction 0) holds nothing out: the child's seed decides
    seeded = split_train_val(examples, _cfg(tmp_path, seed=13, val_fraction=0.3))
    assert split_train_val(examples, _cfg(tmp_path, seed=13, val_fraction=0.3), []) == seeded
    assert seeded[1]


def test_the_companys_own_tickets_repeat_in_training_and_never_in_validation(tokenizer, tmp_path):
    from models.training import repeat_own_tickets, split_train_val

    tickets = [Ticket("bitext" if i % 2 else "sample", t.customer_message, t.agent_reply, t.intent)
               for i, t in enumerate(TICKETS)]
    examples, _ = build_examples(tickets, tokenizer, _cfg(tmp_path))
    assert [e.source for e in examples] == ["sample", "bitext"] * 3
    held_out = {examples[0].digest, examples[1].digest}  # one of each source
    train_set, val_set = split_train_val(examples, _cfg(tmp_path), held_out)
    repeated = repeat_own_tickets(train_set, 3)
    counts = {e.digest: sum(x.digest == e.digest for x in repeated) for e in repeated}
    assert {counts[e.digest] for e in train_set if e.source == "sample"} == {3}
    assert {counts[e.digest] for e in train_set if e.source == "bitext"} == {1}
    assert not held_out & set(counts) and len(val_set) == 2
    assert repeat_own_tickets(train_set, 1) == train_set
    with pytest.raises(InvalidInput, match="own_ticket_repeat"):
        _cfg(tmp_path, own_ticket_repeat=0)


@pytest.mark.slow
def test_micro_batches_give_the_whole_batchs_gradient(tokenizer, base_model_dir, tmp_path):
    """Splitting a wide batch (``max_batch_tokens``) bounds memory and changes nothing else."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model

    from models.base import load_base_model
    from models.training import backward_batch, split_batch

    examples, _ = build_examples(TICKETS, tokenizer, _cfg(tmp_path))
    batch = make_batches(examples, _cfg(tmp_path, batch_size=4), random.Random(0), 2)[0]
    rows, width = batch["input_ids"].shape
    parts = split_batch(batch, width * 1 + 5)
    assert len(parts) == rows and all(p["input_ids"].shape == (1, width) for p in parts)
    assert split_batch(batch, None) == [batch] and split_batch(batch, rows * width) == [batch]

    model, _ = load_base_model(base_model_dir, torch.float32, num_threads=2)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would leave A's gradient zero
            torch.nn.init.normal_(param, std=0.02)
    grads, values = [], []
    for max_tokens in (None, width):
        model.zero_grad(set_to_none=True)
        value, count = backward_batch(model, batch, max_tokens)
        values.append(value)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert count == int((batch["labels"][:, 1:] != -100).sum()) > 0
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    for name, whole in grads[0].items():
        assert whole.abs().sum() > 0, name
        torch.testing.assert_close(grads[1][name], whole, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def tiny_run(base_model_dir, tmp_path_factory):
    from models.training import train

    tmp = tmp_path_factory.mktemp("train")
    return train(_cfg(tmp), data_dir=tmp, base_model_dir=base_model_dir, tickets=TICKETS, progress=False), tmp


@pytest.mark.slow
def test_tiny_run_trains_only_the_adapter(tiny_run, base_model_dir):
    import torch
    from safetensors.torch import load_file

    result, _ = tiny_run
    original = load_file(str(base_model_dir / "model.safetensors"))
    trained = result.model.get_base_model().state_dict()
    base_keys = [k for k in trained if "lora_" not in k]
    assert len(base_keys) >= len(original) - 1  # lm_head is tied to the embeddings
    compared = 0
    for key in base_keys:
        name = key.replace(".base_layer", "")
        if name in original:
            assert torch.equal(trained[key], original[name].float()), f"base weight {name} changed"
            compared += 1
    assert compared >= len(original) - 1
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().sum()) > 0 for v in lora_b), "adapter weights did not move"
    # the loss on the training examples went down (same examples, adapter off vs on)
    import random

    from transformers import AutoTokenizer

    from models.training import evaluate_loss

    tok = AutoTokenizer.from_pretrained(str(base_model_dir), local_files_only=True)
    examples, _ = build_examples(TICKETS, tok, _cfg(base_model_dir))
    batches = make_batches(examples, _cfg(base_model_dir), random.Random(0), tok.pad_token_id)
    after = evaluate_loss(result.model, batches)
    with result.model.disable_adapter():
        before = evaluate_loss(result.model, batches)
    assert after < before, (before, after)
    assert len(result.losses) == 5


@pytest.mark.slow
def test_saved_adapter_reloads_to_identical_greedy_output(tiny_run, base_model_dir):
    import torch

    from models.adapters import AdapterRegistry
    from models.generation import TransformersGenerator
    from models.prompting import render_prompt

    result, tmp = tiny_run
    folder = result.adapter_dir
    assert (folder / "adapter_model.safetensors").stat().st_size < 2_000_000
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["base_model"] == "SmolLM2-135M-Instruct"
    assert len(meta["data_hash"]) == 64 and meta["created_at"] and meta["config"]["lora_r"] == 4
    assert AdapterRegistry(tmp / "adapters", None).get("tiny-v1").metadata["id"] == "tiny-v1"

    model = result.model
    model.eval()
    # the saved adapter is bf16; round the in-memory weights the same way before comparing
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(p.to(torch.bfloat16).float())
    messages = build_messages(message=TICKETS[0].customer_message, intent="cancel_order", tone="neutral")
    gen = TransformersGenerator(base_model_dir, adapters_root=tmp / "adapters", dtype=torch.float32)
    reloaded = gen.generate(messages, adapter_id="tiny-v1", max_new_tokens=12)
    tok = gen.tokenizer
    ids = tok(render_prompt(tok, messages), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert (
        tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        == reloaded.text.strip()
    )
    # switching back to the base model needs no reload and gives the base output
    base_reply = gen.generate(messages, adapter_id=None, max_new_tokens=12)
    assert gen.loaded_adapters() == ["tiny-v1"]
    assert base_reply.adapter_id is None


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint_to_the_same_adapter(base_model_dir, tmp_path, monkeypatch):
    """A run killed after its step-2 checkpoint resumes at step 2 and ends where an unbroken run ends."""
    import torch

    import models.training as training

    def lora_weights(result) -> dict:
        return {k: v.detach().clone() for k, v in result.model.state_dict().items() if "lora_" in k}

    kw = dict(max_steps=4, checkpoint_every=2)
    unbroken = training.train(
        _cfg(tmp_path / "a", **kw), data_dir=tmp_path / "a", base_model_dir=base_model_dir, tickets=TICKETS,
        progress=False,
    )

    real_loss, calls = training.reply_loss, []

    def dies_on_third_step(model, batch, **options):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill after the step-2 checkpoint")
        return real_loss(model, batch, **options)

    monkeypatch.setattr(training, "reply_loss", dies_on_third_step)
    cfg = _cfg(tmp_path / "b", **kw)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, data_dir=tmp_path / "b", base_model_dir=base_model_dir, tickets=TICKETS, progress=False)
    runs = list((tmp_path / "b" / "adapters" / ".runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "trainer_state.pt").is_file()
    assert not (tmp_path / "b" / "adapters" / "tiny-v1").exists()  # nothing half-saved as a version

    monkeypatch.setattr(training, "reply_loss", real_loss)
    resumed = training.train(
        cfg, data_dir=tmp_path / "b", base_model_dir=base_model_dir, tickets=TICKETS, progress=False
    )
    assert resumed.metrics["steps"] == 4 and len(resumed.losses) == 4
    assert resumed.losses[:2] == unbroken.losses[:2]  # the first two came from the checkpoint
    want, got = lora_weights(unbroken), lora_weights(resumed)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.allclose(want[key], got[key], atol=1e-6), key
    assert not (tmp_path / "b" / "adapters" / ".runs").exists()  # the finished run's checkpoint is gone


@pytest.mark.slow
def test_evaluation_compares_adapter_and_base_with_the_training_tone(tiny_run, base_model_dir, monkeypatch):
    """`hybridesk eval`'s report: both models scored; tickets without a tone get the detector's, as in training."""
    from models import evaluation

    result, tmp = tiny_run
    tones = []
    real = evaluation.build_messages

    def spy(**kwargs):
        tones.append(kwargs["tone"])
        return real(**kwargs)

    monkeypatch.setattr(evaluation, "build_messages", spy)
    report = evaluation.evaluate(
        result.adapter_dir, data_dir=tmp, base_model_dir=base_model_dir, tickets=TICKETS[:3],
        options=evaluation.EvalOptions(limit=3, max_new_tokens=12, resolvable_slots=["Order History"]),
        tone_fn=lambda text: "confused",
    )
    assert tones == ["confused"] * 3
    assert report["n_tickets"] == 3 and set(report["metrics"]) == {"adapter", "base"}
    for scores in report["metrics"].values():
        assert 0 <= scores["rouge_l"] <= 1 and -1 <= scores["cosine"] <= 1 and scores["val_loss"] > 0
    # the tiny adapter was trained on these very tickets: it fits them better than the base model
    assert report["metrics"]["adapter"]["val_loss"] < report["metrics"]["base"]["val_loss"]
    # the weakest replies come first, with both models' cosine to the agent's reply
    weakest = report["weakest"]
    assert len(weakest) == 3 and {w["message"] for w in weakest} == {t.customer_message for t in TICKETS[:3]}
    cos = [w["adapter_cosine"] for w in weakest]
    assert cos == sorted(cos) and all(-1 <= w["base_cosine"] <= 1 for w in weakest)
    assert sum(cos) / 3 == pytest.approx(report["metrics"]["adapter"]["cosine"], abs=1e-3)

    # with the bot's context: each prompt carries what the KB gives that message, slots included
    asked = []

    def context(text):
        asked.append(text)
        return ([{"text": "Returns are accepted within 30 days of delivery.", "title": "Returns policy"}],
                [{"name": "return_window_days", "value": "30", "unit": "days", "placeholders": ["Return Window"]}])

    built = []
    monkeypatch.setattr(evaluation, "build_messages", lambda **kw: built.append(kw) or real(**kw))
    with_kb = evaluation.evaluate(
        result.adapter_dir, data_dir=tmp, base_model_dir=base_model_dir, tickets=TICKETS[:2],
        options=evaluation.EvalOptions(limit=2, max_new_tokens=4, compare_base=False), context_fn=context,
    )
    assert asked == [t.customer_message for t in TICKETS[:2]]
    assert with_kb["options"]["kb_context"] is True and set(with_kb["metrics"]) == {"adapter"}
    assert [kw["passages"][0]["title"] for kw in built] == ["Returns policy"] * 2
    assert all(kw["facts"][0]["placeholders"] == ["Return Window"] for kw in built)
    assert with_kb["mean_prompt_tokens"] > 0


@pytest.mark.slow
def test_top_layer_adapter_trains_only_those_layers_and_converts(base_model_dir, tmp_path, monkeypatch):
    """`lora_top_layers`: LoRA only in the upper layers, no graph below them, and llama.cpp can load it."""
    import re

    from safetensors.torch import load_file

    import models.training as training
    from models.base import find_base_gguf
    from models.gguf_lora import convert_peft_lora

    seen: dict[int, bool] = {}
    real_loss = training.reply_loss

    def watching(model, batch, **options):
        layers = model.get_base_model().model.layers
        hooks = [
            layer.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, _hidden(out).requires_grad))
            for i, layer in enumerate(layers)
        ]
        try:
            return real_loss(model, batch, **options)
        finally:
            for hook in hooks:
                hook.remove()

    monkeypatch.setattr(training, "reply_loss", watching)
    result = training.train(
        _cfg(tmp_path, max_steps=2, lora_top_layers=2), data_dir=tmp_path, base_model_dir=base_model_dir,
        tickets=TICKETS, progress=False,
    )
    n = len(seen)
    assert n == 30
    # below the adapted layers nothing needs a gradient, so the backward pass never goes there
    assert [i for i, needs in seen.items() if needs] == [n - 2, n - 1]
    weights = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    layers = {int(re.search(r"layers\.(\d+)\.", k).group(1)) for k in weights}
    assert layers == {n - 2, n - 1}
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [n - 2, n - 1]

    import gguf

    out = convert_peft_lora(result.adapter_dir, tmp_path / "top.gguf", find_base_gguf())
    names = {t.name for t in gguf.GGUFReader(str(out)).tensors}
    assert names == {f"blk.{i}.attn_{m}.weight.lora_{ab}" for i in (n - 2, n - 1) for m in "qv" for ab in "ab"}


def _hidden(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.slow
def test_a_run_can_continue_from_an_existing_adapter(tiny_run, base_model_dir, tmp_path):
    """`init_adapter`: the new version starts from the parent's weights and records its parent."""
    import torch
    from safetensors.torch import load_file

    from knowledge.errors import NotFound
    from models.training import train

    parent, _ = tiny_run
    # a learning rate of ~0: the child's weights must be the parent's, which a fresh adapter's are not
    child = train(
        _cfg(tmp_path, max_steps=1, learning_rate=1e-12, version="tiny-v2", init_adapter=str(parent.adapter_dir)),
        data_dir=tmp_path, base_model_dir=base_model_dir, tickets=TICKETS, progress=False,
    )
    want = load_file(str(parent.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(child.adapter_dir / "adapter_model.safetensors"))
    assert want.keys() == got.keys()
    assert any(float(v.abs().sum()) > 0 for k, v in want.items() if "lora_B" in k)
    for key in want:
        torch.testing.assert_close(got[key].float(), want[key].float(), rtol=0, atol=1e-6)
    meta = json.loads((child.adapter_dir / "metadata.json").read_text())
    assert meta["parent"]["id"] == "tiny-v1" and meta["parent"]["data_hash"]
    with pytest.raises(NotFound, match="No adapter 'nope'"):
        train(_cfg(tmp_path, init_adapter="nope"), data_dir=tmp_path, base_model_dir=base_model_dir,
              tickets=TICKETS, progress=False)


def test_filtered_tickets_name_the_setting_that_dropped_them(tokenizer, tmp_path):
    """B1: every ticket dropped because the prompt filled max_length was reported as "raise
    max_reply_tokens"; the reason of each drop is counted and the message names the right setting."""
    from collections import Counter

    from models.training import filtered_out

    why: Counter[str] = Counter()
    examples, dropped = build_examples(TICKETS, tokenizer, _cfg(tmp_path, max_length=64), reasons=why)
    assert examples == [] and dropped == len(TICKETS) and why == {"no_room": len(TICKETS)}
    message = filtered_out(why, _cfg(tmp_path, max_length=64))
    assert "max_length=64" in message and "raise max_length" in message and "max_reply_tokens" not in message
    why.clear()
    examples, _ = build_examples(TICKETS, tokenizer, _cfg(tmp_path, max_reply_tokens=8), reasons=why)
    assert why["long_reply"] >= 1 and len(examples) == len(TICKETS) - why["long_reply"]
    assert "raise max_reply_tokens" in filtered_out(why, _cfg(tmp_path, max_reply_tokens=8))


@pytest.mark.slow
def test_a_run_whose_prompts_fill_max_length_says_so(base_model_dir, tmp_path):
    from models.training import train

    with pytest.raises(InvalidInput, match=r"max_length=32 tokens \(raise max_length\)") as exc:
        train(_cfg(tmp_path, max_length=32), data_dir=tmp_path, base_model_dir=base_model_dir, tickets=TICKETS,
              progress=False)
    assert exc.value.code == "no_data" and "max_reply_tokens" not in exc.value.message


def test_a_version_that_exists_is_refused_before_anything_loads(tmp_path, monkeypatch):
    """A2: a run with the id of an existing adapter replaced its weights and metadata when it ended."""
    import models.base
    from knowledge.errors import Conflict
    from models.training import train

    def no_loading(*_a, **_k):
        raise AssertionError("the base model was loaded for a run that cannot be saved")

    monkeypatch.setattr(models.base, "load_base_model", no_loading)
    monkeypatch.setattr(models.base, "ensure_base_model", no_loading)
    existing = tmp_path / "adapters" / "tiny-v1"
    existing.mkdir(parents=True)
    (existing / "metadata.json").write_text('{"keep": "me"}')
    with pytest.raises(Conflict, match="'tiny-v1' already exists") as exc:
        train(_cfg(tmp_path), data_dir=tmp_path, tickets=TICKETS, progress=False)
    assert exc.value.code == "adapter_exists"
    assert (existing / "metadata.json").read_text() == '{"keep": "me"}'


def test_an_auto_named_version_never_replaces_an_adapter(tmp_path):
    from models.training import free_version

    assert free_version(tmp_path, "lk-20261206-1200") == "lk-20261206-1200"
    (tmp_path / "lk-20261206-1200").mkdir()
    (tmp_path / "lk-20261206-1200-2").mkdir()
    assert free_version(tmp_path, "lk-20261206-1200") == "lk-20261206-1200-3"


def _long_tickets(n: int) -> list[Ticket]:
    """Tickets whose replies grow by a sentence each: reply lengths from ~15 to ~15 * n tokens."""
    steps = "Open {{Order History}}, choose the order and follow the steps shown there. "
    return [Ticket("bitext", f"Question number {i} about my order?", steps * (i + 1), "track_order")
            for i in range(n)]


def test_a_run_that_admits_longer_replies_holds_out_a_share_of_them(tokenizer, tmp_path):
    """A continued run that raises max_reply_tokens trains on replies its parent chain never saw; a
    uniform, seeded share of every such ticket (those still over the new cap included) is held out."""
    from models.training import reply_tokens, seen_reply_cap, unseen_reply_holdout

    tickets = _long_tickets(40)
    lengths = {t.data_hash: reply_tokens(tokenizer, t.agent_reply) for t in tickets}
    seen_cap = sorted(lengths.values())[9]  # the parent could see the 10 shortest
    unseen = {h for h, n in lengths.items() if n > seen_cap}
    cfg = _cfg(tmp_path, max_reply_tokens=sorted(lengths.values())[29], val_fraction=0.25, val_max=100)
    held = unseen_reply_holdout(tickets, tokenizer, seen_cap, cfg)
    assert held <= unseen and len(held) == int(len(unseen) * 0.25)
    # drawn from all 30 unseen tickets, not only from the 20 the new cap admits
    over_new_cap = {h for h in unseen if lengths[h] > cfg.max_reply_tokens}
    draws = [unseen_reply_holdout(tickets, tokenizer, seen_cap, _cfg(tmp_path, **{**cfg.to_dict(), "seed": s}))
             for s in range(12)]
    assert any(d & over_new_cap for d in draws) and any(d - over_new_cap for d in draws)
    assert unseen_reply_holdout(tickets, tokenizer, seen_cap, cfg) == held  # the seed fixes it
    # val_max caps it; a run that admits nothing new, or holds nothing out, adds nothing
    assert len(unseen_reply_holdout(tickets, tokenizer, seen_cap,
                                    _cfg(tmp_path, **{**cfg.to_dict(), "val_max": 2}))) == 2
    assert unseen_reply_holdout(tickets, tokenizer, seen_cap, _cfg(tmp_path, max_reply_tokens=seen_cap)) == set()
    assert unseen_reply_holdout(tickets, tokenizer, seen_cap,
                                _cfg(tmp_path, max_reply_tokens=10_000, val_fraction=0.0)) == set()
    # the cap a chain has seen: recorded, or else the run's own setting, or else the default
    assert seen_reply_cap({"max_reply_tokens_seen": 192, "config": {"max_reply_tokens": 160}}) == 192
    assert seen_reply_cap({"config": {"max_reply_tokens": 120}}) == 120
    assert seen_reply_cap({}) == TrainConfig().max_reply_tokens


@pytest.mark.slow
def test_a_continued_run_with_a_higher_reply_cap_keeps_the_parents_split_and_adds_to_it(
    base_model_dir, tokenizer, tmp_path
):
    from models.training import reply_tokens, train

    tickets = _long_tickets(24)
    lengths = sorted(reply_tokens(tokenizer, t.agent_reply) for t in tickets)
    short_cap = lengths[11]
    parent = train(_cfg(tmp_path, max_steps=1, max_reply_tokens=short_cap, val_fraction=0.25, max_length=1024),
                   data_dir=tmp_path, base_model_dir=base_model_dir, tickets=tickets, progress=False)
    pmeta = json.loads((parent.adapter_dir / "metadata.json").read_text())
    assert pmeta["max_reply_tokens_seen"] == short_cap and pmeta["held_out_split_at"] is None
    child = train(_cfg(tmp_path, max_steps=1, max_reply_tokens=lengths[17], val_fraction=0.25, max_length=1024,
                       version="tiny-v2", init_adapter=str(parent.adapter_dir)),
                  data_dir=tmp_path, base_model_dir=base_model_dir, tickets=tickets, progress=False)
    meta = json.loads((child.adapter_dir / "metadata.json").read_text())
    by_hash = {t.data_hash: reply_tokens(tokenizer, t.agent_reply) for t in tickets}
    held = set(meta["val_hashes"])
    assert set(pmeta["val_hashes"]) < held  # the parent's split, and more
    assert {by_hash[h] for h in set(pmeta["val_hashes"])} and max(by_hash[h] for h in pmeta["val_hashes"]) <= short_cap
    added = held - set(pmeta["val_hashes"])
    assert len(added) == 3 and min(by_hash[h] for h in added) > short_cap  # 25% of the 12 unseen
    assert meta["max_reply_tokens_seen"] == lengths[17] and meta["held_out_split_at"] == short_cap
    # validation counts only the held-out tickets this run's cap admits; none of them was trained on
    admitted = [h for h in held if by_hash[h] <= lengths[17]]
    assert meta["metrics"]["examples_val"] == len(admitted)
    assert meta["metrics"]["examples_train"] == sum(1 for n in by_hash.values() if n <= lengths[17]) - len(admitted)


def test_reply_length_strata_weigh_each_stratum_by_the_public_mix(tokenizer):
    from models.evaluation import reply_length_strata
    from models.training import reply_tokens

    tickets = _long_tickets(6) + [Ticket("sample", "Hi?", "Hello there.", "greeting")]
    split_at = reply_tokens(tokenizer, tickets[1].agent_reply)  # 2 short, 4 long; the own ticket is left out
    gens = {"adapter": [{"rouge_l": r, "cosine": c, "cut": cut} for r, c, cut in
                        [(0.6, 0.9, False), (0.4, 0.8, False), (0.3, 0.7, True),
                         (0.1, 0.5, False), (0.2, 0.6, False), (0.2, 0.6, False), (1.0, 1.0, False)]]}
    out = reply_length_strata(tickets, gens, tokenizer, split_at, 0.75)
    assert (out["n_short"], out["n_long"]) == (2, 4)
    row = out["adapter"]
    assert row["rouge_l_short"] == pytest.approx(0.5) and row["rouge_l_long"] == pytest.approx(0.2)
    assert row["rouge_l_weighted"] == pytest.approx(0.75 * 0.5 + 0.25 * 0.2)
    assert row["cosine_weighted"] == pytest.approx(0.75 * 0.85 + 0.25 * 0.6)
    low, high = row["rouge_l_weighted_ci95"]
    assert low <= row["rouge_l_weighted"] <= high and high - low > 0
    assert row["cut_share_long"] == pytest.approx(0.25)
    # without the population's mix there is no weighted figure, only the strata
    assert "rouge_l_weighted" not in reply_length_strata(tickets, gens, tokenizer, split_at, None)["adapter"]


def test_unseen_by_keeps_held_out_tickets_and_replies_longer_than_the_chain_saw(tokenizer):
    from models.evaluation import unseen_by
    from models.training import reply_tokens

    tickets = _long_tickets(8) + [Ticket("sample", "Hi?", "Hello there. " * 40, "greeting")]
    cap = reply_tokens(tokenizer, tickets[3].agent_reply)
    meta = {"val_hashes": [tickets[0].data_hash], "max_reply_tokens_seen": cap}
    got = unseen_by(meta, tickets, tokenizer)
    # the held-out one, and the public ones over the cap; the company's own long ticket may have been
    # trained on under another cap, so only its split counts for it
    assert got == [tickets[0], *tickets[4:8]]
    assert unseen_by({"config": {"max_reply_tokens": 10_000}}, tickets, tokenizer) == []


def test_the_table_gives_the_strata_and_leaves_out_an_empty_one(tokenizer):
    from models.evaluation import format_table, reply_length_strata
    from models.training import reply_tokens

    tickets = _long_tickets(4)
    gens = {"adapter": [{"rouge_l": 0.5, "cosine": 0.9, "cut": False}] * 4}
    metrics = {"adapter": {"rouge_l": 0.5}}
    both = reply_length_strata(tickets, gens, tokenizer, reply_tokens(tokenizer, tickets[1].agent_reply), 0.6)
    table = format_table({"adapter_id": "a", "n_tickets": 4, "metrics": metrics, "by_reply_length": both})
    assert "| ROUGE-L, weighted by the public mix (60% short) | 0.500 |" in table
    short_only = reply_length_strata(tickets, gens, tokenizer, 10_000, 0.6)
    table = format_table({"adapter_id": "a", "n_tickets": 4, "metrics": metrics, "by_reply_length": short_only})
    assert "replies <= 10000 tokens (4)" in table and "longer replies" not in table and "weighted" not in table


def test_a_prompt_run_forward_only_gives_the_same_loss_and_a_reply_only_gradient(
    tokenizer, base_model_dir, tmp_path
):
    """``prompt_backward: false``: the loss of the two-pass layout equals the one-pass loss (rows of
    different prompt and reply lengths, padding on both sides), and its gradient is the one-pass
    gradient less what flows back through the prompt's positions. Adapting the top layer only, the
    prompt's queries there feed nothing the loss reads, so q_proj's gradient is unchanged, while
    the reply reads the prompt's values, so v_proj's is not; with every layer adapted, the lower
    layers' gradients change too."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model

    from models.base import load_base_model
    from models.training import backward_batch, reply_loss

    examples, _ = build_examples(TICKETS, tokenizer, _cfg(tmp_path))
    batch = make_batches(examples, _cfg(tmp_path, batch_size=4), random.Random(0), 2)[0]
    prompt_lengths = {int((row == -100).long().cumprod(0).sum()) for row in batch["labels"]}  # leading -100s
    assert len(prompt_lengths) > 1  # rows whose prompts differ in length

    base, _ = load_base_model(base_model_dir, torch.float32, num_threads=2)
    grads = {}
    for layers in ([29], None):
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                layers_to_transform=layers, task_type="CAUSAL_LM"))
        torch.manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
        for prompt_backward in (True, False):
            model.zero_grad(set_to_none=True)
            value, count = backward_batch(model, batch, None, prompt_backward=prompt_backward)
            grads[layers is None, prompt_backward] = (value, count, {
                n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        with torch.no_grad():
            whole, _ = reply_loss(model, batch)
            split, _ = reply_loss(model, batch, prompt_backward=False)  # no gradient: one pass
        torch.testing.assert_close(split, whole)
        base = model.unload()
    for every_layer in (False, True):
        (v1, c1, g1), (v2, c2, g2) = grads[every_layer, True], grads[every_layer, False]
        assert c1 == c2 > 0 and v2 == pytest.approx(v1, rel=1e-4)
        assert g1.keys() == g2.keys()
        differ = [n for n in g1 if not torch.allclose(g1[n], g2[n], rtol=1e-3, atol=1e-6)]
        assert all(g2[n].abs().sum() > 0 for n in g2)
        if every_layer:
            assert any(".layers.0." in n for n in differ) and any("q_proj" in n for n in differ)
        else:
            assert differ and all("v_proj" in n for n in differ), differ


def test_prompt_backward_off_trains_and_is_refused_with_packing(base_model_dir, tmp_path):
    from models.training import train

    with pytest.raises(InvalidInput, match="packing"):
        TrainConfig(prompt_backward=False, packing=True)
    with pytest.raises(InvalidInput, match="gradient_checkpointing"):
        TrainConfig(prompt_backward=False, gradient_checkpointing=True)
    result = train(_cfg(tmp_path, prompt_backward=False, max_steps=8), data_dir=tmp_path,
                   base_model_dir=base_model_dir, tickets=TICKETS, progress=False)
    assert result.losses[-1] < result.losses[0], result.losses


def test_a_run_from_scratch_can_hold_out_another_adapters_tickets(tiny_run, base_model_dir, tmp_path):
    """`holdout_from`: the new run holds out exactly the tickets the named adapter held out."""
    from models.training import train

    parent, _ = tiny_run
    pmeta = json.loads((parent.adapter_dir / "metadata.json").read_text())
    assert not pmeta["val_hashes"]
    with pytest.raises(InvalidInput, match="no held-out tickets"):
        train(_cfg(tmp_path, holdout_from=str(parent.adapter_dir)), data_dir=tmp_path,
              base_model_dir=base_model_dir, tickets=TICKETS, progress=False)
    with pytest.raises(InvalidInput, match="from scratch"):
        TrainConfig(holdout_from="a", init_adapter="b")
    first = train(_cfg(tmp_path, val_fraction=0.34, max_steps=1, version="split-a"), data_dir=tmp_path,
                  base_model_dir=base_model_dir, tickets=TICKETS, progress=False)
    held = json.loads((first.adapter_dir / "metadata.json").read_text())["val_hashes"]
    assert 0 < len(held) < len(TICKETS)
    second = train(_cfg(tmp_path, val_fraction=0.34, max_steps=1, seed=99, version="split-b",
                        holdout_from="split-a"),
                   data_dir=tmp_path, base_model_dir=base_model_dir, tickets=TICKETS, progress=False)
    meta = json.loads((second.adapter_dir / "metadata.json").read_text())
    assert meta["val_hashes"] == held and meta["parent"] is None
    assert meta["metrics"]["examples_val"] == len(held)
    assert meta["config"]["holdout_from"] == "split-a"
