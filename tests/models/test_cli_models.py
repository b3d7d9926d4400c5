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


def _adapter(root: Path, name: str, metadata: dict | None = None) -> Path:
    """A small adapter folder that loads: a LoRA config and a real safetensors file."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = root / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((2, 8), np.float32)},
              str(folder / "adapter_model.safetensors"))
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybridesk")
    sub = parser.add_subparsers(dest="command")
    cli_models.register(sub)
    return parser.parse_args(argv)


def test_adapters_commands(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    _adapter(ctx.settings.adapters_dir, "default-v1", {"created_at": "2026-01-01", "metrics": {"val_loss": 1.5}})
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
    loaded: list[bool] = []

    class NoModels(Ctx):
        @property
        def services(self):  # CLI QA B13: the tone model loaded (12 s) before the path was checked
            loaded.append(True)
            raise RuntimeError("no models here")

    ctx = NoModels(tmp_path)
    args = _parse(["tickets", "import", str(tmp_path / "nope.csv")])
    with pytest.raises(NotFound, match="does not exist"):
        args.handler(args, ctx)
    assert not loaded


def test_adapters_list_says_what_is_wrong_with_a_broken_folder(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    folder = _adapter(ctx.settings.user_adapters_dir, "odd-v1", {"metrics": 5})
    (folder / "adapter_model.safetensors").unlink()
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
    _adapter(ctx.settings.adapters_dir, "default-v1")
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


def _truncate_weights(folder: Path) -> None:
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])


def test_train_refuses_a_taken_id_or_a_damaged_parent_before_any_model_loads(tmp_path, monkeypatch, capsys):
    """A2: `train --set version=larkspur-v8` replaced (or, from the user root, shadowed) the active shipped
    adapter; a run with an id of the user's replaced it. A12: a truncated init_adapter was a traceback
    after the base model had loaded. Both are refused first; the id is looked up in HYBRIDESK_ADAPTERS_DIR."""
    import models.training
    from knowledge.errors import Conflict

    ctx = Ctx(tmp_path)
    _adapter(ctx.settings.adapters_dir, "default-v1")
    (ctx.settings.adapters_dir / "ACTIVE").write_text("default-v1\n")
    _adapter(ctx.settings.user_adapters_dir, "mine-v1")
    _truncate_weights(_adapter(ctx.settings.adapters_dir, "cut-v1"))
    calls: list[dict] = []

    def fake_train(cfg, **kwargs):
        calls.append({"cfg": cfg, **kwargs})
        return SimpleNamespace(adapter_id=cfg.version, adapter_dir=tmp_path / cfg.version, metrics={
            "steps": 1, "total_steps": 1, "val_loss": None, "base_val_loss": None, "tokens_per_s": 1.0,
            "wall_seconds": 1.0})

    monkeypatch.setattr(models.training, "train", fake_train)
    for taken, where in (("default-v1", "shipped"), ("mine-v1", "user")):
        args = _parse(["train", "--set", f"version={taken}", "--set", "max_steps=1"])
        with pytest.raises(Conflict, match=f"already exists \\({where}: ") as exc:
            args.handler(args, ctx)
        assert exc.value.code == "adapter_exists"
    for parent in ("cut-v1", str(ctx.settings.adapters_dir / "cut-v1")):
        args = _parse(["train", "--set", "version=new-v1", "--set", f"init_adapter={parent}"])
        with pytest.raises(InvalidInput, match="adapter_model.safetensors is damaged") as exc:
            args.handler(args, ctx)
        assert exc.value.code == "broken_adapter"
    assert calls == []
    args = _parse(["train", "--set", "version=new-v1", "--set", "init_adapter=default-v1"])
    assert args.handler(args, ctx) == 0
    assert calls[0]["shipped_root"] == ctx.settings.adapters_dir  # B11: the same adapters `adapters list` shows
    assert "adapter new-v1 saved" in capsys.readouterr().out


def test_adapters_list_marks_damaged_and_shadowing_adapters(tmp_path, capsys):
    """A13: truncated weights and half-copied folders were listed as sound, or not at all."""
    ctx = Ctx(tmp_path)
    _adapter(ctx.settings.adapters_dir, "default-v1", {"created_at": "2026-01-02"})
    _truncate_weights(_adapter(ctx.settings.adapters_dir, "cut-v1", {"created_at": "2026-01-01"}))
    (ctx.settings.adapters_dir / "half-copied").mkdir()
    _adapter(ctx.settings.user_adapters_dir, "default-v1", {"created_at": "2026-01-03"})
    args = _parse(["adapters", "list"])
    assert args.handler(args, ctx) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(i for i, line in enumerate(lines) if "cut-v1" in line)
    assert lines[row].endswith("DAMAGED") and "adapter_model.safetensors is damaged" in lines[row + 1]
    row = next(i for i, line in enumerate(lines) if "half-copied" in line)
    assert lines[row].endswith("DAMAGED") and "adapter_config.json is missing" in lines[row + 1]
    row = next(i for i, line in enumerate(lines) if "default-v1" in line)
    assert "user" in lines[row] and "shadows the shipped adapter" in lines[row + 1]
    args = _parse(["adapters", "list", "--json"])
    assert args.handler(args, ctx) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert "damaged" in rows["cut-v1"]["problem"] and "missing" in rows["half-copied"]["problem"]
    args = _parse(["adapters", "activate", "cut-v1"])
    with pytest.raises(InvalidInput, match="damaged"):
        args.handler(args, ctx)


def test_eval_refuses_a_damaged_adapter_before_generating(tmp_path, monkeypatch):
    import models.evaluation

    ctx = Ctx(tmp_path)
    _truncate_weights(_adapter(ctx.settings.adapters_dir, "cut-v1"))
    monkeypatch.setattr(models.evaluation, "evaluate", lambda *a, **k: pytest.fail("generated for a broken adapter"))
    args = _parse(["eval", "--adapter", "cut-v1", "--output", str(tmp_path / "r.json")])
    with pytest.raises(InvalidInput, match="cannot be evaluated: the weights file .* is damaged") as exc:
        args.handler(args, ctx)
    assert exc.value.code == "broken_adapter"


def test_eval_reports_the_slots_the_kb_resolves(tmp_path, monkeypatch, capsys):
    """A9: `_kb_slots` asked the knowledge service for methods it does not have, so "slots the KB
    resolves" was always empty; it reads the facts in force, whose placeholders the guardrails fill."""
    from hashing_embedding import HashingEmbedding

    import models.evaluation
    from knowledge.service import KnowledgeService

    ctx = Ctx(tmp_path)
    _adapter(ctx.settings.adapters_dir, "default-v1")
    kb = KnowledgeService(ctx.engine, index_dir=tmp_path / "index", create_tables=True,
                          embed_model=HashingEmbedding(64, "hashing-test-embedding"))
    kb.import_bytes(b"---\nid: returns\ntitle: Returns\neffective_from: 2026-01-01\nfacts:\n"
                    b"  - name: return_window_days\n    value: '30'\n    unit: days\n"
                    b"    placeholders: [Return Window]\n---\n# Returns\n\nYou have 30 days to return an item.\n",
                    "returns.md", author="test", publish=True)
    ctx.knowledge = lambda: kb
    seen: list = []
    monkeypatch.setattr(models.evaluation, "evaluate", lambda *a, **k: seen.append(k["options"]) or {"n": 0})
    monkeypatch.setattr(models.evaluation, "format_table", lambda report: "table")
    args = _parse(["eval", "--adapter", "default-v1", "--no-base", "--output", str(tmp_path / "r.json")])
    assert args.handler(args, ctx) == 0
    slots = seen[0].resolvable_slots
    assert slots is not None and {"Return Window", "return_window_days", "Return Window Days"} <= set(slots)


