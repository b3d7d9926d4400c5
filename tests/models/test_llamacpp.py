"""The llama.cpp backend: the converted LoRA adapter matches peft, batching and prefix reuse keep
greedy replies unchanged, the KV cache admits what fits, and bad input fails clearly."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from knowledge.errors import InvalidInput, NotFound, Unavailable
from models.base import find_base_gguf
from models.generation import TransformersGenerator
from models.prompting import render_prompt

pytest.importorskip("llama_cpp", reason="llama-cpp-python is a project dependency; install with `make install`")

from models.gguf_lora import convert_peft_lora, gguf_lora_for  # noqa: E402
from models.llamacpp import LlamaCppGenerator, requantized_gguf  # noqa: E402

from .test_batching import QUESTIONS, _messages  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "models" / "adapters"
ADAPTER = (ADAPTERS / "ACTIVE").read_text(encoding="utf-8").strip()  # the shipped, active adapter


@pytest.fixture(scope="module")
def llama(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    gen = LlamaCppGenerator(
        find_base_gguf(), base_model_dir, ADAPTERS, cache_dir=tmp_path_factory.mktemp("gguf-lora"), n_ctx=4096
    )
    yield gen
    gen.close()


def _next_token_choices(gen: LlamaCppGenerator, ids: list[int], start: int, adapter: str | None) -> list[int]:
    """Greedy choice at every position from ``start`` on, the text forced (teacher forcing)."""
    runtime = gen._runtime
    with gen._lock:
        if adapter is not None:
            gen._ensure_adapter(adapter)
        runtime.use_adapter(adapter)
        seq = runtime.n_seq - 1  # the last sequence: the engine uses the first ones first
        runtime.seq_rm(seq)
        picks: list[int] = []
        for chunk_start in range(0, len(ids), 256):
            chunk = ids[chunk_start : chunk_start + 256]
            entries = [(t, chunk_start + i, seq, chunk_start + i >= start - 1) for i, t in enumerate(chunk)]
            picks += [int(row.argmax()) for row in runtime.decode(entries)]
        runtime.seq_rm(seq)
    return picks[:-1]


@pytest.fixture(scope="module")
def llama_lora(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The LoRA file applied at run time (``merge_adapters=False``) rather than merged into the weights."""
    gen = LlamaCppGenerator(
        find_base_gguf(), base_model_dir, ADAPTERS, cache_dir=tmp_path_factory.mktemp("gguf-lora-rt"), n_ctx=2048,
        merge_adapters=False,
    )
    yield gen
    gen.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["llama", "llama_lora"])
def test_converted_adapter_makes_the_choices_peft_makes(engine, base_model, request):
    """The GGUF LoRA file (q/k rows permuted for llama.cpp) steers the model as the peft adapter does,
    merged into the weights (the default) or applied at run time."""
    llama = request.getfixturevalue(engine)
    model, tokenizer = base_model
    reference = TransformersGenerator(None, ADAPTERS, model=model, tokenizer=tokenizer, max_batch=0)
    llama.load()
    agree_on, agree_off = [], []
    for question in QUESTIONS[:3]:
        messages = _messages(question)
        reply = reference.generate(messages, adapter_id=ADAPTER, max_new_tokens=32)
        prompt_ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply.text, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + reply_ids
        for adapter, bucket in ((ADAPTER, agree_on), (None, agree_off)):
            picks = _next_token_choices(llama, ids, len(prompt_ids), adapter)
            bucket += [a == b for a, b in zip(picks, reply_ids, strict=True)]
    on = sum(agree_on) / len(agree_on)
    off = sum(agree_off) / len(agree_off)
    # the base weights differ only by rounding (Q4_1 re-encoded to Q8_0 in llama.cpp, bf16 of it in
    # transformers)
    assert on >= 0.85, f"llama.cpp with the adapter agrees with peft on only {on:.0%} of tokens"
    assert on - off >= 0.1, f"the adapter barely changes llama.cpp's choices ({on:.0%} with, {off:.0%} without)"
    if reference._peft is not None:
        reference._peft.unload()  # leave the shared base model as it was


