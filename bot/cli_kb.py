"""`hybridesk kb ...`: import, list, show, history, diff, publish, retire, facts, search.

Handlers receive ``(args, ctx)``; ``ctx.knowledge()`` returns a ready ``KnowledgeService``.
Errors are ``HybrideskError`` subclasses, turned into one line by ``bot.cli.main``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from knowledge.errors import InvalidInput
from knowledge.ingest import parse_when


def _when(value: str | None, name: str = "--at"):
    return None if value is None else parse_when(value, field_name=name)


def positive_int(value: str) -> int:
    """argparse type: a whole number of at least 1 (``kb search -k 0`` returned everything, ``eval
    --limit -1`` dropped one ticket)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not at least 1")
    if number > 2**62:  # (a database id or a count never is; SQLite's integers end at 2**63 - 1)
        raise argparse.ArgumentTypeError(f"{value!r} is too large")
    return number


def _import(args: argparse.Namespace, ctx: Any) -> int:
    report = ctx.knowledge().import_folder(args.path, author=args.author, publish=not args.draft, restore=True)
    if not (report.imported or report.updated or report.scheduled or report.unchanged or report.errors
            or report.drafted):
        # (CLI QA B15: an empty folder printed "0 imported" and succeeded)
        raise InvalidInput(f"No documents found in {args.path}: import Markdown (.md), text (.txt) or HTML files.",
                           code="no_documents")
    print(report.summary())
    for doc_id in report.imported:
        print(f"  imported  {doc_id}")
    for doc_id in report.updated:
        print(f"  updated   {doc_id}")
    for doc_id in report.scheduled:
        print(f"  scheduled {doc_id}")
    for problem in report.drafted:  # saved, not published: which file, and why
        print(f"  draft     {problem.file}: {problem.reason}")
    for problem in report.errors:
        print(f"  skipped   {problem.file}: {problem.reason}")
    return 1 if report.errors and not (report.imported or report.updated or report.scheduled or report.unchanged) else 0


def _list(args: argparse.Namespace, ctx: Any) -> int:
    docs = ctx.knowledge().list_documents(at=_when(args.at))
    if args.json:
        print(json.dumps([d.__dict__ for d in docs], default=list, indent=2))
        return 0
    print(f"{'document':<32} {'latest':>6} {'status':<10} {'in force':>8}  title")
    at = _when(args.at)
    for d in docs:
        live = f"r{d.in_force_revision}" if d.in_force_revision else "-"
        state = _status(d.latest_status, d.latest_effective_from, d.latest_effective_until, at,
                        in_force=d.in_force_revision, number=d.latest_revision)
        print(f"{d.document_id:<32} {'r' + str(d.latest_revision):>6} {state:<10} {live:>8}  {d.title}")
    return 0


def _show(args: argparse.Namespace, ctx: Any) -> int:
    rev = ctx.knowledge().get(args.id, args.revision)
    if args.json:
        print(json.dumps(rev.to_dict(with_content=True), indent=2, default=str))
        return 0
    until = rev.effective_until.isoformat() if rev.effective_until else "open"
    since = rev.effective_from.isoformat() if rev.effective_from else "-"
    print(f"{rev.document_id} r{rev.number} [{rev.status}] {rev.title}")
    print(
        f"effective {since} .. {until}; by {rev.author}" + (f": {rev.change_note}" if rev.change_note else "")
    )
    for f in rev.facts:
        print(f"  fact {f.name} = {f.value}{' ' + f.unit if f.unit else ''}")
    print()
    print(rev.content)
    return 0


def _status(status: str, start: Any, end: Any, at: Any = None, *, in_force: int | None = None,
            number: int | None = None) -> str:
    """A revision's state in one word, as the console's badge says it: a published revision still to
    come is "scheduled", one replaced by a later revision "superseded", one with a retirement to come
    "retiring" (QA: `kb list` and `kb history` said "published" and "retired" for those)."""
    from bot.console.kb_editor import revision_badge

    text, _ = revision_badge(status, start, end, at, in_force=in_force, number=number)
    return text.split(" ·")[0].split(" by ")[0]


def _history(args: argparse.Namespace, ctx: Any) -> int:
    knowledge = ctx.knowledge()
    revisions = knowledge.history(args.id)
    live = next((r.number for r in knowledge.in_force() if r.document_id == args.id), None)
    for r in revisions:
        since = r.effective_from.isoformat() if r.effective_from else "-"
        until = r.effective_until.isoformat() if r.effective_until else "open"
        note = f"  {r.change_note}" if r.change_note else ""
        state = _status(r.status, r.effective_from, r.effective_until, in_force=live, number=r.number)
        print(f"r{r.number:<4} {state:<10} {since} .. {until}  {r.author}{note}")
    return 0


def _diff(args: argparse.Namespace, ctx: Any) -> int:
    out = ctx.knowledge().diff(args.id, args.r1, args.r2)
    print(out or "(no differences)", end="" if out else "\n")
    return 0


