"""The fine-tuning workflow as an operator runs it (QA training #1, #2, #5, #6, #8, #9, #11): evaluating an
adapter trained on imported tickets, the company name, interrupting and resuming, `output_root`,
no imported tickets, a bad `target_modules`, and an ACTIVE file naming a deleted adapter."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import cli_models
from knowledge.errors import InvalidInput
from models.config import TrainConfig
from models.tickets import Ticket, import_tickets

from .test_cli_models import Ctx as _CliCtx
from .test_cli_models import _adapter, _parse

OWN = [
    {"message": f"Where is my lamp number {i}?", "reply": f"It ships in {i} days.", "intent": "track_order"}
    for i in range(6)
]


class Ctx(_CliCtx):
    def __init__(self, tmp_path: Path, company_name: str = "Larkspur & Co.") -> None:
        super().__init__(tmp_path)
        self.settings.company_name = company_name


def _import_own(ctx: Ctx, tmp_path: Path) -> list[Ticket]:
    from models.tickets import stored_tickets

    path = tmp_path / "own.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in OWN), encoding="utf-8")
    with ctx.session() as s:
        import_tickets(s, path, "jsonl")
        s.commit()
        return stored_tickets(s)


def _db_metadata(val: list[Ticket], **config) -> dict:
    return {"id": "own-v1", "config": {"use_db_tickets": True, "bitext_csv": None, "sample_tickets": None,
                                       "company_name": "Brightnest", **config},
            "val_hashes": sorted(t.data_hash for t in val)}


# -- #1: eval of an adapter trained on imported tickets -------------------------------------------


def test_held_out_tickets_of_an_adapter_trained_on_imported_tickets_come_from_the_database(tmp_path):
    from models.evaluation import held_out_tickets

    ctx = Ctx(tmp_path)
    stored = _import_own(ctx, tmp_path)
    metadata = _db_metadata(stored[:2])
    with ctx.session() as s:
        held = held_out_tickets(metadata, shared_data_dir=tmp_path, limit=25, seed=7, session=s)
    assert {t.data_hash for t in held} == {t.data_hash for t in stored[:2]}
    # without the database, the reason is said (not "check the config's data paths")
    with pytest.raises(InvalidInput, match="imported into the database") as exc:
        held_out_tickets(metadata, shared_data_dir=tmp_path, limit=25, seed=7)
    assert exc.value.code == "no_held_out_tickets"
    # tickets deleted since: named as the cause
    with ctx.session() as s, pytest.raises(InvalidInput, match="none of them is in this database"):
        held_out_tickets(_db_metadata([Ticket("csv", "gone", "gone")]), shared_data_dir=tmp_path, limit=5, seed=7,
                         session=s)
    # an adapter that held nothing out
    with ctx.session() as s, pytest.raises(InvalidInput, match="held out no tickets"):
        held_out_tickets(_db_metadata([]), shared_data_dir=tmp_path, limit=5, seed=7, session=s)


def test_a_mixed_adapter_is_scored_on_the_companys_own_held_out_tickets_first(tmp_path):
    from models.evaluation import format_table, held_out_tickets, sources_summary

    ctx = Ctx(tmp_path)
    stored = _import_own(ctx, tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    rows = "".join(f'B,how do I track order {i}?,ORDER,track_order,"Use {{{{Order History}}}} {i}.",,\n'
                   for i in range(40))
    (shared / "bitext.csv").write_text("flags,instruction,category,intent,response,entity_type,entity_value\n"
                                       + rows, encoding="utf-8")
    metadata = _db_metadata(stored[:3], bitext_csv="bitext.csv", bitext_limit=10)
    with ctx.session() as s:
        held = held_out_tickets(metadata, shared_data_dir=shared, limit=8, seed=7, session=s)
    assert [t.source for t in held[:3]] == ["jsonl"] * 3 and {t.source for t in held[3:]} == {"bitext"}
    assert len(held) == 8
    counts = sources_summary(held)
    assert counts == {"jsonl": 3, "bitext": 5}
    table = format_table({"adapter_id": "mix", "n_tickets": 8, "by_source": counts,
                          "metrics": {"adapter": {}}})
    assert table.splitlines()[0] == ("adapter mix, 8 held-out tickets (3 of the company's own: jsonl 3; "
                                     "5 public: bitext 5)")


def test_evaluate_says_why_before_loading_a_model_when_the_database_is_not_given(tmp_path, monkeypatch):
    import models.base
    from models.evaluation import evaluate

    folder = _adapter(tmp_path / "adapters", "own-v1", _db_metadata([Ticket("csv", "a", "b")]))
    monkeypatch.setattr(models.base, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(InvalidInput, match="imported into the database"):
        evaluate(folder, data_dir=tmp_path)


def test_eval_reads_the_database_and_prompts_with_the_adapters_own_company(tmp_path, monkeypatch, capsys):
    """#1 and #2: `eval` gave "No training tickets found" and always prompted with "Larkspur & Co."."""
    import models.evaluation

    ctx = Ctx(tmp_path, company_name="Setting Co")
    stored = _import_own(ctx, tmp_path)
    _adapter(ctx.settings.user_adapters_dir, "own-v1", _db_metadata(stored[:2]))
    _adapter(ctx.settings.user_adapters_dir, "old-v1", {"config": {"sample_tickets": "x.jsonl"}})
    seen: list[dict] = []

    def fake_evaluate(path, **kwargs):
        tickets = []
        if kwargs["session"] is not None:
            tickets = models.evaluation.held_out_tickets(read_metadata(path), shared_data_dir=None, limit=5,
                                                         seed=7, session=kwargs["session"])
        seen.append({"company": kwargs["options"].company_name, "tickets": len(tickets)})
        return {"n": 0}

    from models.adapters import read_metadata

    monkeypatch.setattr(models.evaluation, "evaluate", fake_evaluate)
    monkeypatch.setattr(models.evaluation, "format_table", lambda report: "table")
    monkeypatch.setattr(cli_models, "_kb_slots", lambda ctx: None)
    for adapter in ("own-v1", "old-v1"):
        args = _parse(["eval", "--adapter", adapter, "--no-base", "--output", str(tmp_path / f"{adapter}.json")])
        assert args.handler(args, ctx) == 0
    assert seen == [{"company": "Brightnest", "tickets": 2}, {"company": "Setting Co", "tickets": 0}]


