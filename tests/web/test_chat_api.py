"""The customer chat API over a real uvicorn server (real DB, manager, actions; fake models)."""

from __future__ import annotations

import json
import time

import httpx
from web_fakes import chat_limits, start_conversation

from bot.db.repositories import ConversationRepository, MessageRepository
from bot.web import live
from bot.web.ratelimit import RateLimiter

RETURN_Q = "How long do I have to return a lamp?"


def wait_for_reply(client: httpx.Client, cid: str, headers: dict[str, str], timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]
        bots = [m for m in msgs if m["role"] == "bot"]
        if bots:
            return bots[-1]
        time.sleep(0.05)
    raise AssertionError("no reply")


def test_start_conversation_and_openapi(client):
    r = client.post("/api/conversations", json={"metadata": {"page": "/help"}})
    assert r.status_code == 201
    body = r.json()
    assert len(body["conversation_id"]) == 32 and len(body["token"]) >= 40
    assert "Larkspur" in body["greeting"]
    spec = client.get("/openapi.json").json()
    for path in ("/api/conversations", "/api/conversations/{conversation_id}/messages",
                 "/api/conversations/{conversation_id}/events", "/api/messages/{message_id}/rating",
                 "/api/conversations/{conversation_id}/handoff", "/api/conversations/{conversation_id}/end"):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_message_is_stored_before_the_reply_and_streamed_with_sources(client, sse, chat_server):
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    chat_server.services.generator.delay = 0.05
    try:
        started = time.perf_counter()
        r = client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q, "client_message_id": "m-1"},
                        headers=headers)
        ack_ms = (time.perf_counter() - started) * 1000
        assert r.status_code == 202, r.text
        ack = r.json()
        # acknowledged = stored: visible in history while the reply is still being written
        history = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]
        assert [m["text"] for m in history] == [RETURN_Q]
        assert ack_ms < 1000
        tokens = []
        while True:
            kind, data, ident = stream.next()
            if kind == "token":
                assert data["reply_to"] == ack["message_id"]
                tokens.append(data["text"])
            elif kind == "message" and data["role"] == "bot":
                break
            elif kind == "message":
                assert data["client_message_id"] == "m-1" and ident == str(ack["seq"])
    finally:
        chat_server.services.generator.delay = 0.02
    assert len(tokens) >= 2, "the reply was not streamed in pieces"
    assert "".join(tokens).strip() == data["text"]
    assert "30 days" in data["text"]
    assert ident == str(data["seq"]) and data["reply_to"] == ack["message_id"]
    assert data["sources"] == [{"document_id": "returns-policy", "revision": 3, "title": "Returns policy",
                                "heading": "Who can return", "anchor": "who-can-return",
                                "url": "/kb/returns-policy#who-can-return"}]


def test_live_message_events_match_the_stored_messages(client, sse):
    """The live events are built from the rows as the manager committed them (not read back):
    they must say exactly what the history API reads from the database."""
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q, "client_message_id": "m-2"},
                headers=headers)
    customer = stream.next("message", where=lambda d: d["role"] == "customer")[1]
    reply = stream.next("message", where=lambda d: d["role"] == "bot")[1]
    stored = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]
    assert stored == [customer, reply]
    assert reply["reply_to"] == customer["id"] and reply["sources"] and reply["created_at"]


def test_retried_send_with_same_client_id_is_stored_once(client):
    cid, headers = start_conversation(client)
    body = {"text": RETURN_Q, "client_message_id": "retry-1"}
    a = client.post(f"/api/conversations/{cid}/messages", json=body, headers=headers).json()
    b = client.post(f"/api/conversations/{cid}/messages", json=body, headers=headers).json()
    assert a["message_id"] == b["message_id"]
    wait_for_reply(client, cid, headers)
    time.sleep(0.3)
    msgs = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]
    assert [m["role"] for m in msgs] == ["customer", "bot"]


