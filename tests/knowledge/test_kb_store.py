"""Store semantics on SQLite: immutable revisions, in force at T, scheduling, retirement, facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kb_helpers import doc

from knowledge.errors import Conflict, InvalidInput, NotFound
from knowledge.ingest import FactSpec
from knowledge.store import KnowledgeStore, normalize_slot

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUN = datetime(2026, 6, 1, tzinfo=UTC)
NEXT_YEAR = datetime(2027, 1, 1, tzinfo=UTC)
WINDOW = FactSpec("return_window_days", "30", "days", "Return window", ["Number of Days", "return window"])


def _returns(store: KnowledgeStore) -> None:
    store.create_document(
        doc("returns", "# Returns\n\n## Window\nReturn within 30 days.", facts=[WINDOW]),
        author="alice",
        publish=True,
        at=JAN,
    )


def test_edit_is_a_new_revision_and_old_text_is_kept(store: KnowledgeStore) -> None:
    _returns(store)
    rev2 = store.add_revision(
        "returns", "# Returns\n\n## Window\nReturn within 45 days.", author="bob", change_note="longer window"
    )
    assert rev2.number == 2 and rev2.status == "draft"
    assert "30 days" in store.get("returns", 1).content
    assert "45 days" in store.get("returns", 2).content
    hist = store.history("returns")
    assert [(r.number, r.author, r.status) for r in hist] == [(1, "alice", "published"), (2, "bob", "draft")]
    assert hist[1].change_note == "longer window"
    assert hist[0].content_hash != hist[1].content_hash
    # a draft is not in force
    assert store.in_force(JUN)[0].number == 1


def test_in_force_at_times_and_scheduled_revision(store: KnowledgeStore) -> None:
    _returns(store)
    store.add_revision(
        "returns",
        "# Returns\n\n## Window\nReturn within 45 days.",
        author="bob",
        facts=[FactSpec("return_window_days", "45", "days", None, ["Number of Days"])],
    )
    store.publish("returns", at=NEXT_YEAR)
    assert store.in_force(datetime(2025, 12, 31, tzinfo=UTC)) == []
    assert store.in_force(JUN)[0].number == 1
    assert store.in_force(NEXT_YEAR + timedelta(seconds=1))[0].number == 2
    assert store.facts_at(JUN)["return_window_days"].value == "30"
    assert store.facts_at(NEXT_YEAR)["return_window_days"].value == "45"


def test_an_edit_published_now_replaces_the_current_text(store: KnowledgeStore) -> None:
    _returns(store)
    with pytest.raises(InvalidInput) as unstated:  # the text says 60, the inherited fact 30
        store.add_revision("returns", "# Returns\n\n## Window\nReturn within 60 days.", author="bob", publish=True)
    assert unstated.value.code == "fact_not_in_text" and len(store.history("returns")) == 1
    store.add_revision(
        "returns", "# Returns\n\n## Window\nReturn within 60 days.", author="bob", publish=True,
        facts=[FactSpec("return_window_days", "60", "days", None, ["Number of Days"])],
    )
    live = store.in_force()
    assert [(r.document_id, r.number) for r in live] == [("returns", 2)]


def test_retired_document_is_never_in_force_again_but_history_stays(store: KnowledgeStore) -> None:
    _returns(store)
    retired = store.retire("returns", note="policy dropped")
    assert [r.status for r in retired] == ["retired"]
    assert store.in_force() == []
    assert store.facts_at() == {}
    assert store.in_force(JUN)[0].number == 1  # what was in force before retirement is still answerable
    with pytest.raises(Conflict):
        store.publish("returns", 1)
    with pytest.raises(Conflict):
        store.retire("returns")


def test_retiring_also_cancels_a_scheduled_revision(store: KnowledgeStore) -> None:
    _returns(store)
    store.add_revision("returns", "# Returns\n\nNew text: still 30 days.", author="bob")
    store.publish("returns", at=NEXT_YEAR)
    store.retire("returns")
    assert store.in_force(NEXT_YEAR + timedelta(days=1)) == []


def test_a_scheduled_retirement_can_be_cancelled_before_it_takes_effect(store: KnowledgeStore) -> None:
    _returns(store)
    # a second revision with an end date of its own, and a retirement before that end
    store.add_revision("returns", "# Returns\n\n## Window\nReturn within 30 days. Until summer.", author="bob",
                       effective_until=datetime.now(UTC) + timedelta(days=60))
    store.publish("returns")
    soon = datetime.now(UTC) + timedelta(days=7)
    store.retire("returns", at=soon, note="dropping it")
    assert store.in_force(soon + timedelta(days=1)) == []
    back = store.cancel_retirement("returns")
    assert [(r.number, r.status) for r in back] == [(1, "published"), (2, "published")]
    assert store.get("returns", 1).effective_until is None
    rev = store.get("returns", 2)
    assert rev.status == "published" and rev.retired_at is None
    assert rev.effective_until > datetime.now(UTC) + timedelta(days=59)  # its own end date, not the retirement's
    assert store.in_force(soon + timedelta(days=1))[0].number == 2
    assert store.facts_at(soon + timedelta(days=1))["return_window_days"].value == "30"
    # retiring now a document scheduled to retire later brings the retirement forward
    store.retire("returns", at=soon)
    brought = store.retire("returns")
    assert [r.number for r in brought] == [1, 2] and store.in_force() == []
    assert store.get("returns", 2).effective_until <= datetime.now(UTC)
    # nothing left to cancel; a retirement in effect is history
    with pytest.raises(Conflict) as nothing:
        store.cancel_retirement("returns")
    assert nothing.value.code == "not_retiring"
    with pytest.raises(Conflict):
        store.retire("returns")  # nothing in force, nothing scheduled
    assert store.in_force() == []
    with pytest.raises(NotFound):
        store.cancel_retirement("nope")


def test_unknown_ids_and_bad_input_raise_clear_errors(store: KnowledgeStore) -> None:
    with pytest.raises(NotFound) as exc:
        store.get("nope")
    assert exc.value.code == "unknown_document"
    _returns(store)
    with pytest.raises(NotFound):
        store.get("returns", 7)
    with pytest.raises(NotFound):
        store.publish("nope")
    with pytest.raises(NotFound):
        store.add_revision("nope", "text", author="x")
    with pytest.raises(InvalidInput):
        store.add_revision("returns", "   ", author="x")
    with pytest.raises(InvalidInput):
        store.create_document(doc("Bad Id!", "text"), author="x")
    with pytest.raises(Conflict):
        store.create_document(doc("returns", "text"), author="x")
    assert len(store.history("returns")) == 1  # nothing half-written


def test_diff_is_a_unified_diff(store: KnowledgeStore) -> None:
    _returns(store)
    store.add_revision("returns", "# Returns\n\n## Window\nReturn within 45 days.", author="bob")
    out = store.diff("returns", 1, 2)
    assert out.startswith("--- returns@r1\n+++ returns@r2")
    assert "-Return within 30 days." in out and "+Return within 45 days." in out


def test_facts_and_placeholders(store: KnowledgeStore) -> None:
    _returns(store)
    facts = store.facts_at()
    f = facts["return_window_days"]
    assert (f.value, f.unit, f.document_id, f.revision, f.anchor) == ("30", "days", "returns", 1, "window")
    for slot in (
        "{{Number of Days}}",
        "number  of days",
        "NUMBER_OF_DAYS",
        "Return Window",
        "return window days",
    ):
        assert store.resolve_placeholder(slot) == f, slot
    assert store.resolve_placeholder("{{Unknown Slot}}") is None
    assert normalize_slot(" {{ Customer_Support  phone-number }} ") == "customer support phone number"


def test_a_fact_has_one_home(store: KnowledgeStore) -> None:
    _returns(store)
    with pytest.raises(Conflict) as exc:
        store.create_document(doc("other", "Other text: 30 days.", facts=[WINDOW]), author="x", publish=True)
    assert exc.value.code == "fact_conflict"
    with pytest.raises(NotFound):
        store.get("other")  # rolled back as a whole


def test_timestamps_are_timezone_aware_utc(store: KnowledgeStore) -> None:
    _returns(store)
    rev = store.get("returns")
    for value in (rev.created_at, rev.published_at, rev.effective_from):
        assert value is not None and value.utcoffset() == timedelta(0)
    naive = datetime(2026, 6, 1)  # naive input is taken as UTC
    assert store.in_force(naive)[0].number == 1


def test_generation_grows_with_every_write(store: KnowledgeStore) -> None:
    g0 = store.generation()
    _returns(store)
    g1 = store.generation()
    store.retire("returns")
    assert g0 < g1 < store.generation()


def test_list_shows_latest_and_in_force(store: KnowledgeStore) -> None:
    _returns(store)
    store.add_revision("returns", "Draft text.", author="bob")
    [summary] = store.list()
    assert (summary.latest_revision, summary.latest_status, summary.in_force_revision) == (2, "draft", 1)


def test_a_new_revision_never_starts_in_the_past(store: KnowledgeStore) -> None:
    """QA: `kb publish` of a draft declaring a past start, and re-importing an edited file that keeps its
    old `effective_from`, both back-dated the new revision: what was in force then was rewritten."""
    _returns(store)  # in force since JAN
    store.add_revision("returns", "# Returns\n\n## Window\nReturn within 45 days.", author="bob",
                       effective_from=JAN - timedelta(days=30),
                       facts=[FactSpec("return_window_days", "45", "days", None, ["Number of Days"])])
    # in the past by more than a few minutes: refused, for publishing and retiring alike
    for call in (lambda: store.publish("returns", 2, at=JUN), lambda: store.retire("returns", at=JUN)):
        with pytest.raises(InvalidInput) as past:
            call()
        assert past.value.code == "date_in_past"
    before = datetime.now(UTC)
    published = store.publish("returns", 2)  # the declared start is in the past: it starts now
    assert published.status == "published" and published.effective_from >= before - timedelta(seconds=1)
    assert store.facts_at(JUN)["return_window_days"].value == "30"  # what customers were told then
    assert store.facts_at()["return_window_days"].value == "45"
    # a document's first revision may start in the past: the history it brings with it
    store.create_document(doc("hours", "We answer 9am-5pm.", effective_from=JAN,
                              facts=[FactSpec("support_hours", "9am-5pm", None, None, [])]), author="x", publish=True)
    assert store.get("hours").effective_from == JAN


def test_two_editors_saving_at_the_same_moment_get_a_stale_edit_not_an_error(store, monkeypatch) -> None:
    # QA on PostgreSQL: both read revision 1 and wrote revision 2; the second insert failed on the
    # unique (document, number) key with a 500. Both now meet inside _new_revision before either commits.
    import contextlib
    import threading

    _returns(store)
    original = KnowledgeStore._new_revision
    barrier = threading.Barrier(2, timeout=20)

    def together(s, doc, parsed, author):
        with contextlib.suppress(threading.BrokenBarrierError):  # (SQLite: a writer may wait for the other)
            barrier.wait()
        return original(s, doc, parsed, author)

    monkeypatch.setattr(KnowledgeStore, "_new_revision", staticmethod(together))
    outcomes: list[object] = []

    def save(who: str) -> None:
        try:
            outcomes.append(store.add_revision("returns", f"# Returns\n\n## Window\nReturn within 30 days. {who}",
                                               author=who).number)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes.append(exc)

    threads = [threading.Thread(target=save, args=(who,)) for who in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert all(isinstance(e, Conflict) and e.code == "stale_edit" for e in errors), errors
    assert len(store.history("returns")) == 1 + outcomes.count(2) + outcomes.count(3)
    assert 2 in outcomes


def test_a_revision_published_before_a_pending_retirement_retires_with_it_and_stays_if_cancelled(
        store: KnowledgeStore) -> None:
    """QA: retire at T, publish an edit (whose end date the form had set to T), cancel the retirement:
    the revision before the edit came back in force for good at T, with the old text."""
    _returns(store)
    soon = datetime.now(UTC) + timedelta(days=7)
    store.retire("returns", at=soon)
    store.add_revision("returns", "# Returns\n\n## Window\nReturn within 30 days, now by post too.", author="bob")
    edit = store.publish("returns")
    assert (edit.status, edit.effective_until) == ("retired", soon)  # the document's retirement holds for it
    assert store.in_force()[0].number == 2 and store.in_force(soon + timedelta(days=1)) == []
    back = store.cancel_retirement("returns")
    assert sorted(r.number for r in back) == [1, 2]
    later = store.in_force(soon + timedelta(days=30))
    assert [r.number for r in later] == [2] and "by post" in store.get("returns", 2).content
    assert store.get("returns", 2).effective_until is None
    # a revision scheduled to start after the retirement brings the document back: it does not retire
    store.retire("returns", at=soon)
    store.add_revision("returns", "# Returns\n\n## Window\nReturn within 30 days. Back again.", author="bob")
    revived = store.publish("returns", at=soon + timedelta(days=1))
    assert revived.status == "published" and revived.effective_until is None
    assert store.in_force(soon + timedelta(hours=12)) == []
    assert store.in_force(soon + timedelta(days=2))[0].number == 3
