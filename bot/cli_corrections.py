"""`hybridesk tickets export-corrections --out PATH`: agents' corrections as training examples.

Writes JSON Lines, one object per correction that has a corrected reply::

    {"customer_message": ..., "intent": ..., "corrected_reply": ..., "reason": ...,
     "message_id": ..., "created_at": ...}

which is what the fine-tuning ticket importer reads. Only ``--only-new`` marks what it exported (as the
console's "Export new only" does), so the next ``--only-new`` skips it; exporting everything, or to
stdout without ``--only-new``, changes nothing. ``register`` adds the subcommand to the ``tickets``
group (``bot.cli_models.tickets_group`` creates it once, whichever module asks first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from knowledge.errors import InvalidInput


def _output_file(value: str) -> Path:
    """The output file, checked before anything is read or marked: a folder or an unwritable place fails now."""
    out = Path(value)
    if out.is_dir():
        raise InvalidInput(f"{out} is a folder; give a file name such as {out / 'corrections.jsonl'}.",
                           code="bad_output")
    parent = out.parent
    if not parent.is_dir():
        # a typo in the path must not create a directory tree somewhere (QA training #12)
        what = "is not a folder" if parent.exists() else "does not exist"
        raise InvalidInput(f"Cannot write to {out}: the folder {parent} {what}; create it first or choose "
                           "another path. Nothing was exported or marked.", code="bad_output")
    return out


def _export(args: argparse.Namespace, ctx) -> int:
    from bot.cli_models import company_contacts_of
    from bot.console.corrections import export_records, write_jsonl

    if args.only_new and args.last_again:
        raise InvalidInput("--only-new and --last-again cannot be combined: --only-new exports the corrections "
                           "not exported yet, --last-again the newest --only-new export once more.",
                           code="conflicting_options")
    if args.out == "-":
        def to_stdout(records: list[dict]) -> None:
            write_jsonl(records, sys.stdout)
            sys.stdout.flush()  # a closed pipe fails here, before anything is marked

        records = export_records(ctx.db, only_unexported=args.only_new, last_again=args.last_again,
                                 deliver=to_stdout, company=company_contacts_of(ctx))
        if args.only_new and not records:
            print("no new corrections to export", file=sys.stderr)
        return 0
    out = _output_file(args.out)
    written: list[int] = []

    def deliver(records: list[dict]) -> None:
        if args.only_new and not records:
            return  # nothing new: an earlier export in that file is not replaced by an empty one
        tmp = out.with_name(out.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                written.append(write_jsonl(records, fh))
            tmp.replace(out)  # a reader never sees a half-written file
        except OSError as exc:
            if tmp.is_file():
                tmp.unlink()
            raise InvalidInput(f"Cannot write to {out}: {exc.strerror or exc}; nothing was marked exported.",
                               code="bad_output") from exc

    export_records(ctx.db, only_unexported=args.only_new, last_again=args.last_again, deliver=deliver,
                   company=company_contacts_of(ctx))
    if not written:
        state = "left as it was" if out.exists() else "not written"
        print(f"no new corrections to export; {out} {state}", file=sys.stderr)
        return 0
    print(f"exported {written[0]} correction(s) to {out}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bot.cli_models import tickets_group

    group = tickets_group(sub)
    p = group.add_parser("export-corrections", help="write agents' corrections as JSONL training examples")
    p.add_argument("--out", required=True, help="output file (JSON Lines), or - for stdout")
    p.add_argument("--only-new", action="store_true",
                   help="only corrections not exported before, and mark them exported (the only export that marks)")
    p.add_argument("--last-again", action="store_true",
                   help="the newest --only-new export's corrections once more (after a failed download or copy)")
    p.set_defaults(handler=_export)
