"""LoRA fine-tuning on past tickets (``hybridesk train --config models/configs/default.yaml``).

Usage::

    hybridesk train --config models/configs/default.yaml --set max_minutes=25 --set bitext_limit=1500

    # or from Python
    cfg = TrainConfig.from_yaml("models/configs/default.yaml", ["max_steps=10"])
    result = train(cfg, data_dir=Path("var"), shared_data_dir=Path("../shared/data"))

Each example is built with :mod:`models.prompting` exactly as the bot builds its prompt (intent,
tone, facts, no passages unless a KB facts function is given); the loss covers only the reply
tokens. Examples are length-bucketed (or packed) and trained with a hand-written loop over the
LoRA parameters. A batch wider than ``max_batch_tokens`` runs as micro-batches with the same
gradient, and freed memory goes back to the OS after each step: that bounds a run's memory.
Training is checkpointed every ``checkpoint_every`` steps under ``<output_root>/.runs/<run key>``
(a re-run of the same config and data resumes there; the bookkeeping keys such as ``log_every`` or
``checkpoint_every`` may change, see :func:`run_key`; Ctrl+C, and SIGTERM under :func:`sigterm_as_interrupt`,
raise :class:`TrainingInterrupted`, which says where the checkpoint is), validated on a held-out split, and saved as a versioned adapter folder
with ``metadata.json`` (see :mod:`models.adapters`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import random
import resource
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.errors import InvalidInput
from models.adapters import SHIPPED_ROOT, AdapterRegistry, write_metadata
from models.config import BOOKKEEPING_KEYS, SAMPLE_COMPANY, TrainConfig, base_model_type, check_target_names
from models.prompting import allowed_slots, build_messages, encode_example, extract_slots
from models.tickets import Ticket, read_tickets, stored_tickets

log = logging.getLogger(__name__)
# transformers 5.x warns that `past_key_values` will be renamed; pyproject keeps it below the version
# that drops the old name, and 4.x knows only that one (the forward-only prompt pass uses it)
warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)
REPO_ROOT = Path(__file__).resolve().parents[1]
FactsFn = Callable[[Ticket], list[Any]]
#: the KB passages and facts the bot would put in the prompt for one customer message
ContextFn = Callable[[str], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    intent: str | None = None
    digest: str = ""
    source: str = ""


@dataclass
class TrainResult:
    adapter_id: str
    adapter_dir: Path
    metrics: dict[str, Any]
    model: Any = None  # the trained PeftModel (for tests and evaluation in the same process)
    losses: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def stratified_slice(tickets: Sequence[Ticket], limit: int | None, seed: int) -> list[Ticket]:
    """At most ``limit`` tickets with every intent represented proportionally (deterministic)."""
    if limit is None or limit >= len(tickets):
        return list(tickets)
    rng = random.Random(seed)
    by_intent: dict[str | None, list[Ticket]] = {}
    for t in tickets:
        by_intent.setdefault(t.intent, []).append(t)
    for group in by_intent.values():
        rng.shuffle(group)
    out: list[Ticket] = []
    # round-robin over intents keeps the slice balanced whatever the limit
    while len(out) < limit:
        progressed = False
        for group in by_intent.values():
            if group and len(out) < limit:
                out.append(group.pop())
                progressed = True
        if not progressed:
            break
    return out


def load_training_tickets(
    cfg: TrainConfig,
    *,
    shared_data_dir: Path | None,
    repo_root: Path = REPO_ROOT,
    session: Any = None,
) -> list[Ticket]:
    """The configured ticket sources, scrubbed (bad rows are logged and skipped)."""
    tickets: list[Ticket] = []
    if cfg.sample_tickets:
        path = _resolve(cfg.sample_tickets, repo_root)
        rows, errors = read_tickets(path, "sample")
        _log_errors(path, errors)
        tickets += rows
    if cfg.bitext_csv:
        path = _resolve(cfg.bitext_csv, shared_data_dir or repo_root)
        rows, errors = read_tickets(path, "bitext")
        _log_errors(path, errors)
        tickets += stratified_slice(rows, cfg.bitext_limit, cfg.seed)
    if cfg.use_db_tickets and session is not None:
        stored = stored_tickets(session)
        if not stored:
            if not tickets:
                raise InvalidInput(
                    "No tickets imported yet: run `hybridesk tickets import FILE` first (use_db_tickets=true "
                    "trains on the tickets imported into the database, and there are none).",
                    code="no_data",
                )
            log.warning("use_db_tickets is true, but no tickets are imported yet: training on the others only")
        tickets += stored
    if not tickets:
        raise InvalidInput("No training tickets found; check the config's data paths.", code="no_data")
    return tickets


def _resolve(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _log_errors(path: Path, errors: list) -> None:
    for err in errors[:20]:
        log.warning("%s: skipped %s", path, err)


def build_examples(
    tickets: Sequence[Ticket],
    tokenizer: Any,
    cfg: TrainConfig,
    *,
    facts_fn: FactsFn | None = None,
    tone_fn: Callable[[str], str] | None = None,
    context_fn: ContextFn | None = None,
    reasons: Counter[str] | None = None,
) -> tuple[list[Example], int]:
    """Tokenised examples (prompt via :func:`build_messages`, loss on the reply) and the number dropped.

    ``reasons``, when given, counts why tickets were dropped: ``long_reply`` (over ``max_reply_tokens``)
    or ``no_room`` (the prompt left no reply token within ``max_length``).

    Without a KB (``facts_fn``), the allowed slot list is the reply's own slots plus
    ``distractor_slots`` others drawn from the data, so the model learns to pick slots from the list
    it is given - at inference the list comes from the KB.

    With ``context_fn``, a ``cfg.kb_context`` share of the tickets get the bot's own prompt: the
    passages and facts the KB retrieves for the customer's message, their slots, and the reply's
    own slot names, so the model learns to keep writing slots with the facts in view.
    """
    rng = random.Random(cfg.seed)
    kb_rng = random.Random(cfg.seed + 7)  # its own draws: kb_context 0 leaves the other draws as they were
    use_kb = context_fn is not None and cfg.kb_context > 0
    vocab = sorted({s for t in tickets for s in extract_slots(t.agent_reply)})
    examples: list[Example] = []
    dropped = 0
    for ticket in tickets:
        if reply_tokens(tokenizer, ticket.agent_reply) > cfg.max_reply_tokens:
            dropped += 1
            if reasons is not None:
                reasons["long_reply"] += 1
            continue
        passages: list[dict[str, Any]] = []
        if use_kb and kb_rng.random() < cfg.kb_context:
            passages, kb_facts = context_fn(ticket.customer_message)
            known = set(allowed_slots(kb_facts))
            facts = list(kb_facts) + [(s, None) for s in extract_slots(ticket.agent_reply) if s not in known]
        elif facts_fn:
            facts = facts_fn(ticket)
        else:
            facts = _slot_facts(ticket, vocab, cfg.distractor_slots, rng)
        messages = build_messages(
            message=ticket.customer_message,
            intent=ticket.intent,
            tone=ticket.tone or (tone_fn(ticket.customer_message) if tone_fn else None),
            facts=facts,
            passages=passages,
            history=[],
            company_name=cfg.company_name or SAMPLE_COMPANY,
        )
        input_ids, labels = encode_example(tokenizer, messages, ticket.agent_reply, max_length=cfg.max_length)
        if all(label == -100 for label in labels):
            dropped += 1
            if reasons is not None:
                reasons["no_room"] += 1
            continue
        examples.append(Example(input_ids, labels, ticket.intent, ticket.data_hash, ticket.source))
    return examples, dropped


def _slot_facts(
    ticket: Ticket, vocab: list[str], n_distractors: int, rng: random.Random
) -> list[tuple[str, None]]:
    own = extract_slots(ticket.agent_reply)
    others = [s for s in vocab if s not in own]
    slots = own + rng.sample(others, min(n_distractors, len(others)))
    rng.shuffle(slots)
    return [(s, None) for s in slots]


def reply_tokens(tokenizer: Any, reply: str) -> int:
    """The length of an agent reply as ``max_reply_tokens`` counts it."""
    return len(tokenizer(reply, add_special_tokens=False)["input_ids"])


def seen_reply_cap(metadata: dict[str, Any]) -> int:
    """The longest reply (in tokens) any run in an adapter's chain could have trained on."""
    recorded = metadata.get("max_reply_tokens_seen")
    if recorded is not None:
        return int(recorded)
    return int((metadata.get("config") or {}).get("max_reply_tokens") or TrainConfig().max_reply_tokens)


