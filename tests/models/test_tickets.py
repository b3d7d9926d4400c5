"""Ticket import: formats, PII scrubbing, bad rows with line numbers, storing in SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from knowledge.errors import InvalidInput, NotFound
from models.db import ImportedTicket, ModelsBase
from models.tickets import import_tickets, normalize_slots, read_tickets, ticket_hash

BITEXT_HEADER = "flags,instruction,category,intent,response,entity_type,entity_value\n"


def _bitext(tmp_path: Path) -> Path:
    path = tmp_path / "bitext.csv"
    path.write_text(
        BITEXT_HEADER
        + 'B,how can I cancel purchase 00123842?,ORDER,cancel_order,"Sure, order {{Order Number Anonymized}}:\n'
        '1. Log in to {{Website Name}}.",order_id,123842\n'
        "B,i am Anna Berg and forgot my password,ACCOUNT,recover_password,"
        '"Hi {{Customer Name}}, use {{Forgot Password}}.",person_name,Anna Berg\n',
        encoding="utf-8",
    )
    return path


def test_bitext_import_scrubs_and_normalises(tmp_path):
    tickets, errors = read_tickets(_bitext(tmp_path), "bitext")
    assert errors == []
    assert [t.intent for t in tickets] == ["cancel_order", "recover_password"]
    assert tickets[0].customer_message == "how can I cancel purchase {{Order Number}}?"
    assert tickets[0].agent_reply.startswith("Sure, order {{Order Number}}:")
    assert tickets[1].customer_message == "i am {{Customer Name}} and forgot my password"
    assert tickets[0].line == 2 and tickets[1].line == 4  # multi-line CSV field: the row starts on line 4


def test_malformed_jsonl_reports_line_numbers_and_imports_the_rest(tmp_path):
    path = tmp_path / "t.jsonl"
    good = {
        "customer_message": "Where is my parcel?",
        "agent_reply": "Track it in {{Order History}}.",
        "intent": "track_order",
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"customer_message": "", "agent_reply": "x"}),
        "[1, 2]",
        "",
        json.dumps({**good, "customer_message": "Mail me at bob@example.org", "created_at": "yesterday"}),
        json.dumps({**good, "customer_message": "Mail me at bob@example.org"}),
        json.dumps({**good, "intent": "track_order_" + "x" * 60}),  # cut to 64 it was another label, silently
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tickets, errors = read_tickets(path, "jsonl")
    assert [e.line for e in errors] == [2, 3, 4, 8]
    assert "intent longer than 64 characters" in errors[3].message
    assert "invalid JSON" in errors[0].message
    assert "customer message is empty" in errors[1].message
    assert "JSON object" in errors[2].message
    # a bad date alone does not skip the row: it is imported without one, with a note
    assert [t.line for t in tickets] == [1, 6, 7]
    assert tickets[1].created_at is None and "created_at" in tickets[1].note.message
    assert tickets[2].customer_message == "Mail me at {{Customer Email}}"


def test_csv_with_mapping_and_bad_rows(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "ticket,question,answer,topic\n"
        "1,Can I pay by card?,Yes: {{Payment Methods}}.,payment\n"
        "2,,Empty question,payment\n"
        "3,too,many,columns,here\n"
        "4,Call me at +31 20 555 0101,We will call you.,contact\n",
        encoding="utf-8",
    )
    tickets, errors = read_tickets(path, "csv", {"topic": "intent", "ticket": "external_id"})
    assert [(e.line, e.message) for e in errors] == [
        (3, "customer message is empty"),
        (4, "expected 4 columns"),
    ]
    assert [t.external_id for t in tickets] == ["1", "4"]
    assert tickets[1].customer_message == "Call me at {{Customer Phone}}"
    assert tickets[0].intent == "payment"


def test_unusable_files_raise_clear_errors(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="--map"):
        read_tickets(path, "csv")
    with pytest.raises(InvalidInput, match="field"):
        read_tickets(path, "csv", {"a": "nonsense"})
    with pytest.raises(InvalidInput, match="bitext"):
        read_tickets(path, "bitext")
    with pytest.raises(NotFound):
        read_tickets(tmp_path / "missing.jsonl", "jsonl")
    with pytest.raises(InvalidInput, match="format"):
        read_tickets(path, "xml")


def test_files_without_rows_are_errors_whatever_their_format(tmp_path):
    for name, content in (("empty.jsonl", ""), ("blank.jsonl", "\n\n"), ("header.csv", "customer_message,agent_reply\n"),
                          ("empty.csv", "")):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(InvalidInput) as exc:
            read_tickets(path, "jsonl" if name.endswith(".jsonl") else "csv")
        assert exc.value.code == "empty_file", name


def test_an_unclosed_quote_is_named_as_the_fault(tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text('customer_message,agent_reply\nfine,ok\n"broken,reply\nnext,row\nlast,row\n', encoding="utf-8")
    tickets, errors = read_tickets(path, "csv")
    assert [t.customer_message for t in tickets] == ["fine"]
    assert [e.line for e in errors] == [3]
    assert "missing closing quote" in errors[0].message and "line 5" in errors[0].message, errors[0].message


def test_non_utf8_rows_are_reported_and_the_rest_import(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        "customer_message,agent_reply\nCafé order?,Voilà the answer\nplain,plain reply\n".encode("latin-1")
    )
    tickets, errors = read_tickets(latin1, "csv")
    assert [t.customer_message for t in tickets] == ["plain"]
    assert [(e.line, e.message) for e in errors] == [
        (2, "not valid UTF-8 (byte 0xe9); save the file as UTF-8")
    ]
    jsonl = tmp_path / "mixed.jsonl"
    good = json.dumps({"customer_message": "a", "agent_reply": "b"}).encode()
    jsonl.write_bytes(good + b"\n\xff\xfe broken bytes\n" + good.replace(b'"a"', b'"c"') + b"\n")
    tickets, errors = read_tickets(jsonl, "jsonl")
    assert [t.customer_message for t in tickets] == ["a", "c"]
    assert [e.line for e in errors] == [2] and "UTF-8" in errors[0].message
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfcustomer_message,agent_reply\nq,a\n")
    assert [t.customer_message for t in read_tickets(bom, "csv")[0]] == ["q"]


def test_jsonl_values_that_cannot_be_stored_are_bad_rows(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"customer_message": "half \\ud800 a character", "agent_reply": "b"}\n'
        '{"customer_message": {"text": "hi"}, "agent_reply": "b"}\n'
        '{"customer_message": "x", "agent_reply": ["a", "b"]}\n'
        '{"customer_message": "fine", "agent_reply": "b"}\n',
        encoding="utf-8",
    )
    tickets, errors = read_tickets(path, "jsonl")
    assert [t.customer_message for t in tickets] == ["fine"]
    assert [(e.line, e.message) for e in errors] == [
        (1, "customer_message holds an invalid character (an unpaired surrogate)"),
        (2, "customer_message is a JSON object, not text"),
        (3, "agent_reply is a JSON array, not text"),
    ]


def test_binary_file_and_directory_raise_clear_errors(tmp_path):
    binary = tmp_path / "x.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InvalidInput, match="binary file"):
        read_tickets(binary, "jsonl")
    with pytest.raises(InvalidInput, match="binary file"):
        read_tickets(binary, "csv")
    with pytest.raises(InvalidInput, match="is a directory"):
        read_tickets(tmp_path, "csv")


def test_corrections_format(tmp_path):
    path = tmp_path / "corrections.jsonl"
    path.write_text(
        json.dumps(
            {
                "message_id": "42",
                "customer_message": "I'm Mia Jones, where is order 88812345?",
                "intent": "track_order",
                "original_reply": "It ships in 3 days.",
                "corrected_reply": "Hi {{Customer Name}}, you can follow it in {{Order History}}.",
                "corrected_at": "2026-03-01T10:00:00Z",
            }
        )
        + "\n"
        + json.dumps({"message_id": "43", "customer_message": "hi"})
        + "\n",
        encoding="utf-8",
    )
    tickets, errors = read_tickets(path, "corrections")
    assert len(tickets) == 1 and errors[0].line == 2 and "reply is empty" in errors[0].message
    t = tickets[0]
    assert t.external_id == "42" and t.created_at.year == 2026
    assert t.customer_message == "I'm {{Customer Name}}, where is order {{Order Number}}?"


def test_sample_tickets_parse():
    path = Path(__file__).resolve().parents[2] / "models" / "sample" / "tickets.jsonl"
    if not path.is_file():
        pytest.skip("sample tickets not written yet")
    tickets, errors = read_tickets(path, "sample")
    assert tickets and not errors
    assert all(t.external_id and t.intent for t in tickets)


def test_import_into_sqlite_deduplicates(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    path = _bitext(tmp_path)
    with Session(engine) as session:
        report = import_tickets(session, path, "bitext", tone_fn=lambda text: "neutral")
        session.commit()
        assert (report.read, report.imported, report.duplicates, report.scrubbed) == (2, 2, 0, 2)
        again = import_tickets(session, path, "bitext")
        session.commit()
        assert (again.imported, again.duplicates) == (0, 2)
        rows = session.scalars(sa.select(ImportedTicket).order_by(ImportedTicket.id)).all()
        assert [r.tone for r in rows] == ["neutral", "neutral"]
        assert all(r.scrubbed for r in rows)
        assert "123842" not in rows[0].customer_message
        assert rows[0].data_hash == ticket_hash(rows[0].customer_message, rows[0].agent_reply, "cancel_order")
    assert "2 imported" in report.summary()


def test_the_same_tickets_in_another_format_are_duplicates(tmp_path):
    """CLI QA A8: 11 rows imported as generic.csv and again as generic.jsonl were stored twice (and trained on twice)."""
    import json

    rows = [{"message": f"Where is order {i}?", "reply": f"It ships tomorrow, ticket {i}.", "intent": "track_order"}
            for i in range(3)]
    csv_path, jsonl_path = tmp_path / "t.csv", tmp_path / "t.jsonl"
    csv_path.write_text("message,reply,intent\n" + "".join(f'"{r["message"]}","{r["reply"]}",{r["intent"]}\n'
                                                          for r in rows), encoding="utf-8")
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    mapping = {"message": "customer_message", "reply": "agent_reply", "intent": "intent"}
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    with Session(engine) as session:
        first = import_tickets(session, csv_path, "csv", mapping)
        session.commit()
        second = import_tickets(session, jsonl_path, "jsonl", mapping)
        session.commit()
        assert (first.imported, second.imported, second.duplicates) == (3, 0, 3)
        assert session.scalar(sa.select(sa.func.count()).select_from(ImportedTicket)) == 3


def test_a_jsonl_file_no_line_of_which_maps_is_one_clear_error(tmp_path):
    """CLI QA B2/B3: the same mapping problem was reported on every line, and a mistyped --map key
    was dropped silently."""
    import json

    path = tmp_path / "generic.jsonl"
    path.write_text("".join(json.dumps({"ticket": f"t{i}", "customer_text": "Hi, where is it?",
                                        "agent_text": "On its way."}) + "\n" for i in range(3)), encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        read_tickets(path, "jsonl", {"customer_txt": "customer_message", "agent_text": "agent_reply"})
    assert exc.value.code == "missing_columns"
    assert "no line has: customer_txt" in str(exc.value) and "customer_text" in str(exc.value)
    tickets, errors = read_tickets(path, "jsonl", {"customer_text": "customer_message", "agent_text": "agent_reply"})
    assert len(tickets) == 3 and not errors


def test_a_file_that_is_not_comma_separated_csv_gets_a_hint_not_its_first_row(tmp_path):
    """CLI QA B4/B6: a JSON Lines file read as CSV printed its first row, personal data and all, as
    "column names"; a semicolon-separated file named one column 'message;reply'."""
    import json

    jsonl = tmp_path / "t.jsonl"
    row = json.dumps({"customer_text": "my email is maria.lopez@mail.example", "agent_text": "ok"}) + "\n"
    jsonl.write_text(row * 2, encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        read_tickets(jsonl, "csv", {"customer_text": "customer_message"})
    assert "--format jsonl" in str(exc.value) and "maria" not in str(exc.value)
    semi = tmp_path / "t.csv"
    semi.write_text("message;reply\nhi;hello\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        read_tickets(semi, "csv")
    assert "';'" in str(exc.value) and "commas" in str(exc.value)


def test_a_utf16_file_is_named_as_such(tmp_path):
    """CLI QA B5: a UTF-16 CSV (with its byte-order mark) was called a binary file."""
    path = tmp_path / "utf16.csv"
    path.write_text("message,reply\nhi,hello\n", encoding="utf-16")
    with pytest.raises(InvalidInput) as exc:
        read_tickets(path, "csv")
    assert exc.value.code == "not_utf8" and "UTF-16" in str(exc.value)
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InvalidInput) as exc:
        read_tickets(tmp_path / "bin.csv", "csv")
    assert exc.value.code == "binary_file"


def test_normalize_slots():
    assert normalize_slots("{{Purchase ID Anonymized}} / {{Bill Number Anonymized}} / {{Live Chat}}") == (
        "{{Order Number}} / {{Invoice Number}} / {{Live Chat}}"
    )


def test_a_name_the_customer_gave_is_scrubbed_from_the_reply_too(tmp_path):
    """QA: "my name is Maria Lopez" was scrubbed, the reply's "Hello Maria" kept."""
    path = tmp_path / "t.csv"
    path.write_text(
        "question,answer\n"
        "\"Hi, my name is Maria Lopez, where is my parcel?\",\"Hello Maria, your parcel is on its way.\"\n"
        "\"This is John Smith, I need an invoice\",\"Thanks John Smith, we have sent your invoice.\"\n",
        encoding="utf-8")
    tickets, errors = read_tickets(path, "csv", {"question": "customer_message", "answer": "agent_reply"})
    assert not errors
    assert tickets[0].agent_reply == "Hello {{Customer Name}}, your parcel is on its way."
    assert tickets[1].agent_reply == "Thanks {{Customer Name}}, we have sent your invoice."
    assert "Maria" not in tickets[0].customer_message and "John" not in tickets[1].customer_message