def test_reconnect_replays_missed_messages_from_last_event_id(client, sse):
    cid, headers = start_conversation(client)
    client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q}, headers=headers)
    reply = wait_for_reply(client, cid, headers)
    stream = sse(cid, headers | {"Last-Event-ID": "1"})
    kind, data, ident = stream.next("message")
    assert data["id"] == reply["id"] and ident == str(reply["seq"])
    by_query = sse(cid, headers, after_seq=0)
    assert by_query.next("message")[1]["role"] == "customer"
    assert by_query.next("message")[1]["id"] == reply["id"]


def test_stream_dropped_mid_reply_reconnects_to_the_full_reply(client, sse, chat_server):
    cid, headers = start_conversation(client)
    first = sse(cid, headers)
    chat_server.services.generator.delay = 0.1
    try:
        ack = client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q}, headers=headers).json()
        first.next("token")
        first.stop()  # the network drops after the first piece
        time.sleep(0.3)
        again = sse(cid, headers | {"Last-Event-ID": str(ack["seq"])})
        kind, data, _ = again.next("message", timeout=20, where=lambda d: d["role"] == "bot")
    finally:
        chat_server.services.generator.delay = 0.02
    assert data["text"].startswith("You can return most items within 30 days")
    assert data["text"].endswith("5 working days.")


def test_token_opens_its_own_conversation_only(client, chat_server):
    a, headers_a = start_conversation(client)
    b, headers_b = start_conversation(client)
    wrong = client.get(f"/api/conversations/{b}/messages", headers=headers_a)
    unknown = client.get("/api/conversations/ffffffffffffffffffffffffffffffff/messages", headers=headers_a)
    missing = client.get(f"/api/conversations/{a}/messages")
    assert wrong.status_code == unknown.status_code == missing.status_code == 403
    assert wrong.json() == unknown.json() == missing.json()  # existence is not leaked
    assert client.post(f"/api/conversations/{b}/messages", json={"text": "hi"}, headers=headers_a).status_code == 403
    assert client.post(f"/api/conversations/{b}/handoff", headers=headers_a).status_code == 403
    assert client.post(f"/api/conversations/{b}/end", json={}, headers=headers_a).status_code == 403
    ev = httpx.get(f"{chat_server.url}/api/conversations/{b}/events", params={"token": "nope"}, timeout=5)
    assert ev.status_code == 403
    token_a = headers_a["Authorization"].split()[1]
    with httpx.stream("GET", f"{chat_server.url}/api/conversations/{a}/events", params={"token": token_a},
                      timeout=5) as ok:
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/event-stream")


def test_bad_input(client):
    cid, headers = start_conversation(client)
    url = f"/api/conversations/{cid}/messages"
    too_long = client.post(url, json={"text": "a" * 2001}, headers=headers)
    assert too_long.status_code == 413
    assert "2000" in too_long.json()["error"]["message"]
    huge = client.post(url, content=b'{"text": "' + b"a" * 70_000 + b'"}', headers=headers | {
        "Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
    malformed = client.post(url, content=b'{"text": ', headers=headers | {"Content-Type": "application/json"})
    assert malformed.status_code == 422
    missing = client.post(url, json={"txt": "hello"}, headers=headers)
    assert missing.status_code == 422 and "text" in missing.json()["error"]["message"]
    wrong_type = client.post(url, json={"text": ["a"]}, headers=headers)
    assert wrong_type.status_code == 422 and "text" in wrong_type.json()["error"]["message"]
    empty = client.post(url, json={"text": "   "}, headers=headers)
    assert empty.status_code == 422 and empty.json()["error"]["fields"]["field"] == "text"
    huge_id = client.post(f"/api/messages/{10**30}/rating", json={"rating": "up"}, headers=headers)
    assert huge_id.status_code == 422 and "message_id" in huge_id.json()["error"]["message"]
    bad_rating = client.post("/api/messages/1/rating", json={"rating": "meh"}, headers=headers)
    assert bad_rating.status_code == 422 and "rating" in bad_rating.json()["error"]["message"]


def test_markup_is_kept_as_plain_text(client):
    cid, headers = start_conversation(client)
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
    client.post(f"/api/conversations/{cid}/messages", json={"text": evil}, headers=headers)
    r = client.get(f"/api/conversations/{cid}/messages", headers=headers)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["messages"][0]["text"] == evil


def test_rating(client, chat_server):
    cid, headers = start_conversation(client)
    ack = client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q}, headers=headers).json()
    reply = wait_for_reply(client, cid, headers)
    url = f"/api/messages/{reply['id']}/rating"
    assert client.post(url, json={"rating": "down", "comment": "too vague"}, headers=headers).json() == {
        "message_id": reply["id"], "rating": "down"}
    assert client.post(url, json={"rating": "up"}, headers=headers).status_code == 200
    own = client.post(f"/api/messages/{ack['message_id']}/rating", json={"rating": "up"}, headers=headers)
    assert own.status_code == 422
    _other, other_headers = start_conversation(client)
    stranger = client.post(url, json={"rating": "down"}, headers=other_headers)
    unknown = client.post("/api/messages/999999/rating", json={"rating": "down"}, headers=other_headers)
    assert stranger.status_code == unknown.status_code == 403 and stranger.json() == unknown.json()
    from bot.db.repositories import FeedbackRepository

    with chat_server.services.db.unit_of_work() as session:
        fb = FeedbackRepository(session).for_message(reply["id"])
        assert (fb.rating, fb.comment) == (1, "too vague")
        assert ConversationRepository(session).get(cid).state["thumbs_down"] == 0


