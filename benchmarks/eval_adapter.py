"""Adapter vs base model on held-out public tickets (the `hybridesk eval` metrics).

Usage::

    .venv/bin/python benchmarks/eval_adapter.py [--adapter larkspur-v1] [--limit 16] [--max-new-tokens 200]

Held-out tickets are the public (bitext) tickets the adapter's training slice did not use. Their
tone labels come from the NLU model active in ``--data-dir`` when there is one, as in training
(``hybridesk train`` labels tickets with the bot's tone detector). ``--kb-context`` builds each
prompt as the bot does, with the passages and facts the KB in ``--data-dir`` gives that message
(training's prompts have the reply's slot names and no facts). ``--long-replies`` evaluates instead
on public tickets that no adapter in the chain (the adapter and those it was continued from) trained
on, because their agent reply is longer than training's ``max_reply_tokens``: a larger unseen set,
though not a random one. Writes
``benchmarks/results/eval_adapter.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from models.prompting import MAX_NEW_TOKENS  # noqa: E402


def _resolvable(path: Path) -> list[str] | None:
    """Slot names in the KB's slot documentation, plus the importer's normalised spellings."""
    from models.prompting import extract_slots
    from models.tickets import normalize_slots

    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    slots = set(extract_slots(text)) | set(extract_slots(normalize_slots(text)))
    return sorted(slots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", help="adapter id (default: the shipped active one)")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-model-dir", default=os.environ.get("HYBRIDESK_BASE_MODEL_DIR"))
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDESK_DATA_DIR", str(REPO / "var")))
    parser.add_argument(
        "--shared", default=os.environ.get("HYBRIDESK_SHARED_DATA_DIR", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument(
        "--slots-file",
        default=str(REPO / "knowledge" / "sample" / "SLOTS.md"),
        help="Markdown listing every {{Slot}} the KB (or the order lookup) can fill",
    )
    parser.add_argument(
        "--kb-context",
        action="store_true",
        help="prompts as the bot builds them: passages and facts retrieved from the KB in --data-dir",
    )
    parser.add_argument("--same-tickets-as", action="append", default=[], metavar="ADAPTER",
                        help="only tickets this other adapter did not train on either (repeatable)")
    parser.add_argument("--long-replies", action="store_true",
                        help="instead of the held-out split: public tickets no adapter in the chain trained on "
                             "because their reply is longer than training's max_reply_tokens")
    parser.add_argument("--tickets-of", metavar="ADAPTER",
                        help="evaluate on this other adapter's held-out tickets (each checked unseen by this one), "
                             "split and weighted at its reply-length split point")
    parser.add_argument("--no-base", action="store_true", help="skip the base model comparison")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval_adapter.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from models.adapters import AdapterRegistry
    from models.evaluation import EvalOptions, evaluate, format_table

    torch.set_num_threads(args.threads)
    registry = AdapterRegistry(None)
    adapter_id = args.adapter or registry.active_id()
    if adapter_id is None:
        print("no shipped adapter is active; pass --adapter", file=sys.stderr)
        return 2
    info = registry.get(adapter_id)
    tickets, split_at = _long_reply_tickets(registry, info, args) if args.long_replies else None, None
    if args.tickets_of:
        tickets, split_at = _tickets_of(registry, info, args)
    report = evaluate(
        info.path,
        data_dir=Path(args.data_dir),
        shared_data_dir=Path(args.shared),
        base_model_dir=Path(args.base_model_dir) if args.base_model_dir else None,
        options=EvalOptions(
            limit=args.limit,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            compare_base=not args.no_base,
            resolvable_slots=_resolvable(Path(args.slots_file)),
            extra=({"pool": "long_replies"} if args.long_replies else
                   {"pool": f"held out by {args.tickets_of}"} if args.tickets_of else {}),
            split_at=split_at,
        ),
        tickets=tickets,
        tone_fn=_tone_fn(Path(args.data_dir)),
        context_fn=_context_fn(Path(args.data_dir)) if args.kb_context else None,
        same_tickets_as=[registry.get(other).path for other in args.same_tickets_as],
    )
    print(format_table(report))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(f"\nreport: {args.out} ({report['seconds']} s)")
    return 0


def _long_reply_tickets(registry, info, args):
    """Public tickets that neither the adapter nor any adapter it was continued from trained on."""
    from transformers import AutoTokenizer

    from models.adapters import read_metadata
    from models.base import resolve_base_model_dir
    from models.evaluation import untrained_long_reply_tickets

    chain, seen = [], set()
    current = info
    while current is not None and current.id not in seen:
        seen.add(current.id)
        meta = read_metadata(current.path)
        chain.append(meta)
        parent = (meta.get("parent") or {}).get("id") or (meta.get("config") or {}).get("init_adapter")
        current = registry.get(parent) if parent else None
    print("adapter chain:", " <- ".join(m.get("id", "?") for m in chain))
    base_dir = Path(args.base_model_dir) if args.base_model_dir else resolve_base_model_dir(None, Path(args.data_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    tickets = untrained_long_reply_tickets(chain, shared_data_dir=Path(args.shared), tokenizer=tokenizer,
                                           limit=args.limit, seed=7)
    print(f"{len(tickets)} tickets with replies longer than any training run's cap")
    return tickets


def _tickets_of(registry, info, args):
    """The held-out tickets of adapter ``--tickets-of`` that ``info``'s adapter did not train on either."""
    from transformers import AutoTokenizer

    from models.adapters import read_metadata
    from models.base import resolve_base_model_dir
    from models.evaluation import held_out_tickets, unseen_by

    other = read_metadata(registry.get(args.tickets_of).path)
    pool = held_out_tickets(other, shared_data_dir=Path(args.shared), limit=args.limit, seed=7)
    base_dir = Path(args.base_model_dir) if args.base_model_dir else resolve_base_model_dir(None, Path(args.data_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    tickets = unseen_by(read_metadata(info.path), pool, tokenizer)
    print(f"{len(tickets)} of {args.tickets_of}'s {len(pool)} held-out tickets are unseen by {info.id}")
    return tickets, other.get("held_out_split_at")


def _context_fn(data_dir: Path):
    """What the bot's answer step retrieves for a message: passages and facts in force now."""
    from bot.cli_models import kb_context_fn
    from bot.services import Services
    from bot.settings import Settings

    print("prompts: with passages and facts from the KB in", data_dir)
    return kb_context_fn(Services(Settings(data_dir=data_dir)))


def _tone_fn(data_dir: Path):
    """The tone detector of the NLU model active in ``data_dir`` (as training used), if any."""
    from bot.cli_models import tone_detector
    from bot.services import Services
    from bot.settings import Settings

    tone = tone_detector(Services(Settings(data_dir=data_dir)))
    print("tone labels:", "from the active NLU model in " + str(data_dir) if tone else "none (no NLU model)")
    return tone


if __name__ == "__main__":
    sys.exit(main())
