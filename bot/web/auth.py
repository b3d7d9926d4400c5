"""Console sign-in: server-side sessions, CSRF tokens, login throttling and role checks.

* The session cookie holds a random token; the database keeps only its SHA-256, with the user,
  an expiry and a per-session CSRF secret. Logout deletes the row; disabling a user ends every
  session at the next request (``active`` is checked each time).
* Cookies are ``HttpOnly`` and ``SameSite=Lax``; ``Secure`` follows the ``cookie_secure``
  setting when present, else it is on in production.
* Every unsafe request through a role dependency must echo the session's CSRF token (form field
  ``csrf_token`` or header ``X-CSRF-Token``); the login form uses a double-submit cookie. A
  cross-site ``Origin`` header is refused as well.
* Failed sign-ins are recorded; 5 failures for one account from one address within 15 minutes
  (or 30 from one address) answer 429 until the window passes. The records live in the
  database, so every server process sees the same count. An attempt is counted before its
  password is checked, so guesses sent in parallel do not all pass the check.
* Guesses at one account spread over many addresses (password spraying): after 20 failures in the
  window the account takes no sign-in from an address it has not signed in from in the last 30
  days. A per-account lock for every address would let anyone lock its owner out; this one does not.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from bot.db.models import ConsoleSession, LoginAttempt
from bot.db.repositories import ConsoleSessionRepository, LoginAttemptRepository, UserRepository
from bot.security import hash_password, verify_password, visible_text
from knowledge.errors import Forbidden, HybrideskError

log = logging.getLogger(__name__)

SESSION_COOKIE = "hd_session"
LOGIN_CSRF_COOKIE = "hd_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT_IP = 5
MAX_FAILURES_PER_IP = 30
# Password spraying: guesses at one account from many addresses, each under the per-address limit.
# Past this many failures in the window the account takes no sign-in from an address it has not
# signed in from in the last KNOWN_ADDRESS_DAYS; its owner, at a known address, is never locked out.
MAX_FAILURES_PER_ACCOUNT = 20
KNOWN_ADDRESS_DAYS = 30
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_LABELS = {"agent": "support agents", "editor": "knowledge-base editors", "admin": "admins"}
#: what a locked-out user can do besides waiting: the console has no password reset; an admin sets a new
#: password on the server's command line, which also lifts the lock (``bot.cli_users._set_password``)
RESET_HINT = ("ask an admin to set a new password for you with the command hybridesk users set-password, "
              "which also lifts this lock.")


class LoginRequired(HybrideskError):
    """No valid console session (pages redirect to the sign-in form, APIs answer 401)."""

    code = "login_required"
    http_status = 401


class InvalidCredentials(HybrideskError):
    code = "invalid_credentials"
    http_status = 401


class LoginThrottled(HybrideskError):
    code = "login_throttled"
    http_status = 429


class CsrfFailed(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in person, as routes see it (plain data; no ORM object escapes a session)."""

    id: int
    email: str
    display_name: str
    role: str
    session_id: str
    csrf_token: str

    def can(self, *roles: str) -> bool:
        return self.role in roles


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


_DUMMY_HASH: str | None = None
_THROTTLE_LOCK = threading.Lock()  # check-and-count is one step for this process's sign-ins