def unseen_reply_holdout(tickets: Sequence[Ticket], tokenizer: Any, seen_cap: int, cfg: TrainConfig) -> set[str]:
    """Held-out tickets for a run that admits replies its parent chain never trained on.

    A continued run keeps its parent's validation split, which was drawn from the replies the chain
    could see (up to ``seen_cap`` tokens). When this run raises ``max_reply_tokens`` above that, the
    longer tickets are new data, and a share of them (``val_fraction``, at most ``val_max``) is held
    out too. The draw is uniform over every ticket longer than ``seen_cap``, including those still
    over the new cap, so that the held-out set represents all the tickets the chain has not seen.
    """
    if cfg.max_reply_tokens <= seen_cap or cfg.val_fraction <= 0:
        return set()
    pool = sorted({t.data_hash for t in tickets if reply_tokens(tokenizer, t.agent_reply) > seen_cap})
    n = min(len(pool), max(1, min(cfg.val_max, int(len(pool) * cfg.val_fraction))))
    return set(random.Random(cfg.seed + 2).sample(pool, n)) if pool else set()


def split_train_val(
    examples: list[Example], cfg: TrainConfig, held_out: Collection[str] | None = None
) -> tuple[list[Example], list[Example]]:
    """Deterministic split; the validation share is capped at ``val_max`` examples.

    ``held_out`` (ticket digests) fixes the validation set instead: a run that continues an
    adapter keeps its parent's held-out tickets, which the parent never trained on, whatever the
    seed. An empty ``held_out`` (a parent trained with ``val_fraction: 0``) splits by the seed.
    """
    if held_out:
        keep = set(held_out)
        return [e for e in examples if e.digest not in keep], [e for e in examples if e.digest in keep]
    if cfg.val_fraction <= 0 or len(examples) < 4:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(cfg.seed + 1).shuffle(order)
    n_val = max(1, min(cfg.val_max, int(len(examples) * cfg.val_fraction)))
    val_idx = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val_idx], [examples[i] for i in sorted(val_idx)]