def test_the_slot_share_matches_as_the_kb_does_and_the_header_says_what_was_compared():
    from models.evaluation import EvalOptions, _score, format_table, slot_key

    assert slot_key("{{ Return_Window }}") == slot_key("return window") == slot_key("Return-Window")
    opts = EvalOptions(resolvable_slots=["Return Window"])

    class Embedder:
        def encode(self, texts, normalize_embeddings=True):
            return [[1.0, 0.0] for _ in texts]

    from models.tickets import Ticket

    tickets = [Ticket("t", "How long?", "You have {{Return Window}}.", "returns")]
    gens = [{"text": "You have {{return window}} and {{Website Name}}.", "cut": False, "tokens": 9}]
    metrics = _score(gens, tickets, ["prompt"], [set()], Embedder(), False, opts, None)
    assert metrics["slot_resolvable_share"] == 0.5
    report = {"adapter_id": "a", "n_tickets": 1, "metrics": {"adapter": metrics}}
    assert format_table(report).splitlines()[0] == "adapter a, 1 held-out tickets"  # --no-base: no "vs base"
    report["metrics"]["base"] = metrics
    assert format_table(report).splitlines()[0] == "adapter a vs base, 1 held-out tickets"


def test_train_no_progress_shows_the_training_log_lines(tmp_path, monkeypatch):
    """CLI QA C1: `--no-progress` promised log lines instead of the bar, but the loop's INFO lines were
    below the CLI's WARNING level: a long run was silent until it ended."""
    import logging

    import models.training

    ctx = Ctx(tmp_path)
    _adapter(ctx.settings.adapters_dir, "default-v1")
    seen: list[bool] = []

    def fake_train(cfg, **kwargs):
        seen.append(logging.getLogger("models.training").isEnabledFor(logging.INFO))
        return SimpleNamespace(adapter_id=cfg.version, adapter_dir=tmp_path / cfg.version, metrics={
            "steps": 1, "total_steps": 1, "val_loss": None, "base_val_loss": None, "tokens_per_s": 1.0,
            "wall_seconds": 1.0})

    monkeypatch.setattr(models.training, "train", fake_train)
    trainer_log = logging.getLogger("models.training")
    monkeypatch.setattr(trainer_log, "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)  # the CLI's default
    args = _parse(["train", "--set", "version=quiet-v1", "--set", "max_steps=1"])
    assert args.handler(args, ctx) == 0
    args = _parse(["train", "--no-progress", "--set", "version=loud-v1", "--set", "max_steps=1"])
    assert args.handler(args, ctx) == 0
    assert seen == [False, True]