def _agreement(gen: LlamaCppGenerator, question: str, reply: str, adapter: str | None) -> list[bool]:
    """Per reply token: would the model, run alone on the same text so far, have chosen it?"""
    tok = gen.tokenizer
    prompt_ids = tok(render_prompt(tok, _messages(question)), add_special_tokens=False)["input_ids"]
    reply_ids = tok(reply, add_special_tokens=False)["input_ids"]
    picks = _next_token_choices(gen, prompt_ids + reply_ids, len(prompt_ids), adapter)
    return [a == b for a, b in zip(picks, reply_ids, strict=True)]


def _ask_together(gen: LlamaCppGenerator, adapter: str | None, lengths: list[int]) -> dict[int, str]:
    results: dict[int, str] = {}
    start = threading.Barrier(len(QUESTIONS))

    def ask(i: int) -> None:
        start.wait()
        results[i] = gen.generate(_messages(QUESTIONS[i]), adapter_id=adapter, max_new_tokens=lengths[i]).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(results) == len(QUESTIONS)
    return results


def _assert_same_model_choices(gen: LlamaCppGenerator, results: dict[int, str], adapter: str | None) -> None:
    """Batched replies are what the model chooses alone, up to near ties.

    llama.cpp's batched kernels add up in another order than its one-row kernels (and a prefix
    reused from the cache was computed in other chunks), so at a near tie greedy decoding may take
    the other word and the replies then drift apart. So the check is per token: with the reply so
    far forced, the model run alone picks the same next token almost everywhere. A batch that mixed
    up sequences, positions or adapters fails this by a wide margin.
    """
    votes = [v for i, text in results.items() for v in _agreement(gen, QUESTIONS[i], text, adapter)]
    assert votes and sum(votes) / len(votes) >= 0.9, f"{sum(votes)}/{len(votes)} tokens agree: {results}"


@pytest.mark.slow
def test_concurrent_replies_are_the_models_choices_and_reuse_prefixes(llama):
    engine = llama.engine
    reused_before = engine.prefix_tokens_reused
    results = _ask_together(llama, ADAPTER, [24, 24, 9, 24, 17])  # rows leave at different steps
    assert engine.max_rows_seen >= 2, "the concurrent requests were never decoded together"
    _assert_same_model_choices(llama, results, ADAPTER)
    # the system prompt's rules are shared between prompts: their cells were reused, not recomputed
    assert engine.prefix_tokens_reused > reused_before


