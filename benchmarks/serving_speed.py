"""Generation speed of the in-process backend against naive ``model.generate``, side by side.

Usage: python benchmarks/serving_speed.py [--new-tokens 96] [--adapter ID] [--weights q8_0|shipped]
       [--no-merge] [--no-torch-prefill] [--concurrency 1,4,16] [--rounds 1,4]
       [--skip-bf16] [--skip-transformers-engine]

Everything runs in this one process, one after the other, on the same realistic prompt: the
sample company's facts and three passages of its returns policy in the bot's own prompt format
(~530 tokens), the shipped LoRA adapter applied.

* naive: ``model.generate`` on the PeftModel (bf16 weights, as the issue's reference measurement,
  and float32); time to first token = ``generate(max_new_tokens=1)``; decode tokens/s from a run
  that is forced to produce ``--new-tokens`` tokens.
* llama.cpp's own: llama-cpp-python's high-level ``Llama`` on the same weights as our engine (what
  it is compared with): the shipped Q4_1 file re-encoded to Q8_0 as the product does by default (or
  with ``--weights shipped`` the Q4_1 file) with the adapter merged in, as the product does by
  default; and, for reference, the same base file with the LoRA file applied at run time (what our
  engine runs with ``--no-merge``, HYBRIDESK_LLAMACPP_MERGE_ADAPTER=false).
* ours, one stream: the product's default engine (``LlamaCppGenerator``: llama.cpp, continuous
  batching, prefix sharing) and the transformers engine (``TransformersGenerator``); first token
  cold (nothing cached) and warm (a prompt sharing everything but the question with the previous
  one), and decode tokens/s. Cold prompts are prefilled in PyTorch and decoded by llama.cpp
  (``HYBRIDESK_LLAMACPP_TORCH_PREFILL``, on by default; ``--no-torch-prefill``); the other setting
  gets one-stream rows too, so the first tokens compare side by side. The cold first token is also
  taken for three more questions, each with nothing cached.
* ours, concurrent (llama.cpp engine): 1, 4 and 16 conversations at once (different questions),
  aggregate tokens/s, per-reply latency p50/p95 and time to first token; once as a single burst
  (every conversation asks one question at the same moment) and once with each conversation
  asking ``--rounds`` questions back to back (the batch stays fuller, as on a busy server).

Writes benchmarks/results/serving_speed.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import summary, table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How many days do I have to return a lamp?",
    "Do I get all my money back if I return a chair?",
    "Who pays for the return label?",
    "Is there a fee for returning an assembled bookcase?",
    "Can I return a duvet I opened?",
    "Where can I read the full refund policy?",
    "How long after delivery can I send something back?",
    "I changed my mind about a rug, what does it cost to return?",
]


def realistic_messages(question: str) -> list[dict[str, str]]:
    """The bot's prompt for ``question`` with the returns policy's facts and three passages."""
    import yaml

    from models.prompting import build_messages

    text = (ROOT / "knowledge/sample/returns-policy.md").read_text(encoding="utf-8")
    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front)
    sections = [s.strip() for s in body.split("\n## ") if s.strip()]
    passages = [
        {"title": meta["title"], "heading": s.splitlines()[0].lstrip("# "), "text": " ".join(s.splitlines()[1:])}
        for s in sections[:3]
    ]
    return build_messages(
        message=question, intent="check_refund_policy", tone="neutral", facts=meta["facts"], passages=passages,
        history=[("customer", "Hi, I bought a few things last week."), ("bot", "Happy to help! What can I do for you?")],
    )


def load(dtype_name: str, adapter: str | None):
    import torch

    from models.base import ensure_base_model, load_base_model

    cache = Path(os.environ.get("HYBRIDESK_MODEL_CACHE", "/tmp/hybridesk-test-models"))
    model_dir = ensure_base_model(cache)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    model, tok = load_base_model(model_dir, dtype, num_threads=2)
    peft_model = None
    if adapter:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, str(ROOT / "models/adapters" / adapter), adapter_name=adapter)
        peft_model.eval()
    return model, peft_model, tok


def naive(dtype_name: str, adapter: str | None, new_tokens: int) -> dict:
    import torch

    from models.prompting import render_prompt

    model, peft_model, tok = load(dtype_name, adapter)
    runner = peft_model or model
    ids = tok(render_prompt(tok, realistic_messages(QUESTIONS[0])), add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        runner.generate(**ids, max_new_tokens=2, do_sample=False)  # warm-up
        t0 = time.perf_counter()
        runner.generate(**ids, max_new_tokens=1, do_sample=False)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        total = time.perf_counter() - t0
    decode = (new_tokens - 1) / max(1e-9, total - ttft)
    del model, peft_model
    return {
        "system": f"naive generate, {dtype_name}",
        "prompt_tokens": int(ids["input_ids"].shape[1]),
        "ttft_s": ttft,
        "decode_tok_s": decode,
    }


def weights_file(weights: str, lora_cache: Path) -> Path:
    from models.base import find_base_gguf
    from models.llamacpp import requantized_gguf

    if weights == "shipped":
        return find_base_gguf()
    return requantized_gguf(find_base_gguf(), lora_cache, encoding=weights)


def llama_cpp_own(adapter: str | None, new_tokens: int, lora_cache: Path, weights: str, merged: bool,
                  flash_attn: int = 1) -> dict:
    """llama.cpp's own speed on the same weights: llama-cpp-python's ``Llama`` on the base file with the
    adapter merged in (``merged``, as our engine runs by default), or with the LoRA file applied at run time."""
    from llama_cpp import Llama

    from models.base import find_base_gguf
    from models.gguf_lora import gguf_lora_for, merged_gguf_for
    from models.prompting import render_prompt

    gguf = find_base_gguf()
    lora = str(gguf_lora_for(ROOT / "models/adapters" / adapter, lora_cache, gguf)) if adapter else None
    model_file = weights_file(weights, lora_cache)
    if merged and lora:
        model_file, lora = merged_gguf_for(model_file, gguf, lora, lora_cache), None
    llm = Llama(str(model_file), n_ctx=2048, n_threads=2, n_batch=512, lora_path=lora, verbose=False,
                flash_attn=bool(flash_attn))
    tok = _tokenizer()
    ids = tok(render_prompt(tok, realistic_messages(QUESTIONS[0])), add_special_tokens=False)["input_ids"]
    eos = llm.token_eos()

    def run(n: int) -> tuple[float, float, int]:
        llm.reset()
        t0 = time.perf_counter()
        first, count = None, 0
        for _ in llm.create_completion(ids, max_tokens=n, temperature=0.0, stream=True, logit_bias={eos: -1e9}):
            count += 1
            if first is None:
                first = time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0, count

    run(2)  # warm-up
    ttft, total, count = run(new_tokens)
    return {
        "system": f"llama.cpp's own (llama-cpp-python Llama, same GGUF ({weights}), "
                  f"{'adapter merged' if merged else 'LoRA at run time'})",
        "merged": merged,
        "prompt_tokens": len(ids),
        "ttft_s": ttft,
        "decode_tok_s": (count - 1) / max(1e-9, total - ttft),
    }


def _tokenizer():
    from transformers import AutoTokenizer

    from models.base import ensure_base_model

    cache = Path(os.environ.get("HYBRIDESK_MODEL_CACHE", "/tmp/hybridesk-test-models"))
    return AutoTokenizer.from_pretrained(str(ensure_base_model(cache)), local_files_only=True)


def make_generator(backend: str, lora_cache: Path, weights: str = "q8_0", merge: bool = True,
                   torch_prefill: bool = True, flash_attn: int = 1):
    if backend == "llamacpp":
        from models.base import ensure_base_model, find_base_gguf
        from models.llamacpp import LlamaCppGenerator

        cache = Path(os.environ.get("HYBRIDESK_MODEL_CACHE", "/tmp/hybridesk-test-models"))
        return LlamaCppGenerator(find_base_gguf(), ensure_base_model(cache), ROOT / "models/adapters",
                                 cache_dir=lora_cache, n_threads=2, max_batch=16, weights=weights,
                                 merge_adapters=merge, torch_prefill=torch_prefill, flash_attn=flash_attn)
    from models.generation import TransformersGenerator

    model, _, tok = load("fp32", None)  # the generator applies the adapter itself
    return TransformersGenerator(None, ROOT / "models/adapters", model=model, tokenizer=tok, max_batch=16)


def ours(backend: str, adapter: str | None, new_tokens: int, concurrency: list[int],
         lora_cache: Path, weights: str = "q8_0", rounds: list[int] | None = None,
         merge: bool = True, torch_prefill: bool = True, flash_attn: int = 1) -> tuple[list[dict], list[dict]]:
    gen = make_generator(backend, lora_cache, weights, merge, torch_prefill, flash_attn)
    label_backend = {"llamacpp": "llama.cpp engine", "transformers": "transformers engine"}[backend]
    if backend == "llamacpp":
        label_backend += ", PyTorch prefill" if torch_prefill else ", llama.cpp prefill"
    single = []
    # warm-up: loads the model and the adapter; then clear the prefix cache for a cold first token
    gen.generate(realistic_messages("hello"), adapter_id=adapter, max_new_tokens=2)
    gen.engine.clear_prefix_cache()
    # the cold first token of three more questions, each with nothing cached (it varies run to run)
    cold_runs = []
    for question in QUESTIONS[2:5]:
        cold_runs.append(gen.generate(realistic_messages(question), adapter_id=adapter, max_new_tokens=1).first_token_s)
        gen.engine.clear_prefix_cache()
    for label, question in (("cold prefix cache", QUESTIONS[0]), ("warm prefix cache", QUESTIONS[1])):
        reused_before = gen.engine.prefix_tokens_reused
        r = gen.generate(realistic_messages(question), adapter_id=adapter, max_new_tokens=new_tokens)
        decode = (r.completion_tokens - 1) / max(1e-9, r.duration_s - (r.first_token_s or 0))
        single.append(
            {
                "system": f"ours ({label_backend}), one stream, {label}",
                "prompt_tokens": r.prompt_tokens,
                "reused_prefix_tokens": gen.engine.prefix_tokens_reused - reused_before,
                "ttft_s": r.first_token_s,
                "decode_tok_s": decode,
                "completion_tokens": r.completion_tokens,
            }
        )
        if label.startswith("cold"):
            single[-1]["cold_ttft_more_questions_s"] = cold_runs
    rows = []
    for n_rounds in rounds or [1]:
        for n in concurrency:
            rows.append(_concurrent(gen, adapter, new_tokens, n, n_rounds, backend))
    gen.close()
    return single, rows


def _concurrent(gen, adapter: str | None, new_tokens: int, n: int, n_rounds: int, backend: str) -> dict:
    """``n`` conversations at once, each asking ``n_rounds`` questions back to back.

    One round is a burst: every conversation asks at the same moment and the batch drains as the
    replies end (a ramp-down of ever smaller batches). With several rounds each conversation asks
    its next question as soon as its reply is complete, which is how a busy server sees them: the
    conversations drift out of phase and the batch stays fuller.
    """
    results: list = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)

    def ask(i: int) -> None:
        start.wait()
        for r in range(n_rounds):
            k = i * n_rounds + r  # each conversation moves through the questions (and reply lengths)
            question = QUESTIONS[k % len(QUESTIONS)] + ("" if k < len(QUESTIONS) else f" ({k})")
            out = gen.generate(realistic_messages(question), adapter_id=adapter, max_new_tokens=new_tokens)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    steps0, rows0 = gen.engine.steps, gen.engine.rows_decoded
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r.completion_tokens for r in results)
    steps = gen.engine.steps - steps0
    return {
        "backend": backend,
        "concurrent": n,
        "rounds": n_rounds,
        "replies": len(results),
        "tokens": tokens,
        "wall_s": wall,
        "aggregate_tok_s": tokens / wall,
        "latency_s": summary([r.duration_s for r in results]),
        "ttft_s": summary([r.first_token_s or 0 for r in results]),
        "mean_batch": (gen.engine.rows_decoded - rows0) / max(1, steps),
    }


def _llama_build() -> str:
    """The CPU features llama.cpp was compiled for (``llama_print_system_info``)."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--adapter", default=(ROOT / "models/adapters/ACTIVE").read_text(encoding="utf-8").strip())
    ap.add_argument("--weights", choices=["q8_0", "bf16", "shipped"], default="q8_0")
    ap.add_argument("--no-merge", action="store_true",
                    help="our engine applies the LoRA file at run time instead of merging it into the weights")
    ap.add_argument("--no-torch-prefill", action="store_true",
                    help="our engine prefills in llama.cpp (the other setting gets one-stream rows only)")
    ap.add_argument("--flash-attn", type=int, choices=[0, 1], default=1,
                    help="llama.cpp's flash attention (1: on, the engine's default), for our engine and llama.cpp's own")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--rounds", default="1,4",
                    help="questions each concurrent conversation asks back to back (one run per value)")
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--skip-transformers-engine", action="store_true",
                    help="leave out the transformers engine's single-stream rows")
    args = ap.parse_args()
    adapter = args.adapter or None
    load_before = os.getloadavg()[0]
    import atexit
    import shutil
    import tempfile

    lora_cache = Path(tempfile.mkdtemp(prefix="hybridesk-gguf-lora-"))
    atexit.register(shutil.rmtree, lora_cache, True)  # ~290 MB of converted weights per run
    baselines = [naive("fp32", adapter, args.new_tokens)]
    if not args.skip_bf16:
        baselines.append(naive("bf16", adapter, args.new_tokens))
    merge = not args.no_merge
    for merged in (merge, not merge):  # the first is the same weights as ours: the ratios are against it
        baselines.append(llama_cpp_own(adapter, args.new_tokens, lora_cache, args.weights, merged, args.flash_attn))
    single, concurrent = ours("llamacpp", adapter, args.new_tokens,
                              [int(c) for c in args.concurrency.split(",")], lora_cache, args.weights,
                              [int(r) for r in args.rounds.split(",")], merge, not args.no_torch_prefill,
                              args.flash_attn)
    # the other prefill setting, one stream only: the first token side by side
    single += ours("llamacpp", adapter, args.new_tokens, [], lora_cache, args.weights, [], merge,
                   args.no_torch_prefill, args.flash_attn)[0]
    if not args.skip_transformers_engine:
        single += ours("transformers", adapter, args.new_tokens, [], lora_cache)[0]
    ref = next((b for b in baselines if "bf16" in b["system"]), baselines[0])
    own = next(b for b in baselines if b["system"].startswith("llama.cpp"))
    for row in baselines + single:
        row["decode_vs_llama_cpp"] = row["decode_tok_s"] / own["decode_tok_s"]
        row["decode_vs_naive_bf16"] = row["decode_tok_s"] / ref["decode_tok_s"]
        row["ttft_vs_naive_bf16"] = ref["ttft_s"] / row["ttft_s"]
    for row in concurrent:  # against one conversation asking the same number of rounds
        one = next(r for r in concurrent if r["rounds"] == row["rounds"] and r["concurrent"] == min(
            c["concurrent"] for c in concurrent if c["rounds"] == row["rounds"]))
        row["vs_one_stream"] = row["aggregate_tok_s"] / one["aggregate_tok_s"]
    print(table([{k: v for k, v in r.items()} for r in baselines + single]))
    print(
        table(
            [
                {
                    "concurrent": r["concurrent"],
                    "rounds": r["rounds"],
                    "aggregate tok/s": r["aggregate_tok_s"],
                    "x one stream": r["vs_one_stream"],
                    "mean batch": r["mean_batch"],
                    "latency p50": r["latency_s"]["p50"],
                    "latency p95": r["latency_s"]["p95"],
                    "ttft p50": r["ttft_s"]["p50"],
                    "ttft p95": r["ttft_s"]["p95"],
                }
                for r in concurrent
            ]
        )
    )
    write_json(
        "serving_speed",
        {
            "new_tokens": args.new_tokens,
            "adapter": adapter,
            "weights": args.weights,
            "adapter_merged": merge,
            "torch_prefill": not args.no_torch_prefill,
            "flash_attn": args.flash_attn,
            "llama_cpp_build": _llama_build(),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": os.getloadavg()[0],
            "baselines": baselines,
            "single": single,
            "concurrent": concurrent,
            "median_decode_ratio": statistics.median(
                r["decode_vs_naive_bf16"] for r in single if "llama.cpp" in r["system"]
            ),
        },
    )


if __name__ == "__main__":
    main()
