"""QA pass 23 on the fine-tuning path: national phone numbers, names and sign-offs in five languages, card
security codes, the company's own contact details and the agent's name in agents' replies, whole order ids,
ticket mappings, row errors naming the file's columns, an adapter replaced under the same id, a damaged
adapter at start-up, `target_modules` checked up front, and SIGTERM during training."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from knowledge.errors import InvalidInput
from models.pii import (
    CARD,
    EMAIL,
    NAME,
    ORDER,
    PHONE,
    SECURITY_CODE,
    SUPPORT_EMAIL,
    SUPPORT_PHONE,
    company_contacts,
    scrub_exchange,
    scrub_pii,
)
from models.tickets import read_tickets

from .test_cli_models import Ctx as _CliCtx
from .test_cli_models import _adapter, _parse

ROOT = Path(__file__).resolve().parents[2]


# -- 1. phone numbers in national formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["06 12 34 56 78", "07700 900123", "06-12345678", "06 12345678", "06.12.34.56.78", "020 555 0142",
     "0800 123 4567", "030 1234 5678", "01 23 45 67 89"],
)
def test_a_national_phone_number_is_scrubbed_whole(number):
    out, kinds = scrub_pii(f"you can reach me on {number} after six")
    assert out == f"you can reach me on {PHONE} after six"
    assert kinds == [PHONE]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("order LK 42710343 is late", f"order {ORDER} is late"),  # QA: "order LK {{Order Number}}"
        ("where is LK 42710343?", f"where is {ORDER}?"),
        ("LK-42710343 never came", f"{ORDER} never came"),
        ("my card 4111 1111 1111 1111 expires 12/27", f"my card {CARD} expires 12/27"),
        ("my ID 12345678", f"my ID {ORDER}"),
    ],
)
def test_order_ids_and_cards_keep_their_own_placeholder(text, expected):
    assert scrub_pii(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "it costs 12.50, or 1.299,00 for the set",
        "it expires 12/27",
        "delivered on 05.12.24 14.30",
        "ordered on 03-02-2025 at 14.05",
        "we are open 08.00-20.00, 7 days a week",
        "I ordered 4 x 250 ml and 2 x 0,5 l",
        "call 0800 1234",  # 8 digits: too short for a phone number
        "sizes 36 38 40 are back",
    ],
)
def test_prices_dates_times_and_quantities_are_not_phone_numbers(text):
    assert scrub_pii(text) == (text, [])


# -- 2. names in Dutch, German, French and Spanish; names from the reply; security codes --------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mijn naam is Jan de Vries en mijn pakket is zoek", f"Mijn naam is {NAME} en mijn pakket is zoek"),
        ("Ik ben Jan de Vries.", f"Ik ben {NAME}."),
        ("Ich heiße Jürgen Müller", f"Ich heiße {NAME}"),
        ("Je m'appelle Élodie Dupont", f"Je m'appelle {NAME}"),
        ("Me llamo María García", f"Me llamo {NAME}"),
        ("Waar blijft mijn bestelling?\nGroetjes, Jan", f"Waar blijft mijn bestelling?\nGroetjes, {NAME}"),
        ("Wo ist mein Paket?\nGrüße, Jürgen Müller", f"Wo ist mein Paket?\nGrüße, {NAME}"),
        ("Wo ist mein Paket?\nLiebe Grüße, Jürgen", f"Wo ist mein Paket?\nLiebe Grüße, {NAME}"),
        ("Wo ist mein Paket?\n\nMit freundlichen Grüßen\nJürgen Müller",
         f"Wo ist mein Paket?\n\nMit freundlichen Grüßen\n{NAME}"),
        ("¿Dónde está mi pedido?\nSaludos, María García", f"¿Dónde está mi pedido?\nSaludos, {NAME}"),
        ("Où est ma commande ?\nCordialement,\nÉlodie Dupont", f"Où est ma commande ?\nCordialement,\n{NAME}"),
        ("Hallo Herr Müller, Ihr Paket ist unterwegs.", f"Hallo {NAME}, Ihr Paket ist unterwegs."),
        ("Geachte heer Jansen,", f"Geachte {NAME},"),
        ("Hola María, tu pedido llegará mañana.", f"Hola {NAME}, tu pedido llegará mañana."),
        # a name with the line under it (a job title, the company) is still a sign-off
        ("Kind regards,\nPeter de Vries\nLarkspur Customer Care", f"Kind regards,\n{NAME}\nLarkspur Customer Care"),
    ],
)
def test_names_introduced_and_signed_in_five_languages_are_scrubbed(text, expected):
    assert scrub_pii(text) == (expected, [NAME])


@pytest.mark.parametrize(
    "text",
    ["Ich bin Kunde seit 2020 und sehr zufrieden.", "Liebe Kunden, wir sind umgezogen.", "Hola Equipo,",
     "Chère Madame,", "Beste Klant,"],
)
def test_words_after_those_cues_that_are_not_names_are_kept(text):
    assert scrub_pii(text) == (text, [])


def test_a_name_the_reply_greets_the_customer_by_is_scrubbed_from_the_message_too():
    message, reply, _ = scrub_exchange("Is my order for Jan shipped yet?", "Hi Jan, it ships today.", company=[])
    assert (message, reply) == (f"Is my order for {NAME} shipped yet?", f"Hi {NAME}, it ships today.")
    message, reply, _ = scrub_exchange("Bestellung 4 von Müller: wo ist sie?", "Hallo Herr Müller, sie ist unterwegs.",
                                       company=[])
    assert (message, reply) == (f"Bestellung 4 von {NAME}: wo ist sie?", f"Hallo {NAME}, sie ist unterwegs.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CVV 123", f"CVV {SECURITY_CODE}"),
        ("the CVC: 1234 on the back", f"the CVC: {SECURITY_CODE} on the back"),
        ("my security code is 123.", f"my security code is {SECURITY_CODE}."),
        ("card 4111 1111 1111 1111 exp 12/27 cvv 123", f"card {CARD} exp 12/27 cvv {SECURITY_CODE}"),
    ],
)
def test_a_card_security_code_is_scrubbed(text, expected):
    out, kinds = scrub_pii(text)
    assert out == expected and SECURITY_CODE in kinds


# -- 3. the company's contact details and the agent's name in agents' replies -----------------------------

KB_FACTS = [
    {"name": "support_phone", "value": "+31 20 555 0142", "placeholders": ["Customer Support Phone Number", "Phone"]},
    {"name": "support_email", "value": "help@larkspur.example", "placeholders": ["Customer Support Email"]},
    {"name": "return_window_days", "value": "30", "unit": "days"},
    {"name": "support_hours", "value": "Monday to Saturday, 08:00-20:00 CET"},
]


def test_the_kbs_phone_and_email_facts_are_the_companys_contact_details():
    assert company_contacts(KB_FACTS) == [("+31 20 555 0142", SUPPORT_PHONE), ("help@larkspur.example", SUPPORT_EMAIL)]
    # an earlier revision's number is the company's too, under the same slot
    assert ("+31 20 555 0100", SUPPORT_PHONE) in company_contacts(KB_FACTS, {"+31 20 555 0100": "+31 20 555 0142"})


def _sample_kb_facts() -> list:
    from knowledge.ingest import parse_markdown

    facts = []
    for path in sorted((ROOT / "knowledge" / "sample").glob("*.md")):
        if path.name in ("SLOTS.md", "README.md"):
            continue
        facts += parse_markdown(path.read_text(encoding="utf-8"), name=path.name).facts
    return facts


def test_an_agents_correction_keeps_the_company_the_company():
    """QA: "...call us on +31 20 555 0142 ... Kind regards, Peter de Vries" was exported as "call us on
    {{Customer Phone}} ... Kind regards, {{Customer Name}}": the company's number became the customer's, and
    the agent's signature the customer's name."""
    reply = ("Sorry about the wait! If it has not arrived by Friday, call us on +31 20 555 0142 or write to "
             "help@larkspur.example.\n\nKind regards,\nPeter de Vries")
    expected = (f"Sorry about the wait! If it has not arrived by Friday, call us on {SUPPORT_PHONE} or write to "
                f"{SUPPORT_EMAIL}.")
    message = "Where is order LK 42710343? Call me on 06 12345678. Thanks, Anna"
    contacts = company_contacts(_sample_kb_facts())  # the sample company's published details, from its KB
    out_message, out_reply, kinds = scrub_exchange(message, reply, company=contacts)
    assert out_reply == expected
    assert out_message == f"Where is order {ORDER}? Call me on {PHONE}. Thanks, {NAME}"
    assert kinds == sorted([NAME, ORDER, PHONE])
    # the number written the national way is the same number
    assert scrub_exchange("hi", "Ring 020 555 0142 today.", company=contacts)[1] == f"Ring {SUPPORT_PHONE} today."
    # the customer's own number and address in a reply stay the customer's
    assert scrub_exchange("hi", "We will call you on 06 12345678 and mail jan@example.com.", company=contacts)[1] \
        == f"We will call you on {PHONE} and mail {EMAIL}."


def test_without_kb_facts_a_reply_that_gives_a_number_as_the_companys_still_says_so():
    out = scrub_exchange("hi", "Call us on +44 20 7946 0958, or e-mail us at care@shop.example.", company=[])[1]
    assert out == f"Call us on {SUPPORT_PHONE}, or e-mail us at {SUPPORT_EMAIL}."


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Your refund is on its way.\nWarm regards, Tom from Brightnest", "Your refund is on its way."),
        ("Happy to help!\n\nKind regards,\nSophie van Dam", "Happy to help!"),
        ("Happy to help!\n\nMit freundlichen Grüßen\nJürgen Schmidt\nKundenservice", "Happy to help!"),
        ("Your parcel is on its way.\n- Sarah", "Your parcel is on its way."),
        # a sign-off naming the customer (named in the message) stays, scrubbed
        ("It ships today. Thanks, Maria", f"It ships today. Thanks, {NAME}"),
        # the shop's own sign-off is no one's name
        ("It ships today.\n\nWarm regards, the {{Company Name}} team",
         "It ships today.\n\nWarm regards, the {{Company Name}} team"),
    ],
)
def test_the_agents_own_sign_off_is_left_out_of_the_reply(reply, expected):
    message, out, _ = scrub_exchange("Hi, Maria here. Where is my refund?", reply, company=[])
    assert out == expected and "{{Customer Name}} here" in message


def test_tickets_import_passes_the_kbs_contact_details(tmp_path, capsys):
    import sqlalchemy as sa

    from models.db import ImportedTicket

    ctx = _CliCtx(tmp_path)
    ctx.services = SimpleNamespace(company_contacts=lambda: company_contacts(KB_FACTS))
    path = tmp_path / "t.csv"
    path.write_text('question,answer\nIs the phone line open?,"Yes, +31 20 555 0142 is open today."\n',
                    encoding="utf-8")
    args = _parse(["tickets", "import", str(path), "--format", "csv"])
    assert args.handler(args, ctx) == 0
    with ctx.session() as s:
        assert s.scalars(sa.select(ImportedTicket.agent_reply)).one() == f"Yes, {SUPPORT_PHONE} is open today."


# -- 4. one field mapped twice; a reply that repeats the message ------------------------------------------


def _qa_csv(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    path.write_text("question,answer\nWhere is my parcel?,It ships today.\nCan I return it?,Can I return it?\n",
                    encoding="utf-8")
    return path


def test_two_columns_mapped_to_one_field_are_refused(tmp_path):
    import sqlalchemy as sa

    from models.db import ImportedTicket

    ctx = _CliCtx(tmp_path)
    path = _qa_csv(tmp_path)
    args = _parse(["tickets", "import", str(path), "--map", "question=customer_message",
                   "--map", "answer=customer_message"])
    with pytest.raises(InvalidInput, match="2 columns to customer_message") as exc:
        args.handler(args, ctx)
    assert exc.value.code == "bad_mapping" and "question=customer_message" in exc.value.message
    with pytest.raises(InvalidInput, match="2 columns to customer_message"):  # the JSON Lines path too
        read_tickets(path, "jsonl", {"question": "customer_message", "answer": "customer_message"})
    args = _parse(["tickets", "import", str(path), "--map", "question=customer_message",
                   "--map", "question=agent_reply"])
    with pytest.raises(InvalidInput, match="maps column 'question' twice"):
        args.handler(args, ctx)
    # a column mapped to the message is not taken for the reply too because its name is "answer"
    with pytest.raises(InvalidInput, match="agent_reply") as exc:
        read_tickets(path, "csv", {"answer": "customer_message"})
    assert exc.value.code == "missing_columns"
    with ctx.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ImportedTicket)) == 0


def test_a_row_whose_reply_repeats_its_message_is_skipped_with_the_reason(tmp_path, capsys):
    tickets, errors = read_tickets(_qa_csv(tmp_path), "csv")
    assert [t.customer_message for t in tickets] == ["Where is my parcel?"]
    assert [str(e) for e in errors] == [
        "line 3: the agent reply is the same text as the customer message (question and answer): not a ticket to "
        "train on"]
    ctx = _CliCtx(tmp_path)
    args = _parse(["tickets", "import", str(tmp_path / "t.csv")])
    assert args.handler(args, ctx) == 0
    out = capsys.readouterr().out
    assert "1 imported" in out and "skipped line 3: the agent reply is the same text as the customer message" in out


# -- 5. errors name the file's own columns and formats ----------------------------------------------------


def test_a_corrections_row_error_names_the_files_column(tmp_path):
    path = tmp_path / "corrections.jsonl"
    path.write_text(json.dumps({"message_id": "4", "customer_message": "Where is it?", "corrected_reply": ["a"]})
                    + "\n", encoding="utf-8")
    assert [str(e) for e in read_tickets(path, "corrections")[1]] == ["line 1: corrected_reply is a JSON array, not text"]


@pytest.mark.parametrize(("fmt", "what"), [("bitext", "the Bitext CSV"), ("csv", "a CSV file")])
def test_a_json_lines_file_read_as_csv_says_which_format_to_use(tmp_path, fmt, what):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "Where, please?", "answer": "Here, there."}) + "\n"
                    + json.dumps({"question": "a, b, c, d", "answer": "e"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        read_tickets(path, fmt)
    assert exc.value.code == "wrong_format"
    assert f"does not look like {what}" in exc.value.message and "JSON Lines" in exc.value.message
    assert "--format jsonl" in exc.value.message and "columns" not in exc.value.message.split(":")[0]


# -- 6. an adapter replaced under the same id; a damaged adapter at start-up -------------------------------


class FakeRuntime:
    def __init__(self) -> None:
        self.loaded: dict[str, Path] = {}
        self.calls: list[tuple[str, str, str]] = []

    def has_adapter(self, adapter_id: str) -> bool:
        return adapter_id in self.loaded

    def load_adapter(self, adapter_id: str, path: Path) -> None:
        self.calls.append(("load", adapter_id, path.name))
        self.loaded[adapter_id] = path

    def replace_adapter(self, adapter_id: str, path: Path) -> None:
        self.calls.append(("replace", adapter_id, path.name))
        self.loaded[adapter_id] = path


def test_an_adapter_whose_files_changed_is_converted_and_loaded_again(tmp_path, monkeypatch):
    """QA: `adapters activate none`, new safetensors under the same id, `adapters activate <id>`: the server
    kept the old weights (and converted nothing)."""
    import numpy as np
    from safetensors.numpy import save_file

    import models.gguf_lora
    from models.llamacpp import LlamaCppGenerator, _Slot

    pytest.importorskip("gguf")
    folder = _adapter(tmp_path / "adapters", "mine-v1")
    converted: list[str] = []

    def fake_convert(adapter_dir, out_path, base_gguf):
        converted.append(Path(out_path).name)
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_bytes(b"gguf")
        return Path(out_path)

    monkeypatch.setattr(models.gguf_lora, "convert_peft_lora", fake_convert)
    gen = LlamaCppGenerator(tmp_path / "base.gguf", None, tmp_path / "adapters", cache_dir=tmp_path / "cache",
                            merge_adapters=False)  # (merged files: tests/models/test_llamacpp.py)
    gen._runtime = runtime = FakeRuntime()
    kept = _Slot(3, tokens=[1, 2, 3], adapter_id="mine-v1")
    gen._engine = SimpleNamespace(slots=SimpleNamespace(
        forget_adapter=lambda adapter_id: kept.tokens.clear() if adapter_id == kept.adapter_id else None))
    gen._ensure_adapter("mine-v1")
    gen._ensure_adapter("mine-v1")  # unchanged: nothing read, nothing loaded
    assert [c[0] for c in runtime.calls] == ["load"] and len(converted) == 1
    os.utime(folder / "adapter_model.safetensors")  # touched, same weights: no new conversion
    gen._ensure_adapter("mine-v1")
    assert len(runtime.calls) == 1 and len(converted) == 1
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.ones((2, 8), np.float32)},
              str(folder / "adapter_model.safetensors"))
    gen._ensure_adapter("mine-v1")
    assert [c[0] for c in runtime.calls] == ["load", "replace"] and len(converted) == 2
    assert runtime.calls[0][2] != runtime.calls[1][2]  # the new weights' own GGUF file
    assert kept.tokens == []  # prompts cached with the old weights are not reused
    gen._ensure_adapter("mine-v1")
    assert len(runtime.calls) == 2


def test_the_runtime_applies_replaced_weights_and_frees_the_old_ones():
    from models.llamacpp import LlamaCppRuntime

    events: list[tuple] = []
    lib = SimpleNamespace(
        llama_adapter_lora_init=lambda model, path: b"new",
        llama_adapter_lora_free=lambda pointer: events.append(("free", pointer)),
        llama_set_adapters_lora=lambda ctx, adapters, n, scales: events.append(("set", adapters[0])) or 0,
        llama_adapter_lora_p_ctypes=__import__("ctypes").c_char_p,
    )
    runtime = object.__new__(LlamaCppRuntime)
    runtime._L, runtime.model, runtime.ctx, runtime.merged = lib, "model", "ctx", False
    runtime._adapters, runtime.active_adapter = {"mine-v1": b"old"}, "mine-v1"
    runtime.replace_adapter("mine-v1", "x.gguf")
    assert runtime._adapters == {"mine-v1": b"new"} and runtime.active_adapter == "mine-v1"
    assert events == [("set", b"new"), ("free", b"old")]


def test_a_replaced_merged_adapter_is_swapped_in_between_batches_not_under_a_running_one(tmp_path):
    """With merged adapters a swap drops every KV cell, so a running batch keeps the model it has."""
    from models.llamacpp import LlamaCppRuntime

    old, new = tmp_path / "mine-old.gguf", tmp_path / "mine-new.gguf"
    old.write_bytes(b"gguf")
    new.write_bytes(b"gguf")
    runtime = object.__new__(LlamaCppRuntime)
    runtime.merged, runtime.gguf_path, runtime.model = True, tmp_path / "base.gguf", "model"
    runtime.loaded_path, runtime.swaps, runtime.swap_listeners = old, 0, []
    runtime._adapters, runtime.active_adapter = {"mine-v1": old}, "mine-v1"
    loads: list[str] = []
    lost: list[int] = []
    runtime._unload = lambda: None
    runtime._load = lambda path: (loads.append(path.name), setattr(runtime, "loaded_path", path))
    runtime.swap_listeners.append(lambda: lost.append(1))

    runtime.replace_adapter("mine-v1", new)
    runtime.use_adapter("mine-v1")  # a step of the running batch: same weights
    assert loads == [] and runtime.loaded_path == old
    runtime.use_adapter("mine-v1", between_batches=True)  # the next batch
    assert loads == ["mine-new.gguf"] and lost == [1] and runtime.swaps == 1
    runtime.use_adapter("mine-v1", between_batches=True)  # nothing changed: no reload
    assert loads == ["mine-new.gguf"]
    runtime.use_adapter(None)
    assert loads[-1] == "base.gguf" and runtime.active_adapter is None and lost == [1, 1]
    with pytest.raises(InvalidInput):
        runtime.load_adapter("gone-v1", tmp_path / "missing.gguf")


def test_a_damaged_active_adapter_at_start_up_is_one_clear_line(tmp_path, caplog):
    from bot.services import Services
    from knowledge.errors import InvalidInput as Invalid

    warmed: list[str | None] = []

    def warm(adapter_id):
        warmed.append(adapter_id)
        if adapter_id is not None:
            raise Invalid("Adapter tensor 'x' names layer 40; the base has 30.", code="bad_adapter")

    services = Services(SimpleNamespace(), db=object(),
                        knowledge=SimpleNamespace(retrieve=lambda *a, **k: []),
                        nlu=SimpleNamespace(current=lambda: SimpleNamespace(predict=lambda text: None)),
                        generator=SimpleNamespace(warm=warm))
    services.active_adapter_id = lambda: "broken-v2"
    with caplog.at_level(logging.DEBUG, logger="bot.services"):
        services.warm_up()
    assert warmed == ["broken-v2", None]  # the base model is warmed up instead
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    line = errors[0].getMessage()
    assert "'broken-v2' cannot be loaded (Adapter tensor 'x' names layer 40; the base has 30.)" in line
    assert "hybridesk adapters activate <other adapter>" in line and "hybridesk adapters activate none" in line
    assert "\n" not in line
    # with the registry at hand, the damage is named as `adapters list` names it
    from models.adapters import AdapterRegistry

    from .test_cli_models import _truncate_weights

    _truncate_weights(_adapter(tmp_path / "user", "broken-v2"))
    services.__dict__["adapters"] = AdapterRegistry(tmp_path / "user", tmp_path / "shipped")
    caplog.clear()
    services.warm_up()
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "'broken-v2' cannot be loaded (the weights file adapter_model.safetensors is damaged: " in error.getMessage()


# -- 7. target_modules checked before anything loads ------------------------------------------------------


class TrainCtx(_CliCtx):
    def __init__(self, tmp_path: Path, generator: str | None = None) -> None:
        super().__init__(tmp_path)
        self.settings.company_name = "Larkspur & Co."
        if generator is not None:
            self.settings.generator = generator


def _fake_train(calls: list):
    def fake(cfg, **kwargs):
        calls.append(cfg)
        return SimpleNamespace(adapter_id=cfg.version, adapter_dir=Path("x"), metrics={
            "steps": 1, "total_steps": 1, "val_loss": None, "base_val_loss": None, "tokens_per_s": 1.0,
            "wall_seconds": 1.0})

    return fake


def test_an_unknown_target_module_is_refused_before_anything_loads(tmp_path, monkeypatch):
    """QA: `train --set target_modules=foo_proj --set max_steps=1` said bad_config after ~2.7 minutes."""
    import models.base
    import models.training

    calls: list = []
    monkeypatch.setattr(models.training, "train", _fake_train(calls))
    args = _parse(["train", "--set", "target_modules=foo_proj", "--set", "max_steps=1", "--set", "version=t1"])
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="target_modules foo_proj is not a linear layer of the base model; "
                                           "valid names: down_proj, .*q_proj") as exc:
        args.handler(args, TrainCtx(tmp_path))
    assert exc.value.code == "bad_config" and calls == [] and time.monotonic() - started < 5
    # train() itself checks it before it reads tickets or loads the model
    monkeypatch.undo()

    def no_loading(*args, **kwargs):
        raise AssertionError("the base model was loaded")

    monkeypatch.setattr(models.base, "load_base_model", no_loading)
    monkeypatch.setattr(models.training, "load_training_tickets", no_loading)
    from models.config import TrainConfig

    with pytest.raises(InvalidInput, match="target_modules foo_proj"):
        models.training.train(TrainConfig(target_modules=["q_proj", "foo_proj"], max_steps=1),
                              data_dir=tmp_path)


def test_a_target_llamacpp_cannot_serve_is_said_up_front(tmp_path, monkeypatch, capsys):
    import models.training

    calls: list = []
    monkeypatch.setattr(models.training, "train", _fake_train(calls))
    args = _parse(["train", "--set", "target_modules=q_proj,lm_head", "--set", "max_steps=1", "--set", "version=t2"])
    with pytest.raises(InvalidInput, match="lm_head can be trained, but llama.cpp") as exc:
        args.handler(args, TrainCtx(tmp_path, generator="llamacpp"))
    assert "HYBRIDESK_GENERATOR=transformers" in exc.value.message and calls == []
    assert args.handler(args, TrainCtx(tmp_path, generator="transformers")) == 0
    assert "note: target_modules lm_head can be trained, but llama.cpp" in capsys.readouterr().err
    assert calls and calls[0].target_modules == ["q_proj", "lm_head"]


# -- 8. SIGTERM during training -------------------------------------------------------------------------


def test_sigterm_during_training_prints_the_resume_hint(tmp_path, monkeypatch, capsys):
    """QA: `hybridesk train` stopped by SIGTERM printed nothing (Ctrl+C prints where the checkpoint is)."""
    import models.training
    from models.config import TrainConfig
    from models.training import TrainingInterrupted, TrainingTerminated, interrupt_message

    run_dir = tmp_path / ".runs" / "abc"

    def killed_train(cfg, **kwargs):
        # what train() does with a KeyboardInterrupt in its steps, at step 3 with the step-2 checkpoint kept
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt as exc:
            name = exc.signal_name if isinstance(exc, TrainingTerminated) else None
            raise TrainingInterrupted(interrupt_message(run_dir, 2, 3, cfg, name), signal_name=name) from exc
        return "not stopped"

    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        monkeypatch.setattr(models.training, "train", killed_train)
        args = _parse(["train", "--set", "version=s1", "--set", "max_steps=3"])
        assert args.handler(args, TrainCtx(tmp_path)) == 128 + signal.SIGTERM
        err = capsys.readouterr().err
        assert f"training stopped by SIGTERM at step 3; the checkpoint at step 2 is kept in {run_dir}" in err
        assert "Run the same command again to resume" in err
        assert received == []  # the training's handler, not the one before it
        os.kill(os.getpid(), signal.SIGTERM)  # and the one before is back afterwards
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "stopped by SIGTERM at step 7" in interrupt_message(run_dir, None, 7, TrainConfig(), "SIGTERM")


@pytest.mark.slow
def test_sigterm_in_a_real_run_keeps_the_checkpoint_and_says_so(base_model_dir, tmp_path, monkeypatch):
    import models.training as training

    from .test_operator_training import interruptible_run

    tickets, cfg = interruptible_run(tmp_path, "s2")
    real_loss, calls = training.reply_loss, []

    def sigterm_on_third_step(model, batch, **options):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(model, batch, **options)

    monkeypatch.setattr(training, "reply_loss", sigterm_on_third_step)
    with pytest.raises(training.TrainingInterrupted) as exc, training.sigterm_as_interrupt():
        training.train(cfg, data_dir=tmp_path, base_model_dir=base_model_dir, tickets=tickets, progress=False)
    run_dir = next((tmp_path / "adapters" / ".runs").iterdir())
    assert exc.value.signal_name == "SIGTERM"
    assert f"training stopped by SIGTERM at step 2; the checkpoint at step 2 is kept in {run_dir}" in exc.value.message
    assert (run_dir / "trainer_state.pt").is_file()


# -- QA: Dutch/German phone intros, greeted first names, order keywords, "Groet", the --map hint -------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Goedemiddag, met Pieter de Vries", f"Goedemiddag, met {NAME}"),
        ("Met Pieter de Vries. Waar is mijn pakket?", f"Met {NAME}. Waar is mijn pakket?"),
        ("U spreekt met Eva Bakker", f"U spreekt met {NAME}"),
        ("Hallo, hier is Pieter de Vries", f"Hallo, hier is {NAME}"),
        ("hier ist Jürgen Müller", f"hier ist {NAME}"),
    ],
)
def test_dutch_and_german_phone_intros_are_scrubbed(text, expected):
    assert scrub_pii(text) == (expected, [NAME])


@pytest.mark.parametrize(
    "text",
    ["Ik kom met de trein", "Ik ga met Jan naar de winkel", "hier is mijn bestelnummer", "Hier ist meine Bestellung",
     "Met Vriendelijke Groet", "Hier ist Bestellung und Rechnung"],
)
def test_met_and_hier_is_before_ordinary_words_are_kept(text):
    assert scrub_pii(text) == (text, [])


@pytest.mark.parametrize(
    ("message", "reply", "expected"),
    [
        ("met Pieter de Vries", "Hallo Pieter,", f"met {NAME}"),
        ("hier ist Jürgen Müller", "Hallo Jürgen", f"hier ist {NAME}"),
        # no intro cue in the message: the greeted first name still takes its surname with it
        ("Bestellung für Jürgen Müller ist nicht angekommen", "Hallo Jürgen,", f"Bestellung für {NAME} ist nicht "
                                                                               "angekommen"),
        ("Het pakket voor Pieter van den Berg is zoek.", "Beste Pieter,", f"Het pakket voor {NAME} is zoek."),
    ],
)
def test_a_greeted_first_name_scrubs_the_whole_name_from_the_message(message, reply, expected):
    out, out_reply, _ = scrub_exchange(message, reply, company=[])
    assert out == expected and NAME in out_reply


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mijn bestelling LK-10023 is zoek", f"Mijn bestelling {ORDER} is zoek"),
        ("Meine Bestellung LK-10023", f"Meine Bestellung {ORDER}"),
        ("Bestelnummer: 123456", f"Bestelnummer: {ORDER}"),
        ("Bestellnummer 12345", f"Bestellnummer {ORDER}"),
        ("Ma commande LK-10023 n'est pas arrivée", f"Ma commande {ORDER} n'est pas arrivée"),
        ("Mi pedido LK-10023", f"Mi pedido {ORDER}"),
        ("Order LK-10023", f"Order {ORDER}"),
    ],
)
def test_order_numbers_after_dutch_german_french_and_spanish_words_are_scrubbed(text, expected):
    assert scrub_pii(text) == (expected, [ORDER])


@pytest.mark.parametrize(
    "signoff",
    ["Groet, Peter", "Gr. Peter", "Mvg, Peter", "Met vriendelijke groet,\nPeter Jansen", "Groeten, Anouk",
     "Kind regards,\nPeter"],
)
def test_the_agents_dutch_sign_off_is_left_out_of_the_reply(signoff):
    assert scrub_exchange("Waar is mijn pakket?", f"Het komt morgen.\n{signoff}", company=[])[1] == "Het komt morgen."


def test_the_mapping_hint_suggests_only_a_field_not_mapped_yet():
    from models.tickets import check_mapping

    with pytest.raises(InvalidInput, match="2 columns to customer_message") as exc:
        check_mapping({"question": "customer_message", "subject": "customer_message", "answer": "agent_reply"})
    assert "=agent_reply)" not in exc.value.message and "subject=agent_reply" not in exc.value.message
    assert "(intent, category, tone, external_id, created_at)" in exc.value.message
    with pytest.raises(InvalidInput) as exc:  # the reply not mapped yet: still suggested
        check_mapping({"question": "customer_message", "subject": "customer_message"})
    assert "--map subject=agent_reply" in exc.value.message
