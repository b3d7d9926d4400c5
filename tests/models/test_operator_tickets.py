"""Auditing imported tickets without SQL (`tickets list | show | delete`), corrections that replace an
earlier export's, and `export-corrections` into a folder that does not exist (QA training #3, #4, #12)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot import cli_corrections, cli_models
from knowledge.errors import InvalidInput, NotFound
from models.db import ImportedTicket, ModelsBase
from models.tickets import import_tickets


class Ctx:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = SimpleNamespace(data_dir=tmp_path / "data")
        self.engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        ModelsBase.metadata.create_all(self.engine)

    def session(self) -> Session:
        return Session(self.engine)

    def count(self, **where) -> int:
        with self.session() as s:
            query = sa.select(sa.func.count()).select_from(ImportedTicket)
            for key, value in where.items():
                query = query.where(getattr(ImportedTicket, key) == value)
            return s.scalar(query)


def _run(ctx, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridesk")
    sub = parser.add_subparsers(dest="command")
    cli_models.register(sub)
    cli_corrections.register(sub)
    args = parser.parse_args(argv)
    return args.handler(args, ctx)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def ctx(tmp_path):
    ctx = Ctx(tmp_path)
    with ctx.session() as s:
        import_tickets(s, _jsonl(tmp_path / "t.jsonl", [
            {"message": "Hello, this is Anna de Vries. My mugs arrived chipped.", "reply": "Sorry! A new set ships today.",
             "intent": "damaged_item"},
            {"message": "Where is my parcel?", "reply": "It arrives tomorrow.", "intent": "track_order"},
        ]), "jsonl")
        import_tickets(s, _jsonl(tmp_path / "c.csv.jsonl", [
            {"message": "Can I pay with PayPal?", "reply": "Yes, at checkout."},
        ]), "jsonl")
        s.execute(sa.update(ImportedTicket).where(ImportedTicket.id == 3).values(source="csv"))
        s.commit()
    return ctx


def test_tickets_list_shows_one_line_per_ticket_and_filters(ctx, capsys):
    assert _run(ctx, ["tickets", "list"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # the count comes last on stdout, after the lines it counts (QA: on stderr it came out of order when piped)
    assert len(lines) == 4 and lines[3] == "3 ticket(s)" and err == ""
    first = lines[0].split()
    assert first[:3] == ["1", "jsonl", "damaged_item"]
    assert "{{Customer Name}}" in lines[0] and "Vries" not in lines[0]  # what is stored: scrubbed
    assert lines[2].split()[:3] == ["3", "csv", "-"]  # no intent
    assert _run(ctx, ["tickets", "list", "--source", "csv"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["3", "1"]
    assert _run(ctx, ["tickets", "list", "--search", "PARCEL"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["2", "1"]
    assert _run(ctx, ["tickets", "list", "--limit", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1:] == ["1 of 3 tickets shown (--limit N shows more)"] and err == ""
    assert _run(ctx, ["tickets", "list", "--search", "100%_"]) == 0  # LIKE wildcards are text
    assert capsys.readouterr().out == "no matching imported tickets\n"


def test_a_long_message_is_shortened_to_one_line(ctx, tmp_path, capsys):
    with ctx.session() as s:
        import_tickets(s, _jsonl(tmp_path / "long.jsonl", [
            {"message": "My lamp\nflickers " + "and flickers " * 30, "reply": "Try another bulb."}]), "jsonl")
        s.commit()
    _run(ctx, ["tickets", "list", "--search", "flickers"])
    line = capsys.readouterr().out.splitlines()
    assert len(line) == 2 and line[0].endswith("…") and len(line[0]) < 130 and line[1] == "1 matching ticket(s)"


def test_tickets_show_prints_the_stored_ticket_and_refuses_unknown_ids(ctx, capsys):
    assert _run(ctx, ["tickets", "show", "1"]) == 0
    out = capsys.readouterr().out
    assert "source:      jsonl" in out and "intent:      damaged_item" in out
    assert "Sorry! A new set ships today." in out
    with pytest.raises(NotFound, match="No imported ticket with id 99") as exc:
        _run(ctx, ["tickets", "show", "1", "99"])
    assert exc.value.code == "ticket_not_found" and "\n" not in exc.value.message


def test_tickets_delete_by_id_or_by_source(ctx, capsys):
    with pytest.raises(NotFound, match="id 42; nothing was changed"):
        _run(ctx, ["tickets", "delete", "1", "42"])
    assert ctx.count() == 3  # an unknown id deletes nothing, not even the known one
    assert _run(ctx, ["tickets", "delete", "1"]) == 0
    assert "deleted 1 imported ticket(s)" in capsys.readouterr().out
    assert ctx.count() == 2 and ctx.count(id=1) == 0
    with pytest.raises(InvalidInput, match="would delete all 1 imported ticket\\(s\\) of source 'jsonl'; add --yes"):
        _run(ctx, ["tickets", "delete", "--source", "jsonl"])
    assert ctx.count() == 2
    assert _run(ctx, ["tickets", "delete", "--source", "jsonl", "--yes"]) == 0
    assert ctx.count() == 1 and ctx.count(source="csv") == 1


def test_tickets_delete_says_what_it_needs_and_names_the_sources(ctx, capsys):
    """QA: `tickets delete --source csvv --yes` said "deleted 0" without saying the source is unknown, and
    `tickets delete` alone said "(not both)"."""
    with pytest.raises(InvalidInput) as exc:
        _run(ctx, ["tickets", "delete", "--source", "csvv", "--yes"])
    assert exc.value.code == "unknown_source"
    assert "Unknown source 'csvv'" in exc.value.message and "bitext, csv, jsonl, sample, corrections" in exc.value.message
    assert "Sources with imported tickets: csv (1), jsonl (2)." in exc.value.message
    with pytest.raises(InvalidInput, match="Unknown source 'csvv'"):
        _run(ctx, ["tickets", "list", "--source", "csvv"])
    assert ctx.count() == 3
    assert _run(ctx, ["tickets", "delete", "--source", "bitext", "--yes"]) == 0  # a source, but none imported
    assert capsys.readouterr().out == ("nothing deleted: no ticket was imported as 'bitext' (sources with imported "
                                       "tickets: csv (1), jsonl (2))\n")
    with pytest.raises(InvalidInput) as exc:
        _run(ctx, ["tickets", "delete"])
    assert "not both" not in exc.value.message
    assert exc.value.message.startswith("Name the tickets to delete: their ids") and "--source SOURCE --yes" in exc.value.message
    with pytest.raises(InvalidInput, match="Give ticket ids or --source SOURCE, not both"):
        _run(ctx, ["tickets", "delete", "1", "--source", "csv"])
    assert ctx.count() == 3


def _correction(message_id, reply: str) -> dict:
    return {"customer_message": "How long do I have to return a lamp?", "intent": "check_refund_policy",
            "corrected_reply": reply, "reason": "wrong_fact", "message_id": message_id,
            "created_at": "2026-12-06T18:40:00+00:00"}


def test_a_message_corrected_again_replaces_the_earlier_correction(tmp_path):
    """QA #4: the correction of message 310 from a second export was stored next to the first one."""
    ctx = Ctx(tmp_path)
    first = _jsonl(tmp_path / "corr.jsonl", [_correction(310, "You have 45 days."), _correction(311, "Yes.")])
    second = _jsonl(tmp_path / "corr3.jsonl", [_correction(310, "You have {{Return Window}} from delivery.")])
    with ctx.session() as s:
        report = import_tickets(s, first, "corrections")
        s.commit()
        assert (report.imported, report.replaced) == (2, 0)
        report = import_tickets(s, second, "corrections")
        s.commit()
        assert (report.imported, report.replaced, report.duplicates) == (1, 1, 0)
        assert "1 imported (1 replacing an earlier correction of the same message)" in report.summary()
        rows = s.scalars(sa.select(ImportedTicket).where(ImportedTicket.external_id == "310")).all()
        assert [r.agent_reply for r in rows] == ["You have {{Return Window}} from delivery."]
        assert ctx.count(source="corrections") == 2
        # the same file again: duplicates, nothing replaced
        again = import_tickets(s, second, "corrections")
        s.commit()
        assert (again.imported, again.replaced, again.duplicates) == (0, 0, 1)
        # a plain JSONL ticket with the same id is another source: not replaced
        _jsonl(tmp_path / "other.jsonl", [{"message": "Hi", "reply": "Hello!", "id": "310"}])
        other = import_tickets(s, tmp_path / "other.jsonl", "jsonl")
        s.commit()
        assert other.imported == 1 and ctx.count(external_id="310") == 2


