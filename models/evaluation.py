"""Evaluation of an adapter against the base model on held-out tickets (``hybridesk eval``).

Metrics, per model (adapter and base):

* ``val_loss`` / ``perplexity`` - teacher-forced loss on the held-out replies (reply tokens only);
* ``rouge_l`` - ROUGE-L F1 of the generated reply against the agent's real reply (our own
  LCS implementation over lower-cased word tokens);
* ``cosine`` - MiniLM embedding cosine between generated and real reply;
* ``placeholder_share`` - replies that use at least one ``{{Slot}}``;
* ``cut_share`` - replies cut at the ``max_new_tokens`` cap;
* ``slot_resolvable_share`` - of all slot names written, the share the KB can resolve (the
  resolvable list is a parameter; without it the share allowed by the prompt is reported);
* ``invented_share`` - replies with a number, URL, e-mail or phone number not in the prompt;
* ``intent_match`` - replies whose nearest intent centroid (MiniLM, over the other tickets' real
  replies: never the ticket's own) is the ticket's intent: a cheap intent-appropriateness check.

Held-out tickets: the adapter's validation split from each of its sources (its ``val_hashes``: the
sample tickets, and the tickets imported into the database, read through a session), the company's
own first, then the public (bitext) tickets its training slice did not use. The report's ``by_source``
counts them per source. Prompts are built with :mod:`models.prompting` as in training (the slot list is
the real reply's slots plus three distractors).
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from knowledge.errors import InvalidInput
from models.adapters import read_metadata
from models.config import TrainConfig
from models.prompting import (
    CUSTOMER_SLOTS,
    DEFAULT_COMPANY,
    MAX_NEW_TOKENS,
    allowed_slots,
    build_messages,
    encode_example,
    extract_slots,
    render_prompt,
)
from models.tickets import Ticket, read_tickets, stored_tickets
from models.training import (
    PUBLIC_SOURCES,
    REPO_ROOT,
    ContextFn,
    Example,
    _pad,
    _resolve,
    evaluate_loss,
    load_training_tickets,
    stratified_slice,
)

_WORD_RE = re.compile(r"\{\{[^{}]+\}\}|\w+", re.UNICODE)
_FIGURE_RE = re.compile(
    r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+\.[\w.]+|\+?\d[\d ()-]{6,}\d"
    r"|[$€£]\s?\d+(?:[.,]\d+)?|\b\d+(?:[.,]\d+)?(?:\s?%)?"
)


@dataclass
class EvalOptions:
    limit: int = 25
    max_new_tokens: int = MAX_NEW_TOKENS
    compare_base: bool = True
    seed: int = 7
    batch_size: int = 8
    loss_examples: int = 64
    resolvable_slots: Sequence[str] | None = None
    #: None: the company name the adapter was trained with (its metadata's config)
    company_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: report ROUGE-L and cosine for replies up to / over this many tokens, weighted by the public mix;
    #: None: the adapter's own held-out split point (``held_out_split_at`` in its metadata), if any
    split_at: int | None = None


# -- text metrics ------------------------------------------------------------------------------


def tokenize_words(text: str) -> list[str]:
    """Lower-cased word tokens; a ``{{Slot}}`` counts as one token."""
    return [t.lower() for t in _WORD_RE.findall(text or "")]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)*len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 between two texts."""
    c, r = tokenize_words(candidate), tokenize_words(reference)
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _figure_key(token: str) -> str:
    """A figure without spacing or link punctuation: "€ 60" -> "€60", "0800 123-4567" -> "08001234567"."""
    token = token.strip().rstrip(".,;:!?)").lower()
    if re.fullmatch(r"\+?\d[\d ()-]{6,}\d", token):
        return re.sub(r"\D", "", token)
    return re.sub(r"\s+", "", token)