def _dummy_hash() -> str:
    """A real argon2 hash to verify against for unknown e-mails (same cost: no user enumeration)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


class AuthService:
    """Sign-in, sessions and throttling over the unit of work of ``db``."""

    def __init__(self, db: Any, *, session_ttl: timedelta = SESSION_TTL) -> None:
        self.db = db
        self.session_ttl = session_ttl

    def login(self, email: str, password: str, *, ip: str, user_agent: str | None = None
              ) -> tuple[str, ConsoleUser]:
        """Check the password and open a session; returns ``(cookie token, user)``."""
        email = (email or "").strip().lower()[:254]
        ip = (ip or "unknown")[:64]
        attempt_id = self._reserve_attempt(email, ip)
        with self.db.unit_of_work() as session:
            user = UserRepository(session).by_email(email) if email else None
            ok = verify_password(user.password_hash if user else _dummy_hash(), password or "")
            ok = ok and user is not None
        if not ok:
            raise InvalidCredentials("Wrong e-mail or password.")
        if not user.active:  # type: ignore[union-attr]
            raise Forbidden("This account is disabled; ask an admin to enable it.", code="account_disabled")
        token = secrets.token_urlsafe(32)
        now = _now()
        with self.db.unit_of_work() as session:
            attempts = LoginAttemptRepository(session)
            attempts.mark_success(attempt_id)
            attempts.prune(now - timedelta(days=30))
            sessions = ConsoleSessionRepository(session)
            sessions.delete_expired(now)
            row = sessions.add(ConsoleSession(id=_digest(token), user_id=user.id,  # type: ignore[union-attr]
                                              csrf_token=secrets.token_urlsafe(32), ip=ip,
                                              user_agent=(user_agent or "")[:300], created_at=now,
                                              last_seen_at=now, expires_at=now + self.session_ttl))
            db_user = UserRepository(session).get(user.id)  # type: ignore[union-attr]
            db_user.last_login_at = now  # type: ignore[union-attr]
            return token, _console_user(db_user, row)

    def _reserve_attempt(self, email: str, ip: str) -> int:
        """Check the throttle and count this attempt as a failure in one step; a successful sign-in
        then marks it. Counting only after the (slow) password check let parallel guesses all pass
        the check before any of them was counted."""
        with _THROTTLE_LOCK:
            self._check_throttle(email, ip)
            with self.db.unit_of_work() as session:
                attempt = LoginAttempt(email=email, ip=ip, success=False, created_at=_now())
                LoginAttemptRepository(session).add(attempt)
                return attempt.id

    def _check_throttle(self, email: str, ip: str) -> None:
        now = _now()
        since = now - THROTTLE_WINDOW
        with self.db.unit_of_work() as session:
            attempts = LoginAttemptRepository(session)
            n_account, oldest = attempts.recent_failures(ip=ip, since=since, email=email)
            n_ip, oldest_ip = attempts.recent_failures(ip=ip, since=since)
            n_all, oldest_all = attempts.recent_failures(ip=None, since=since, email=email)
            sprayed = n_all >= MAX_FAILURES_PER_ACCOUNT and not attempts.signed_in_from(
                email=email, ip=ip, since=now - timedelta(days=KNOWN_ADDRESS_DAYS))

        def minutes(first: datetime | None) -> int:
            wait = THROTTLE_WINDOW - (_now() - first) if first else THROTTLE_WINDOW
            return max(1, int(wait.total_seconds() // 60) + 1)

        if n_account >= MAX_FAILURES_PER_ACCOUNT_IP:
            wait = minutes(oldest)
            raise LoginThrottled(
                f"Too many failed sign-ins for this account from your address. Wait {wait} minute(s) "
                f"and try again, or {RESET_HINT}", retry_after_minutes=wait)
        if n_ip >= MAX_FAILURES_PER_IP:
            # (failures at many accounts from one address: a new password for one of them does not lift it)
            wait = minutes(oldest_ip)
            raise LoginThrottled(f"Too many failed sign-ins from your address. Wait {wait} minute(s) and try again.",
                                 retry_after_minutes=wait)
        if sprayed:
            wait = minutes(oldest_all)
            log.warning("sign-ins to one account refused from new addresses: %d failures in %d minutes",
                        n_all, THROTTLE_WINDOW.total_seconds() // 60)  # (no e-mail address in the log)
            raise LoginThrottled(
                "Too many failed sign-ins for this account from many addresses. Sign in from an address you "
                f"have used before, wait {wait} minute(s), or {RESET_HINT}",
                retry_after_minutes=wait)

    def resolve(self, token: str | None) -> ConsoleUser | None:
        """The user of a session cookie, or None (expired, logged out, disabled, unknown)."""
        if not token or len(token) > 200:
            return None
        now = _now()
        with self.db.unit_of_work() as session:
            sessions = ConsoleSessionRepository(session)
            found = sessions.get_with_user(_digest(token))
            if found is None:
                return None
            row, user = found
            if row.expires_at <= now or not user.active:
                sessions.delete(row.id)
                return None
            if now - row.last_seen_at > TOUCH_EVERY:
                row.last_seen_at = now
            return _console_user(user, row)

    def logout(self, token: str | None) -> None:
        if token:
            with self.db.unit_of_work() as session:
                ConsoleSessionRepository(session).delete(_digest(token))


def _console_user(user: Any, row: ConsoleSession) -> ConsoleUser:
    # (a name stored before `add_user` cleaned names loses its invisible characters here: the console
    # header and the "... joined the chat" notice customers read use this one)
    return ConsoleUser(id=user.id, email=user.email,
                       display_name=visible_text(user.display_name, one_line=True) or user.email.split("@")[0],
                       role=user.role, session_id=row.id, csrf_token=row.csrf_token)


# ---------------------------------------------------------------- cookies


def cookie_secure(settings: Any) -> bool:
    """``Secure`` cookie flag: the ``cookie_secure`` setting if defined, else on in production."""
    value = getattr(settings, "cookie_secure", None)
    return bool(value) if value is not None else getattr(settings, "env", "dev") == "production"


def set_session_cookie(response: Response, token: str, settings: Any) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=cookie_secure(settings), path="/")


def clear_session_cookie(response: Response, settings: Any) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(settings))


def login_csrf_token(request: Request) -> str:
    """The anonymous double-submit token for the sign-in form (reuses the cookie's if valid)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    return token if 20 <= len(token) <= 100 else secrets.token_urlsafe(24)


def set_login_csrf_cookie(response: Response, token: str, settings: Any) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=cookie_secure(settings), path="/console")