def test_export_corrections_into_a_folder_that_does_not_exist_fails_and_creates_nothing(tmp_path):
    """QA #12: `--out /nonexistent/dir/x.jsonl` created /nonexistent/dir."""
    out = tmp_path / "missing" / "dir" / "x.jsonl"
    with pytest.raises(InvalidInput, match="the folder .*missing/dir does not exist") as exc:
        _run(SimpleNamespace(db=None), ["tickets", "export-corrections", "--out", str(out)])
    assert exc.value.code == "bad_output"
    assert not (tmp_path / "missing").exists()


def test_an_imported_tickets_id_category_and_control_characters_carry_no_personal_data(tmp_path, capsys):
    # security QA: external_id "jane.doe@customer.example" was stored and printed as typed, and escape
    # sequences in a ticket acted on the operator's terminal in `tickets show`
    import json as _json

    import sqlalchemy as _sa
    from sqlalchemy.orm import Session as _Session

    from models.db import ImportedTicket, ModelsBase
    from models.tickets import import_tickets

    engine = _sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    path = tmp_path / "evil.jsonl"
    path.write_text(_json.dumps({"customer_message": "Hi \x1b[2Jthere\r\x1b]0;pwned\x07 where is it?",
                                 "agent_reply": "On its way.\x1b[1A\x1b[2K", "external_id": "jane.doe@customer.example",
                                 "category": "call +31 6 12345678"}) + "\n", encoding="utf-8")
    with _Session(engine) as session:
        import_tickets(session, path, "jsonl")
        session.commit()
        row = session.scalars(_sa.select(ImportedTicket)).one()
    assert row.external_id.startswith("sha256:") and "jane" not in row.external_id
    assert "12345678" not in row.category
    assert "\x1b" not in row.customer_message + row.agent_reply and "\r" not in row.customer_message
    assert row.customer_message == "Hi [2Jthere\n]0;pwned where is it?"
    from bot.cli_models import _shown

    assert _shown("a\x1b[31mb\rc") == "a\\x1b[31mb\\rc"