def test_handoff_queues_for_a_person_and_streams_the_mode(client, sse, chat_server):
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    r = client.post(f"/api/conversations/{cid}/handoff", headers=headers)
    assert r.json() == {"conversation_id": cid, "mode": "handoff_requested"}
    assert stream.next("message")[1]["role"] == "system"
    assert stream.next("mode")[1]["mode"] == "handoff_requested"
    again = client.post(f"/api/conversations/{cid}/handoff", headers=headers)
    assert again.json()["mode"] == "handoff_requested"
    history = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()
    assert history["mode"] == "handoff_requested" and len(history["messages"]) == 1
    with chat_server.services.db.unit_of_work() as session:  # when: the agents' queue is longest waiting first
        assert "handoff_at" in ConversationRepository(session).get(cid).state


def test_agent_messages_arrive_live_and_the_bot_stays_silent(client, sse, chat_server):
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    manager = chat_server.app.state.manager
    with chat_server.services.db.unit_of_work() as session:
        ConversationRepository(session).get(cid).mode = "human"
    # what the console does when an agent writes
    agent_msg = manager.receive(cid, "Hi, I'm Maya from the support team. <b>How can I help?</b>", role="agent")
    live.publish(cid, live.mode_event("human"))
    live.publish(cid, live.message_event(agent_msg))
    assert stream.next("mode")[1]["mode"] == "human"
    data = stream.next("message", where=lambda d: d["role"] == "agent")[1]
    assert data["text"].endswith("<b>How can I help?</b>")
    client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q}, headers=headers)
    time.sleep(0.6)
    roles = [m["role"] for m in client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]]
    assert roles == ["agent", "customer"]


def test_end_conversation_with_satisfaction(client, chat_server):
    cid, headers = start_conversation(client)
    assert client.post(f"/api/conversations/{cid}/end", json={"satisfaction": 9}, headers=headers).status_code == 422
    r = client.post(f"/api/conversations/{cid}/end", json={"satisfaction": 4}, headers=headers)
    assert r.json() == {"conversation_id": cid, "status": "ended", "satisfaction": 4}
    late = client.post(f"/api/conversations/{cid}/messages", json={"text": "one more"}, headers=headers)
    assert late.status_code == 409
    with chat_server.services.db.unit_of_work() as session:
        conv = ConversationRepository(session).get(cid)
        assert (conv.status, conv.satisfaction) == ("ended", 4) and conv.ended_at is not None
        assert list(MessageRepository(session).history(cid)) == []


def _agent(services, email):
    from bot.db.models import User

    with services.db.unit_of_work() as session:
        user = User(email=email, display_name="Maya", role="agent", password_hash="x")
        session.add(user)
        session.flush()
        return user