def client_ip(request: Request) -> str:
    """The client's address: the peer, or what a trusted proxy forwarded (``HYBRIDESK_FORWARDED_ALLOW_IPS``)."""
    return request.client.host if request.client else "unknown"


# ---------------------------------------------------------------- dependencies


def auth_service(request: Request) -> AuthService:
    state = request.app.state
    service = getattr(state, "console_auth", None)
    if service is None:
        service = state.console_auth = AuthService(state.services.db)
    return service


def check_origin(request: Request) -> None:
    """Refuse unsafe requests whose ``Origin`` is another site (defence in depth next to CSRF)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise CsrfFailed("This request came from another site and was refused.")


async def submitted_csrf(request: Request) -> str:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # Starlette caches the parsed form for the endpoint
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def verify_login_csrf(request: Request) -> None:
    check_origin(request)
    sent = await submitted_csrf(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        raise CsrfFailed("The sign-in form expired; reload the page and try again.")


async def current_user(request: Request) -> ConsoleUser:
    """The signed-in user; unsafe methods must also carry the session's CSRF token."""
    cached = getattr(request.state, "console_user", None)
    if cached is not None:
        return cached
    from starlette.concurrency import run_in_threadpool

    user = await run_in_threadpool(auth_service(request).resolve, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise LoginRequired("Sign in to the console first.")
    if request.method not in SAFE_METHODS:
        check_origin(request)
        sent = await submitted_csrf(request)
        if not sent or not hmac.compare_digest(sent, user.csrf_token):
            raise CsrfFailed("Missing or wrong CSRF token; reload the page and submit again.")
    request.state.console_user = user
    return user


def require_roles(*roles: str):
    """Dependency factory: the signed-in user if their role is one of ``roles`` (else 403)."""
    who = " or ".join(ROLE_LABELS.get(r, r) for r in roles)

    async def dependency(user: ConsoleUser = Depends(current_user)) -> ConsoleUser:
        if user.role not in roles:
            raise Forbidden(f"This page is for {who}; you are signed in as {user.role}.", code="wrong_role")
        return user

    dependency.__name__ = f"require_{'_'.join(roles)}"
    return dependency


require_agent = require_roles("agent", "admin")
require_editor = require_roles("editor", "admin")
require_admin = require_roles("admin")
require_any = require_roles("agent", "editor", "admin")


def db_session(request: Request):
    """A unit of work for the request (commits when the route returns without error)."""
    with request.app.state.services.db.unit_of_work() as session:
        yield session