def _publish(args: argparse.Namespace, ctx: Any) -> int:
    rev = ctx.knowledge().publish(args.id, args.revision, at=_when(args.at))
    print(f"published {rev.document_id} r{rev.number}, in force from {rev.effective_from.isoformat()}")
    return 0


def _retire(args: argparse.Namespace, ctx: Any) -> int:
    if args.cancel:
        if args.at or args.note:
            raise InvalidInput("--cancel takes no --at or --note.", code="bad_arguments")
        revs = ctx.knowledge().cancel_retirement(args.id)
        print(f"retirement of {args.id} cancelled; in force again as before ({', '.join('r' + str(r.number) for r in revs)})")
        return 0
    revs = ctx.knowledge().retire(args.id, at=_when(args.at), note=args.note)
    when = revs[0].effective_until if revs else None
    later = when is not None and when > datetime.now(UTC) + timedelta(seconds=5)
    print(f"{'retiring' if later else 'retired'} {args.id} ({', '.join('r' + str(r.number) for r in revs)})"
          + (f" from {when:%Y-%m-%d %H:%M} UTC; `hybridesk kb retire {args.id} --cancel` takes it back before then"
             if later else ""))
    return 0


def _facts(args: argparse.Namespace, ctx: Any) -> int:
    facts = ctx.knowledge().facts(_when(args.at))
    if args.json:
        print(json.dumps({k: v.__dict__ for k, v in facts.items()}, indent=2, default=str))
        return 0
    for f in facts.values():
        unit = f" {f.unit}" if f.unit else ""
        print(f"{f.name:<36} {f.value}{unit}   ({f.document_id} r{f.revision})")
    return 0


def _search(args: argparse.Namespace, ctx: Any) -> int:
    filters = {k: v for k, v in {"tags": args.tag, "audience": args.audience}.items() if v}
    passages = ctx.knowledge().retrieve(args.query, at=_when(args.at), k=args.k, filters=filters or None)
    if args.json:
        print(json.dumps([p.citation() | {"score": p.score, "text": p.text} for p in passages], indent=2))
        return 0
    if not passages:
        print("no passage in force matches")
    for i, p in enumerate(passages, 1):
        print(f"{i}. [{p.score:.3f}] {p.document_id} r{p.revision} #{p.anchor}  ({p.title} > {p.heading})")
        snippet = " ".join(p.text.split())
        print(f"   {snippet[:240]}{'...' if len(snippet) > 240 else ''}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``kb`` command group to the top-level parser's subparsers."""
    kb = subparsers.add_parser("kb", help="knowledge base: import, publish, retire, search")
    sub = kb.add_subparsers(dest="kb_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("import", help="import a Markdown/text/HTML file or folder (published unless --draft)")
    p.add_argument("path")
    p.add_argument("--author", default="cli", help="recorded as the revisions' author")
    p.add_argument("--draft", action="store_true", help="import as drafts, publish later")
    p.set_defaults(handler=_import)

    p = sub.add_parser("list", help="documents with their latest and in-force revisions")
    p.add_argument("--at", help="ISO time for the in-force column (default now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_list)

    p = sub.add_parser("show", help="a revision's text and facts (default: latest)")
    p.add_argument("id")
    p.add_argument("--revision", "-r", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_show)

    p = sub.add_parser("history", help="every revision of a document")
    p.add_argument("id")
    p.set_defaults(handler=_history)

    p = sub.add_parser("diff", help="unified diff between two revisions")
    p.add_argument("id")
    p.add_argument("r1", type=int)
    p.add_argument("r2", type=int)
    p.set_defaults(handler=_diff)

    p = sub.add_parser("publish", help="publish a revision now or from --at (scheduled)")
    p.add_argument("id")
    p.add_argument("--revision", "-r", type=int, help="default: the latest revision")
    p.add_argument("--at", help="ISO date/time it takes effect (UTC if no offset)")
    p.set_defaults(handler=_publish)

    p = sub.add_parser("retire", help="retire a document: never retrieved again")
    p.add_argument("id")
    p.add_argument("--at", help="ISO time of retirement (default now)")
    p.add_argument("--note")
    p.add_argument("--cancel", action="store_true", help="cancel a retirement scheduled with --at that has not taken effect")
    p.set_defaults(handler=_retire)

    p = sub.add_parser("facts", help="key facts in force")
    p.add_argument("--at", help="ISO time (default now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_facts)

    p = sub.add_parser("search", help="what the bot would retrieve for a question")
    p.add_argument("query")
    p.add_argument("--at", help="ISO time (default now)")
    p.add_argument("-k", type=positive_int, default=5, help="passages to show (default 5)")
    p.add_argument("--tag", action="append", help="only documents with this tag (repeatable)")
    p.add_argument("--audience")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_search)