# -- #2: the company name a run trains with ------------------------------------------------------


def _fake_train(calls: list, tmp_path: Path):
    def fake_train(cfg, **kwargs):
        calls.append(cfg)
        return SimpleNamespace(adapter_id=cfg.version, adapter_dir=tmp_path / "out" / cfg.version, metrics={
            "steps": 1, "total_steps": 1, "val_loss": None, "base_val_loss": None, "tokens_per_s": 1.0,
            "wall_seconds": 1.0})

    return fake_train


def test_train_names_the_company_of_the_setting_unless_the_config_names_another(tmp_path, monkeypatch, capsys):
    import models.training

    ctx = Ctx(tmp_path, company_name="Brightnest")
    calls: list[TrainConfig] = []
    monkeypatch.setattr(models.training, "train", _fake_train(calls, tmp_path))
    custom = tmp_path / "custom.yaml"
    custom.write_text('company_name: "Custom Co"\nmax_steps: 1\n')
    copied = tmp_path / "copied.yaml"  # a copy of the shipped default config names the sample company
    copied.write_text('company_name: "Larkspur & Co."\nmax_steps: 1\n')
    runs = [
        (["--set", "version=a1"], "Brightnest"),  # the shipped default.yaml
        (["--config", str(copied), "--set", "version=a2"], "Brightnest"),
        (["--config", str(custom), "--set", "version=a3"], "Custom Co"),
        (["--config", str(custom), "--set", "version=a4", "--set", "company_name=Acme"], "Acme"),
        (["--set", "version=a5", "--set", "company_name=Larkspur & Co."], "Larkspur & Co."),
    ]
    for argv, want in runs:
        args = _parse(["train", *argv])
        assert args.handler(args, ctx) == 0
        assert calls[-1].company_name == want, argv
    assert "prompts name the company 'Brightnest' (from HYBRIDESK_COMPANY_NAME" in capsys.readouterr().err


# -- #6: output_root and --activate --------------------------------------------------------------


def test_activate_with_another_output_root_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import models.training

    ctx = Ctx(tmp_path)
    calls: list[TrainConfig] = []
    monkeypatch.setattr(models.training, "train", _fake_train(calls, tmp_path))
    other = tmp_path / "otherroot"
    args = _parse(["train", "--activate", "--set", "version=o1", "--set", f"output_root={other}"])
    with pytest.raises(InvalidInput, match="--activate cannot be used with output_root=") as exc:
        args.handler(args, ctx)
    assert exc.value.code == "bad_config" and calls == []
    args = _parse(["train", "--set", "version=o1", "--set", f"output_root={other}"])
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "adapters activate o1" in out and f"copy it into {ctx.settings.user_adapters_dir}" in out
    assert "activate it with:" not in out
    # the data dir's own adapters folder, named explicitly, is a root the bot knows
    monkeypatch.setattr(cli_models, "_registry", lambda ctx: SimpleNamespace(
        root_paths=lambda: [ctx.settings.user_adapters_dir], user_root=ctx.settings.user_adapters_dir,
        shipped_root=None, activate=lambda adapter_id: None, check_new_id=lambda adapter_id: None))
    args = _parse(["train", "--activate", "--set", "version=o2", "--set",
                   f"output_root={ctx.settings.user_adapters_dir}"])
    assert args.handler(args, ctx) == 0 and "o2 is now active" in capsys.readouterr().out


