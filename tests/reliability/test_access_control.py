"""Access control: conversations are private to their token, the console refuses anonymous users,
rate limits answer 429 with Retry-After, and no secret reaches the logs."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from reliability_support import ADMIN_EMAIL, ADMIN_PASSWORD, start_conversation
from starlette.routing import Mount, Route

DUMMY = {"conversation_id": "0" * 32, "message_id": "1", "user_id": "1", "document_id": "returns-policy",
         "path": "x"}


def _wait_for_reply(client, conv: str, headers: dict[str, str], timeout: float = 10.0, after: int = 0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = client.get(f"/api/conversations/{conv}/messages", headers=headers).json()["messages"]
        bots = [m for m in msgs if m["role"] == "bot"]
        if len(bots) > after:
            return bots[-1]
        time.sleep(0.05)
    raise AssertionError("no reply")


def test_customer_a_can_never_read_or_write_b(client):
    a, a_headers, _ = start_conversation(client)
    b, b_headers, b_token = start_conversation(client)
    assert client.post(f"/api/conversations/{b}/messages", headers=b_headers,
                       json={"text": "How do I return a lamp?"}).status_code == 202
    b_reply = _wait_for_reply(client, b, b_headers)
    before = client.get(f"/api/conversations/{b}/messages", headers=b_headers).json()

    forbidden = [
        ("GET", f"/api/conversations/{b}/messages", {}),
        ("GET", f"/api/conversations/{b}/events", {}),
        ("POST", f"/api/conversations/{b}/messages", {"json": {"text": "hijack"}}),
        ("POST", f"/api/conversations/{b}/handoff", {}),
        ("POST", f"/api/conversations/{b}/end", {"json": {"satisfaction": 1}}),
        ("POST", f"/api/messages/{b_reply['id']}/rating", {"json": {"rating": "down"}}),
    ]
    attackers = {
        "A's token": a_headers,
        "no token": {},
        "empty bearer": {"Authorization": "Bearer "},
        "B's token, altered": {"Authorization": f"Bearer {b_token[:-1]}{'A' if b_token[-1] != 'A' else 'B'}"},
        "B's token hash-like": {"Authorization": "Bearer " + "0" * 64},
        "basic auth": {"Authorization": "Basic " + b_token},
    }
    for who, headers in attackers.items():
        for method, url, kw in forbidden:
            r = client.request(method, url, headers=headers, **kw)
            assert r.status_code in (401, 403), f"{who}: {method} {url} -> {r.status_code} {r.text[:200]}"
            assert b_token not in r.text and "Hi!" not in r.text
    # A's token in the query string (the EventSource fallback) does not open B either
    assert client.get(f"/api/conversations/{b}/messages", params={"token": a_headers["Authorization"][7:]}
                      ).status_code == 403
    # the same answer for a conversation that does not exist (no enumeration)
    r_missing = client.get(f"/api/conversations/{'f' * 32}/messages", headers=a_headers)
    r_other = client.get(f"/api/conversations/{b}/messages", headers=a_headers)
    assert (r_missing.status_code, r_missing.json()) == (r_other.status_code, r_other.json())
    after = client.get(f"/api/conversations/{b}/messages", headers=b_headers).json()
    assert after == before, "B's conversation changed through someone else's requests"
    assert client.get(f"/api/conversations/{a}/messages", headers=a_headers).status_code == 200


def flatten_routes(routes, prefix: str = ""):
    """(path, route) for every route, through FastAPI >= 0.16x's lazily included routers too."""
    for route in routes:
        if hasattr(route, "original_router"):  # fastapi's _IncludedRouter
            ctx = getattr(route, "include_context", None)
            yield from flatten_routes(route.original_router.routes, prefix + (getattr(ctx, "prefix", "") or ""))
        else:
            yield prefix + getattr(route, "path", ""), route


def _console_routes(app) -> list[tuple[str, str]]:
    found = []
    for path, route in flatten_routes(app.routes):
        if not (path.startswith("/console") or path.startswith("/kb/")):
            continue
        if isinstance(route, Mount):
            continue  # static CSS/JS only
        for method in sorted((route.methods or set()) - {"HEAD"}) if isinstance(route, Route) else ["GET"]:
            found.append((method, path))
    return found


PUBLIC = {("GET", "/console/login"), ("POST", "/console/login"), ("POST", "/console/logout"),
          ("GET", "/kb/{document_id}")}  # the public, cited policy page customers follow


def test_every_console_route_refuses_anonymous_users(client, app_and_services):
    app, _ = app_and_services
    routes = _console_routes(app)
    assert len(routes) >= 20, routes  # the console and KB editor are mounted
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: DUMMY.get(m.group(1), "1"), path)
        for accept in ("application/json", "text/html"):
            r = client.request(method, url, headers={"Accept": accept}, follow_redirects=False,
                               data={"csrf_token": "x", "text": "hello"} if method == "POST" else None)
            if r.status_code in (302, 303, 307):
                assert r.headers["location"].startswith("/console/login"), (method, path, r.headers)
            else:
                assert r.status_code in (401, 403), f"anonymous {method} {path} ({accept}) -> {r.status_code}"
            checked += 1
    # logout without a session changes nothing and reveals nothing
    r = client.post("/console/logout", follow_redirects=False)
    assert r.status_code in (303, 401, 403)
    assert checked >= 40


