"""Cold prompts prefilled in PyTorch and decoded in llama.cpp: the KV cells PyTorch computes steer
llama.cpp as its own do, the byte layout is checked against the build, and any failure falls back."""

from __future__ import annotations

import ctypes
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.base import find_base_gguf
from models.prompting import build_messages, render_prompt

pytest.importorskip("llama_cpp", reason="llama-cpp-python is a project dependency; install with `make install`")

import models.torch_prefill as torch_prefill  # noqa: E402
from models.llamacpp import TORCH_PREFILL_FAILURE_LIMIT, LlamaCppGenerator  # noqa: E402
from models.torch_prefill import LayoutMismatch, SeqStateLayout  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "models" / "adapters"
ADAPTER = (ADAPTERS / "ACTIVE").read_text(encoding="utf-8").strip()
POLICY = [
    {"title": "Returns policy", "heading": "Return window",
     "text": "You can return most items within the return window, counted from the day of delivery. Items must be "
             "unused and in their original packaging; opened bedding cannot be returned for hygiene reasons."},
    {"title": "Returns policy", "heading": "Return shipping",
     "text": "Returns are free for faulty items. For a change of mind we deduct the return label from the refund, "
             "and assembled furniture has a collection fee. Refunds reach your card within five working days."},
    {"title": "Delivery", "heading": "Delivery times",
     "text": "Standard delivery takes three to five working days; express delivery arrives the next working day "
             "when you order before the cut-off time. Large furniture is delivered by a two-person team."},
]
FACTS = [("return_window_days", "30 days"), ("return_label_fee", "£4.95"), ("support_phone", "0161 496 0000")]
QUESTIONS = ["How many days do I have to return a lamp?", "Who pays for the return label?",
             "Can I return a duvet I opened?"]


def _messages(question: str) -> list[dict[str, str]]:
    return build_messages(message=question, intent="check_refund_policy", tone="neutral", facts=FACTS,
                          passages=POLICY, history=[("customer", "Hi there"), ("bot", "Hello! How can I help?")])


