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


#: three intents of four tickets each
ROWS = [
    ("Where is my order?", "track_order"), ("Can you track my parcel", "track_order"),
    ("my package has not arrived, where is it", "track_order"), ("order status please", "track_order"),
    ("I want a refund", "get_refund"), ("give me my money back", "get_refund"),
    ("how do I get reimbursed for this", "get_refund"), ("refund the broken chair", "get_refund"),
    ("I forgot my password", "recover_password"), ("reset my password", "recover_password"),
    ("can't log in, lost password", "recover_password"), ("password recovery", "recover_password"),
]


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
    rows = ROWS
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


# --- operator QA: `nlu train` / `nlu eval` -------------------------------------------------------------



def _tickets(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"customer_message": t, "intent": y}) + "\n" for t, y in rows), encoding="utf-8")
    return path


def _ctx(tmp_path: Path, **settings) -> SimpleNamespace:
    values = {"data_dir": tmp_path / "var", "shared_data_dir": tmp_path / "none", "embedding_model_dir": None,
              "tickets_sample_path": tmp_path / "none.jsonl", **settings}
    return SimpleNamespace(settings=SimpleNamespace(**values))


def _active_meta(tmp_path: Path) -> dict:
    registry = NLURegistry(tmp_path / "var" / "nlu")
    return next(m for m in registry.list() if m["active"])


def test_nlu_train_honours_the_public_data_setting_and_the_flags_override_it(tmp_path, capsys):
    """QA: `nlu train` ignored HYBRIDESK_NLU_USE_PUBLIC_DATA=false (only --no-public kept the public data out)."""
    tickets = _tickets(tmp_path / "t.jsonl")
    shared = tmp_path / "shared"  # a tiny stand-in for the public tickets (no emotion data: tone is left alone)
    bitext = shared / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    bitext.parent.mkdir(parents=True)
    bitext.write_text("instruction,intent,response\n" + "".join(
        f"what is the weather like in town {i},public_weather,Sunny.\n" for i in range(6)), encoding="utf-8")
    off = _ctx(tmp_path, shared_data_dir=shared, nlu_use_public_data=False)
    assert _run(["nlu", "train", "--tickets", str(tickets)], off) == 0
    out = capsys.readouterr().out
    assert "only (HYBRIDESK_NLU_USE_PUBLIC_DATA=false; --public adds the public data)" in out
    assert "public_weather" not in _active_meta(tmp_path)["intents"]
    assert _run(["nlu", "train", "--tickets", str(tickets), "--public"], off) == 0
    assert f"(+ public data in {shared}; --public)" in capsys.readouterr().out
    assert "public_weather" in _active_meta(tmp_path)["intents"]
    on = _ctx(tmp_path, shared_data_dir=shared, nlu_use_public_data=True)
    assert _run(["nlu", "train", "--tickets", str(tickets), "--no-public"], on) == 0
    assert "only (--no-public)" in capsys.readouterr().out
    assert "public_weather" not in _active_meta(tmp_path)["intents"]
    with pytest.raises(SystemExit):  # one or the other
        _run(["nlu", "train", "--public", "--no-public"], on)