def invented_figures(reply: str, prompt: str) -> list[str]:
    """Numbers, amounts, links, e-mails and phone numbers in ``reply`` that the prompt does not state.

    Figures are compared whole and by kind, not as substrings: "$100" is not backed by "100%" or
    by "1000", and a price is backed only by the same price. A bare number ("30") is backed by any
    figure of the prompt with that number ("30 days", "€30").
    """
    known = {_figure_key(t) for t in _FIGURE_RE.findall(prompt or "")}
    bare = {re.sub(r"[^\d.,]", "", k) for k in known}
    without_slots = re.sub(r"\{\{[^{}]+\}\}", " ", reply or "")
    # list numbering ("1. Log in"), at a line's start or right after a sentence
    without_slots = re.sub(r"(?m)(?:^\s*|(?<=[.!?:] ))\d{1,2}[.)]\s", " ", without_slots)
    found = []
    for match in _FIGURE_RE.findall(without_slots):
        token = match.strip().rstrip(".,;:!?)")
        key = _figure_key(token)
        if not token or key in known:
            continue
        if re.fullmatch(r"\d+(?:[.,]\d+)?", key) and key in bare:
            continue
        found.append(token)
    return found


# -- held-out data -------------------------------------------------------------------------------


#: how many of the adapter's least similar replies the report shows in full
WEAKEST = 5


def held_out_tickets(
    metadata: dict[str, Any], *, shared_data_dir: Path | None, limit: int, seed: int,
    also: list[dict[str, Any]] | None = None, session: Any = None,
) -> list[Ticket]:
    """Tickets the adapter did not train on, stratified by intent.

    The company's own held-out tickets (sample tickets, and tickets imported into the database, read
    through ``session``) come first, up to ``limit``; public (bitext) tickets fill the rest.
    ``also``: metadata of other adapters; only tickets none of them trained on either are kept,
    so that two adapters are compared on the same tickets.
    """
    pool = _held_out_pool(metadata, shared_data_dir, session=session)
    for other in also or []:
        theirs = {t.data_hash for t in _held_out_pool(other, shared_data_dir, session=session, check=False)}
        pool = [t for t in pool if t.data_hash in theirs]
    own = [t for t in pool if t.source not in PUBLIC_SOURCES]
    public = [t for t in pool if t.source in PUBLIC_SOURCES]
    chosen = stratified_slice(own, limit, seed)
    return chosen + stratified_slice(public, limit - len(chosen), seed)


def sources_summary(tickets: Sequence[Ticket]) -> dict[str, int]:
    """``{source: count}`` of ``tickets``, the company's own sources first."""
    counts = Counter(t.source for t in tickets)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] in PUBLIC_SOURCES, kv[0])))


def untrained_long_reply_tickets(
    chain: Sequence[dict[str, Any]], *, shared_data_dir: Path | None, tokenizer: Any, limit: int, seed: int,
) -> list[Ticket]:
    """Public tickets that no adapter in ``chain`` (an adapter's metadata, then its ancestors') trained on
    because their agent reply is longer than every run's ``max_reply_tokens``, stratified by intent.

    A second, larger held-out set: training leaves these tickets out, so they are unseen by the whole
    chain, but they are not a random sample (their replies are long).
    """
    from models.training import reply_tokens

    if not chain or not (chain[0].get("config") or {}).get("bitext_csv"):
        return []
    configs = [TrainConfig(**{**TrainConfig().to_dict(), **(m.get("config") or {})}) for m in chain]
    cap = max(c.max_reply_tokens for c in configs)
    tickets = load_training_tickets(replace(configs[0], sample_tickets=None), shared_data_dir=shared_data_dir)
    pool = [t for t in tickets if reply_tokens(tokenizer, t.agent_reply) > cap]
    return stratified_slice(pool, limit, seed)


def unseen_by(metadata: dict[str, Any], tickets: Sequence[Ticket], tokenizer: Any) -> list[Ticket]:
    """The ``tickets`` an adapter cannot have trained on: those of its validation split, and public ones
    whose reply is longer than any run of its chain admitted (:func:`models.training.seen_reply_cap`)."""
    from models.training import reply_tokens, seen_reply_cap

    val_hashes = set(metadata.get("val_hashes") or [])
    cap = seen_reply_cap(metadata)
    return [t for t in tickets if t.data_hash in val_hashes
            or (t.source in PUBLIC_SOURCES and reply_tokens(tokenizer, t.agent_reply) > cap)]