@pytest.mark.slow
def test_a_finished_reply_keeps_its_prompts_cells_and_drops_its_own(llama):
    """Kept for prefix reuse: the prompt. The generated tokens' cells are freed (they would only
    slow every later decode step, which attends over every cell of the unified cache)."""
    messages = _messages(QUESTIONS[2])
    tok = llama.tokenizer
    ids = tok(render_prompt(tok, messages), add_special_tokens=False)["input_ids"]
    result = llama.generate(messages, adapter_id=ADAPTER, max_new_tokens=12)
    assert result.completion_tokens >= 2
    engine = llama.engine
    with llama._lock:
        kept = [s for s in engine.slots.slots if not s.busy and s.tokens == ids]
        assert kept, "the finished prompt is not kept for reuse"
        runtime = engine.runtime
        # (an earlier test may have left the same prompt in another slot: each holds the prompt only)
        assert all(runtime._L.llama_memory_seq_pos_max(runtime.mem, s.seq) == len(ids) - 1 for s in kept)
    # and it is still reused: the same prompt again prefills one token only
    reused_before = engine.prefix_tokens_reused
    again = llama.generate(messages, adapter_id=ADAPTER, max_new_tokens=12)
    assert engine.prefix_tokens_reused - reused_before == len(ids) - 1
    assert again.completion_tokens >= 2


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["llama", "llama_lora"])
def test_adapters_switch_in_process(engine, request, monkeypatch):
    """Merged adapters swap the model file (and start from an empty cache); LoRA files switch in place."""
    llama = request.getfixturevalue(engine)
    # llama.cpp prefills every prompt here: after a switch the PyTorch prefill loads the other adapter on a
    # thread of its own and llama.cpp prefills meanwhile, so which one prefills a prompt depends on timing,
    # and the two differ in the last bits (test_torch_prefill.py covers that path)
    monkeypatch.setattr(llama.engine, "torch_prefill", None)
    messages = _messages(QUESTIONS[1])
    base = llama.generate(messages, max_new_tokens=20).text
    swaps = llama._runtime.swaps
    tuned = llama.generate(messages, adapter_id=ADAPTER, max_new_tokens=20).text
    assert tuned != base
    with llama._lock:
        assert not any(s.tokens and s.adapter_id is None for s in llama.engine.slots.slots)
    assert llama.generate(messages, max_new_tokens=20).text == base
    assert llama.generate(messages, adapter_id=ADAPTER, max_new_tokens=20).text == tuned
    assert ADAPTER in llama.loaded_adapters()
    if llama.merge_adapters:
        assert llama._runtime.swaps == swaps + 3
        assert llama._runtime.loaded_path.name.startswith(ADAPTER) and ".merged-" in llama._runtime.loaded_path.name
    else:
        assert llama._runtime.swaps == swaps == 0


def test_merged_weights_are_the_base_plus_the_adapters_change(tmp_path: Path):
    """Each adapted tensor of the merged file is W + (alpha / r) B @ A, rounded once to Q8_0; the others
    are the layout file's own bytes; the file is written once; a file that is no LoRA is refused."""
    import gguf as gguf_lib
    import numpy as np

    from models.gguf_lora import _float_matrix, merged_gguf_for

    source = find_base_gguf()
    layout = requantized_gguf(source, tmp_path)
    lora = gguf_lora_for(ADAPTERS / ADAPTER, tmp_path, source)
    merged = merged_gguf_for(layout, source, lora, tmp_path)
    mtime = merged.stat().st_mtime_ns
    assert merged_gguf_for(layout, source, lora, tmp_path) == merged and merged.stat().st_mtime_ns == mtime

    lora_reader = gguf_lib.GGUFReader(str(lora))
    alpha = float(lora_reader.fields["adapter.lora.alpha"].contents())
    adapted = {t.name: t for t in lora_reader.tensors}
    exact = {t.name: t for t in gguf_lib.GGUFReader(str(source)).tensors}
    base = {t.name: t for t in gguf_lib.GGUFReader(str(layout)).tensors}
    out = {t.name: t for t in gguf_lib.GGUFReader(str(merged)).tensors}
    assert set(out) == set(base)
    for name in ("blk.0.attn_q.weight", "blk.29.ffn_down.weight", "blk.7.attn_v.weight"):
        a, b = _float_matrix(adapted[name + ".lora_a"]), _float_matrix(adapted[name + ".lora_b"])
        want = _float_matrix(exact[name]) + (b @ a) * (alpha / a.shape[0])
        got = _float_matrix(out[name])
        step = np.abs(want).reshape(want.shape[0], -1, 32).max(-1, keepdims=True) / 127  # Q8_0's rounding step
        err = np.abs(got - want).reshape(step.shape[0], -1, 32)
        assert (err <= step * 0.6 + 1e-6).all(), (name, float((err / step).max()))  # (half a step; d is f16)
        # the adapter's change is really in there (not lost in rounding)
        change = (b @ a) * (alpha / a.shape[0])
        assert np.corrcoef((got - _float_matrix(exact[name])).ravel(), change.ravel())[0, 1] > 0.5, name
    assert out["token_embd.weight"].data.tobytes() == base["token_embd.weight"].data.tobytes()
    assert out["blk.3.attn_norm.weight"].data.tobytes() == base["blk.3.attn_norm.weight"].data.tobytes()

    with pytest.raises(InvalidInput):
        merged_gguf_for(layout, source, layout, tmp_path / "no-lora")  # a model file, not a LoRA file
    assert not list((tmp_path / "no-lora").glob("*"))