def test_a_small_training_set_keeps_out_of_scope_detection_and_says_so(tmp_path, capsys, recwarn):
    """QA: 27 intents x 1 example trained silently, with out-of-scope detection off: "What's the weather like
    in Paris today?" was delivery_period (0.13, reason confident); and sklearn warned "`y` could represent a
    regression problem"."""
    from bot.conversation.nlu.intent import FALLBACK_SIM_THRESHOLD

    sample = Path(__file__).resolve().parents[2] / "models" / "sample" / "tickets.jsonl"
    first: dict[str, str] = {}
    for line in sample.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        first.setdefault(row["intent"], row["customer_message"])
    tickets = _tickets(tmp_path / "one_each.jsonl", [(t, y) for y, t in first.items()])
    assert _run(["nlu", "train", "--tickets", str(tickets)], _ctx(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert f"27 examples of {len(first)} intents" in out
    assert (f"warning: out-of-scope detection is not calibrated: {len(first)} intents have fewer than 2 examples"
            in err)
    assert "at least 0.40 alike to a training example" in err and "Add examples" in err
    assert not [w for w in recwarn if "regression problem" in str(w.message)]
    model = NLURegistry(tmp_path / "var" / "nlu").load_active()
    assert model.intent.sim_threshold == FALLBACK_SIM_THRESHOLD
    assert model.metadata["metrics"]["intent"]["oos_fallback"]["min_examples"] == 2
    weather = model.predict("What's the weather like in Paris today?")
    assert weather.out_of_scope and weather.reason == "far_from_training"
    known = model.predict(first["track_order"])
    assert not known.out_of_scope and known.intent == "track_order"
    # with two examples of each intent the thresholds are calibrated again, from a held-out slice
    assert _run(["nlu", "train", "--tickets", str(_tickets(tmp_path / "t.jsonl"))], _ctx(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "held-out accuracy" in out
    assert "oos_fallback" not in _active_meta(tmp_path)["metrics"]["intent"]


def test_a_bad_out_of_scope_file_is_reported_before_training(tmp_path):
    """QA: a malformed line was a json.decoder.JSONDecodeError traceback; a path that does not exist was ignored."""
    from bot.conversation.nlu.data import load_out_of_scope

    tickets = _tickets(tmp_path / "t.jsonl")
    bad = tmp_path / "oos.jsonl"
    bad.write_text('{"text": "Tell me a joke"}\n{"text": "What is the weather\n', encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        _run(["nlu", "train", "--tickets", str(tickets), "--out-of-scope", str(bad)], _ctx(tmp_path))
    assert exc.value.code == "bad_out_of_scope" and f"{bad}:2 is not valid JSON" in exc.value.message
    bad.write_text('{"text": "Tell me a joke"}\n["a list"]\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=f"{bad}:2 is not a JSON object"):
        _run(["nlu", "train", "--tickets", str(tickets), "--out-of-scope", str(bad)], _ctx(tmp_path))
    with pytest.raises(NotFound) as missing:
        _run(["nlu", "train", "--tickets", str(tickets), "--out-of-scope", str(tmp_path / "oss.jsonl")],
             _ctx(tmp_path))
    assert missing.value.code == "out_of_scope_not_found" and "oss.jsonl does not exist" in missing.value.message
    assert NLURegistry(tmp_path / "var" / "nlu").versions() == []  # nothing was trained
    assert load_out_of_scope(tmp_path / "absent.jsonl") == []  # the default file next to the tickets is optional
    bad.write_text('{"text": " Tell me a joke "}\n"Who won the match?"\n\n{"id": 3}\n', encoding="utf-8")
    assert load_out_of_scope(bad, required=True) == ["Tell me a joke", "Who won the match?"]


def test_eval_knows_its_training_file_from_any_directory_and_by_its_messages(tmp_path, capsys, monkeypatch):
    """QA: `nlu train` stored the tickets' path as typed ("t/odd_names.jsonl"), so `nlu eval` with the absolute
    path from another directory gave no "trained on this data" warning."""
    _tickets(tmp_path / "t" / "odd_names.jsonl")
    monkeypatch.chdir(tmp_path)
    assert _run(["nlu", "train", "--tickets", "t/odd_names.jsonl"], _ctx(tmp_path)) == 0
    assert str(tmp_path / "t" / "odd_names.jsonl") in _active_meta(tmp_path)["sources"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert _run(["nlu", "eval", "--tickets", str(tmp_path / "t" / "odd_names.jsonl")], _ctx(tmp_path)) == 0
    err = capsys.readouterr().err
    assert f"was trained on {tmp_path / 't' / 'odd_names.jsonl'}" in err
    # a copy of part of it, under another name: known by its messages
    part = _tickets(tmp_path / "part.jsonl", ROWS[:3] + [("where has my parcel got to", "track_order")])
    assert _run(["nlu", "eval", "--tickets", str(part), "--json"], _ctx(tmp_path)) == 0
    captured = capsys.readouterr()
    assert f"was trained on 3 of the 4 messages of {part}" in captured.err
    report = json.loads(captured.out)
    assert report["trained_on_eval_data"] is True and report["messages_trained_on"] == 3


def test_eval_reads_an_older_models_relative_source_path_sensibly(tmp_path, monkeypatch):
    from bot.cli_nlu import trained_on_source

    data = _tickets(tmp_path / "t" / "odd_names.jsonl")
    meta = {"sources": {"t/odd_names.jsonl": 12}}
    assert trained_on_source(meta, str(data)) == "t/odd_names.jsonl"  # from any working directory
    assert trained_on_source(meta, str(tmp_path / "u" / "odd_names.jsonl")) is None
    assert trained_on_source(meta, str(tmp_path / "t" / "other.jsonl")) is None
    monkeypatch.chdir(tmp_path)
    assert trained_on_source(meta, "t/odd_names.jsonl") == "t/odd_names.jsonl"
    assert trained_on_source({"sources": {"bitext_customer_support": 4514}}, "bitext_customer_support")


def test_train_and_eval_count_real_intents_and_show_out_of_scope_only_when_it_is_asked(tmp_path, capsys):
    """QA: the summary said "352 examples, 28 intents", counting the out_of_scope class; `nlu eval` printed an
    out_of_scope row of zeros when no message was labelled out of scope."""
    tickets = _tickets(tmp_path / "t.jsonl")
    oos = tmp_path / "oos.jsonl"
    oos.write_text("".join(json.dumps({"text": t}) + "\n" for t in [
        "What's the weather like tomorrow?", "Tell me a joke about cats.", "Who won the football match?",
        "Recommend me a movie", "What is the meaning of life?", "Help with my maths homework"]), encoding="utf-8")
    assert _run(["nlu", "train", "--tickets", str(tickets), "--out-of-scope", str(oos)], _ctx(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "12 examples of 3 intents + 6 out-of-scope examples" in out
    unseen = _tickets(tmp_path / "unseen.jsonl", [("where has my parcel got to", "track_order"),
                                                  ("refund me please", "get_refund"),
                                                  ("What's the weather going to be like in Utrecht?", "out_of_scope")])
    assert _run(["nlu", "eval", "--tickets", str(unseen)], _ctx(tmp_path)) == 0
    assert "\nout_of_scope " in capsys.readouterr().out  # asked: shown
    in_scope = _tickets(tmp_path / "in_scope.jsonl", [("where has my parcel got to", "track_order"),
                                                      ("Tell me a joke", "get_refund")])
    assert _run(["nlu", "eval", "--tickets", str(in_scope)], _ctx(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "\nout_of_scope " not in out and "out-of-scope verdicts" in out
    assert _run(["nlu", "eval", "--tickets", str(in_scope), "--json"], _ctx(tmp_path)) == 0
    assert "out_of_scope" not in json.loads(capsys.readouterr().out)["per_intent"]


def test_tickets_imported_before_an_nlu_model_was_active_are_labelled_by_it_when_imported_again(
        nlu_model: NLU, tmp_path, capsys):
    """QA: they were stored without an intent or a tone, silently, and after `nlu train` a re-import found them
    all duplicates; with --map topic=intent, identical (message, reply, intent) pairs were stored again."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from bot import cli_models
    from models.db import ImportedTicket, ModelsBase

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    registry = NLURegistry(tmp_path / "nlu")
    ctx = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path), services=SimpleNamespace(nlu=registry),
                          session=lambda: Session(engine))
    path = tmp_path / "own.csv"
    path.write_text('message,reply,topic\n"Hi, I\'m Jan de Vries, where is my order LK 42710343? my email is '
                    'jan@example.com",It ships tomorrow.,track_order\n', encoding="utf-8")

    def run(*argv: str) -> str:
        parser = argparse.ArgumentParser()
        cli_models.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["tickets", "import", str(path), *argv])
        assert args.handler(args, ctx) == 0
        return capsys.readouterr().out

    def stored() -> list[tuple[str | None, str | None]]:
        with Session(engine) as session:
            return [(r.intent, r.tone) for r in session.scalars(sa.select(ImportedTicket))]

    assert "1 ticket(s) have no intent: no NLU model is active" in run()
    assert stored() == [(None, None)]
    original = nlu_model.metadata
    try:
        _store(nlu_model, tmp_path / "nlu", "v1")
    finally:
        nlu_model.metadata = original
    registry.activate("v1")
    out = run()
    assert "1 imported before without an intent now have the one the bot detects" in out
    assert "no intent" not in out
    [(intent, tone)] = stored()
    assert intent == "track_order" and tone in ("neutral", "urgent", "angry", "confused", "positive")
    out = run("--map", "topic=intent")  # the same intent, named by the file: a duplicate, not a second row
    assert "0 imported, 1 duplicates" in out and stored() == [("track_order", tone)]


def test_nlu_train_on_the_tickets_the_company_imported(tmp_path, capsys):
    """QA: `nlu train` read only JSON-lines files (default: the Larkspur sample), so an operator who had
    imported their own tickets kept training the NLU on the sample company's intents."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from bot import cli_models
    from models.db import ImportedTicket, ModelsBase

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    ctx = _ctx(tmp_path)
    ctx.session = lambda: Session(engine)
    ctx.services = SimpleNamespace(nlu=NLURegistry(tmp_path / "none"))
    with pytest.raises(InvalidInput) as empty:
        _run(["nlu", "train", "--db-tickets", "--no-public"], ctx)
    assert empty.value.code == "no_db_tickets"
    own = tmp_path / "own.csv"
    own.write_text("message,reply,topic\n" + "".join(f'"{t}",We will look into it.,{y}\n' for t, y in ROWS),
                   encoding="utf-8")
    parser = argparse.ArgumentParser()
    cli_models.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tickets", "import", str(own), "--format", "csv", "--map", "message=customer_message",
                              "--map", "reply=agent_reply", "--map", "topic=intent"])
    assert args.handler(args, ctx) == 0
    capsys.readouterr()
    assert _run(["nlu", "train", "--db-tickets", "--no-public"], ctx) == 0
    captured = capsys.readouterr()
    assert f"{len(ROWS)} stored tickets of 3 intents" in captured.out
    assert "name no contact_human_agent" in captured.err  # the policy's own intents are missing
    meta = _active_meta(tmp_path)
    assert set(meta["intents"]) >= {"track_order", "get_refund", "recover_password"}
    assert "cancel_order" not in meta["intents"]  # not the sample's intents
    with Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ImportedTicket)) == len(ROWS)


def test_nlu_list_says_when_the_active_version_is_gone(tmp_path, capsys):
    import shutil

    tickets = _tickets(tmp_path / "t.jsonl")
    ctx = _ctx(tmp_path)
    assert _run(["nlu", "train", "--tickets", str(tickets), "--no-public"], ctx) == 0
    assert _run(["nlu", "train", "--tickets", str(tickets), "--no-public", "--no-activate"], ctx) == 0
    registry = NLURegistry(tmp_path / "var" / "nlu")
    gone = registry.active_version()
    shutil.rmtree(registry.root / gone)
    capsys.readouterr()
    assert _run(["nlu", "list"], ctx) == 0
    captured = capsys.readouterr()
    assert f"the active version {gone} is not here" in captured.err and "hybridesk nlu activate" in captured.err
    assert "*" not in captured.out


def test_an_uncalibrated_version_does_not_replace_a_calibrated_one_unless_asked(tmp_path, capsys):
    # regression QA: six imported tickets made a model with no out-of-scope calibration, and it replaced a
    # calibrated model by default
    tickets = _tickets(tmp_path / "t.jsonl")
    few = _tickets(tmp_path / "few.jsonl", [ROWS[0], ROWS[4], ROWS[8]])  # one example of each intent
    ctx = _ctx(tmp_path)
    assert _run(["nlu", "train", "--tickets", str(tickets), "--no-public"], ctx) == 0
    registry = NLURegistry(tmp_path / "var" / "nlu")
    calibrated = registry.active_version()
    capsys.readouterr()
    assert _run(["nlu", "train", "--tickets", str(few), "--no-public"], ctx) == 0
    assert f"not activated: {calibrated} stays active" in capsys.readouterr().out
    assert registry.active_version() == calibrated
    assert _run(["nlu", "train", "--tickets", str(few), "--no-public", "--activate"], ctx) == 0
    assert registry.active_version() != calibrated
    assert f"(was {calibrated}; `hybridesk nlu activate {calibrated}` goes back)" in capsys.readouterr().out
