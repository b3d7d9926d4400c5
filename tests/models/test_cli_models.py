"""`hybridesk train | adapters | eval | tickets import` wiring, with a minimal context."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot import cli_models
from knowledge.errors import InvalidInput, NotFound
from models.db import ImportedTicket, ModelsBase


class Ctx:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = SimpleNamespace(
            data_dir=tmp_path / "data",
            shared_data_dir=tmp_path / "shared",
            base_model_dir=None,
            adapters_dir=tmp_path / "shipped",
            user_adapters_dir=tmp_path / "data" / "adapters",
        )
        self.engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        ModelsBase.metadata.create_all(self.engine)

    def session(self) -> Session:
        return Session(self.engine)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybridesk")
    sub = parser.add_subparsers(dest="command")
    cli_models.register(sub)
    return parser.parse_args(argv)


def test_adapters_commands(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    folder = ctx.settings.adapters_dir / "default-v1"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    (folder / "metadata.json").write_text(
        json.dumps({"created_at": "2026-01-01", "metrics": {"val_loss": 1.5}})
    )
    args = _parse(["adapters", "activate", "default-v1"])
    assert args.handler(args, ctx) == 0
    args = _parse(["adapters", "list"])
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "* default-v1" in out and "1.500" in out
    args = _parse(["adapters", "show", "nope"])
    with pytest.raises(NotFound):
        args.handler(args, ctx)


def test_tickets_import_reports_bad_rows(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    path = tmp_path / "export.jsonl"
    path.write_text(
        json.dumps({"question": "Where is order 123456789?", "answer": "See {{Order History}}."})
        + "\n{broken\n",
        encoding="utf-8",
    )
    args = _parse(
        ["tickets", "import", str(path), "--map", "question=customer_message", "--map", "answer=agent_reply"]
    )
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "1 imported" in out and "line 2: invalid JSON" in out
    with ctx.session() as s:
        row = s.scalars(sa.select(ImportedTicket)).one()
    assert row.customer_message == "Where is order {{Order Number}}?" and row.source == "jsonl"
    args = _parse(["tickets", "import", str(path), "--map", "broken"])
    with pytest.raises(InvalidInput, match="COLUMN=FIELD"):
        args.handler(args, ctx)


def test_train_rejects_bad_overrides(tmp_path):
    args = _parse(["train", "--set", "lora_r=-1"])
    with pytest.raises(InvalidInput, match="lora_r"):
        args.handler(args, Ctx(tmp_path))


def test_tickets_import_of_a_missing_csv_says_so(tmp_path):
    ctx = Ctx(tmp_path)
    args = _parse(["tickets", "import", str(tmp_path / "nope.csv")])
    with pytest.raises(NotFound, match="does not exist"):
        args.handler(args, ctx)


def test_adapters_list_says_what_is_wrong_with_a_broken_folder(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    folder = ctx.settings.user_adapters_dir / "odd-v1"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "metadata.json").write_text(json.dumps({"metrics": 5}))
    args = _parse(["adapters", "list"])
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "odd-v1" in out and "! the weights file adapter_model.safetensors is missing" in out
    args = _parse(["adapters", "show", "../data/adapters/odd-v1"])
    with pytest.raises(InvalidInput, match="not an adapter id"):
        args.handler(args, ctx)


def test_eval_checks_its_arguments_before_generating(tmp_path, monkeypatch, capsys):
    import models.evaluation

    ctx = Ctx(tmp_path)
    folder = ctx.settings.adapters_dir / "default-v1"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    calls = []
    monkeypatch.setattr(models.evaluation, "evaluate", lambda *a, **k: calls.append(k) or {"n": 0})
    monkeypatch.setattr(models.evaluation, "format_table", lambda report: "table")
    for bad in (["--limit", "0"], ["--limit", "-1"], ["--max-new-tokens", "0"]):
        with pytest.raises(SystemExit):
            _parse(["eval", "--adapter", "default-v1", *bad])
        assert "at least 1" in capsys.readouterr().err
    args = _parse(["eval", "--adapter", "default-v1", "--output", str(tmp_path)])
    with pytest.raises(InvalidInput, match="is a directory"):
        args.handler(args, ctx)
    args = _parse(["eval", "--adapter", "default-v1", "--same-tickets-as", "../x"])
    with pytest.raises(InvalidInput, match="not an adapter id"):
        args.handler(args, ctx)
    assert calls == []  # nothing was generated for a run that could not be reported
    args = _parse(["eval", "--adapter", "default-v1", "--output", str(tmp_path / "r" / "report.json")])
    assert args.handler(args, ctx) == 0 and len(calls) == 1
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == {"n": 0}