# -- #8: no imported tickets ----------------------------------------------------------------------


def test_train_on_an_empty_database_names_the_cause_before_the_model_loads(tmp_path, monkeypatch):
    import models.base
    from models.training import train

    ctx = Ctx(tmp_path)
    monkeypatch.setattr(models.base, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))
    cfg = TrainConfig(use_db_tickets=True, bitext_csv=None, sample_tickets=None, max_steps=1, version="e1")
    with ctx.session() as s, pytest.raises(InvalidInput, match="No tickets imported yet: run `hybridesk tickets "
                                                               "import") as exc:
        train(cfg, data_dir=tmp_path / "data", session=s, base_model_dir=tmp_path)
    assert exc.value.code == "no_data"


# -- #9: target_modules ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_bad_target_module_is_a_one_line_config_error_listing_the_valid_ones(base_model_dir, tmp_path):
    from models.training import train

    cfg = TrainConfig(target_modules=["q_proj", "foo_proj"], max_steps=1, version="t1", dtype="float32",
                      output_root=str(tmp_path / "adapters"), max_length=256)
    tickets = [Ticket("test", "Where is my parcel?", "It arrives tomorrow.", "track_order")] * 4
    with pytest.raises(InvalidInput, match="target_modules foo_proj is not a linear layer of the base model; "
                                           "valid names: .*q_proj") as exc:
        train(cfg, data_dir=tmp_path, base_model_dir=base_model_dir, tickets=tickets, progress=False)
    assert exc.value.code == "bad_config" and "\n" not in exc.value.message
    assert "down_proj" in exc.value.message and not (tmp_path / "adapters" / "t1").exists()


# -- #5: interrupting and resuming ----------------------------------------------------------------


def test_the_run_key_leaves_out_bookkeeping_keys():
    from models.training import run_key

    base = TrainConfig(max_steps=4)
    same = TrainConfig(max_steps=4, log_every=1, checkpoint_every=1, eval_every=2, num_threads=1,
                       release_memory_every=0, max_minutes=5, version="x", output_root="/elsewhere")
    assert run_key(base, "d") == run_key(same, "d")
    assert run_key(base, "d") != run_key(TrainConfig(max_steps=4, learning_rate=1e-4), "d")
    assert run_key(base, "d") != run_key(base, "other data")


def test_an_interrupt_before_the_first_checkpoint_says_nothing_was_kept(tmp_path):
    from models.training import interrupt_message

    msg = interrupt_message(tmp_path / ".runs" / "abc", None, 7, TrainConfig())
    assert "step 7, before the first checkpoint (checkpoint_every=50)" in msg and "step 0" in msg


def interruptible_run(tmp_path: Path, version: str) -> tuple[list[Ticket], TrainConfig]:
    """Six tickets and a three-step config that checkpoints every step: a run to interrupt at its third step."""
    tickets = [Ticket("test", f"Where is parcel {i}?", f"It arrives in {i} days.", "track_order") for i in range(6)]
    cfg = TrainConfig(lora_r=2, lora_alpha=4, target_modules=["q_proj"], batch_size=2, max_steps=3,
                      val_fraction=0.0, dtype="float32", max_length=256, output_root=str(tmp_path / "adapters"),
                      version=version, checkpoint_every=1, warmup_ratio=0.0)
    return tickets, cfg


@pytest.mark.slow
def test_ctrl_c_says_where_the_checkpoint_is_and_the_same_command_resumes(base_model_dir, tmp_path, monkeypatch,
                                                                           capsys):
    import models.training as training

    tickets, cfg = interruptible_run(tmp_path, "r1")
    real_loss, calls = training.reply_loss, []

    def ctrl_c_on_third_step(model, batch, **options):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(model, batch, **options)

    monkeypatch.setattr(training, "reply_loss", ctrl_c_on_third_step)
    with pytest.raises(training.TrainingInterrupted) as exc:
        training.train(cfg, data_dir=tmp_path, base_model_dir=base_model_dir, tickets=tickets, progress=False)
    run_dir = next((tmp_path / "adapters" / ".runs").iterdir())
    assert f"the checkpoint at step 2 is kept in {run_dir}" in exc.value.message
    assert "Run the same command again to resume" in exc.value.message
    assert isinstance(exc.value, KeyboardInterrupt)  # `hybridesk` still exits with 130

    # a bookkeeping change (log_every) still resumes, and the bar mode says so in one line
    monkeypatch.setattr(training, "reply_loss", real_loss)
    capsys.readouterr()
    from dataclasses import replace

    result = training.train(replace(cfg, log_every=1), data_dir=tmp_path, base_model_dir=base_model_dir,
                            tickets=tickets, progress=True)
    assert f"resuming {run_dir} at step 2" in capsys.readouterr().err
    assert result.metrics["steps"] == 3 and len(result.losses) == 3


