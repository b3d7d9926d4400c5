"""`hybridesk kb ...` handlers against a real service."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from kb_helpers import load_small_kb

from bot.cli_kb import register
from knowledge.errors import Conflict, InvalidInput, NotFound
from knowledge.ingest import FactSpec

pytestmark = pytest.mark.slow


class Ctx:
    def __init__(self, service) -> None:
        self.service = service

    def knowledge(self):
        return self.service


@pytest.fixture
def run(make_service, sqlite_url: str, capsys: pytest.CaptureFixture[str]):
    svc = make_service(sqlite_url)
    parser = argparse.ArgumentParser(prog="hybridesk")
    register(parser.add_subparsers(dest="command"))

    def _run(*argv: str) -> str:
        args = parser.parse_args(["kb", *argv])
        assert args.handler(args, Ctx(svc)) in (0, None)
        return capsys.readouterr().out

    _run.svc = svc  # type: ignore[attr-defined]
    return _run


def test_kb_commands(run, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "hours.md").write_text(
        "---\nid: opening-hours\ntitle: Opening hours\neffective_from: 2026-01-01\nfacts:\n"
        "  - name: support_hours\n    value: 9am-5pm\n    placeholders: [Customer Support Hours]\n---\n"
        "# Opening hours\n\n## Support\nWe answer 9am-5pm.\n",
        encoding="utf-8",
    )
    (folder / "bad.md").write_bytes(b"\x00")
    out = run("import", str(folder), "--author", "cli-test")
    assert "1 imported" in out and "skipped   bad.md" in out
    load_small_kb(run.svc)
    assert "opening-hours" in run("list") and "returns-policy" in run("list")
    assert "We answer 9am-5pm." in run("show", "opening-hours")
    assert "support_hours" in run("facts")
    out = run("search", "when can I call support", "-k", "2")
    assert out.startswith("1. [")
    run.svc.add_revision(
        "opening-hours", "# Opening hours\n\n## Support\nWe answer from 8am to 6pm (8am-6pm).", author="x",
        facts=[FactSpec("support_hours", "8am-6pm", None, None, ["Customer Support Hours"])],
    )
    assert "r2" in run("history", "opening-hours")
    assert "+We answer from 8am to 6pm (8am-6pm)." in run("diff", "opening-hours", "1", "2")
    assert "published opening-hours r2" in run("publish", "opening-hours", "--at", "2030-01-01")
    assert "9am-5pm" in run("facts")
    assert "8am to 6pm" in run("search", "support hours", "--at", "2030-02-01")
    # a retirement scheduled for later can be taken back before it takes effect
    out = run("retire", "opening-hours", "--at", "2031-01-01")
    assert "from 2031-01-01 00:00 UTC" in out and "--cancel" in out
    assert "opening-hours" not in run("search", "support hours", "--at", "2031-02-01", "-k", "3")
    assert "retirement of opening-hours cancelled" in run("retire", "opening-hours", "--cancel")
    assert "8am to 6pm" in run("search", "support hours", "--at", "2031-02-01")
    with pytest.raises(Conflict):  # nothing scheduled any more
        run("retire", "opening-hours", "--cancel")
    with pytest.raises(InvalidInput):
        run("retire", "opening-hours", "--cancel", "--at", "2031-01-01")
    assert "retired opening-hours" in run("retire", "opening-hours")
    assert "opening-hours" not in run("search", "support hours", "-k", "3")


def test_kb_import_names_each_file_kept_as_a_draft_and_why(run, tmp_path: Path) -> None:
    # QA: "0 imported, ... 1 kept as draft" named neither the file nor the reason
    (tmp_path / "hours.md").write_text(
        "---\nid: opening-hours\ntitle: Opening hours\nfacts:\n  - name: support_hours\n    value: 9am-5pm\n---\n"
        "# Opening hours\n\nWe answer 8am-6pm.\n", encoding="utf-8")
    out = run("import", str(tmp_path / "hours.md"))
    assert "1 kept as draft" in out
    assert "draft     hours.md: saved as a draft, not published: the text does not state support_hours (9am-5pm)" in out


def test_kb_import_of_an_empty_folder_says_so(run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="No documents found") as exc:
        run("import", str(tmp_path / "empty"))
    assert exc.value.code == "no_documents"


def test_kb_command_errors(run) -> None:
    with pytest.raises(NotFound):
        run("show", "no-such-doc")
    with pytest.raises(InvalidInput):
        run("facts", "--at", "yesterday-ish")


@pytest.mark.parametrize("k", ["0", "-5", "two"])
def test_kb_search_refuses_a_count_below_one(k: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="hybridesk")
    register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["kb", "search", "returns", "-k", k])
    assert exc.value.code == 2
    assert "argument -k" in capsys.readouterr().err


def test_kb_list_and_history_say_scheduled_superseded_and_retiring(run, tmp_path: Path) -> None:
    # QA: a revision scheduled for later and a document with a retirement to come read "published" and
    # "retired"; every replaced revision read "published"
    (tmp_path / "hours.md").write_text(
        "---\nid: opening-hours\ntitle: Opening hours\n---\n# Opening hours\n\nWe answer 9am-5pm.\n", encoding="utf-8")
    run("import", str(tmp_path / "hours.md"))
    run.svc.add_revision("opening-hours", "# Opening hours\n\nWe answer 8am-6pm.", author="x", publish=True)
    run.svc.add_revision("opening-hours", "# Opening hours\n\nWe answer 7am-7pm.", author="x")
    run("publish", "opening-hours", "--at", "2031-01-01")
    row = next(line for line in run("list").splitlines() if line.startswith("opening-hours"))
    assert row.split()[1:4] == ["r3", "scheduled", "r2"], row
    history = run("history", "opening-hours").splitlines()
    assert [line.split()[1] for line in history] == ["superseded", "published", "scheduled"], history
    out = run("retire", "opening-hours", "--at", "2030-06-01")
    assert out.startswith("retiring opening-hours")
    assert next(line for line in run("history", "opening-hours").splitlines()
                if line.startswith("r2")).split()[1] == "retiring"