@pytest.mark.slow
def test_small_cache_defers_requests_instead_of_failing(base_model_dir: Path, tmp_path: Path):
    """With room for about two replies at a time, five concurrent ones all finish, correctly.

    llama.cpp prefills here, so that each reply can be held to the model's own choices token by
    token; the same small cache with the PyTorch prefill is tested in test_torch_prefill.py.
    """
    gen = LlamaCppGenerator(find_base_gguf(), base_model_dir, ADAPTERS, cache_dir=tmp_path, n_ctx=1024,
                            prefix_cache_size=1, torch_prefill=False)
    try:
        results = _ask_together(gen, None, [16] * len(QUESTIONS))
        assert gen.engine.max_rows_seen < len(QUESTIONS)  # some waited for room
        _assert_same_model_choices(gen, results, None)
        with pytest.raises(InvalidInput) as err:
            gen.generate(_messages("word " * 2000), max_new_tokens=16)
        assert err.value.code == "prompt_too_long"
    finally:
        gen.close()


@pytest.mark.slow
def test_closing_a_stream_frees_its_sequence_and_unknown_adapter_fails(llama):
    stream = llama.stream(_messages(QUESTIONS[0]), max_new_tokens=100)
    first = next(stream)
    stream.close()
    assert first and stream.result.completion_tokens < 100
    result = llama.generate(_messages(QUESTIONS[1]), max_new_tokens=3)
    assert result.completion_tokens == 3 and result.finish_reason == "length"
    assert result.model_id and result.prompt_tokens > 0 and result.first_token_s is not None
    with pytest.raises(NotFound):
        llama.generate(_messages(QUESTIONS[1]), adapter_id="does-not-exist", max_new_tokens=2)
    assert not any(slot.busy for slot in llama.engine.slots.slots)
    # warming up (what the server does at start) loads the active adapter before the first reply
    llama.warm(ADAPTER)
    assert ADAPTER in llama.loaded_adapters()
    with pytest.raises(NotFound):
        llama.warm("does-not-exist")


@pytest.mark.slow
def test_q8_0_weights_are_cached_and_choose_what_the_shipped_file_chooses(llama, base_model_dir: Path,
                                                                          tmp_path: Path):
    """The default re-encoding to Q8_0 is done once, and it is the same model as the shipped Q4_1 file."""
    import gguf as gguf_lib

    source = find_base_gguf()
    q8 = requantized_gguf(source, tmp_path)
    mtime = q8.stat().st_mtime_ns
    assert requantized_gguf(source, tmp_path) == q8 and q8.stat().st_mtime_ns == mtime
    types = {t.tensor_type.name for t in gguf_lib.GGUFReader(str(q8)).tensors if len(t.shape) > 1}
    assert "Q8_0" in types and "Q4_1" not in types
    assert not list(tmp_path.glob(".*.part"))

    assert llama.weights == "q8_0"
    shipped = LlamaCppGenerator(source, base_model_dir, ADAPTERS, cache_dir=tmp_path, n_ctx=2048,
                                weights="shipped")
    try:
        shipped.load()
        votes = []
        for question in QUESTIONS[:3]:
            reply = shipped.generate(_messages(question), adapter_id=ADAPTER, max_new_tokens=32).text
            votes += _agreement(llama, question, reply, ADAPTER)
        assert sum(votes) / len(votes) >= 0.9, f"Q8_0 agrees with Q4_1 on only {sum(votes)}/{len(votes)} tokens"
    finally:
        shipped.close()
    with pytest.raises(InvalidInput):
        LlamaCppGenerator(source, base_model_dir, ADAPTERS, cache_dir=tmp_path, weights="q2")

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(Unavailable):
        requantized_gguf(broken, tmp_path)
    assert not list(tmp_path.glob("broken-*.Q8_0.gguf"))


