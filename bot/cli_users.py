"""`hybridesk users add|list|disable|enable|set-password`: console accounts (agents, editors, admins)."""

from __future__ import annotations

import argparse
import getpass
import re
import sys

from knowledge.errors import Conflict, InvalidInput, NotFound

# A plausible address: a local part of letters, digits and the few symbols addresses use (no <, >, quotes,
# spaces, brackets, commas or semicolons: "<script>@x.com" is markup, not an address), without a dot at its
# ends or two in a row; a domain of dot-separated labels (letters, digits, inner hyphens) ending in a
# top-level domain of two letters or more. Letters of any alphabet count (international addresses).
_LOCAL_CHAR = r"[\w!#$%&'*+/=?^`{|}~-]"
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
EMAIL_RE = re.compile(rf"^{_LOCAL_CHAR}+(?:\.{_LOCAL_CHAR}+)*@(?:{_LABEL}\.)+(?:[^\W\d_]{{2,63}}|xn--[a-z0-9-]+)$")


def check_email(email: str) -> str:
    """``email`` normalised (trimmed, lower case), or :class:`InvalidInput` when it is not a plausible
    address (see :data:`EMAIL_RE`; at most 254 characters, 64 before the @)."""
    email = (email or "").strip().lower()
    local = email.rpartition("@")[0]
    if not EMAIL_RE.match(email) or len(email) > 254 or len(local) > 64 or "_" in email.rpartition("@")[2]:
        raise InvalidInput(f"{email!r} is not an e-mail address (name@example.com).", code="invalid_email")
    return email


MIN_PASSWORD_CHARS = 10


def check_password(password: str) -> None:
    """The one password rule (CLI and console): at least 10 characters, not counting spaces at the
    start or end, so ten spaces, or "  abc     ", are refused (``weak_password``)."""
    password = password or ""
    if not password.strip():
        raise InvalidInput(f"A password cannot be blank or only spaces: use at least {MIN_PASSWORD_CHARS} "
                           "characters.", code="weak_password", field="password")
    if len(password.strip()) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"Passwords need at least {MIN_PASSWORD_CHARS} characters, not counting spaces at "
                           "the start or end.", code="weak_password", field="password")


def add_user(session, email: str, role: str, password: str, display_name: str | None = None):
    from bot.db.models import User
    from bot.db.repositories import UserRepository
    from bot.security import ROLES, hash_password, visible_text

    email = check_email(email)
    # (shown to customers in "... joined the chat" and to colleagues: one line, without the invisible
    # characters chat messages lose, such as a bidi override that reverses the text around it)
    display_name = visible_text(display_name, one_line=True)
    if role not in ROLES:
        raise InvalidInput(f"Role must be one of {', '.join(ROLES)}.", code="invalid_role")
    check_password(password)
    users = UserRepository(session)
    if users.by_email(email) is not None:
        raise Conflict(f"A user {email} already exists.", code="user_exists")
    return users.add(User(email=email, role=role, password_hash=hash_password(password),
                          display_name=display_name or email.split("@")[0]))


def _password(args: argparse.Namespace, prompt: str) -> tuple[str, bool]:
    """The password given, a generated one (``--generate``), or one typed at a prompt; and whether generated."""
    from bot.security import new_password

    if args.password is not None and args.generate:
        # (it went on to judge the typed password: "weak_password" for `--password x --generate`)
        raise InvalidInput("Give --password PASSWORD or --generate, not both; nothing was changed.",
                           code="password_conflict")
    if args.password is not None:
        return args.password, False
    if args.generate:
        return new_password(), True
    if not sys.stdin.isatty():  # getpass would warn, read the pipe and fail at its end
        raise InvalidInput("No password given and no terminal to type one at: pass --password PASSWORD or "
                           "--generate.", code="password_required")
    try:
        typed = getpass.getpass(prompt)
        # typed twice: a typo would set a password nobody knows (CLI QA B16)
        if getpass.getpass("again: ") != typed:
            raise InvalidInput("The two passwords differ; nothing was changed. Run the command again.",
                               code="password_mismatch")
        return typed, False
    except EOFError:
        raise InvalidInput("No password typed (end of input): pass --password PASSWORD or --generate.",
                           code="password_required") from None