def test_a_ticket_without_an_intent_gets_the_one_the_bot_detects(tmp_path):
    # operator QA: a company's CSV has categories, not the bot's intent names; every imported ticket had
    # intent None, so training built prompts without the "Intent:" line the bot always sends
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    path = tmp_path / "own.csv"
    path.write_text("question,answer,intent\n"
                    "Where is my parcel?,It ships today.,\n"
                    "I want my money back,The refund is on its way.,get_refund\n", encoding="utf-8")
    detected = {"Where is my parcel?": "track_order"}
    with Session(engine) as session:
        report = import_tickets(session, path, "csv", {"question": "customer_message", "answer": "agent_reply"},
                                intent_fn=lambda text: detected.get(text, "out_of_scope"))
        session.commit()
        rows = {r.customer_message: r.intent for r in session.scalars(sa.select(ImportedTicket))}
    assert rows == {"Where is my parcel?": "track_order", "I want my money back": "get_refund"}
    assert report.intents_labelled == 1 and "1 without an intent given the one the bot detects" in report.summary()


def test_a_jsonl_file_no_line_of_which_maps_is_one_error_also_with_a_broken_line(tmp_path):
    # operator QA #13: one line cut short made the one summary seven repeated "no customer_message" lines,
    # and the cut line was reported at "column 1"
    path = tmp_path / "own.jsonl"
    path.write_text('{"q": "Where is it?", "a": "On its way."}\n' * 3 + '{"q": "broken json", "a": \n', encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        read_tickets(path, "jsonl")
    assert err.value.code == "missing_columns" and "Keys in the file: a, q" in err.value.message
    assert "1 other line(s) could not be read: line 4: invalid JSON (Expecting value at column 27)" in err.value.message


def test_a_row_whose_only_fault_is_its_date_is_imported_without_it(tmp_path):
    # operator QA #13: "skipped line 3: bad created_at 'not a date'" dropped a good ticket over an optional field
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    path = tmp_path / "own.csv"
    path.write_text("question,answer,intent,created_at\n"
                    "Where is my parcel?,It ships today.,track_order,2026-03-01\n"
                    "Can I return a lamp?,Yes within 30 days.,return_item,not a date\n", encoding="utf-8")
    with Session(engine) as session:
        report = import_tickets(session, path, "csv", {"question": "customer_message", "answer": "agent_reply"})
        session.commit()
        dates = {r.customer_message: r.created_at for r in session.scalars(sa.select(ImportedTicket))}
    assert report.imported == 2 and not report.errors
    assert dates["Can I return a lamp?"] is None and dates["Where is my parcel?"] is not None
    assert "note line 3: created_at 'not a date' is not a date" in report.summary()


JAN = "Hi, I'm Jan de Vries, where is my order LK 42710343? my email is jan@example.com"


def _engine(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ModelsBase.metadata.create_all(engine)
    return engine


def test_the_bots_labels_are_read_from_the_message_as_written_and_only_the_scrubbed_one_is_stored(tmp_path):
    # QA: the intent was read from "Hi, I'm {{Customer Name}}, where is my order LK {{Order Number}}? my email is
    # {{Customer Email}}" (contact_customer_service) where the model reads the customer's own words as track_order
    path = tmp_path / "own.csv"
    path.write_text(f'message,reply\n"{JAN}",It ships tomorrow.\n', encoding="utf-8")
    read: list[tuple[str, str]] = []

    def intent_fn(text: str) -> str:
        read.append(("intent", text))
        return "track_order"

    def tone_fn(text: str) -> str:
        read.append(("tone", text))
        return "neutral"

    with Session(_engine(tmp_path)) as session:
        report = import_tickets(session, path, "csv", intent_fn=intent_fn, tone_fn=tone_fn)
        session.commit()
        row = session.scalars(sa.select(ImportedTicket)).one()
    assert read == [("tone", JAN), ("intent", JAN)]
    assert (row.intent, row.tone, report.intents_labelled) == ("track_order", "neutral", 1)
    assert row.customer_message == ("Hi, I'm {{Customer Name}}, where is my order {{Order Number}}? my email is "
                                    "{{Customer Email}}")
    assert row.data_hash == ticket_hash(row.customer_message, row.agent_reply, "track_order")
    # the text as written is kept only for the labelling: no repr, field or summary shows it
    tickets, _ = read_tickets(path, "csv", keep_raw=True)
    assert "Vries" not in repr(tickets[0]) and "jan@" not in json.dumps(
        {k: str(v) for k, v in vars(tickets[0]).items() if not k.startswith("_")})
    assert "Vries" not in report.summary() and "42710343" not in report.summary()
    plain, _ = read_tickets(path, "csv")
    assert not hasattr(plain[0], "_raw_message")


def test_a_reimport_that_names_the_intents_stores_no_duplicate_and_corrects_the_detected_ones(tmp_path):
    # QA: imported without mapping its intent column (the bot detected one), then again with
    # --map topic=intent: identical (message, reply, intent) pairs were stored twice
    path = tmp_path / "own.csv"
    path.write_text("question,answer,topic\n"
                    "Where is my parcel?,It ships today.,track_order\n"
                    "I want my money back,The refund is on its way.,get_refund\n", encoding="utf-8")
    detected = {"Where is my parcel?": "track_order", "I want my money back": "track_refund"}
    mapping = {"question": "customer_message", "answer": "agent_reply"}
    engine = _engine(tmp_path)
    with Session(engine) as session:
        first = import_tickets(session, path, "csv", mapping, intent_fn=detected.get)
        session.commit()
        assert (first.imported, first.intents_labelled) == (2, 2)
        again = import_tickets(session, path, "csv", {**mapping, "topic": "intent"}, intent_fn=detected.get)
        session.commit()
        rows = session.scalars(sa.select(ImportedTicket).order_by(ImportedTicket.id)).all()
        # one row per exchange; the file's own intent replaces the detected one that was wrong
        assert [(r.customer_message, r.intent) for r in rows] == [("Where is my parcel?", "track_order"),
                                                                  ("I want my money back", "get_refund")]
        assert all(r.data_hash == ticket_hash(r.customer_message, r.agent_reply, r.intent) for r in rows)
        assert (again.imported, again.duplicates, again.relabelled) == (0, 1, 1)
        assert "1 imported before now have the intent this file names" in again.summary()
        third = import_tickets(session, path, "csv", {**mapping, "topic": "intent"})
        session.commit()
        assert (third.imported, third.duplicates, third.relabelled) == (0, 2, 0)
        # without the intent column, what is stored stays (a detection does not overwrite a named intent)
        fourth = import_tickets(session, path, "csv", mapping, intent_fn=lambda text: "cancel_order")
        session.commit()
        assert (fourth.imported, fourth.duplicates) == (0, 2)
        assert [r.intent for r in session.scalars(sa.select(ImportedTicket).order_by(ImportedTicket.id))] == [
            "track_order", "get_refund"]


def test_tickets_imported_while_no_nlu_model_was_active_are_labelled_when_imported_again(tmp_path):
    # QA: they got no intent or tone, silently, and a re-import after `nlu train` found them all duplicates
    path = tmp_path / "own.jsonl"
    path.write_text(json.dumps({"message": JAN, "reply": "It ships tomorrow."}) + "\n"
                    + json.dumps({"message": "Can I pay by PayPal?", "reply": "Yes.", "intent": "payment"}) + "\n",
                    encoding="utf-8")
    engine = _engine(tmp_path)
    with Session(engine) as session:
        first = import_tickets(session, path, "jsonl", intent_fn=lambda text: None, tone_fn=lambda text: None)
        first.label_problem = "no NLU model is active: run `hybridesk nlu train`, then import the file again"
        session.commit()
        assert (first.imported, first.no_intent) == (2, 1)
        assert "  1 ticket(s) have no intent: no NLU model is active: run `hybridesk nlu train`" in first.summary()
        seen: list[str] = []
        again = import_tickets(session, path, "jsonl", intent_fn=lambda text: seen.append(text) or "track_order",
                               tone_fn=lambda text: "neutral")
        session.commit()
        rows = {r.customer_message[:8]: r for r in session.scalars(sa.select(ImportedTicket))}
        assert len(rows) == 2 and seen == [JAN]  # read as written, this time too
        assert (rows["Hi, I'm "].intent, rows["Hi, I'm "].tone) == ("track_order", "neutral")
        assert rows["Hi, I'm "].data_hash == ticket_hash(rows["Hi, I'm "].customer_message, "It ships tomorrow.",
                                                         "track_order")
        assert (rows["Can I pa"].intent, rows["Can I pa"].tone) == ("payment", "neutral")
        assert (again.imported, again.labelled_later, again.duplicates, again.no_intent) == (0, 1, 1, 0)
        assert "1 imported before without an intent now have the one the bot detects" in again.summary()
