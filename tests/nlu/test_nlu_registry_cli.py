"""Versioned models: list / activate / switch without restart, and the `hybridesk nlu` commands."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.conversation.nlu import NLU, NLURegistry
from knowledge.errors import InvalidInput, NotFound, Unavailable

pytestmark = pytest.mark.slow


def _store(model: NLU, root: Path, version: str) -> None:
    model.metadata = {**model.metadata, "version": version}
    model.save(root / version)


def test_registry_activate_and_switch(nlu_model: NLU, tmp_path: Path) -> None:
    root = tmp_path / "nlu"
    registry = NLURegistry(root, check_interval=0.0)
    assert not registry.has_active() and registry.list() == []
    with pytest.raises(Unavailable):
        registry.current()
    original = nlu_model.metadata
    try:
        _store(nlu_model, root, "v1")
        _store(nlu_model, root, "v2")
    finally:
        nlu_model.metadata = original
    assert [m["version"] for m in registry.list()] == ["v1", "v2"]
    assert registry.activate("v1").version == "v1"
    assert registry.current().version == "v1"
    assert [m["active"] for m in registry.list()] == [True, False]

    # Another process (the CLI) moves the pointer: the running registry follows, no restart.
    other = NLURegistry(root)
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                assert registry.current().predict("where is my order").version in ("v1", "v2")
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)
                return

    workers = [threading.Thread(target=serve) for _ in range(2)]
    for w in workers:
        w.start()
    other.activate("v2")
    seen = registry.current().version
    stop.set()
    for w in workers:
        w.join(timeout=30)
    assert not errors
    assert seen == "v2"
    assert registry.active_version() == "v2"

    with pytest.raises(NotFound):
        registry.activate("v9")
    with pytest.raises(InvalidInput):
        registry.activate("../escape")
    with pytest.raises(InvalidInput):
        registry.delete("v2")
    registry.delete("v1")
    assert registry.versions() == ["v2"]
    (root / "active").write_text("ghost")  # a pointer to nothing: keep serving what is loaded
    assert registry.current().version == "v2"


def _run(argv: list[str], ctx) -> int:
    from bot import cli_nlu

    parser = argparse.ArgumentParser()
    cli_nlu.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args, ctx)


def test_cli_train_list_eval_activate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tickets = tmp_path / "tickets.jsonl"
    rows = [
        ("Where is my order?", "track_order"), ("Can you track my parcel", "track_order"),
        ("my package has not arrived, where is it", "track_order"), ("order status please", "track_order"),
        ("I want a refund", "get_refund"), ("give me my money back", "get_refund"),
        ("how do I get reimbursed for this", "get_refund"), ("refund the broken chair", "get_refund"),
        ("I forgot my password", "recover_password"), ("reset my password", "recover_password"),
        ("can't log in, lost password", "recover_password"), ("password recovery", "recover_password"),
    ]
    category = {"track_order": "ORDER", "get_refund": "REFUND", "recover_password": "ACCOUNT"}
    tickets.write_text("\n".join(json.dumps({"customer_message": t, "intent": y, "category": category[y]})
                                 for t, y in rows))
    ctx = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path / "var", shared_data_dir=tmp_path / "none",
                                                   embedding_model_dir=None, tickets_sample_path=tickets))
    assert _run(["nlu", "train", "--tickets", str(tickets), "--no-public"], ctx) == 0
    assert _run(["nlu", "list"], ctx) == 0
    out = capsys.readouterr().out
    assert "* nlu-" in out
    assert _run(["nlu", "eval", "--tickets", str(tickets)], ctx) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "track_order" in out and "recall" in out
    version = NLURegistry(tmp_path / "var" / "nlu").active_version()
    # the tickets' categories say which intents form a family; only the REFUND family by default
    meta = next(m for m in NLURegistry(tmp_path / "var" / "nlu").list() if m["version"] == version)
    assert meta["intent_families"] == {"get_refund": "REFUND"}
    assert _run(["nlu", "activate", version], ctx) == 0
    with pytest.raises(NotFound):
        _run(["nlu", "activate", "nope"], ctx)
    with pytest.raises(NotFound, match=f"known: {version}") as unknown:  # (CLI QA B9: it said "run nlu train")
        _run(["nlu", "eval", "--version", "nope", "--tickets", str(tickets)], ctx)
    assert unknown.value.code == "nlu_version_not_found"


def _broken_versions(root: Path) -> None:
    """Version folders damaged in the ways a disk or a hand edit damages them."""
    for name, meta in {"broken-meta": "{oops", "list-meta": "[1]", "no-joblib": '{"format": 3}',
                       "bad-joblib": '{"format": 3}'}.items():
        (root / name).mkdir(parents=True)
        (root / name / "metadata.json").write_text(meta, encoding="utf-8")
    (root / "bad-joblib" / "intent.joblib").write_bytes(b"garbage")


def test_broken_versions_are_named_by_the_cli_and_never_go_live(nlu_model: NLU, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from knowledge.errors import ConfigurationError

    root = tmp_path / "var" / "nlu"
    original = nlu_model.metadata
    try:
        _store(nlu_model, root, "v1")
    finally:
        nlu_model.metadata = original
    _broken_versions(root)
    registry = NLURegistry(root, check_interval=0.0)
    registry.activate("v1")
    ctx = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path / "var", embedding_model_dir=None))
    assert _run(["nlu", "list"], ctx) == 0
    out = capsys.readouterr().out
    assert "broken-meta  broken: metadata.json cannot be read" in out
    assert "list-meta  broken: metadata.json is not a JSON object" in out and "* v1" in out
    for version, reason in [("broken-meta", "metadata.json cannot be read"),
                            ("list-meta", "not a JSON object"), ("no-joblib", "intent.joblib"),
                            ("bad-joblib", "is broken")]:
        with pytest.raises(ConfigurationError, match=reason) as exc:
            _run(["nlu", "activate", version], ctx)
        assert exc.value.code == "nlu_model_broken"
    assert registry.active_version() == "v1"
    for version in ("list-meta", "bad-joblib"):  # the pointer moved by hand: keep serving v1
        (root / "active").write_text(version)
        assert registry.current().version == "v1"


def test_eval_on_the_models_own_training_data_says_so(nlu_model: NLU, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A10: `nlu eval` without --tickets scored the default model on the sample tickets it was trained
    on (accuracy 0.997 against 0.982 held out), without a word."""
    tickets = Path(__file__).resolve().parents[2] / "models" / "sample" / "tickets.jsonl"  # nlu_model's source

    root = tmp_path / "var" / "nlu"
    original = nlu_model.metadata
    try:
        nlu_model.metadata = {**original, "sources": {str(tickets): 64},
                              "metrics": {"intent": {"holdout_accuracy": 0.875}}}
        _store(nlu_model, root, "v1")
    finally:
        nlu_model.metadata = original
    NLURegistry(root).activate("v1")
    ctx = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path / "var", embedding_model_dir=None,
                                                   tickets_sample_path=tickets, shared_data_dir=tmp_path))
    assert _run(["nlu", "eval", "--json"], ctx) == 0
    captured = capsys.readouterr()
    assert "warning: model v1 was trained on" in captured.err and str(tickets) in captured.err
    assert "held-out accuracy, measured when it was trained, is 0.875" in captured.err
    assert json.loads(captured.out)["trained_on_eval_data"] is True
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text("\n".join(json.dumps({"customer_message": t, "intent": y}) for t, y in [
        ("where has my parcel got to", "track_order"), ("please cancel the order I placed", "cancel_order")]))
    assert _run(["nlu", "eval", "--tickets", str(unseen)], ctx) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "accuracy" in captured.out