def test_a_chat_ended_by_an_agent_or_elsewhere_ends_the_customers_stream(client, sse, chat_server, monkeypatch):
    """The widget learnt that an agent had ended the chat only when its next message was refused."""
    from bot.console import takeover
    from bot.web import routes_chat

    services, manager = chat_server.services, chat_server.app.state.manager
    agent = _agent(services, "maya.ends@larkspur.example")
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    takeover.take_over(services.db, cid, agent, publish=live.publish)
    takeover.end_chat(manager, cid, agent, publish=live.publish)
    notice = stream.next("message", where=lambda d: d["role"] == "system" and "ended this chat" in d["text"])
    assert notice[1]["text"].startswith("Maya from our support team has ended this chat.")
    assert stream.next("status")[1] == {"status": "ended", "reason": "agent_ended"}
    assert stream.closed.wait(10)  # and the stream ends: nothing more will happen in this chat

    # a stream opened on an ended chat says so at once (ready says it too) and ends
    late = sse(cid, headers, after_seq=0)
    ready = late.next("ready")[1]
    assert ready["status"] == "ended"
    late.next("message", where=lambda d: "ended this chat" in d["text"])  # what it missed
    assert late.next("status")[1]["status"] == "ended" and late.closed.wait(10)

    # the customer ending it from another device: the open stream is told (the live event)
    cid2, headers2 = start_conversation(client)
    stream2 = sse(cid2, headers2)
    assert client.post(f"/api/conversations/{cid2}/end", json={}, headers=headers2).status_code == 200
    assert stream2.next("status")[1] == {"status": "ended", "reason": "customer_ended"}
    assert stream2.closed.wait(10)

    # ended where no live event reaches this process: the stream's poll finds it
    monkeypatch.setattr(routes_chat, "POLL_SECONDS", 0.3)
    cid3, headers3 = start_conversation(client)
    stream3 = sse(cid3, headers3)
    manager.end(cid3)
    assert stream3.next("status")[1]["status"] == "ended" and stream3.closed.wait(10)