def _held_out_pool(
    metadata: dict[str, Any], shared_data_dir: Path | None, *, session: Any = None, check: bool = True,
) -> list[Ticket]:
    """Every ticket the adapter did not train on: public tickets its slice left out, and the tickets of
    its validation split (``val_hashes``) from each of its sources, the database's included.

    ``check``: raise :class:`InvalidInput` naming the reason when the adapter held out tickets of the
    database that cannot be read (no ``session``) or are not there any more.
    """
    cfg = TrainConfig(**{**TrainConfig().to_dict(), **(metadata.get("config") or {})})
    val_hashes = set(metadata.get("val_hashes") or [])
    pool: list[Ticket] = []
    seen: set[str] = set()

    def add(tickets: Sequence[Ticket]) -> None:
        for t in tickets:
            if t.data_hash not in seen:
                seen.add(t.data_hash)
                pool.append(t)

    if cfg.sample_tickets and val_hashes:
        path = _resolve(cfg.sample_tickets, REPO_ROOT)
        if path.is_file():
            rows, _ = read_tickets(path, "sample")
            add([t for t in rows if t.data_hash in val_hashes])
    if cfg.use_db_tickets and val_hashes:
        if session is not None:
            add([t for t in stored_tickets(session) if t.data_hash in val_hashes])
        elif check:
            raise InvalidInput(
                f"Adapter {metadata.get('id', '?')} was trained on tickets imported into the database; its "
                "held-out tickets are read from there, and no database session was given.",
                code="no_held_out_tickets",
            )
    if cfg.bitext_csv:
        path = _resolve(cfg.bitext_csv, shared_data_dir or Path("."))
        if path.is_file():
            rows, _ = read_tickets(path, "bitext")
            used = {t.data_hash for t in stratified_slice(rows, cfg.bitext_limit, cfg.seed)}
            add([t for t in rows if t.data_hash not in used or t.data_hash in val_hashes])
    if check and cfg.use_db_tickets and not pool:
        name = metadata.get("id", "?")
        if not val_hashes:
            raise InvalidInput(
                f"Adapter {name} held out no tickets (it trained with val_fraction 0, or on fewer than 4 "
                "examples), and it has no public tickets to evaluate on: every ticket it knows, it trained on.",
                code="no_held_out_tickets",
            )
        raise InvalidInput(
            f"Adapter {name} held out {len(val_hashes)} ticket(s), but none of them is in this database any "
            "more (deleted with `hybridesk tickets delete`, or another data dir?).",
            code="no_held_out_tickets",
        )
    return pool


# -- generation ----------------------------------------------------------------------------------


def batch_generate(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int
) -> list[dict]:
    """Greedy replies for many prompts (left-padded batches): text and whether the cap cut it."""
    import torch

    outputs = []
    eos = tokenizer.eos_token_id
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=tokenizer.pad_token_id,
                )
            for row in out[:, enc["input_ids"].shape[1] :]:
                ids = row.tolist()
                finished = eos in ids
                if finished:
                    ids = ids[: ids.index(eos)]
                outputs.append(
                    {
                        "text": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                        "cut": not finished and len(ids) >= max_new_tokens,
                        "tokens": len(ids),
                    }
                )
    finally:
        tokenizer.padding_side = old_side
    return outputs


# -- evaluation ----------------------------------------------------------------------------------