def test_an_import_says_why_tickets_got_no_intent(tmp_path, capsys, caplog):
    """QA: tickets imported while no NLU model was active got no intent or tone, silently; and the labeller
    swallowed every error."""
    from bot.conversation.nlu import NLURegistry

    ctx = Ctx(tmp_path)
    ctx.services = SimpleNamespace(nlu=NLURegistry(tmp_path / "nlu"))  # no model trained yet
    path = _jsonl(tmp_path / "own.jsonl", [{"message": "Hi, I'm Jan de Vries, where is my order?", "reply": "Soon."},
                                           {"message": "Can I pay by PayPal?", "reply": "Yes.", "intent": "payment"}])
    assert _run(ctx, ["tickets", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("  1 ticket(s) have no intent: no NLU model is active: run `hybridesk nlu train` (or `hybridesk init`), "
            "then import the file again to label them") in out
    # a model that is there but cannot be loaded: said in the summary and logged, not swallowed
    (tmp_path / "nlu" / "v1").mkdir(parents=True)
    (tmp_path / "nlu" / "v1" / "metadata.json").write_text("{oops", encoding="utf-8")
    (tmp_path / "nlu" / "active").write_text("v1", encoding="utf-8")
    with caplog.at_level("WARNING", logger="bot.cli_models"):
        assert _run(ctx, ["tickets", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 imported, 2 duplicates" in out
    assert "1 ticket(s) have no intent: the NLU model cannot be loaded (NLU model v1 is broken" in out
    assert any("the NLU model cannot be loaded" in r.getMessage() for r in caplog.records)
    assert "Jan" not in caplog.text and "Jan" not in out  # the message as written is never shown or logged
    assert ctx.count() == 2