def test_rate_limit_per_conversation_answers_429_with_retry_after(client):
    conv, headers, _ = start_conversation(client)
    codes = []
    for i in range(12):
        codes.append(client.post(f"/api/conversations/{conv}/messages", headers=headers,
                                 json={"text": f"Where is my delivery? ({i})"}).status_code)
        if codes[-1] == 202:  # one message at a time (see test_concurrency for back-to-back sends)
            _wait_for_reply(client, conv, headers, after=i)
    assert codes[:8] == [202] * 8, codes
    assert 429 in codes[8:], codes
    r = client.post(f"/api/conversations/{conv}/messages", headers=headers, json={"text": "again"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"
    assert "conversation" in r.json()["error"]["message"]
    # another conversation from the same address is not blocked by this one's limit
    other, other_headers, _ = start_conversation(client)
    assert client.post(f"/api/conversations/{other}/messages", headers=other_headers,
                       json={"text": "How long is delivery?"}).status_code == 202


def test_rate_limit_per_ip_answers_429(client):
    codes = [client.post("/api/conversations").status_code for _ in range(14)]
    assert codes[:10] == [201] * 10, codes
    assert codes[-1] == 429, codes
    r = client.post("/api/conversations")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"


def test_rate_limit_per_ip_covers_all_requests(app_and_services):
    """A bucket of 60 requests per address (refilled at 2/s), shared by all its conversations."""
    from fastapi.testclient import TestClient

    app, _ = app_and_services
    with TestClient(app, base_url="http://testserver") as c:
        convs = [start_conversation(c) for _ in range(10)]
        codes: list[int] = []
        last = None
        while len(codes) < 300 and 429 not in codes:
            conv, headers, _ = convs[len(codes) % len(convs)]
            last = c.post(f"/api/conversations/{conv}/end", headers=headers)
            codes.append(last.status_code)
    assert 429 in codes, "no per-IP limit within 300 requests"
    assert len(codes) + 10 >= 60, codes  # the first 60 requests (10 starts included) always pass
    assert last.json()["error"]["code"] == "rate_limited" and "requests" in last.json()["error"]["message"]
    assert int(last.headers["Retry-After"]) >= 1


@pytest.fixture(scope="module")
def logged_session(tmp_path_factory):
    """A whole session against a real server with INFO logs (uvicorn access log included).

    Returns the server log and the secrets used: the admin password, the conversation token sent
    in the Authorization header, a second token sent only as ``?token=`` (the EventSource
    fallback), and the console session cookie.
    """
    from harness import ServerProcess
    from reliability_support import add_admin

    from bot.db.engine import Database
    from bot.db.models import BotBase
    from bot.services import Services
    from bot.settings import Settings

    srv = ServerProcess(tmp_path_factory.mktemp("logs"), limits="default")
    # the admin account exists before the server starts (the same SQLite file)
    db = Database(f"sqlite:///{srv.data_dir / 'hybridesk.db'}")
    BotBase.metadata.create_all(db.engine)
    add_admin(Services(Settings(env="test", data_dir=srv.data_dir), db=db))
    db.dispose()
    srv.start()
    found: dict[str, str] = {"admin password": ADMIN_PASSWORD}
    try:
        with httpx.Client(base_url=srv.url, timeout=20) as c:
            body = c.post("/api/conversations").json()
            found["header token"], conv = body["token"], body["conversation_id"]
            h = {"Authorization": f"Bearer {body['token']}"}
            assert c.post(f"/api/conversations/{conv}/messages", headers=h,
                          json={"text": "How do I return a vase?", "client_message_id": "m1"}).status_code == 202
            assert c.get(f"/api/conversations/{conv}/messages", headers=h).status_code == 200
            body2 = c.post("/api/conversations").json()
            found["query token"], conv2 = body2["token"], body2["conversation_id"]
            with c.stream("GET", f"/api/conversations/{conv2}/events", params={"token": body2["token"]}) as r:
                assert r.status_code == 200
            # a failed and a successful console sign-in
            for password in ("wrong-" + ADMIN_PASSWORD, ADMIN_PASSWORD):
                page = c.get("/console/login")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                r = c.post("/console/login", data={"email": ADMIN_EMAIL, "password": password,
                                                   "csrf_token": csrf, "next": "/console"}, follow_redirects=False)
            assert r.status_code == 303
            found["session cookie"] = c.cookies.get("hd_session")
            assert found["session cookie"]
            assert c.get("/console/transcripts").status_code == 200
        time.sleep(0.5)
    finally:
        srv.stop()
    log = srv.log()
    assert "POST /api/conversations" in log, "the access log was not captured"
    return log, found


def test_passwords_header_tokens_and_cookies_never_appear_in_logs(logged_session):
    log, found = logged_session
    leaks = [name for name, secret in found.items() if name != "query token" and secret in log]
    assert not leaks, f"secrets found in the server log: {leaks}"


def test_query_string_tokens_never_appear_in_logs(logged_session):
    log, found = logged_session
    assert found["query token"] not in log