#: the public datasets' sources; every other source is the company's own tickets
PUBLIC_SOURCES = ("bitext",)


def repeat_own_tickets(train_set: list[Example], repeat: int) -> list[Example]:
    """``train_set`` with each of the company's own tickets ``repeat`` times (the public ones once)."""
    if repeat <= 1:
        return list(train_set)
    own = [e for e in train_set if e.source not in PUBLIC_SOURCES]
    return list(train_set) + own * (repeat - 1)


def data_hash(examples: Sequence[Example]) -> str:
    """SHA-256 over the sorted ticket hashes: the identity of a training set."""
    h = hashlib.sha256()
    for digest in sorted(e.digest for e in examples):
        h.update(digest.encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------------


def make_batches(
    examples: Sequence[Example], cfg: TrainConfig, rng: random.Random, pad_id: int
) -> list[dict]:
    """Tensors for one epoch: packed rows, or length-bucketed padded batches."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    if cfg.packing:
        return _packed_batches([examples[i] for i in order], cfg, pad_id)
    if cfg.bucketing:
        chunk = cfg.batch_size * 50
        groups = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: len(examples[i].input_ids))
            groups += [part[j : j + cfg.batch_size] for j in range(0, len(part), cfg.batch_size)]
        rng.shuffle(groups)
    else:
        groups = [order[j : j + cfg.batch_size] for j in range(0, len(order), cfg.batch_size)]
    return [_pad([examples[i] for i in g], pad_id) for g in groups]


#: batch widths (and the LM head's rows) are rounded up to a multiple of this. On CPU, oneDNN
#: compiles and caches a kernel for every new matrix shape; with exact widths nearly every step
#: brought new shapes and a run's memory kept growing, and rounding stopped the growth
#: (pytorch/pytorch#32596 describes the same effect).
SHAPE_MULTIPLE = 32


def _round_up(n: int, multiple: int = SHAPE_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def _pad(batch: Sequence[Example], pad_id: int) -> dict:
    import torch

    width = _round_up(max(len(e.input_ids) for e in batch))
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _packed_batches(examples: Sequence[Example], cfg: TrainConfig, pad_id: int) -> list[dict]:
    """Concatenate examples into ``max_length`` rows; positions restart at each example.

    With SDPA attention a later example in a row can attend to an earlier one (classic packing);
    the loss still only covers each example's own reply.
    """
    import torch

    rows: list[tuple[list[int], list[int], list[int]]] = []
    cur: tuple[list[int], list[int], list[int]] = ([], [], [])
    for e in examples:
        if cur[0] and len(cur[0]) + len(e.input_ids) > cfg.max_length:
            rows.append(cur)
            cur = ([], [], [])
        cur[0].extend(e.input_ids)
        cur[1].extend(e.labels)
        cur[2].extend(range(len(e.input_ids)))
    if cur[0]:
        rows.append(cur)
    batches = []
    for start in range(0, len(rows), cfg.batch_size):
        group = rows[start : start + cfg.batch_size]
        width = _round_up(max(len(r[0]) for r in group))
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        labels = torch.full((len(group), width), -100, dtype=torch.long)
        pos = torch.zeros((len(group), width), dtype=torch.long)
        for i, (a, b, c) in enumerate(group):
            ids[i, : len(a)] = torch.tensor(a)
            labels[i, : len(b)] = torch.tensor(b)
            pos[i, : len(c)] = torch.tensor(c)
        real = torch.tensor(sum(len(r[0]) for r in group))
        batches.append({"input_ids": ids, "labels": labels, "position_ids": pos, "num_tokens": real})
    return batches


# ---------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------


def reply_loss(model: Any, batch: dict, *, prompt_backward: bool = True) -> tuple[Any, int]:
    """Mean cross-entropy over the reply tokens, and their count.

    The LM head (576 x 49k) runs only on the positions that carry a label, instead of on every
    prompt token as ``model(labels=...)`` would: less memory and ~15-20% less compute per step.
    With ``prompt_backward=False`` the prompt runs without gradient first (:func:`_reply_hidden`);
    the loss is the same, its gradient covers the reply positions only.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(base.parameters()).device
    if not prompt_backward and torch.is_grad_enabled() and "position_ids" not in batch:
        selected, targets = _reply_hidden(base, batch, device)
    else:
        inputs = {
            k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")
        }
        hidden = base.model(**inputs, use_cache=False).last_hidden_state
        shift_labels = batch["labels"].to(device)[:, 1:]
        keep = shift_labels != -100
        selected, targets = hidden[:, :-1][keep], shift_labels[keep]
    return _head_loss(base, selected, targets)


def _head_loss(base: Any, selected: Any, targets: Any) -> tuple[Any, int]:
    """Cross-entropy of the LM head on ``selected`` hidden states (one row per target token)."""
    import torch
    import torch.nn.functional as F

    count = int(targets.numel())
    if count == 0:
        return torch.zeros((), device=selected.device, requires_grad=True), 0
    extra = _round_up(count, 2 * SHAPE_MULTIPLE) - count  # a bounded set of LM-head shapes
    if extra:
        selected = F.pad(selected, (0, 0, 0, extra))
        targets = F.pad(targets, (0, extra), value=-100)
    logits = base.lm_head(selected).float()
    return F.cross_entropy(logits, targets, ignore_index=-100), count


def _reply_hidden(base: Any, batch: dict, device: Any) -> tuple[Any, Any]:
    """Hidden states that predict the reply tokens, with the prompt run forward only.

    A padded batch (prompt then reply, right-padded) is laid out again in two parts. The prompt
    but its last token, left-padded so that every row's prompt ends in the same column, runs under
    ``no_grad`` and leaves its keys and values in a cache. The last prompt token and the reply,
    right-padded, then run with gradient on top of that cache, at the positions they had. Every
    token sees what it saw in the one-pass layout, so the loss is the same (checked by
    tests/models/test_training.py); only the prompt's positions are left out of the backward
    pass and of the stored activations. Both widths are rounded like a batch's.
    """
    import torch
    from transformers import DynamicCache

    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    rows = ids.shape[0]
    prompt_len = (labels == -100).long().cumprod(1).sum(1)
    reply_len = mask.sum(1) - prompt_len
    if int(prompt_len.min()) < 1 or int(reply_len.min()) < 1:
        raise ValueError("every row needs a prompt and a reply")
    head_w = _round_up(int(prompt_len.max()) - 1)
    tail_w = _round_up(int(reply_len.max()) + 1)
    head = torch.zeros((rows, head_w), dtype=torch.long)  # padding: masked out
    head_mask = torch.zeros((rows, head_w), dtype=torch.long)
    tail = torch.zeros((rows, tail_w), dtype=torch.long)
    tail_mask = torch.zeros((rows, tail_w), dtype=torch.long)
    targets = torch.full((rows, tail_w), -100, dtype=torch.long)
    for i in range(rows):
        p, r = int(prompt_len[i]), int(reply_len[i])
        if p > 1:
            head[i, head_w - (p - 1):] = ids[i, : p - 1]
            head_mask[i, head_w - (p - 1):] = 1
        tail[i, : r + 1] = ids[i, p - 1 : p + r]
        tail_mask[i, : r + 1] = 1
        targets[i, :r] = labels[i, p : p + r]
    head_pos = (head_mask.cumsum(1) - 1).clamp(min=0)
    tail_pos = (prompt_len - 1)[:, None] + torch.arange(tail_w)[None, :]
    cache = DynamicCache()
    with torch.no_grad():
        base.model(input_ids=head.to(device), attention_mask=head_mask.to(device),
                   position_ids=head_pos.to(device), past_key_values=cache, use_cache=True)
    hidden = base.model(
        input_ids=tail.to(device),
        attention_mask=torch.cat([head_mask, tail_mask], 1).to(device),
        position_ids=tail_pos.to(device),
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    targets = targets.to(device)
    keep = targets != -100
    return hidden[keep], targets[keep]


def split_batch(batch: dict, max_tokens: int | None) -> list[dict]:
    """``batch`` as row groups of at most ``max_tokens`` padded tokens each (at least one row)."""
    rows, width = batch["input_ids"].shape
    if not max_tokens or rows * width <= max_tokens:
        return [batch]
    per = max(1, max_tokens // width)
    keys = [k for k in ("input_ids", "labels", "attention_mask", "position_ids") if k in batch]
    return [{k: batch[k][start : start + per] for k in keys} for start in range(0, rows, per)]


def backward_batch(
    model: Any, batch: dict, max_tokens: int | None, scale: float = 1.0, *, prompt_backward: bool = True
) -> tuple[float, int]:
    """Backward pass of ``batch``'s mean reply loss (times ``scale``), in micro-batches if it is wide.

    Each micro-batch's mean loss is weighted by its share of the batch's reply tokens, so the
    gradient is the one the whole batch would give; only the peak activation memory differs.
    Returns the batch's mean loss and its reply-token count.
    """
    parts = split_batch(batch, max_tokens)
    total = int((batch["labels"][:, 1:] != -100).sum())
    value = 0.0
    for part in parts:
        loss, count = reply_loss(model, part, prompt_backward=prompt_backward)
        if count == 0:
            continue
        weight = count / total
        (loss * (weight * scale)).backward()
        value += float(loss.detach()) * weight
    return value, total


def release_freed_memory() -> None:
    """Hand the pages of freed tensors back to the OS (glibc's ``malloc_trim``; elsewhere a no-op).

    Batches of different widths free and allocate activations of different sizes, and glibc keeps
    what is freed: measured here, resident memory climbed step by step over 30 steps, and trimming
    after each step keeps it near what is live.
    """
    from models.glibc import malloc_trim

    malloc_trim()


def evaluate_loss(model: Any, batches: Sequence[dict]) -> float | None:
    """Token-weighted mean reply loss over ``batches`` (no gradients)."""
    import torch

    if not batches:
        return None
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            loss, count = reply_loss(model, batch)
            total += float(loss) * count
            tokens += count
    model.train(was_training)
    return total / max(tokens, 1)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def resolve_dtype(name: str) -> Any:
    import torch

    from models.base import default_inference_dtype

    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    return default_inference_dtype()


def find_init_adapter(name: str, output_root: Path, shipped_root: Path | None = None, *,
                      key: str = "init_adapter") -> Any:
    """The adapter a run continues from (or, with ``key="holdout_from"``, whose held-out tickets it holds
    out): a folder, or an id among the output root and the shipped ones (``shipped_root``, default the
    repository's); a damaged one is refused before anything loads."""
    path = Path(name)
    if (path / "adapter_config.json").is_file():
        info = AdapterRegistry(path.parent, None).get(path.name)
    else:
        info = AdapterRegistry(output_root, shipped_root or SHIPPED_ROOT).get(name)  # NotFound names the known ones
    problem = info.problem
    if problem is not None:
        raise InvalidInput(f"{key} {name!r} cannot be used: {problem}.", code="broken_adapter")
    return info


def resolve_init_adapter(name: str, output_root: Path, base_dir: Path, shipped_root: Path | None = None,
                         info: Any = None) -> Any:
    """:func:`find_init_adapter`, which must have been trained on the same base model; otherwise its
    weights mean nothing here."""
    info = info or find_init_adapter(name, output_root, shipped_root)
    trained_on = info.metadata.get("base_model_dir")
    if trained_on and trained_on != base_dir.name:
        raise InvalidInput(
            f"Adapter {info.id} was trained on {trained_on}, not on {base_dir.name}; it cannot be continued here.",
            code="bad_config",
        )
    return info


def top_layers(n_layers: int, top: int | None) -> list[int] | None:
    """Indices of the top ``top`` of ``n_layers`` decoder layers; None (every layer) when ``top`` is None.

    Training only the upper layers is cheaper than it looks: nothing below the lowest adapted
    layer needs a gradient, so autograd records no graph there and the backward pass stops at it.
    """
    if top is None or top >= n_layers:
        return None
    return list(range(n_layers - top, n_layers))


def train(
    cfg: TrainConfig,
    *,
    data_dir: Path,
    shared_data_dir: Path | None = None,
    base_model_dir: Path | None = None,
    tickets: Sequence[Ticket] | None = None,
    session: Any = None,
    facts_fn: FactsFn | None = None,
    tone_fn: Callable[[str], str] | None = None,
    context_fn: ContextFn | None = None,
    progress: bool = True,
    command: str | None = None,
    shipped_root: Path | None = None,
) -> TrainResult:
    """Train a LoRA adapter per ``cfg`` and save it as a new version; see the module docstring.

    ``cfg.version`` must be new in the output root (an adapter is never overwritten); ``shipped_root``
    (default: the repository's adapters) is where an ``init_adapter`` id is also looked up.
    """
    output_root = resolve_output_root(cfg, data_dir)
    if not cfg.company_name:
        cfg = dataclasses.replace(cfg, company_name=SAMPLE_COMPANY)  # the metadata names what the prompts did
    # a taken id and an adapter to continue from are checked before anything loads
    if cfg.version:
        AdapterRegistry(output_root, None).check_new_id(cfg.version)
    parent_info = find_init_adapter(cfg.init_adapter, output_root, shipped_root) if cfg.init_adapter else None
    holdout_info = (find_init_adapter(cfg.holdout_from, output_root, shipped_root, key="holdout_from")
                    if cfg.holdout_from else None)
    if holdout_info is not None and not holdout_info.metadata.get("val_hashes"):
        raise InvalidInput(f"Adapter {holdout_info.id} records no held-out tickets to hold out.", code="bad_config")
    if parent_info is None:  # (a target that is no layer of the base model, before minutes of loading)
        given = base_model_dir if base_model_dir is not None else cfg.base_model_dir
        check_target_names(cfg.target_modules, base_model_type(given))
    if tickets is None:  # (no tickets to train on is said before the base model loads)
        tickets = load_training_tickets(cfg, shared_data_dir=shared_data_dir, session=session)

    import torch
    from peft import LoraConfig, get_peft_model

    from models.base import BASE_MODEL_ID, load_base_model, resolve_base_model_dir

    started = time.time()
    torch.set_num_threads(cfg.num_threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if base_model_dir is not None:
        base_dir = Path(base_model_dir)
    else:
        base_dir = resolve_base_model_dir(Path(cfg.base_model_dir) if cfg.base_model_dir else None, data_dir)
    # an adapter to continue from is checked before minutes go into loading and tokenising
    parent = (resolve_init_adapter(cfg.init_adapter, output_root, base_dir, info=parent_info)
              if parent_info is not None else None)
    dtype = resolve_dtype(cfg.dtype)
    model, tokenizer = load_base_model(base_dir, dtype, num_threads=cfg.num_threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.config.use_cache = False

    if cfg.kb_context > 0 and context_fn is None:
        log.warning("kb_context %.2f asked for, but there is no KB to retrieve from: slot names only", cfg.kb_context)
    why: Counter[str] = Counter()
    examples, dropped = build_examples(tickets, tokenizer, cfg, facts_fn=facts_fn, tone_fn=tone_fn,
                                       context_fn=context_fn, reasons=why)
    if not examples:
        raise InvalidInput(f"Every ticket was filtered out: {filtered_out(why, cfg)}.", code="no_data")
    held_out = parent.metadata.get("val_hashes") if parent is not None else None
    if holdout_info is not None:
        held_out = list(holdout_info.metadata["val_hashes"])
    if parent is not None and not held_out:
        log.warning("adapter %s records no held-out tickets; validation may include tickets it trained on",
                    parent.id)
    seen_cap, split_at = cfg.max_reply_tokens, None
    if parent is not None:
        parent_cap = seen_reply_cap(parent.metadata)
        seen_cap = max(parent_cap, cfg.max_reply_tokens)
        new_held = unseen_reply_holdout(tickets, tokenizer, parent_cap, cfg) if held_out else set()
        if new_held:
            held_out = set(held_out) | new_held
            split_at = parent_cap
        else:
            split_at = parent.metadata.get("held_out_split_at")
    elif holdout_info is not None:
        split_at = holdout_info.metadata.get("held_out_split_at")
    train_set, val_set = split_train_val(examples, cfg, held_out)
    train_set = repeat_own_tickets(train_set, cfg.own_ticket_repeat)  # after the split: nothing held out repeats
    digest = data_hash(examples)

    if parent is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(parent.path), is_trainable=True)
    else:
        check_target_modules(model, cfg.target_modules)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            layers_to_transform=top_layers(model.config.num_hidden_layers, cfg.lora_top_layers),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        # recompute activations in the backward pass: ~30% more compute, a fraction of the memory
        model.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches_per_epoch = math.ceil(len(make_batches(train_set, cfg, random.Random(0), pad_id)))
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))
    warmup = int(total_steps * cfg.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / max(1, warmup)
            if s < warmup
            else max(0.0, (total_steps - s) / max(1, total_steps - warmup))
        ),
    )

    run_dir = output_root / ".runs" / run_key(cfg, digest)
    state = {"step": 0, "losses": [], "tokens": 0}
    if cfg.resume and (run_dir / "trainer_state.pt").is_file():
        state = _load_checkpoint(run_dir, model, optimizer, scheduler)
        if progress:  # the log line below shows only with --no-progress
            print(f"resuming {run_dir} at step {state['step']}", file=sys.stderr, flush=True)
        else:
            log.info("resuming %s at step %d", run_dir, state["step"])
    checkpointed = state["step"] or None  # the step of the checkpoint on disk, for an interrupt's message

    val_batches = [
        _pad(val_set[i : i + cfg.batch_size], pad_id) for i in range(0, len(val_set), cfg.batch_size)
    ]
    if cfg.release_memory_every:
        release_freed_memory()  # what loading and tokenising left behind
    model.train()
    step, tokens = state["step"], state["tokens"]
    losses: list[float] = state["losses"]
    bar = _progress(total_steps, step, progress)
    stopped_early = False
    t0 = time.time()
    tokens_at_start = tokens
    micro = 0
    accumulated: list[float] = []
    epoch = step * cfg.grad_accum // max(1, batches_per_epoch)
    skip = step * cfg.grad_accum - epoch * batches_per_epoch
    try:
        while step < total_steps:
            batches = make_batches(train_set, cfg, random.Random(cfg.seed * 1000 + epoch), pad_id)
            for batch in batches[skip:]:
                loss_value, _ = backward_batch(model, batch, cfg.max_batch_tokens, 1 / cfg.grad_accum,
                                               prompt_backward=cfg.prompt_backward)
                accumulated.append(loss_value)
                tokens += int(batch["input_ids"].numel())
                micro += 1
                if micro % cfg.grad_accum:
                    continue
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                losses.append(sum(accumulated) / len(accumulated))
                accumulated.clear()
                if cfg.release_memory_every and step % cfg.release_memory_every == 0:
                    release_freed_memory()
                elapsed = time.time() - t0
                tps = (tokens - tokens_at_start) / max(elapsed, 1e-6)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{_ema(losses):.3f}", tok_s=f"{tps:.0f}")
                elif step % cfg.log_every == 0:
                    log.info("step %d/%d loss %.3f %.0f tok/s", step, total_steps, _ema(losses), tps)
                if cfg.eval_every and step % cfg.eval_every == 0 and val_batches:
                    log.info("step %d val loss %.3f", step, evaluate_loss(model, val_batches))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    _save_checkpoint(run_dir, model, optimizer, scheduler, step, losses, tokens)
                    checkpointed = step
                if cfg.max_minutes and (time.time() - started) / 60 > cfg.max_minutes:
                    stopped_early = step < total_steps
                    break
                if step >= total_steps:
                    break
            if stopped_early or step >= total_steps:
                break
            epoch += 1
            skip = 0
    except KeyboardInterrupt as exc:  # Ctrl+C, or SIGTERM under sigterm_as_interrupt
        if bar is not None:
            bar.close()
        signal_name = exc.signal_name if isinstance(exc, TrainingTerminated) else None
        raise TrainingInterrupted(interrupt_message(run_dir, checkpointed, step, cfg, signal_name),
                                  signal_name=signal_name) from exc
    if bar is not None:
        bar.close()
    train_seconds = time.time() - t0

    val_loss = evaluate_loss(model, val_batches)
    with model.disable_adapter():
        base_val_loss = evaluate_loss(model, val_batches)
    version = free_version(output_root, cfg.version or datetime.now(UTC).strftime("lk-%Y%m%d-%H%M"))
    adapter_dir = output_root / version
    metrics = {
        "steps": step,
        "total_steps": total_steps,
        "stopped_early": stopped_early,
        "examples_train": len(train_set),
        "examples_val": len(val_set),
        "examples_dropped_long": dropped,
        "train_loss_first": _mean(losses[:5]),
        "train_loss_last": _mean(losses[-5:]),
        "val_loss": val_loss,
        "val_perplexity": None if val_loss is None else math.exp(val_loss),
        "base_val_loss": base_val_loss,
        "base_val_perplexity": None if base_val_loss is None else math.exp(base_val_loss),
        "tokens_seen": tokens,
        "tokens_per_s": (tokens - tokens_at_start) / max(train_seconds, 1e-6),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dtype": str(dtype).replace("torch.", ""),
        "device": device,
    }
    save_adapter(
        model,
        adapter_dir,
        metadata={
            "id": version,
            "base_model": BASE_MODEL_ID if base_dir.name.startswith("SmolLM2") else str(base_dir),
            "base_model_dir": base_dir.name,
            "data_hash": digest,
            "data": {
                "tickets": len(tickets),
                "by_source": dict(Counter(t.source for t in tickets)),
                "intents": len({e.intent for e in examples}),
                "tone_labels": "tone detector" if tone_fn else "tickets' own only",
            },
            "config": cfg.to_dict(),
            "parent": None if parent is None else {"id": parent.id, "data_hash": parent.metadata.get("data_hash")},
            "metrics": metrics,
            # tickets held out but over this run's cap are kept too: unseen, and part of the sample
            "val_hashes": sorted({e.digest for e in val_set} | set(held_out or ())),
            "max_reply_tokens_seen": seen_cap,
            # held-out replies up to this many tokens were drawn from one pool, longer ones from another
            "held_out_split_at": split_at,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command or " ".join(sys.argv),
        },
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()  # only when no other run is in progress
    return TrainResult(version, adapter_dir, metrics, model=model, losses=losses)


def resolve_output_root(cfg: TrainConfig, data_dir: Path) -> Path:
    """Where a run writes its adapter (and its checkpoints under ``.runs``): ``output_root``, relative to
    the data directory, or ``<data_dir>/adapters``."""
    if not cfg.output_root:
        return Path(data_dir) / "adapters"
    root = Path(cfg.output_root).expanduser()
    return root if root.is_absolute() else Path(data_dir) / root


def run_key(cfg: TrainConfig, digest: str) -> str:
    """The checkpoint folder name of a run: its config and data, less the bookkeeping keys
    (:data:`models.config.BOOKKEEPING_KEYS`), so that changing how often it logs or saves still resumes it."""
    what = {k: v for k, v in cfg.to_dict().items() if k not in BOOKKEEPING_KEYS}
    return hashlib.sha256(json.dumps({**what, "data": digest}, sort_keys=True).encode()).hexdigest()[:12]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl+C (or SIGTERM, see :func:`sigterm_as_interrupt`) during training; ``str()`` says where the checkpoint
    is and how to resume. ``signal_name``: "SIGTERM" when a signal stopped it, None for Ctrl+C."""

    def __init__(self, message: str, *, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.signal_name = signal_name


class TrainingTerminated(KeyboardInterrupt):
    """A termination signal (``kill``, a service manager stopping the job) during training, raised by
    :func:`sigterm_as_interrupt`'s handler: the run stops as on Ctrl+C, with the same resume hint."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While in the block, SIGTERM raises :class:`TrainingTerminated` in the main thread, as Ctrl+C raises
    KeyboardInterrupt: :func:`train` then says where its checkpoint is (SIGTERM's default action ended the
    process without a word, QA). The handler before is restored after; elsewhere than the main thread (where
    Python runs signal handlers) it does nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise TrainingTerminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_message(run_dir: Path, checkpointed: int | None, step: int, cfg: TrainConfig,
                      signal_name: str | None = None) -> str:
    """What an interrupted run tells the operator: the checkpoint kept (step and folder), or that there is none.
    ``signal_name``: the signal that stopped it ("SIGTERM"), None for Ctrl+C."""
    how = f"stopped by {signal_name}" if signal_name else "interrupted"
    if checkpointed:
        return (f"training {how} at step {step}; the checkpoint at step {checkpointed} is kept in {run_dir}. "
                "Run the same command again to resume from it (or delete that folder, or use "
                "`hybridesk train --clean-runs`, to start over).")
    if cfg.checkpoint_every:
        return (f"training {how} at step {step}, before the first checkpoint (checkpoint_every="
                f"{cfg.checkpoint_every}): nothing was kept, and the same command starts again from step 0. "
                "Set a smaller checkpoint_every to keep more of a run.")
    return (f"training {how} at step {step}; checkpoint_every is 0, so nothing was kept and the same "
            "command starts again from step 0.")


def list_runs(output_root: Path) -> list[tuple[Path, int | None, int]]:
    """``(folder, checkpoint step or None, size in bytes)`` of each unfinished run under ``<output_root>/.runs``."""
    runs_root = Path(output_root) / ".runs"
    if not runs_root.is_dir():
        return []
    out = []
    for run in sorted(runs_root.iterdir()):
        if not run.is_dir():
            continue
        size = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
        out.append((run, _checkpoint_step(run), size))
    return out


def _checkpoint_step(run: Path) -> int | None:
    state = run / "trainer_state.pt"
    if not state.is_file():
        return None
    try:
        import torch

        return int(torch.load(state, weights_only=False, map_location="cpu")["step"])
    except Exception:  # noqa: BLE001 - a damaged checkpoint is listed (and can be deleted) all the same
        return None


def check_target_modules(model: Any, targets: Sequence[str]) -> None:
    """:class:`InvalidInput` (``bad_config``) naming the model's linear layers when a ``target_modules``
    entry matches none of them (peft would fail with a traceback)."""
    import torch

    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    valid = sorted({name.rsplit(".", 1)[-1] for name in names})
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        raise InvalidInput(
            f"Invalid training config: target_modules {', '.join(unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} not a linear layer of the base model; valid names: "
            f"{', '.join(valid)}.",
            code="bad_config",
        )


def free_version(output_root: Path, version: str) -> str:
    """``version``, or ``version-2``, ``-3``... when a folder of that name appeared meanwhile (two runs in
    one minute, or one saved under the same id while this one trained): minutes of training are kept, and
    nothing is overwritten."""
    candidate, n = version, 1
    while (Path(output_root) / candidate).exists():
        n += 1
        candidate = f"{version}-{n}"
    if candidate != version:
        log.warning("adapter %s exists already; this run is saved as %s", version, candidate)
    return candidate


def filtered_out(reasons: Counter[str], cfg: TrainConfig) -> str:
    """Why :func:`build_examples` dropped every ticket, and which setting to raise."""
    parts = []
    if reasons.get("long_reply"):
        parts.append(f"{reasons['long_reply']} had a reply longer than max_reply_tokens={cfg.max_reply_tokens} "
                     "(raise max_reply_tokens)")
    if reasons.get("no_room"):
        parts.append(f"{reasons['no_room']} left no room for the reply after the prompt within "
                     f"max_length={cfg.max_length} tokens (raise max_length)")
    return "; ".join(parts) or "no ticket could be made into an example"


def save_adapter(model: Any, adapter_dir: Path, *, metadata: dict[str, Any]) -> None:
    """Write the adapter (bf16 safetensors + adapter_config.json) and its metadata, atomically."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    adapter_dir = Path(adapter_dir)
    tmp = adapter_dir.with_name(f".{adapter_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = get_peft_model_state_dict(model)
    # bf16 halves the file; LoRA deltas lose nothing measurable at this precision
    save_file(
        {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in state.items()},
        str(tmp / "adapter_model.safetensors"),
        metadata={"format": "pt"},
    )
    config = model.peft_config["default"]
    config.base_model_name_or_path = metadata.get("base_model")
    config.save_pretrained(str(tmp))
    write_metadata(tmp, metadata)
    for path in tmp.iterdir():
        path.chmod(0o644)  # shipped in the repository: readable by everyone
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    tmp.rename(adapter_dir)


def _save_checkpoint(
    run_dir: Path, model: Any, optimizer: Any, scheduler: Any, step: int, losses, tokens
) -> None:
    import torch
    from peft import get_peft_model_state_dict

    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "adapter": get_peft_model_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "losses": list(losses),
        "tokens": tokens,
        "torch_rng": torch.get_rng_state(),
    }
    tmp = run_dir / "trainer_state.pt.tmp"
    torch.save(payload, tmp)
    tmp.replace(run_dir / "trainer_state.pt")


def _load_checkpoint(run_dir: Path, model: Any, optimizer: Any, scheduler: Any) -> dict:
    import torch
    from peft import set_peft_model_state_dict

    payload = torch.load(run_dir / "trainer_state.pt", weights_only=False)
    set_peft_model_state_dict(model, payload["adapter"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    return {"step": payload["step"], "losses": payload["losses"], "tokens": payload["tokens"]}


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, mininterval=5)


def _ema(values: Sequence[float], window: int = 10) -> float:
    return _mean(values[-window:]) or 0.0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