def test_train_prints_the_interrupt_message_and_lists_and_cleans_runs(tmp_path, monkeypatch, capsys):
    import models.training

    ctx = Ctx(tmp_path)

    def interrupted(cfg, **kwargs):
        raise models.training.TrainingInterrupted("training interrupted at step 3; the checkpoint at step 2 ...")

    monkeypatch.setattr(models.training, "train", interrupted)
    args = _parse(["train", "--set", "version=i1"])
    with pytest.raises(KeyboardInterrupt):
        args.handler(args, ctx)
    assert "the checkpoint at step 2" in capsys.readouterr().err

    run = ctx.settings.user_adapters_dir / ".runs" / "abc123"
    run.mkdir(parents=True)
    (run / "trainer_state.pt").write_bytes(b"x" * 2_000_000)
    args = _parse(["train", "--list-runs"])
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "abc123" in out and "2.0 MB" in out and run.exists()
    args = _parse(["train", "--clean-runs"])
    assert args.handler(args, ctx) == 0
    assert "deleted" in capsys.readouterr().out and not run.exists()
    assert args.handler(args, ctx) == 0 and "no unfinished runs" in capsys.readouterr().out


# -- #11: ACTIVE names an adapter that is gone -----------------------------------------------------


def test_an_active_file_naming_a_missing_adapter_is_reported_and_logged(tmp_path, capsys, caplog):
    from models.adapters import AdapterRegistry

    ctx = Ctx(tmp_path)
    _adapter(ctx.settings.adapters_dir, "default-v1", {"created_at": "2026-01-01"})
    (ctx.settings.adapters_dir / "ACTIVE").write_text("default-v1\n")
    ctx.settings.user_adapters_dir.mkdir(parents=True)
    (ctx.settings.user_adapters_dir / "ACTIVE").write_text("brightnest-t1\n")
    args = _parse(["adapters", "list"])
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "ACTIVE names brightnest-t1, which is missing; using default-v1" in out
    assert "* default-v1" in out
    registry = AdapterRegistry(ctx.settings.user_adapters_dir, ctx.settings.adapters_dir)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.adapters"):
        (ctx.settings.user_adapters_dir / "ACTIVE").write_text("gone-v2\n")
        assert registry.active_id() == "default-v1"
        assert registry.active_id() == "default-v1"
    warnings = [r.getMessage() for r in caplog.records if "gone-v2" in r.getMessage()]
    assert len(warnings) == 1 and "missing; falling back to default-v1" in warnings[0]


def test_train_cli_refuses_an_empty_database_before_anything_loads(tmp_path, monkeypatch):
    import models.training

    ctx = Ctx(tmp_path)
    monkeypatch.setattr(models.training, "train", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(cli_models, "_tone_fn", lambda ctx: pytest.fail("tone detector loaded"))
    args = _parse(["train", "--set", "use_db_tickets=true", "--set", "bitext_csv=null", "--set",
                   "sample_tickets=null", "--set", "version=e2"])
    with pytest.raises(InvalidInput, match="No tickets imported yet") as exc:
        args.handler(args, ctx)
    assert exc.value.code == "no_data"


def test_train_says_when_its_val_loss_rests_on_too_few_held_out_examples(tmp_path, monkeypatch, capsys):
    # operator QA #14: 12 tickets x val_fraction 0.05 held out one; "val loss 3.535" read like a verdict
    import models.training

    ctx = Ctx(tmp_path)
    for held_out, noted in ((1, True), (cli_models.FEW_HELD_OUT, False)):
        def fake(cfg, held_out=held_out, **kwargs):
            return SimpleNamespace(adapter_id=cfg.version, adapter_dir=tmp_path / "out" / cfg.version, metrics={
                "steps": 1, "total_steps": 1, "val_loss": 3.5, "base_val_loss": 3.6, "tokens_per_s": 1.0,
                "wall_seconds": 1.0, "examples_val": held_out})

        monkeypatch.setattr(models.training, "train", fake)
        args = _parse(["train", "--set", f"version=v{held_out}"])
        assert args.handler(args, ctx) == 0
        out = capsys.readouterr().out
        assert ("over 1 held-out example only" in out) is noted, out