def evaluate(
    adapter_dir: Path,
    *,
    data_dir: Path,
    shared_data_dir: Path | None = None,
    base_model_dir: Path | None = None,
    options: EvalOptions | None = None,
    tickets: Sequence[Ticket] | None = None,
    tone_fn: Callable[[str], str] | None = None,
    context_fn: ContextFn | None = None,
    same_tickets_as: Sequence[Path] = (),
    session: Any = None,
) -> dict[str, Any]:
    """Generate replies with the adapter (and the base model) for held-out tickets; the JSON report.

    ``tone_fn`` labels the tone of tickets that carry none, as training does (the bot's detector).
    ``context_fn`` gives each customer message the KB passages and facts the bot would retrieve for
    it, so that the prompts are the bot's own (facts, policy, the KB's slot list); without it the
    prompts are training's (the reply's slots and three others, no facts or passages).
    ``same_tickets_as``: other adapters' folders; only tickets none of them trained on are used, so
    that their reports compare on the same tickets.
    ``session`` reads the held-out tickets of an adapter trained on tickets imported into the database.
    The prompts name ``options.company_name``, or else the company the adapter was trained for.
    """
    import torch
    from peft import PeftModel

    from models.base import default_inference_dtype, load_base_model, resolve_base_model_dir

    opts = options or EvalOptions()
    adapter_dir = Path(adapter_dir)
    metadata = read_metadata(adapter_dir)
    opts = replace(opts, company_name=opts.company_name or trained_company_name(metadata) or DEFAULT_COMPANY)
    started = time.time()
    if tickets is None:
        tickets = held_out_tickets(
            metadata, shared_data_dir=shared_data_dir, limit=opts.limit, seed=opts.seed,
            also=[read_metadata(Path(d)) for d in same_tickets_as], session=session,
        )
    tickets = list(tickets)[: opts.limit]
    if not tickets:
        others = ", ".join(Path(d).name for d in same_tickets_as)
        raise InvalidInput(
            f"No held-out tickets to evaluate {adapter_dir.name} on"
            + (f" that {others} did not train on either" if others else "")
            + " (is the shared data path set?).",
            code="no_held_out_tickets",
        )
    base_dir = Path(base_model_dir) if base_model_dir else resolve_base_model_dir(None, data_dir)
    model, tokenizer = load_base_model(base_dir, default_inference_dtype())
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    model.eval()
    rng = random.Random(opts.seed)
    vocab = sorted({s for t in tickets for s in extract_slots(t.agent_reply)})
    prompts, allowed, examples = [], [], []
    for t in tickets:
        if context_fn is not None:
            passages, facts = context_fn(t.customer_message)
            slots = allowed_slots(facts)
        else:
            own = extract_slots(t.agent_reply)
            others = [s for s in vocab if s not in own]
            slots = own + rng.sample(others, min(3, len(others)))
            rng.shuffle(slots)
            passages, facts = [], [(s, None) for s in slots]
        messages = build_messages(
            message=t.customer_message,
            intent=t.intent,
            tone=t.tone or (tone_fn(t.customer_message) if tone_fn else None),
            facts=facts,
            passages=passages,
            company_name=opts.company_name,
        )
        prompts.append(render_prompt(tokenizer, messages))
        allowed.append(set(slots) | set(CUSTOMER_SLOTS))
        # room for the bot's longer prompts: the loss is over the whole reply in either case
        ids, labels = encode_example(tokenizer, messages, t.agent_reply, max_length=1024)
        examples.append(Example(ids, labels, t.intent, t.data_hash))
    loss_batches = [
        _pad(examples[i : i + opts.batch_size], tokenizer.pad_token_id)
        for i in range(0, min(len(examples), opts.loss_examples), opts.batch_size)
    ]

    from knowledge.embeddings import load_sentence_transformer

    embedder = load_sentence_transformer()
    score_intents = len({t.intent for t in tickets if t.intent}) >= 2
    results: dict[str, Any] = {}
    generations: dict[str, list[dict]] = {}
    runs = [("adapter", False)] + ([("base", True)] if opts.compare_base else [])
    for name, disable in runs:
        t0 = time.time()
        if disable:
            with model.disable_adapter():
                loss = evaluate_loss(model, loss_batches)
                gens = batch_generate(model, tokenizer, prompts, opts.max_new_tokens, opts.batch_size)
        else:
            loss = evaluate_loss(model, loss_batches)
            gens = batch_generate(model, tokenizer, prompts, opts.max_new_tokens, opts.batch_size)
        generations[name] = gens
        results[name] = _score(gens, tickets, prompts, allowed, embedder, score_intents, opts, loss)
        results[name]["seconds"] = round(time.time() - t0, 1)
    torch.set_grad_enabled(True)
    samples = [
        {
            "intent": t.intent,
            "message": t.customer_message,
            "reference": t.agent_reply,
            **{name: generations[name][i]["text"] for name in generations},
        }
        for i, t in enumerate(tickets[:8])
    ]
    # the adapter's least similar replies: where to look first when the cosine disappoints
    weakest = sorted(range(len(tickets)), key=lambda i: generations["adapter"][i]["cosine"])[:WEAKEST]
    worst = [
        {
            "intent": tickets[i].intent,
            "message": tickets[i].customer_message,
            "reference": tickets[i].agent_reply,
            **{f"{name}_cosine": round(generations[name][i]["cosine"], 4) for name in generations},
            "adapter": generations["adapter"][i]["text"],
        }
        for i in weakest
    ]
    split_at = opts.split_at or metadata.get("held_out_split_at")
    strata = (
        reply_length_strata(tickets, generations, tokenizer, int(split_at),
                            population_short_share(metadata, shared_data_dir, tokenizer, int(split_at)))
        if split_at else None
    )
    return {
        "adapter_id": adapter_dir.name,
        "base_model": metadata.get("base_model"),
        "n_tickets": len(tickets),
        "by_reply_length": strata,
        "by_source": sources_summary(tickets),
        "options": {k: v for k, v in opts.__dict__.items() if k != "resolvable_slots"}
        | {"resolvable_slots_given": opts.resolvable_slots is not None, "kb_context": context_fn is not None,
           "same_tickets_as": [Path(d).name for d in same_tickets_as]},
        "mean_prompt_tokens": round(sum(len(e.input_ids) - sum(1 for x in e.labels if x != -100)
                                        for e in examples) / max(1, len(examples)), 1),
        "metrics": results,
        "samples": samples,
        "weakest": worst,
        "seconds": round(time.time() - started, 1),
    }