@pytest.fixture(scope="module")
def llama(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    gen = LlamaCppGenerator(find_base_gguf(), base_model_dir, ADAPTERS,
                            cache_dir=tmp_path_factory.mktemp("gguf-prefill"), n_ctx=4096)
    gen.warm(ADAPTER)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def llama_no_fa(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Flash attention off: llama.cpp stores the values transposed, one dimension per row."""
    gen = LlamaCppGenerator(find_base_gguf(), base_model_dir, ADAPTERS,
                            cache_dir=tmp_path_factory.mktemp("gguf-prefill-nofa"), n_ctx=4096, flash_attn=0)
    gen.warm(ADAPTER)
    yield gen
    gen.close()


def _state_bytes(runtime, seq: int) -> bytes:
    L = runtime._L
    size = int(L.llama_state_seq_get_size(runtime.ctx, seq))
    buf = (ctypes.c_uint8 * size)()
    return bytes(buf[: int(L.llama_state_seq_get_data(runtime.ctx, buf, size, seq))])


def _free_seq(gen: LlamaCppGenerator) -> int:
    seq = gen._runtime.n_seq - 1  # the engine hands out the first sequences first
    gen._runtime.seq_rm(seq)
    return seq


@pytest.mark.parametrize("engine", ["llama", "llama_no_fa"])
def test_the_layout_is_learned_from_the_build_and_matches_the_model(engine, base_model_dir, request):
    llama = request.getfixturevalue(engine)
    config = json.loads((base_model_dir / "config.json").read_text(encoding="utf-8"))
    kv_width = config["num_key_value_heads"] * config["hidden_size"] // config["num_attention_heads"]
    with llama._lock:
        layout = llama._runtime.seq_state_layout(_free_seq(llama))
    assert layout.n_layer == config["num_hidden_layers"]
    assert layout.k_row_bytes == 2 * kv_width  # float16 keys
    assert layout.v_width == kv_width
    # values one cell per row with flash attention (the default), one dimension per row without
    assert layout.v_trans == (engine == "llama_no_fa")


def test_state_bytes_that_differ_from_the_layout_are_refused(llama):
    with llama._lock:
        runtime = llama._runtime
        seq = _free_seq(llama)
        runtime.decode([(1, 0, seq, False), (2, 1, seq, False), (3, 2, seq, False)])
        data = _state_bytes(runtime, seq)
        runtime.seq_rm(seq)
    layout = SeqStateLayout.parse(data, 3, seq)
    for bad, cells, what in [
        (data[:-1], 3, "truncated"),
        (data[:40], 3, "cut inside the cell list"),
        (data[:8], 3, "the header only"),
        (data + b"\0", 3, "trailing bytes"),
        (data, 2, "another cell count"),
    ]:
        with pytest.raises(LayoutMismatch):
            SeqStateLayout.parse(bad, cells, seq)
        del what
    # a key type that is not float16 (q8_0 = 8)
    keys_at = 8 + 8 + 3 * 12 + 8
    retyped = data[:keys_at] + np.array([8], np.int32).tobytes() + data[keys_at + 4 :]
    with pytest.raises(LayoutMismatch):
        SeqStateLayout.parse(retyped, 3, seq)
    assert layout.header == data[:8]


def _choices_after(gen: LlamaCppGenerator, prompt: list[int], reply: list[int], *, pytorch: bool) -> list[int]:
    """Greedy choice after the prompt and after every reply token (the reply forced), the prompt's
    cells computed by llama.cpp itself or by PyTorch and loaded into llama.cpp."""
    runtime = gen._runtime
    with gen._lock:
        runtime.use_adapter(ADAPTER)
        seq = _free_seq(gen)
        try:
            head = prompt[:-1]  # the engine too has llama.cpp decode the prompt's last token
            if pytorch:
                layout = runtime.seq_state_layout(seq)
                assert runtime.set_seq_state(seq, gen._cold_prefill(head, ADAPTER, layout, seq))
            else:
                for start in range(0, len(head), 256):
                    runtime.decode([(t, start + i, seq, False) for i, t in enumerate(head[start : start + 256])])
            rows = runtime.decode([(t, len(head) + i, seq, True) for i, t in enumerate([prompt[-1], *reply])])
            picks = []
            for row in rows:
                top = np.argsort(-np.asarray(row))[:2]
                picks.append((int(top[0]), float(row[top[0]] - row[top[1]])))  # (choice, lead over the next)
        finally:
            runtime.seq_rm(seq)
    return picks


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["llama", "llama_no_fa"])
def test_cells_prefilled_in_pytorch_make_llamacpps_own_choices(engine, monkeypatch, request):
    """With the reply forced, llama.cpp decoding from PyTorch's cells picks the token llama.cpp picks
    from its own cells almost everywhere, and wherever llama.cpp's choice is clear (more than one
    logit ahead of the next). Near ties may go either way: PyTorch's int8 weights round differently
    from llama.cpp's Q8_0. Without the key interleave the same check fails badly. Both value layouts
    (flash attention on and off) are written correctly."""
    llama = request.getfixturevalue(engine)
    tok = llama.tokenizer
    cases = []
    for question in QUESTIONS:
        prompt = tok(render_prompt(tok, _messages(question)), add_special_tokens=False)["input_ids"]
        assert len(prompt) > 300
        reply = tok(llama.generate(_messages(question), adapter_id=ADAPTER, max_new_tokens=32).text,
                    add_special_tokens=False)["input_ids"]
        cases.append((prompt, reply, _choices_after(llama, prompt, reply, pytorch=False)))
    agree = total = clear = 0
    for prompt, reply, own in cases:
        hybrid = _choices_after(llama, prompt, reply, pytorch=True)
        for (mine, _), (theirs, lead) in zip(hybrid, own, strict=True):
            agree += mine == theirs
            total += 1
            if lead > 1.0:  # llama.cpp is sure of its choice: the hybrid must make it too
                clear += 1
                assert mine == theirs, f"a clear choice differs ({lead:.2f} logits ahead)"
    assert agree / total >= 0.9, f"{agree}/{total}"
    # enough positions checked strictly for the test to mean something (47-59 of ~99 were clear in runs so far;
    # how many depends on the replies, which differ slightly between attention kernels)
    assert clear >= total // 3, f"only {clear} of {total} positions have a clear choice"

    # the negative control: keys in Hugging Face's order mean nothing to llama.cpp's attention
    monkeypatch.setattr(torch_prefill, "interleave_rotary", lambda k: k)
    wrong = sum(mine == theirs for prompt, reply, own in cases
                for (mine, _), (theirs, _) in zip(_choices_after(llama, prompt, reply, pytorch=True), own, strict=True))
    assert wrong / total < 0.5, f"{wrong}/{total} without the interleave"


@pytest.mark.slow
def test_cold_prompts_go_through_pytorch_and_cached_ones_do_not(llama):
    engine = llama.engine
    engine.clear_prefix_cache()
    before, reused = engine.torch_prefills, engine.prefix_tokens_reused
    first = llama.generate(_messages(QUESTIONS[1]), adapter_id=ADAPTER, max_new_tokens=16)
    assert engine.torch_prefills == before + 1
    # the same conversation asks again: its prompt's cells (PyTorch's) are reused, one token is new
    again = llama.generate(_messages(QUESTIONS[1]), adapter_id=ADAPTER, max_new_tokens=16)
    assert engine.torch_prefills == before + 1
    assert engine.prefix_tokens_reused - reused == again.prompt_tokens - 1
    assert first.text.strip() and again.text.strip()


@pytest.mark.slow
def test_a_failing_pytorch_prefill_falls_back_to_llamacpp(llama, monkeypatch, caplog):
    engine = llama.engine
    working = engine.torch_prefill
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("out of memory")

    engine.clear_prefix_cache()
    monkeypatch.setattr(engine, "torch_prefill", broken)
    before = engine.torch_prefills
    reply = llama.generate(_messages(QUESTIONS[2]), adapter_id=ADAPTER, max_new_tokens=12)
    assert calls and reply.completion_tokens >= 2 and reply.text.strip()
    assert engine.torch_prefills == before and engine.torch_prefill is broken  # tried again next time
    # failures in a row: the traceback once, then one line each, and off after TORCH_PREFILL_FAILURE_LIMIT
    for i in range(1, TORCH_PREFILL_FAILURE_LIMIT):
        engine.clear_prefix_cache()
        with caplog.at_level(logging.WARNING, logger="models.llamacpp"):
            caplog.clear()
            assert llama.generate(_messages(QUESTIONS[i % 3]), adapter_id=ADAPTER, max_new_tokens=4).text.strip()
        assert not any(r.exc_info for r in caplog.records)
    assert len(calls) == TORCH_PREFILL_FAILURE_LIMIT and engine.torch_prefill is None
    assert "3 times in a row" in caplog.text and "out of memory" in caplog.text
    # a success in between starts the count again
    engine.torch_prefill_failures = TORCH_PREFILL_FAILURE_LIMIT - 1
    monkeypatch.setattr(engine, "torch_prefill", working)
    engine.clear_prefix_cache()
    llama.generate(_messages(QUESTIONS[1]), adapter_id=ADAPTER, max_new_tokens=4)
    assert engine.torch_prefill_failures == 0 and engine.torch_prefill is working

    def mismatched(*args):
        raise LayoutMismatch("another layout", code="state_layout")

    engine.clear_prefix_cache()
    monkeypatch.setattr(engine, "torch_prefill", mismatched)
    reply = llama.generate(_messages(QUESTIONS[0]), adapter_id=ADAPTER, max_new_tokens=12)
    assert reply.text.strip()
    assert engine.torch_prefill is None  # a build with another layout: off for good
    monkeypatch.setattr(engine, "torch_prefill", working)


@pytest.mark.slow
def test_an_adapter_switch_loads_the_pytorch_side_beside_the_decoding(llama):
    """A cold prompt for an adapter the PyTorch model does not hold is prefilled by llama.cpp while that
    adapter loads on a thread of its own (1-4 s that used to stall every conversation under the lock)."""
    from models.torch_prefill import PrefillNotReady

    engine, prefiller = llama.engine, llama._prefiller
    fingerprint = llama._fingerprint(ADAPTER)
    assert prefiller.is_ready(ADAPTER, fingerprint)
    before, skipped = engine.torch_prefills, engine.torch_prefills_skipped
    engine.clear_prefix_cache()
    assert llama.generate(_messages(QUESTIONS[0]), adapter_id=None, max_new_tokens=4).text.strip()  # the base model
    assert (engine.torch_prefills, engine.torch_prefills_skipped) == (before, skipped + 1)
    prefiller._loader.join(120)
    assert prefiller.is_ready(None) and not prefiller.is_ready(ADAPTER, fingerprint)
    engine.clear_prefix_cache()
    assert llama.generate(_messages(QUESTIONS[1]), adapter_id=None, max_new_tokens=4).text.strip()
    assert engine.torch_prefills == before + 1
    # a prefill for an adapter other than the one merged in, or while a load holds the model, never waits
    with llama._lock:
        layout = llama._runtime.seq_state_layout(_free_seq(llama))
    with pytest.raises(PrefillNotReady):
        prefiller.prefill(list(range(70)), layout, 0, adapter=(ADAPTER, fingerprint))
    with prefiller._lock, pytest.raises(PrefillNotReady, match="being loaded"):
        prefiller.prefill(list(range(70)), layout, 0, adapter=(None, None))
    # and back to the adapter
    engine.clear_prefix_cache()
    assert llama.generate(_messages(QUESTIONS[2]), adapter_id=ADAPTER, max_new_tokens=4).text.strip()
    assert (engine.torch_prefills, engine.torch_prefills_skipped) == (before + 1, skipped + 2)
    prefiller._loader.join(120)
    assert prefiller.is_ready(ADAPTER, fingerprint)
    assert engine.torch_prefill_failures == 0


def test_the_setting_turns_it_off(tmp_path, base_model_dir):
    from bot.services import build_generator
    from bot.settings import Settings

    default = build_generator(Settings(data_dir=tmp_path, base_model_dir=base_model_dir, generator="llamacpp"))
    assert default.torch_prefill is True and default.flash_attn == 1 and default.weights == "q8_0"
    default.close()
    settings = Settings(data_dir=tmp_path, base_model_dir=base_model_dir, llamacpp_torch_prefill=False,
                        llamacpp_flash_attn=False, llamacpp_weights="bf16", generator="llamacpp")
    gen = build_generator(settings)
    try:
        assert isinstance(gen, LlamaCppGenerator) and gen.torch_prefill is False
        assert gen.flash_attn == 0 and gen.weights == "bf16"
        gen.load()
        assert gen.engine.torch_prefill is None
    finally:
        gen.close()


def test_the_merged_model_is_peft_with_the_adapter(base_model, base_model_dir):
    """``load_merged_model`` adds the LoRA into the weights as peft applies it: same logits in float32."""
    import torch
    from peft import PeftModel

    from models.torch_prefill import load_merged_model

    model, tokenizer = base_model
    ids = tokenizer(render_prompt(tokenizer, _messages(QUESTIONS[0])), add_special_tokens=False,
                    return_tensors="pt")["input_ids"]
    merged = load_merged_model(base_model_dir, ADAPTERS / ADAPTER, torch.float32)
    plain = load_merged_model(base_model_dir, None, torch.float32)
    reference = PeftModel.from_pretrained(model, str(ADAPTERS / ADAPTER))
    try:
        with torch.inference_mode():
            want = reference(ids).logits[0]
            got = merged(ids).logits[0]
            base = plain(ids).logits[0]
    finally:
        reference.unload()  # the session's base model goes back as it was
    assert (got - want).abs().max().item() < 1e-3
    assert (base - want).abs().max().item() > 1.0  # the adapter does change the model


@pytest.mark.slow
def test_a_prefill_model_that_cannot_load_leaves_llamacpp_answering(base_model_dir, tmp_path):
    """The converted folder lost its weights (the tokenizer is still there): warming up does not fail,
    and llama.cpp prefills and answers."""
    import shutil

    broken = tmp_path / "base"
    broken.mkdir()
    for item in base_model_dir.iterdir():
        if item.suffix != ".safetensors":
            shutil.copy(item, broken / item.name)
    gen = LlamaCppGenerator(find_base_gguf(), broken, ADAPTERS, cache_dir=tmp_path / "cache", n_ctx=2048)
    try:
        gen.warm(ADAPTER)
        assert gen._prefiller is None and gen.engine.torch_prefill is None
        reply = gen.generate(_messages(QUESTIONS[0]), adapter_id=ADAPTER, max_new_tokens=8)
        assert reply.completion_tokens >= 1 and gen.engine.torch_prefills == 0
    finally:
        gen.close()


@pytest.mark.slow
def test_a_prompt_mostly_new_goes_through_pytorch_and_reuses_nothing(llama):
    """A prompt that shares only the system rules with a cached one (less than half) is computed by
    PyTorch from its start; the reuse count says so."""
    engine = llama.engine
    engine.clear_prefix_cache()
    llama.generate(_messages(QUESTIONS[0]), adapter_id=ADAPTER, max_new_tokens=4)
    before, reused = engine.torch_prefills, engine.prefix_tokens_reused
    other = build_messages(message="Do you deliver to islands?", intent="delivery_options", tone="neutral",
                           facts=[("delivery_days", "3-5 working days")],
                           passages=[{"title": "Delivery", "heading": "Where we deliver",
                                      "text": "We deliver to every address on the mainland and to most islands, "
                                              "where delivery takes two extra working days. " * 4}])
    reply = llama.generate(other, adapter_id=ADAPTER, max_new_tokens=4)
    assert reply.completion_tokens >= 1
    assert engine.torch_prefills == before + 1
    assert engine.prefix_tokens_reused == reused


@pytest.mark.slow
def test_a_small_cache_defers_replies_prefilled_in_pytorch(base_model_dir, tmp_path):
    """With room for about two replies at a time, five concurrent ones whose prompts PyTorch prefills
    all finish: loading cells waits for room (or evicts a kept prompt) as llama.cpp's own prefill does."""
    from concurrent.futures import ThreadPoolExecutor

    gen = LlamaCppGenerator(find_base_gguf(), base_model_dir, ADAPTERS, cache_dir=tmp_path, n_ctx=1536,
                            prefix_cache_size=1)
    try:
        gen.warm(ADAPTER)
        questions = [*QUESTIONS, "Do you deliver to islands?", "Can I pay in instalments?"]

        def ask(i: int) -> Any:
            # each prompt its own facts: they part from the others after the first few words
            facts = [(f"topic_{i}_window", f"{i + 10} days"), *FACTS[i % len(FACTS):]]
            messages = build_messages(message=questions[i], intent="check_refund_policy", tone="neutral",
                                      facts=facts, passages=POLICY)
            return gen.generate(messages, adapter_id=ADAPTER, max_new_tokens=16)

        with ThreadPoolExecutor(len(questions)) as pool:
            replies = list(pool.map(ask, range(len(questions))))
        assert all(r.completion_tokens >= 1 and r.text.strip() for r in replies)
        assert gen.engine.torch_prefills >= len(questions)
        assert gen.engine.max_rows_seen < len(questions)  # some waited for room
        assert not any(slot.busy for slot in gen.engine.slots.slots)
    finally:
        gen.close()


def test_a_closed_prefiller_loads_nothing_even_from_a_load_already_asked_for(base_model_dir, caplog):
    from knowledge.errors import Unavailable
    from models.torch_prefill import TorchPrefiller

    prefiller = TorchPrefiller(base_model_dir, lambda name: ADAPTERS / name)
    prefiller.close()
    with pytest.raises(Unavailable, match="closed"):
        prefiller.prepare(ADAPTER)
    with caplog.at_level(logging.WARNING, logger="models.torch_prefill"):
        prefiller.prepare_in_background(ADAPTER).join(30)
    assert prefiller._model is None and not prefiller.is_ready(ADAPTER) and not caplog.records
