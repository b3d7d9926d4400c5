"""`hybridesk tickets export-corrections`: only a "new only" export marks what it exported (QA A7, A12).

Real SQLite, the real console app and the real CLI handler; corrections are written through the
console's own service.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest
from console_support import csrf_from, login, seed_conversation

from bot.cli_corrections import register
from bot.console.corrections import create_correction, export_records
from knowledge.errors import InvalidInput


@pytest.fixture
def export(console, capsys):
    """Run the CLI handler; returns (exit code, stderr)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(["tickets", "export-corrections", *argv])
        code = args.handler(args, SimpleNamespace(db=console.services.db))
        captured = capsys.readouterr()
        run.out = captured.out  # type: ignore[attr-defined]
        return code, captured.err

    return run


def _correct(console, n: int) -> None:
    for i in range(n):
        _, bot_id = seed_conversation(console.services, customer=f"question {i}", reply=f"wrong {i}")
        create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id,
                          reason="wrong_fact", corrected_text=f"right {i}")


def _new(console) -> int:
    """How many corrections a "new only" export would give now (a preview: marks nothing)."""
    return len(export_records(console.services.db, only_unexported=True, mark=False))


def test_only_a_new_only_export_marks_what_it_exported(console, export, tmp_path):
    _correct(console, 2)
    out = tmp_path / "all.jsonl"
    assert export("--out", str(out)) == (0, f"exported 2 correction(s) to {out}\n")
    assert export("--out", "-")[0] == 0  # a preview on stdout
    assert len(export.out.splitlines()) == 2
    assert _new(console) == 2  # neither marked anything
    agent = console.client()
    login(agent, "agent")
    csrf = csrf_from(agent.get("/console/corrections").text)
    assert len(agent.post("/console/corrections/export.jsonl", data={"csrf_token": csrf}).text.splitlines()) == 2
    assert _new(console) == 2  # nor did the console's "Export all"

    new = tmp_path / "new.jsonl"
    code, err = export("--out", str(new), "--only-new")
    assert code == 0 and "exported 2" in err
    assert [json.loads(line)["corrected_reply"] for line in new.read_text().splitlines()] == ["right 0", "right 1"]
    assert _new(console) == 0
    # nothing new: the file of the previous export is left as it was, and the operator is told
    before = new.read_bytes()
    code, err = export("--out", str(new), "--only-new")
    assert code == 0 and "no new corrections" in err and "left as it was" in err
    assert new.read_bytes() == before
    code, err = export("--out", str(new), "--last-again")
    assert code == 0 and new.read_bytes() == before
    _correct(console, 1)
    export("--out", str(new), "--only-new")
    assert [json.loads(line)["corrected_reply"] for line in new.read_text().splitlines()] == ["right 0"]


def test_only_new_and_last_again_together_are_refused(console, export, tmp_path):
    _correct(console, 1)
    with pytest.raises(InvalidInput, match="cannot be combined") as exc:
        export("--out", str(tmp_path / "x.jsonl"), "--only-new", "--last-again")
    assert exc.value.code == "conflicting_options"
    with pytest.raises(InvalidInput, match="Choose one"):  # the service refuses it too (the console's form)
        export_records(console.services.db, only_unexported=True, last_again=True)
    assert _new(console) == 1 and not (tmp_path / "x.jsonl").exists()


def test_an_output_that_cannot_be_written_is_one_line_and_marks_nothing(console, export, tmp_path):
    """A12: a FileNotFoundError traceback from mkdir; and a file that failed to write after the
    corrections were marked would have lost them to the next "new only" export."""
    _correct(console, 2)
    with pytest.raises(InvalidInput, match="Cannot write to /proc/nope/x.jsonl") as exc:
        export("--out", "/proc/nope/x.jsonl", "--only-new")
    assert exc.value.code == "bad_output"
    out = tmp_path / "c.jsonl"
    (tmp_path / "c.jsonl.tmp").mkdir()  # the file cannot be written where it should go
    with pytest.raises(InvalidInput, match="nothing was marked exported"):
        export("--out", str(out), "--only-new")
    assert _new(console) == 2
    (tmp_path / "c.jsonl.tmp").rmdir()
    assert export("--out", str(out), "--only-new")[0] == 0 and len(out.read_text().splitlines()) == 2


def test_the_export_carries_no_personal_data(console, export, tmp_path):
    # training QA #10: the file held "my email is qa.tester@example.com" and the agent's phone number as typed
    _, bot_id = seed_conversation(console.services,
                                  customer="Hi, I'm Anna de Vries, where is my order? My email is anna@mail.example")
    create_correction(console.services.db, user_id=console.users["agent"], message_id=bot_id, reason="wrong_fact",
                      corrected_text="Hello Anna, call us on +31 6 98765432 and we will check it.")
    out = tmp_path / "corrections.jsonl"
    assert export("--out", str(out))[0] == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    text = record["customer_message"] + " " + record["corrected_reply"]
    assert "anna@mail.example" not in text and "98765432" not in text and "Anna" not in text, text
    assert "{{Customer Email}}" in record["customer_message"]