def population_short_share(metadata: dict[str, Any], shared_data_dir: Path | None, tokenizer: Any,
                           split_at: int) -> float | None:
    """The share of the adapter's public tickets whose agent reply is at most ``split_at`` tokens."""
    from models.training import reply_tokens

    cfg = TrainConfig(**{**TrainConfig().to_dict(), **(metadata.get("config") or {})})
    if not cfg.bitext_csv:
        return None
    path = _resolve(cfg.bitext_csv, shared_data_dir or Path("."))
    if not path.is_file():
        return None
    rows, _ = read_tickets(path, "bitext")
    if not rows:
        return None
    return sum(1 for t in rows if reply_tokens(tokenizer, t.agent_reply) <= split_at) / len(rows)


def reply_length_strata(tickets: Sequence[Ticket], generations: dict[str, list[dict]], tokenizer: Any,
                        split_at: int, short_share: float | None) -> dict[str, Any]:
    """ROUGE-L and cosine of the public held-out tickets in two strata, replies up to ``split_at``
    tokens and longer ones, and their mean weighted by the public tickets' own mix (``short_share``).

    An adapter that raised ``max_reply_tokens`` holds out its parent's split (short replies only) plus
    a uniform draw of the longer ones; each stratum is a random sample of its part of the public
    tickets, so the weighted mean estimates the metric over all of them. The interval is a stratified
    bootstrap (each stratum resampled on its own, fixed seed).
    """
    import numpy as np

    from models.training import reply_tokens

    public = [i for i, t in enumerate(tickets) if t.source in PUBLIC_SOURCES]
    is_short = {i: reply_tokens(tokenizer, tickets[i].agent_reply) <= split_at for i in public}
    short = [i for i in public if is_short[i]]
    long_ = [i for i in public if not is_short[i]]
    out: dict[str, Any] = {"split_at": split_at, "population_short_share": short_share,
                           "n_short": len(short), "n_long": len(long_)}
    rng = np.random.default_rng(0)
    for name, gens in generations.items():
        row: dict[str, Any] = {}
        for metric in ("rouge_l", "cosine"):
            s = np.asarray([gens[i][metric] for i in short], dtype=float)
            lg = np.asarray([gens[i][metric] for i in long_], dtype=float)
            row[f"{metric}_short"] = float(s.mean()) if len(s) else None
            row[f"{metric}_long"] = float(lg.mean()) if len(lg) else None
            if short_share is None or not len(s) or not len(lg):
                continue
            row[f"{metric}_weighted"] = float(short_share * s.mean() + (1 - short_share) * lg.mean())
            boots = (short_share * s[rng.integers(0, len(s), size=(2000, len(s)))].mean(axis=1)
                     + (1 - short_share) * lg[rng.integers(0, len(lg), size=(2000, len(lg)))].mean(axis=1))
            row[f"{metric}_weighted_ci95"] = [float(x) for x in np.percentile(boots, [2.5, 97.5])]
        row["cut_share_long"] = (sum(1 for i in long_ if gens[i]["cut"]) / len(long_)) if long_ else None
        out[name] = row
    return out


