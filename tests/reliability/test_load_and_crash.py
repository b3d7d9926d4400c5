"""Short load runs against a real uvicorn subprocess, SIGKILL in the middle, and the reconciliation.

The long measurements (50 customers, real models) live in benchmarks/load_test.py and
benchmarks/crash_recovery.py; these keep the same claims honest on every test run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx
import pytest
import sqlalchemy as sa
from harness import reconcile, run_load, wait_until


def _assert_clean(result, report) -> None:
    summary = result.summary()
    assert summary["messages_acked"] > 0, summary
    assert summary["server_errors_5xx"] == 0, summary
    assert report["ok"], report
    assert report["missing"] == report["duplicated"] == report["out_of_order"] == 0, report


def test_load_sqlite_every_acknowledged_message_stored_once_in_order(server_factory):
    srv = server_factory(delay=0.01).start()
    result = run_load(srv.url, customers=8, duration_s=6, think=(0.1, 0.4), reply_timeout=15, ramp_s=0.5)
    report = reconcile(f"sqlite:///{srv.data_dir / 'hybridesk.db'}", result)
    _assert_clean(result, report)
    summary = result.summary()
    assert summary["no_reply"] == 0 and report["unanswered"] == 0, (summary, report)
    assert report["pending_left"] == 0


@pytest.mark.postgres
def test_load_postgres_every_acknowledged_message_stored_once_in_order(server_factory, pg_url):
    srv = server_factory(delay=0.01, database_url=pg_url).start()
    result = run_load(srv.url, customers=8, duration_s=6, think=(0.1, 0.4), reply_timeout=15, ramp_s=0.5)
    report = reconcile(pg_url, result)
    _assert_clean(result, report)
    assert result.summary()["no_reply"] == 0 and report["unanswered"] == 0


def test_retried_send_is_stored_once(server_factory):
    srv = server_factory().start()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        body = c.post("/api/conversations").json()
        h = {"Authorization": f"Bearer {body['token']}"}
        url = f"/api/conversations/{body['conversation_id']}/messages"
        first = c.post(url, headers=h, json={"text": "Where is my delivery?", "client_message_id": "same-1"})
        again = c.post(url, headers=h, json={"text": "Where is my delivery?", "client_message_id": "same-1"})
        assert first.status_code == again.status_code == 202
        assert first.json()["message_id"] == again.json()["message_id"]
        time.sleep(0.5)
        msgs = c.get(url, headers=h).json()["messages"]
    assert [m["client_message_id"] for m in msgs if m["role"] == "customer"] == ["same-1"]


def _burst(url: str, conversations: int = 4, per_conversation: int = 5) -> tuple[list[int], list[tuple[str, dict]]]:
    """Several customers each sending messages back to back (no waiting for the reply)."""
    codes: list[int] = []
    convs: list[tuple[str, dict]] = []
    with httpx.Client(base_url=url, timeout=20) as c:
        for _ in range(conversations):
            body = c.post("/api/conversations").json()
            convs.append((body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}))

        def one(conv: tuple[str, dict]) -> list[int]:
            with httpx.Client(base_url=url, timeout=20) as cc:
                return [cc.post(f"/api/conversations/{conv[0]}/messages", headers=conv[1],
                                json={"text": f"Question {i} about my delivery", "client_message_id": f"b{i}"}
                                ).status_code for i in range(per_conversation)]

        with concurrent.futures.ThreadPoolExecutor(conversations) as pool:
            for result in pool.map(one, convs):
                codes += result
    return codes, convs


def _all_answered(url: str, convs: list[tuple[str, dict]], timeout: float = 20) -> bool:
    def done() -> bool:
        with httpx.Client(base_url=url, timeout=10) as c:
            for conv, h in convs:
                msgs = c.get(f"/api/conversations/{conv}/messages", headers=h).json()["messages"]
                asked = {m["id"] for m in msgs if m["role"] == "customer"}
                answered = {m["reply_to"] for m in msgs if m["role"] == "bot"}
                if not asked <= answered:
                    return False
        return True

    return wait_until(done, timeout, interval=0.5)


# Found by this suite: on SQLite two appends to one conversation could read the same message_count
# (UNIQUE(conversation_id, seq) -> 500 on the send, lost reply); fixed in bot/db/repositories.py
# (ConversationRepository.get(for_update=True) now takes SQLite's write lock first).
def test_back_to_back_messages_sqlite_all_stored_and_answered(server_factory):
    srv = server_factory(delay=0.01).start()
    codes, convs = _burst(srv.url)
    assert codes == [202] * len(codes), codes
    assert _all_answered(srv.url, convs)
    assert "UNIQUE constraint failed" not in srv.log()


@pytest.mark.postgres
def test_back_to_back_messages_postgres_all_stored_and_answered(server_factory, pg_url):
    srv = server_factory(delay=0.01, database_url=pg_url).start()
    codes, convs = _burst(srv.url)
    assert codes == [202] * len(codes), codes
    assert _all_answered(srv.url, convs)


def test_sigkill_mid_load_loses_nothing_and_every_customer_gets_a_reply(server_factory):
    """SIGKILL while replies are half-written; restart on the same data; nothing acknowledged is lost,
    the half-written replies are kept as ``failed``, every customer gets a reply, and conversations go on."""
    srv = server_factory(delay=0.15).start()  # ~4 s per reply: the kill always lands mid-generation
    db_url = f"sqlite:///{srv.data_dir / 'hybridesk.db'}"
    engine = sa.create_engine(db_url)
    marks: dict[str, float] = {}

    def pending() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM messages WHERE status = 'pending'")).scalar()

    async def crash_and_restart() -> None:
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(wait_until, lambda: pending() >= 2, 20)
        marks["pending_at_kill"] = pending()
        srv.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(srv.start)
        marks["restarted"] = time.monotonic()

    # customers wait for their reply (up to 60 s): recovery answers the interrupted messages
    result = run_load(srv.url, customers=4, duration_s=8, think=(0.2, 0.5), reply_timeout=60, ramp_s=0.5,
                      grace=40, during=crash_and_restart)
    assert srv.starts == 2
    assert wait_until(lambda: reconcile(db_url, result)["unanswered"] == 0, 60, interval=1.0)
    report = reconcile(db_url, result)
    assert report["ok"], report
    assert report["failed_replies"] >= 2, report  # the half-written replies, kept and marked failed
    assert report["pending_left"] == 0
    assert result.summary()["server_errors_5xx"] == 0
    assert result.summary()["no_reply"] == 0
    assert "recovered" in srv.log()
    with engine.connect() as conn:
        failed = conn.execute(sa.text("SELECT reply_to_id, guardrail_details FROM messages "
                                      "WHERE status = 'failed'")).all()
        for reply_to, details in failed:  # each interrupted customer message got one complete reply later
            assert "server stopped" in str(details)
            assert conn.execute(sa.text("SELECT count(*) FROM messages WHERE reply_to_id = :r AND "
                                        "status = 'complete'"), {"r": reply_to}).scalar() == 1
    engine.dispose()
    # conversations continue after the restart with the same tokens
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        for conv, token in result.tokens.items():
            h = {"Authorization": f"Bearer {token}"}
            r = c.post(f"/api/conversations/{conv}/messages", headers=h,
                       json={"text": "And how long is delivery?", "client_message_id": "after-restart"})
            assert r.status_code == 202, r.text
        for conv, token in result.tokens.items():
            h = {"Authorization": f"Bearer {token}"}
            assert wait_until(lambda conv=conv, h=h: _answered_cmid(c, conv, h, "after-restart"), 30, interval=0.3)


def _answered_cmid(c: httpx.Client, conv: str, h: dict, cmid: str) -> bool:
    msgs = c.get(f"/api/conversations/{conv}/messages", headers=h).json()["messages"]
    ids = {m["id"] for m in msgs if m["client_message_id"] == cmid}
    return any(m["role"] == "bot" and m["reply_to"] in ids for m in msgs)


def test_reply_written_by_recovery_reaches_the_open_stream_promptly(server_factory):
    from web_fakes import SSEReader

    srv = server_factory(delay=0.15).start()
    db_url = f"sqlite:///{srv.data_dir / 'hybridesk.db'}"
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        body = c.post("/api/conversations").json()
        conv, h = body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}
        sent = c.post(f"/api/conversations/{conv}/messages", headers=h,
                      json={"text": "How do I return a lamp?"}).json()
    engine = sa.create_engine(db_url)

    def pending() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text("SELECT count(*) FROM messages WHERE status='pending'")).scalar())

    assert wait_until(pending, 10)
    engine.dispose()
    srv.kill()
    srv.start()
    reader = SSEReader(f"{srv.url}/api/conversations/{conv}/events", h, {"after_seq": sent["seq"]})
    reader.start()
    try:
        assert reader.ready.wait(10)
        # recovery needs ~4 s to write the reply; a live push arrives right after, a poll up to 15 s later
        reader.next("message", timeout=9, where=lambda m: m["role"] == "bot" and m["reply_to"] == sent["message_id"])
    finally:
        reader.stop()
