"""`hybridesk tickets export-corrections --out PATH`: agents' corrections as training examples.

Writes JSON Lines, one object per correction that has a corrected reply::

    {"customer_message": ..., "intent": ..., "corrected_reply": ..., "reason": ...,
     "message_id": ..., "created_at": ...}

which is what the fine-tuning ticket importer reads. ``register`` adds the subcommand to the
``tickets`` group (``bot.cli_models.tickets_group`` creates it once, whichever module asks first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from knowledge.errors import InvalidInput


def _export(args: argparse.Namespace, ctx) -> int:
    from bot.console.corrections import export_records, write_jsonl

    records = export_records(ctx.db, only_unexported=args.only_new, last_again=args.last_again)
    if args.out == "-":
        n = write_jsonl(records, sys.stdout)
    else:
        out = Path(args.out)
        if out.is_dir():
            raise InvalidInput(f"{out} is a folder; give a file name such as {out / 'corrections.jsonl'}.",
                               code="bad_output")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            n = write_jsonl(records, fh)
        tmp.replace(out)  # a reader never sees a half-written file
        print(f"exported {n} correction(s) to {out}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bot.cli_models import tickets_group

    group = tickets_group(sub)
    p = group.add_parser("export-corrections", help="write agents' corrections as JSONL training examples")
    p.add_argument("--out", required=True, help="output file (JSON Lines), or - for stdout")
    p.add_argument("--only-new", action="store_true", help="only corrections not exported before")
    p.add_argument("--last-again", action="store_true",
                   help="the newest export's corrections once more (after a failed download or copy)")
    p.set_defaults(handler=_export)