@pytest.mark.slow
def test_bf16_weights_are_the_same_model_as_q8_0(llama, base_model_dir: Path, tmp_path: Path):
    """``weights="bf16"`` re-encodes the shipped file once to bf16 (every matrix, the merged adapter's too),
    and its replies are the choices the default Q8_0 weights make, token by token."""
    import gguf as gguf_lib

    source = find_base_gguf()
    bf16 = requantized_gguf(source, tmp_path, encoding="bf16")
    assert bf16.name.endswith(".BF16.gguf") and requantized_gguf(source, tmp_path, encoding="bf16") == bf16
    types = {t.tensor_type.name for t in gguf_lib.GGUFReader(str(bf16)).tensors if len(t.shape) > 1}
    assert types == {"BF16"}
    with pytest.raises(InvalidInput):
        requantized_gguf(source, tmp_path, encoding="q2")

    gen = LlamaCppGenerator(source, base_model_dir, ADAPTERS, cache_dir=tmp_path, n_ctx=2048, weights="bf16",
                            torch_prefill=False)
    try:
        votes = []
        for question in QUESTIONS[:3]:
            reply = gen.generate(_messages(question), adapter_id=ADAPTER, max_new_tokens=32).text
            votes += _agreement(llama, question, reply, ADAPTER)
        merged = list(tmp_path.glob(f"{ADAPTER}-*.merged-*.gguf"))
        assert merged and {t.tensor_type.name for t in gguf_lib.GGUFReader(str(merged[0])).tensors
                           if len(t.shape) > 1} == {"BF16"}
    finally:
        gen.close()
    assert sum(votes) / len(votes) >= 0.9, f"bf16 agrees with Q8_0 on only {sum(votes)}/{len(votes)} tokens"


def test_adapter_conversion_is_cached_and_rejects_broken_folders(tmp_path: Path):
    gguf = find_base_gguf()
    first = gguf_lora_for(ADAPTERS / ADAPTER, tmp_path, gguf)
    mtime = first.stat().st_mtime_ns
    assert gguf_lora_for(ADAPTERS / ADAPTER, tmp_path, gguf) == first and first.stat().st_mtime_ns == mtime

    import gguf as gguf_lib

    reader = gguf_lib.GGUFReader(str(first))
    assert reader.fields["general.type"].contents() == "adapter"
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.29.ffn_down.weight.lora_b" in names

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput):
        convert_peft_lora(empty, tmp_path / "x.gguf", gguf)

    import torch
    from safetensors.torch import save_file

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    save_file({"base_model.model.lm_head.lora_A.weight": torch.zeros(2, 576)}, str(odd / "adapter_model.safetensors"))
    with pytest.raises(InvalidInput) as err:
        convert_peft_lora(odd, tmp_path / "odd.gguf", gguf)
    assert "lm_head" in str(err.value)
    assert not (tmp_path / "odd.gguf").exists()


def test_thread_tuner_follows_the_faster_thread_count():
    from models.llamacpp import ThreadTuner

    tuner = ThreadTuner(2, explore_every=10, explore_steps=2)
    cost = {1: 0.020, 2: 0.012}  # an idle machine: two threads are faster

    def run(steps: int) -> list[int]:
        picks = []
        for _ in range(steps):
            n = tuner.choose()
            tuner.observe(n, cost[n] * 4, rows=4)
            picks.append(n)
        return picks

    picks = run(40)
    assert set(picks) == {1, 2} and picks[-5:].count(2) >= 4 and tuner.current == 2
    cost[2] = 0.200  # another process took a core: spinning threads wait at every barrier
    picks = run(40)
    assert tuner.current == 1 and picks[-20:].count(1) >= 16  # mostly one thread, a few probes of two
    cost[2] = 0.012  # the other process finished: the periodic probe notices
    picks = run(40)
    assert tuner.current == 2 and picks[-5:].count(2) >= 4
    assert ThreadTuner(1).choose() == 1