def test_rate_limits_answer_429_with_retry_after(client, chat_server):
    cid, headers = start_conversation(client)
    with chat_limits(chat_server.app, new_conversations=(1, 0.01), per_conversation=(2, 0.05)):
        url = f"/api/conversations/{cid}/messages"
        codes = [client.post(url, json={"text": f"question {i}"}, headers=headers).status_code for i in range(3)]
        assert codes == [202, 202, 429]
        limited = client.post(url, json={"text": "again"}, headers=headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "wait" in limited.json()["error"]["message"]
        assert client.post("/api/conversations").status_code == 201
        assert client.post("/api/conversations").status_code == 429


def test_rest_webhook_is_rate_limited_per_sender_and_per_address(client, chat_server):
    """Each webhook call runs the model: the chat API's limits apply to it, for one sender and for
    an address that makes up a new sender per message."""
    with chat_limits(chat_server.app, per_ip=(4, 0.01), per_conversation=(2, 0.01)):
        url = "/webhooks/rest/webhook"
        codes = [client.post(url, json={"sender": "flood-1", "message": f"question {i}"}).status_code
                 for i in range(3)]
        assert codes == [200, 200, 429]
        codes = [client.post(url, json={"sender": f"made-up-{i}", "message": "hi"}).status_code for i in range(3)]
        assert codes == [200, 429, 429]  # 4 requests from this address in all, then refused
        limited = client.post(url, json={"sender": "someone-else", "message": "hi"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"


def test_reads_and_event_streams_count_against_the_address_limit(client, chat_server):
    """Opening event streams (long-lived, each polling the database) or reading the history in a loop
    draws on the address's request bucket like every other chat API request."""
    cid, headers = start_conversation(client)
    with chat_limits(chat_server.app, per_ip=(2, 0.01)):
        codes = [client.get(f"/api/conversations/{cid}/messages", headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        stream = client.get(f"/api/conversations/{cid}/events", headers=headers)  # refused before it opens
        assert stream.status_code == 429 and int(stream.headers["Retry-After"]) >= 1


def test_token_bucket_refills():
    bucket = RateLimiter(capacity=2, rate=1.0)
    assert [bucket.check("k", now=100.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert bucket.check("k", now=101.0) == 0.0
    assert bucket.check("other", now=101.0) == 0.0


def test_favicon_request_is_answered_without_a_404(client):
    """Browsers ask every page's server for /favicon.ico; the demo page's request was a 404 in the log."""
    r = client.get("/favicon.ico")
    assert r.status_code == 204 and r.content == b""
    assert "max-age" in r.headers["cache-control"]  # asked once a day, not on every page


def test_demo_page_widget_and_cors(client):
    for path in ("/", "/demo"):
        page = client.get(path)
        assert page.status_code == 200 and "Larkspur" in page.text
        assert '<script src="/static/widget.js"' in page.text
    js = client.get("/static/widget.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert len(js.content) <= 60 * 1024
    assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text and "document.write" not in js.text
    assert "cdn" not in js.text.lower() and "import(" not in js.text
    pre = client.options("/api/conversations", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://x"}).headers


def test_concurrent_messages_in_one_conversation_are_all_stored_and_answered(client, chat_server):
    """SQLite ignores SELECT ... FOR UPDATE: racing writers must not cost a message (or a 500)."""
    from concurrent.futures import ThreadPoolExecutor

    cid, headers = start_conversation(client)

    def post(i: int) -> int:
        with httpx.Client(base_url=chat_server.url, timeout=20) as c:
            return c.post(f"/api/conversations/{cid}/messages", json={"text": f"How do I return item {i}?"},
                          headers=headers).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(post, range(6)))
    assert codes == [202] * 6
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msgs = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]
        if sum(m["role"] == "bot" for m in msgs) == 6:
            break
        time.sleep(0.1)
    assert sorted(m["role"] for m in msgs) == ["bot"] * 6 + ["customer"] * 6
    assert [m["seq"] for m in msgs] == list(range(1, 13))


def test_oversized_body_without_content_length_is_refused_with_413(client):
    """A chunked upload (no Content-Length) over the body limit gets the same 413 as one that
    announces its size, not FastAPI's 400 "There was an error parsing the body"."""
    cid, headers = start_conversation(client)

    def chunks():
        yield b'{"text": "'
        for _ in range(70):
            yield b"a" * 1000
        yield b'"}'

    r = client.post(f"/api/conversations/{cid}/messages", content=chunks(),
                    headers=headers | {"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_malformed_json_is_named_as_such(client):
    """A body that is not JSON is reported on the field "body" with what is wrong and where, not as
    "Invalid request: 9: JSON decode error" (the character offset posing as a field name)."""
    cid, headers = start_conversation(client)
    r = client.post(f"/api/conversations/{cid}/messages", content=b'{"text": ',
                    headers=headers | {"Content-Type": "application/json"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"]["problems"][0]["field"] == "body"
    assert "not valid JSON" in error["message"] and "character 9" in error["message"]
    # bodies FastAPI cannot even decode were a bare 400 "There was an error parsing the body"
    json_headers = headers | {"Content-Type": "application/json"}
    for body, reason in ((b'{"text": "caf\xe9"}', "not UTF-8 text"),
                         (b'{"text": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply")):
        r = client.post(f"/api/conversations/{cid}/messages", content=body, headers=json_headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_request" and reason in r.json()["error"]["message"]


def test_rest_webhook_takes_json_whatever_the_content_type(client):
    """Like Rasa's own REST channel: the README's `curl -d '{"sender": ..., "message": ...}'` sends
    the JSON as application/x-www-form-urlencoded, and it is answered."""
    body = json.dumps({"sender": "ann", "message": RETURN_Q})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = client.post("/webhooks/rest/webhook", content=body.encode(), headers=headers)
        assert r.status_code == 200, (content_type, r.text)
        assert r.json()[0]["recipient_id"] == "ann" and r.json()[0]["text"]
    bad = client.post("/webhooks/rest/webhook", content=b"sender=ann&message=hi",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 422 and "JSON" in bad.json()["error"]["message"]
    missing = client.post("/webhooks/rest/webhook", content=b'{"sender": "ann"}',
                          headers={"Content-Type": "text/plain"})
    assert missing.status_code == 422 and "message" in missing.json()["error"]["message"]
    spec = client.get("/openapi.json").json()["paths"]["/webhooks/rest/webhook"]["post"]
    assert "RestMessage" in str(spec["requestBody"])  # the docs still show the body's schema


def test_rest_webhook_names_json_it_cannot_read(client, chat_server):
    """Nesting past Python's recursion limit but under the body limit was a 500; the reasons are named."""
    url = "/webhooks/rest/webhook"
    for depth in (1_200, 10_000):
        nested = b'{"sender": "deep", "message": "hi", "metadata": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
        r = client.post(url, content=nested)
        assert r.status_code == 422, (depth, r.text[:200])
        assert "nested too deeply" in r.json()["error"]["message"]
    r = client.post(url, content=b'{"sender": "ann", "message": "hi", "metadata": {"n": 1' + b"0" * 5000 + b"}}")
    assert r.status_code == 422 and "not UTF-8" not in r.json()["error"]["message"]
    assert "digits" in r.json()["error"]["message"]
    # NaN and Infinity are not JSON, but Python reads them; PostgreSQL's JSON types refuse them
    r = client.post(url, content=b'{"sender": "nan-meta", "message": "hi", "metadata": {"x": NaN, "y": [-Infinity]}}')
    assert r.status_code == 200, r.text
    manager = chat_server.app.state.manager
    stored = manager.by_sender("rest", "nan-meta").customer_metadata
    assert stored == {"x": "nan", "y": ["-inf"]}
    json.dumps(stored, allow_nan=False)  # strict JSON, storable in PostgreSQL
    r = client.post(url, content=b'{"sender": "ann", "message": "caf\xe9"}')
    assert r.status_code == 422 and "not UTF-8 text" in r.json()["error"]["message"]


def test_every_response_says_nosniff_and_the_demo_page_has_a_policy(client):
    cid, headers = start_conversation(client)
    for response in (client.get(f"/api/conversations/{cid}", headers=headers), client.get("/static/widget.js"),
                     client.get("/"), client.get("/api/conversations/nope"), client.get("/healthz")):
        assert response.headers.get("x-content-type-options") == "nosniff", response.url
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "object-src 'none'" in csp
    # the console's own stricter policy is not replaced
    assert "frame-ancestors 'none'" in client.get("/console/login").headers["content-security-policy"]
    # HSTS over HTTPS only (here: behind a trusted proxy that says so; a local demo stays plain HTTP)
    assert "strict-transport-security" not in client.get("/healthz").headers
    proxied = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["strict-transport-security"] == "max-age=31536000"


def test_a_reply_being_written_when_an_agent_takes_over_stops_reaching_the_customer(client, sse, chat_server):
    cid, headers = start_conversation(client)
    stream = sse(cid, headers)
    sentences = [f"We are glad you asked{' ' + 'and ' * i}about that." for i in range(24)]
    chat_server.services.generator.enqueue(" ".join(sentences))
    chat_server.services.generator.delay = 0.03
    try:
        client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q}, headers=headers)
        stream.next("token")
        # an agent takes the conversation over while the reply streams (what the console's takeover does)
        with chat_server.services.db.unit_of_work() as session:
            ConversationRepository(session).get(cid).mode = "human"
        live.publish(cid, live.mode_event("human", "agent_took_over"))
        stream.next("mode")
        after = []
        while True:
            kind, data, _ = stream.next(timeout=30)
            if kind == "token":
                after.append(data["text"])
            elif kind == "mode":  # the manager's own notice that the reply was discarded
                break
    finally:
        chat_server.services.generator.delay = 0.02
    # tokens stop within one check of the mode (HELD_CHECK_S), not at the end of the reply
    from bot.conversation.manager import HELD_CHECK_S

    assert len(after) <= HELD_CHECK_S / 0.03 / 4 + 2, after
    history = client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]
    assert [m["role"] for m in history] == ["customer"]  # the half-written reply is not shown either


def test_a_question_asked_while_an_agent_held_the_chat_is_answered_after_the_hand_back(client, chat_server):
    import re

    from bot.cli_users import add_user

    with chat_server.services.db.unit_of_work() as session:
        add_user(session, "maya@larkspur.example", "agent", "correct horse battery staple 7", "Maya")
    agent = httpx.Client(base_url=str(client.base_url), timeout=10)
    page = agent.get("/console/login").text
    signed_in = agent.post("/console/login", data={
        "email": "maya@larkspur.example", "password": "correct horse battery staple 7", "next": "/console",
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)})
    assert signed_in.status_code in (200, 303), signed_in.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', agent.get("/console/analytics").text).group(1)
    cid, headers = start_conversation(client)
    json_accept = {"Accept": "application/json"}
    assert agent.post(f"/console/conversations/{cid}/takeover", data={"csrf_token": csrf},
                      headers=json_accept).status_code == 200
    asked = client.post(f"/api/conversations/{cid}/messages", json={"text": RETURN_Q}, headers=headers).json()
    time.sleep(0.3)
    assert [m["role"] for m in client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]] \
        == ["system", "customer"]  # held: the bot stays silent
    assert agent.post(f"/console/conversations/{cid}/handback", data={"csrf_token": csrf},
                      headers=json_accept).status_code == 200
    reply = wait_for_reply(client, cid, headers)
    assert reply["reply_to"] == asked["message_id"] and "30 days" in reply["text"]
    # a question the agent answered is not answered again after a hand-back
    agent.post(f"/console/conversations/{cid}/takeover", data={"csrf_token": csrf}, headers=json_accept)
    client.post(f"/api/conversations/{cid}/messages", json={"text": "And for sofas?"}, headers=headers)
    agent.post(f"/console/conversations/{cid}/messages", data={"csrf_token": csrf, "text": "Sofas too, 30 days."},
               headers=json_accept)
    agent.post(f"/console/conversations/{cid}/handback", data={"csrf_token": csrf}, headers=json_accept)
    time.sleep(0.5)
    roles = [m["role"] for m in client.get(f"/api/conversations/{cid}/messages", headers=headers).json()["messages"]]
    assert roles[-4:] == ["customer", "agent", "system", "system"] or roles[-3:] == ["customer", "agent", "system"]
    agent.close()


def test_direction_overrides_and_invisible_characters_are_taken_out(client):
    """QA: "\u202eTHIS TEXT IS REVERSED" printed the console's "waiting since ..." line backwards, and a
    message of zero-width characters only was stored as an invisible customer message."""
    cid, headers = start_conversation(client)
    url = f"/api/conversations/{cid}/messages"
    r = client.post(url, json={"text": "\u202eTHIS TEXT\u2066 IS\u2069 REVERSED\u200b waiting"}, headers=headers)
    assert r.status_code == 202, r.text
    for invisible in ("\u200b\u200b\u2060\ufeff", "\u202e \u202c", "\u200d"):
        r = client.post(url, json={"text": invisible}, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == "empty_message", (invisible, r.text)
    # emoji sequences and Persian keep their joiners; right-to-left marks stay
    for kept in ("👩\u200d👩\u200d👧", "می\u200cخواهم", "\u200fשלום"):
        assert client.post(url, json={"text": kept}, headers=headers).status_code == 202
    customer = [m["text"] for m in client.get(url, headers=headers).json()["messages"] if m["role"] == "customer"]
    assert customer == ["THIS TEXT IS REVERSED waiting", "👩\u200d👩\u200d👧", "می\u200cخواهم", "\u200fשלום"]


def test_a_body_not_labelled_json_is_told_to_say_so(client):
    # QA: text/plain or form bodies got "Input should be a valid dictionary or object to extract fields from"
    cid, headers = start_conversation(client)
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        r = client.post(f"/api/conversations/{cid}/messages", content=b'{"text": "hi"}',
                        headers={**headers, "Content-Type": content_type})
        assert r.status_code == 422
        message = r.json()["error"]["message"]
        assert "Content-Type: application/json" in message and content_type in message, message
