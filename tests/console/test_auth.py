"""Sign-in, sessions, throttling, CSRF and role checks on every console route."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from console_support import PASSWORD, csrf_from, login


def _login_post(client, email: str, password: str, csrf: str | None = None):
    page = client.get("/console/login")
    token = csrf if csrf is not None else csrf_from(page.text)
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": token},
                       follow_redirects=False)


def test_login_sets_a_hardened_session_cookie_and_logout_revokes_it(console):
    client = console.client()
    r = _login_post(client, "agent@larkspur.example", PASSWORD)
    assert r.status_code == 303
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("hd_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/" in cookie
    assert "Secure" not in cookie  # test env; production turns it on
    page = client.get("/console/transcripts")
    assert page.status_code == 200 and "Agent" in page.text
    token = csrf_from(page.text)
    assert client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/console/transcripts").status_code == 401


def test_secure_flag_in_production(console):
    from bot.web.auth import cookie_secure

    assert cookie_secure(console.services.settings.model_copy(update={"env": "production"}))
    assert not cookie_secure(console.services.settings)


def test_wrong_password_and_unknown_user_get_the_same_answer(console):
    client = console.client()
    wrong = _login_post(client, "agent@larkspur.example", "not the password")
    unknown = _login_post(client, "nobody@larkspur.example", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong e-mail or password" in wrong.text and "Wrong e-mail or password" in unknown.text
    assert "hd_session" not in wrong.headers.get("set-cookie", "")


def test_login_throttled_per_account_and_address(console):
    client = console.client()
    for _ in range(5):
        assert _login_post(client, "agent@larkspur.example", "guess").status_code == 401
    blocked = _login_post(client, "agent@larkspur.example", PASSWORD)  # even the right password
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.text and "minute" in blocked.text
    assert 60 <= int(blocked.headers["retry-after"]) <= 16 * 60  # (security QA: there was none)
    # another account from the same address is not locked out by someone guessing this one
    assert _login_post(client, "editor@larkspur.example", PASSWORD).status_code == 303


def test_parallel_guesses_do_not_get_past_the_throttle(console):
    """Guesses sent at once are counted before their passwords are checked: 5 are answered, not more."""
    import threading

    client = console.client()
    token = csrf_from(client.get("/console/login").text)
    codes: list[int] = []

    def guess(i: int) -> None:
        r = client.post("/console/login", data={"email": "agent@larkspur.example", "password": f"guess-{i}",
                                                "csrf_token": token}, headers={"Accept": "application/json"})
        codes.append(r.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [401] * 5 + [429] * 25
    assert _login_post(client, "agent@larkspur.example", PASSWORD).status_code == 429


def test_disabled_user_cannot_sign_in_and_loses_sessions(console):
    admin, agent = console.client(), console.client()
    admin_csrf = login(admin, "admin")
    login(agent, "agent")
    r = admin.post(f"/console/users/{console.users['agent']}/disable", data={"csrf_token": admin_csrf},
                   follow_redirects=False)
    assert r.status_code == 303
    assert agent.get("/console/transcripts").status_code == 401
    assert _login_post(console.client(), "agent@larkspur.example", PASSWORD).status_code == 403


def test_csrf_is_required_on_posts(console):
    from console_support import seed_conversation

    client = console.client()
    # the sign-in form itself
    assert _login_post(client, "agent@larkspur.example", PASSWORD, csrf="forged-token-xxxxxxxxxxxx").status_code == 403
    login(client, "agent")
    conv_id, _ = seed_conversation(console.services)
    r = client.post(f"/console/conversations/{conv_id}/takeover", follow_redirects=False)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = client.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": "wrong"})
    assert r.status_code == 403
    # a cross-site Origin is refused even with the right token
    token = csrf_from(client.get(f"/console/conversations/{conv_id}").text)
    r = client.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": token},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def _console_routes():
    """Every route of the console and KB editor routers (FastAPI keeps included routers nested)."""
    from bot.web import routes_console, routes_kb

    for route in [*routes_console.router.routes, *routes_kb.router.routes]:
        path = route.path
        if not path.startswith("/console") or path == "/console/login":
            continue
        for method in sorted(route.methods - {"HEAD"}):
            yield method, re.sub(r"\{[^}]+\}", "1", path)


def test_every_console_route_refuses_anonymous_and_customer_tokens(console):
    conv, token = console.app.state.manager.start()
    routes = list(_console_routes())
    assert len(routes) >= 25
    client = console.client()
    for method, path in routes:
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            r = client.request(method, path.replace("/1", f"/{conv.id}", 1) if "conversations" in path else path,
                               headers=headers, follow_redirects=False)
            assert r.status_code == 401, (method, path, r.status_code)
    # a browser is sent to the sign-in form instead
    r = client.get("/console/transcripts", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    # ... and back to the very page it asked for, query string and all
    r = client.get("/console/kb/returns/diff?r1=1&r2=2", headers={"Accept": "text/html"}, follow_redirects=False)
    assert parse_qs(urlsplit(r.headers["location"]).query)["next"] == ["/console/kb/returns/diff?r1=1&r2=2"]
    from bot.web.routes_console import safe_next

    assert safe_next("/console/transcripts?q=http://x") == "/console/transcripts?q=http://x"
    for hostile in ("//evil.example", "https://evil.example", "/console//evil", "/console\\x", "/console\r\nX: y"):
        assert safe_next(hostile) == "/console", hostile


@pytest.mark.parametrize("who, path, status", [
    ("editor", "/console/transcripts", 403),
    ("editor", "/console/corrections", 403),
    ("editor", "/console/kb", 200),
    ("agent", "/console/kb", 403),
    ("agent", "/console/kb/new", 403),
    ("agent", "/console/users", 403),
    ("editor", "/console/users", 403),
    ("agent", "/console/transcripts", 200),
    ("agent", "/console/analytics", 200),
    ("admin", "/console/users", 200),
    ("admin", "/console/kb", 200),
    ("admin", "/console/transcripts", 200),
])
def test_roles(console, who, path, status):
    client = console.client()
    login(client, who)
    r = client.get(path)
    assert r.status_code == status
    if status == 403:
        assert r.json()["error"]["code"] == "wrong_role"


def test_wrong_role_on_a_post_is_refused(console):
    client = console.client()
    csrf = login(client, "editor")
    from console_support import seed_conversation

    conv_id, _ = seed_conversation(console.services)
    r = client.post(f"/console/conversations/{conv_id}/takeover", data={"csrf_token": csrf})
    assert r.status_code == 403


def test_database_errors_name_no_parameter_values(console):
    """An unexpected database error is logged with its trace (``bot.web.errors``): its message must not
    carry the statement's values, such as a password hash or a session's CSRF token."""
    from sqlalchemy.exc import IntegrityError

    from bot.db.models import User
    from bot.security import hash_password

    password_hash = hash_password("another horse battery")
    # two admins adding the same account at once
    with pytest.raises(IntegrityError) as caught, console.services.db.unit_of_work() as session:
        session.add(User(email="agent@larkspur.example", role="agent", password_hash=password_hash,
                         display_name="Agent"))
    assert "INSERT INTO users" in str(caught.value)
    assert password_hash not in str(caught.value) and "agent@larkspur.example" not in str(caught.value)


def test_guesses_from_many_addresses_lock_out_new_addresses_only(console):
    """Password spraying: each address stays under its own limit; the account then takes no sign-in from
    an address it has not used before, and its owner at a known address still gets in."""
    from bot.web.auth import MAX_FAILURES_PER_ACCOUNT, AuthService, InvalidCredentials, LoginThrottled

    service = AuthService(console.services.db)
    email = "agent@larkspur.example"
    service.login(email, PASSWORD, ip="192.0.2.10")  # the agent's office, used before
    for i in range(MAX_FAILURES_PER_ACCOUNT):
        with pytest.raises(InvalidCredentials):
            service.login(email, f"guess-{i}", ip=f"198.51.100.{i % 10}")  # 10 addresses, 2 guesses each
    with pytest.raises(LoginThrottled, match="from many addresses"):
        service.login(email, "guess-again", ip="203.0.113.7")
    with pytest.raises(LoginThrottled):  # the right password too, from a new address
        service.login(email, PASSWORD, ip="203.0.113.8")
    _token, user = service.login(email, PASSWORD, ip="192.0.2.10")  # the owner is not locked out
    assert user.email == email
    # other accounts are not affected
    assert service.login("editor@larkspur.example", PASSWORD, ip="203.0.113.9")[1].role == "editor"