def bootstrap_ci(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> list[float] | None:
    """95% percentile-bootstrap interval of the mean of ``values`` (fixed seed: reports repeat)."""
    import numpy as np

    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


def _score(gens, tickets, prompts, allowed, embedder, score_intents: bool, opts: EvalOptions, loss) -> dict[str, Any]:
    import numpy as np

    texts = [g["text"] for g in gens]
    refs = [t.agent_reply for t in tickets]
    gen_vecs = np.asarray(embedder.encode(texts, normalize_embeddings=True))
    ref_vecs = np.asarray(embedder.encode(refs, normalize_embeddings=True))
    cosines = (gen_vecs * ref_vecs).sum(axis=1)
    for g, c in zip(gens, cosines, strict=True):
        g["cosine"] = float(c)  # per reply, for the report's weakest replies
    slots_written = [extract_slots(t) for t in texts]
    all_slots = [s for slots in slots_written for s in slots]
    # compared as the KB resolves a slot: case, spaces, "_" and "-" do not matter
    resolvable = {slot_key(s) for s in opts.resolvable_slots} if opts.resolvable_slots is not None else None
    allowed_hits = sum(1 for slots, ok in zip(slots_written, allowed, strict=True) for s in slots if s in ok)
    intent_hits = []
    if score_intents:
        # leave one out: a reply is never compared with a centroid that holds its own reference, and a
        # ticket whose intent has no other reference is not scored
        names = sorted({t.intent for t in tickets if t.intent})
        sums = {k: np.zeros(ref_vecs.shape[1]) for k in names}
        counts = dict.fromkeys(names, 0)
        for vec, t in zip(ref_vecs, tickets, strict=True):
            if t.intent:
                sums[t.intent] += vec
                counts[t.intent] += 1
        for vec, ref, t in zip(gen_vecs, ref_vecs, tickets, strict=True):
            if not t.intent or counts[t.intent] < 2:
                continue
            best, best_score = None, -2.0
            for k in names:
                total, n = (sums[k] - ref, counts[k] - 1) if k == t.intent else (sums[k], counts[k])
                c = total / (np.linalg.norm(total) + 1e-9)
                if n and float(c @ vec) > best_score:
                    best, best_score = k, float(c @ vec)
            intent_hits.append(best == t.intent)
    n = max(1, len(texts))
    rouges = [rouge_l(g, r) for g, r in zip(texts, refs, strict=True)]
    for g, r in zip(gens, rouges, strict=True):
        g["rouge_l"] = r
    return {
        "val_loss": loss,
        "perplexity": None if loss is None else math.exp(loss),
        "rouge_l": float(np.mean(rouges)) if texts else None,
        "rouge_l_ci95": bootstrap_ci(rouges),
        "cosine": float(np.mean(cosines)) if texts else None,
        "cosine_ci95": bootstrap_ci([float(c) for c in cosines]),
        "placeholder_share": sum(1 for s in slots_written if s) / n,
        "cut_share": sum(1 for g in gens if g["cut"]) / n,
        "slot_allowed_share": allowed_hits / len(all_slots) if all_slots else None,
        "slot_resolvable_share": (
            sum(1 for s in all_slots if slot_key(s) in resolvable) / len(all_slots)
            if resolvable is not None and all_slots
            else None
        ),
        "invented_share": sum(1 for g, p in zip(texts, prompts, strict=True) if invented_figures(g, p)) / n,
        "intent_match": sum(intent_hits) / len(intent_hits) if intent_hits else None,
        "mean_reply_tokens": float(np.mean([g["tokens"] for g in gens])) if gens else None,
    }


def slot_key(slot: str) -> str:
    """A slot name as the KB matches it (``knowledge.records.normalize_slot``): "Customer_Support  Phone"
    and "customer support phone" are one slot."""
    return re.sub(r"[\s_\-]+", " ", slot.strip().strip("{}").strip().lower()).strip()


def _sources_note(by_source: dict[str, int] | None) -> str:
    """" (3 of the company's own: csv 2, corrections 1; 9 public: bitext 9)" for the table's header."""
    if not by_source:
        return ""
    own = {k: v for k, v in by_source.items() if k not in PUBLIC_SOURCES}
    public = {k: v for k, v in by_source.items() if k in PUBLIC_SOURCES}
    parts = []
    for label, group in (("of the company's own", own), ("public", public)):
        if group:
            detail = ", ".join(f"{k} {v}" for k, v in group.items())
            parts.append(f"{sum(group.values())} {label}: {detail}")
    if not own:
        parts.append("none of the company's own")
    return " (" + "; ".join(parts) + ")"


def trained_company_name(metadata: dict[str, Any]) -> str | None:
    """The company name an adapter's prompts named in training (from its metadata), or None."""
    config = metadata.get("config")
    name = config.get("company_name") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def format_table(report: dict[str, Any]) -> str:
    """The report's metrics as a Markdown table (one column per model)."""
    metrics = report["metrics"]
    names = list(metrics)
    rows = [
        ("val loss", "val_loss", "{:.3f}"),
        ("perplexity", "perplexity", "{:.2f}"),
        ("ROUGE-L F1", "rouge_l", "{:.3f}"),
        ("ROUGE-L 95% interval", "rouge_l_ci95", "{:.3f}-{:.3f}"),
        ("MiniLM cosine", "cosine", "{:.3f}"),
        ("cosine 95% interval", "cosine_ci95", "{:.3f}-{:.3f}"),
        ("replies with {{slots}}", "placeholder_share", "{:.0%}"),
        ("replies cut at cap", "cut_share", "{:.0%}"),
        ("slots allowed by prompt", "slot_allowed_share", "{:.0%}"),
        ("slots the KB resolves", "slot_resolvable_share", "{:.0%}"),
        ("replies with invented figures", "invented_share", "{:.0%}"),
        ("intent match (centroid)", "intent_match", "{:.0%}"),
        ("mean reply tokens", "mean_reply_tokens", "{:.0f}"),
    ]
    lines = [
        f"adapter {report['adapter_id']}{' vs base' if 'base' in metrics else ''}, "
        f"{report['n_tickets']} held-out tickets{_sources_note(report.get('by_source'))}",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else fmt.format(*value) if isinstance(value, list) else fmt.format(value)

    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(cell(metrics[n].get(key), fmt) for n in names) + " |")
    strata = report.get("by_reply_length")
    if strata:
        at, share = strata["split_at"], strata.get("population_short_share")
        labels = [
            (f"ROUGE-L, replies <= {at} tokens ({strata['n_short']})", "rouge_l_short", "{:.3f}"),
            (f"ROUGE-L, longer replies ({strata['n_long']})", "rouge_l_long", "{:.3f}"),
            (f"ROUGE-L, weighted by the public mix ({share:.0%} short)" if share is not None
             else "ROUGE-L, weighted", "rouge_l_weighted", "{:.3f}"),
            ("weighted ROUGE-L 95% interval", "rouge_l_weighted_ci95", "{:.3f}-{:.3f}"),
            (f"cosine, replies <= {at} tokens", "cosine_short", "{:.3f}"),
            ("cosine, longer replies", "cosine_long", "{:.3f}"),
            ("cosine, weighted by the public mix", "cosine_weighted", "{:.3f}"),
            ("weighted cosine 95% interval", "cosine_weighted_ci95", "{:.3f}-{:.3f}"),
            ("longer replies cut at cap", "cut_share_long", "{:.0%}"),
        ]
        for label, key, fmt in labels:
            cells = [cell((strata.get(n) or {}).get(key), fmt) for n in names]
            if any(c != "-" for c in cells):  # (a stratum with no tickets has no rows)
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
