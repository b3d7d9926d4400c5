"""`hybridesk users add|list|disable`: console accounts (agents, editors, admins)."""

from __future__ import annotations

import argparse
import getpass
import re

from knowledge.errors import Conflict, InvalidInput, NotFound

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def add_user(session, email: str, role: str, password: str, display_name: str | None = None):
    from bot.db.models import User
    from bot.db.repositories import UserRepository
    from bot.security import ROLES, hash_password

    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise InvalidInput(f"{email!r} is not an e-mail address.", code="invalid_email")
    if role not in ROLES:
        raise InvalidInput(f"Role must be one of {', '.join(ROLES)}.", code="invalid_role")
    if len(password) < 10:
        raise InvalidInput("Passwords need at least 10 characters.", code="weak_password")
    users = UserRepository(session)
    if users.by_email(email) is not None:
        raise Conflict(f"A user {email} already exists.", code="user_exists")
    return users.add(User(email=email, role=role, password_hash=hash_password(password),
                          display_name=display_name or email.split("@")[0]))


def _add(args: argparse.Namespace, ctx) -> int:
    from bot.security import new_password

    password = args.password
    generated = False
    if password is None:
        if args.generate:
            password, generated = new_password(), True
        else:
            password = getpass.getpass("password: ")
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
    from bot.db.repositories import UserRepository

    with ctx.session() as session:
        user = UserRepository(session).by_email(args.email)
        if user is None:
            raise NotFound(f"No user {args.email}.", code="user_not_found")
        user.active = False
    print(f"disabled {args.email}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("users", help="console accounts: agents, editors, admins")
    s = p.add_subparsers(dest="users_command", metavar="ACTION")
    s.required = True
    a = s.add_parser("add", help="create an account")
    a.add_argument("email")
    a.add_argument("--role", choices=["agent", "editor", "admin"], default="agent")
    a.add_argument("--name", help="display name")
    a.add_argument("--password", help="password (prompted if omitted)")
    a.add_argument("--generate", action="store_true", help="generate a password and print it once")
    a.set_defaults(handler=_add)
    s.add_parser("list", help="list accounts").set_defaults(handler=_list)
    d = s.add_parser("disable", help="disable an account (it can no longer log in)")
    d.add_argument("email")
    d.set_defaults(handler=_disable)