def _add(args: argparse.Namespace, ctx) -> int:
    password, generated = _password(args, "password: ")
    with ctx.session() as session:
        user = add_user(session, args.email, args.role, password, args.name)
        print(f"added {user.role} {user.email} (id {user.id})")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def _list(args: argparse.Namespace, ctx) -> int:
    from bot.db.repositories import UserRepository

    with ctx.session() as session:
        for u in UserRepository(session).list():
            print(f"{u.id:>4}  {u.role:<7} {'active ' if u.active else 'disabled'} {u.email}")
    return 0


def _disable(args: argparse.Namespace, ctx) -> int:
    """Disable the account and end its sessions (as the console's Users page does): enabling it again
    must not bring an old session, e.g. a stolen cookie, back to life. The chats it holds go back in
    the waiting queue."""
    from bot.db.repositories import ConsoleSessionRepository

    with ctx.session() as session:
        user = _existing(session, args.email)
        if user.role == "admin" and user.active and not _other_enabled_admins(session, user.id):
            # nobody could then sign in to manage users (the console refuses an admin disabling their
            # own account for the same reason)
            raise Conflict(f"{user.email} is the only enabled admin; disabling it would leave no one to manage "
                           "users in the console. Add or enable another admin first (`hybridesk users add EMAIL "
                           "--role admin`).", code="last_admin")
        user.active = False
        ConsoleSessionRepository(session).delete_for_user(user.id)
    from bot.console.takeover import release_held_by

    # (the chats they held go back in the queue; open widgets see it at their stream's next poll)
    released = release_held_by(ctx.db, user)
    print(f"disabled {args.email}" + (f"; {released} chat(s) they held are back in the waiting queue" if released else ""))
    return 0


def _other_enabled_admins(session, user_id: int) -> int:
    import sqlalchemy as sa

    from bot.db.models import User

    return session.scalar(sa.select(sa.func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user_id)) or 0


def _existing(session, email: str):
    from bot.db.repositories import UserRepository

    user = UserRepository(session).by_email(email.strip().lower())
    if user is None:
        raise NotFound(f"No user {email}.", code="user_not_found")
    return user


def _enable(args: argparse.Namespace, ctx) -> int:
    with ctx.session() as session:
        _existing(session, args.email).active = True
    print(f"enabled {args.email}")
    return 0


def _set_password(args: argparse.Namespace, ctx) -> int:
    """A new password; the account's sessions end and its failed sign-ins no longer lock it out."""
    import sqlalchemy as sa

    from bot.db.models import LoginAttempt
    from bot.db.repositories import ConsoleSessionRepository
    from bot.security import hash_password

    password, generated = _password(args, "new password: ")
    check_password(password)
    with ctx.session() as session:
        user = _existing(session, args.email)
        user.password_hash = hash_password(password)
        ConsoleSessionRepository(session).delete_for_user(user.id)
        session.execute(sa.delete(LoginAttempt).where(LoginAttempt.email == user.email,
                                                      LoginAttempt.success.is_(False)))
    print(f"new password set for {args.email}")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("users", help="console accounts: agents, editors, admins")
    s = p.add_subparsers(dest="users_command", metavar="ACTION")
    s.required = True
    a = s.add_parser("add", help="create an account")
    a.add_argument("email")
    a.add_argument("--role", choices=["agent", "editor", "admin"], default="agent",
                   help="agent: transcripts, takeovers, corrections; editor: the knowledge base; admin: both, "
                        "and the users (default: %(default)s)")
    a.add_argument("--name", help="display name (default: the part of the e-mail address before the @)")
    a.add_argument("--password", help="password, at least 10 characters (prompted if omitted)")
    a.add_argument("--generate", action="store_true", help="generate a password and print it once (instead of "
                                                           "--password)")
    a.set_defaults(handler=_add)
    s.add_parser("list", help="list accounts").set_defaults(handler=_list)
    d = s.add_parser("disable", help="disable an account (it can no longer log in; its sessions end)")
    d.add_argument("email")
    d.set_defaults(handler=_disable)
    e = s.add_parser("enable", help="enable a disabled account")
    e.add_argument("email")
    e.set_defaults(handler=_enable)
    r = s.add_parser("set-password", help="reset an account's password (ends its sessions, lifts a sign-in lock)")
    r.add_argument("email")
    r.add_argument("--password", help="new password, at least 10 characters (prompted if omitted)")
    r.add_argument("--generate", action="store_true", help="generate a password and print it once (instead of "
                                                           "--password)")
    r.set_defaults(handler=_set_password)
