"""`hybridesk users`: the console's own messages send people to an admin to re-enable an account
or reset a password, so the CLI must be able to do both."""

from __future__ import annotations

import pytest

from bot.cli import main
from bot.settings import get_settings


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    yield tmp_path
    get_settings.cache_clear()


def _auth():
    from bot.db.engine import Database
    from bot.web.auth import AuthService

    return AuthService(Database(get_settings().resolved_database_url))


def test_enable_and_set_password_do_what_the_console_messages_promise(data_dir, capsys):
    from bot.web.auth import InvalidCredentials, LoginThrottled

    assert main(["users", "add", "sam@larkspur.example", "--password", "first-password-1"]) == 0
    assert main(["users", "disable", "sam@larkspur.example"]) == 0
    assert main(["users", "enable", "sam@larkspur.example"]) == 0  # "ask an admin to enable it"
    auth = _auth()
    auth.login("sam@larkspur.example", "first-password-1", ip="10.0.0.1")

    for _ in range(5):  # locked out: "... or ask an admin to reset your password"
        with pytest.raises(InvalidCredentials):
            auth.login("sam@larkspur.example", "forgotten", ip="10.0.0.1")
    with pytest.raises(LoginThrottled):
        auth.login("sam@larkspur.example", "first-password-1", ip="10.0.0.1")
    assert main(["users", "set-password", "sam@larkspur.example", "--password", "second-password-2"]) == 0
    auth.login("sam@larkspur.example", "second-password-2", ip="10.0.0.1")  # the reset lifts the lock
    with pytest.raises(InvalidCredentials):
        auth.login("sam@larkspur.example", "first-password-1", ip="10.0.0.1")

    assert main(["users", "set-password", "sam@larkspur.example", "--password", "short"]) == 1
    assert "weak_password" in capsys.readouterr().err
    assert main(["users", "enable", "nobody@larkspur.example"]) == 1
    assert main(["users", "set-password", "admin@larkspur.example", "--generate"]) == 1
    assert "user_not_found" in capsys.readouterr().err


def test_set_password_generate_prints_it_once(data_dir, capsys):
    assert main(["users", "add", "ann@larkspur.example", "--password", "first-password-1"]) == 0
    capsys.readouterr()
    assert main(["users", "set-password", "ann@larkspur.example", "--generate"]) == 0
    out = capsys.readouterr().out
    password = out.split("password (shown once): ")[1].strip()
    _auth().login("ann@larkspur.example", password, ip="10.0.0.2")


def test_disable_ends_the_sessions_so_enabling_again_does_not_revive_them(data_dir):
    """A session opened before ``users disable`` (e.g. a stolen cookie) stays dead after ``users enable``."""
    assert main(["users", "add", "kim@larkspur.example", "--password", "first-password-1"]) == 0
    auth = _auth()
    token, _user = auth.login("kim@larkspur.example", "first-password-1", ip="10.0.0.3")
    assert auth.resolve(token) is not None
    assert main(["users", "disable", "kim@larkspur.example"]) == 0
    assert main(["users", "enable", "kim@larkspur.example"]) == 0  # the session was not used in between
    assert auth.resolve(token) is None
    fresh, _user = auth.login("kim@larkspur.example", "first-password-1", ip="10.0.0.3")
    assert auth.resolve(fresh) is not None


def test_a_typed_password_is_asked_twice(data_dir, capsys, monkeypatch):
    """CLI QA B16: one prompt, no confirmation: a typo set a password nobody knew."""
    import getpass
    import sys

    from bot.web.auth import InvalidCredentials

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    typed = iter(["typed-password-1", "typed-passwrod-1"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(typed))
    assert main(["users", "add", "kim@larkspur.example"]) == 1
    assert "password_mismatch" in capsys.readouterr().err
    with pytest.raises(InvalidCredentials):  # nothing was added
        _auth().login("kim@larkspur.example", "typed-password-1", ip="10.0.0.2")
    typed = iter(["typed-password-1", "typed-password-1"])
    assert main(["users", "add", "kim@larkspur.example"]) == 0
    _auth().login("kim@larkspur.example", "typed-password-1", ip="10.0.0.2")


def test_password_and_generate_together_are_refused_as_a_conflict(data_dir, capsys):
    """QA: `users set-password --password x --generate` complained about a weak password, not the conflict."""
    assert main(["users", "add", "lou@larkspur.example", "--password", "first-password-1"]) == 0
    capsys.readouterr()
    for argv in (["users", "set-password", "lou@larkspur.example", "--password", "x", "--generate"],
                 ["users", "set-password", "lou@larkspur.example", "--password", "long-enough-2", "--generate"],
                 ["users", "add", "max@larkspur.example", "--password", "long-enough-2", "--generate"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert "password_conflict" in err and "--password PASSWORD or --generate, not both" in err
        assert "weak_password" not in err and "shown once" not in out
    _auth().login("lou@larkspur.example", "first-password-1", ip="10.0.0.4")  # unchanged
    assert main(["users", "list"]) == 0
    assert "max@larkspur.example" not in capsys.readouterr().out


@pytest.mark.parametrize("email", ["<script>@x.com", "a b@x.com", '"quoted"@x.com', "anna@localhost", "anna@x.c",
                                   "anna..b@x.com", ".anna@x.com", "anna@-x.com", "anna@x_y.com", "anna@x.com.",
                                   "anna@@x.com", "anna@x.com<b>", "a" * 65 + "@x.com"])
def test_an_implausible_email_address_is_refused(data_dir, capsys, email):
    """QA: `users add '<script>@x.com'` was accepted as an e-mail address."""
    assert main(["users", "add", email, "--password", "long-enough-1"]) == 1
    assert "invalid_email" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert "@" not in capsys.readouterr().out


@pytest.mark.parametrize("email", ["Anna.B+tag@Mail.Example.co.uk", "o'brien@shop.ie", "jöran@exämple.de",
                                   "x_y-z@sub-domain.example"])
def test_ordinary_addresses_are_still_accepted(data_dir, capsys, email):
    assert main(["users", "add", email, "--password", "long-enough-1"]) == 0
    assert f"added agent {email.lower()}" in capsys.readouterr().out


def test_users_add_help_names_the_default_role(capsys):
    with pytest.raises(SystemExit):
        main(["users", "add", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: agent)" in help_text and "instead of --password" in help_text


def test_the_last_enabled_admin_cannot_be_disabled(data_dir, capsys):
    """QA: `users disable` disabled the only admin, leaving nobody who could manage users."""
    assert main(["users", "add", "root@larkspur.example", "--role", "admin", "--password", "first-password-1"]) == 0
    assert main(["users", "add", "old@larkspur.example", "--role", "admin", "--password", "first-password-1"]) == 0
    assert main(["users", "add", "kim@larkspur.example", "--password", "first-password-1"]) == 0
    assert main(["users", "disable", "old@larkspur.example"]) == 0  # another admin is still enabled
    capsys.readouterr()
    assert main(["users", "disable", "root@larkspur.example"]) == 1
    err = capsys.readouterr().err
    assert "last_admin" in err and "root@larkspur.example is the only enabled admin" in err
    assert "--role admin" in err
    _auth().login("root@larkspur.example", "first-password-1", ip="10.0.0.5")  # still enabled
    assert main(["users", "disable", "kim@larkspur.example"]) == 0  # agents: as before
    assert main(["users", "disable", "old@larkspur.example"]) == 0  # already disabled: nothing to protect
    assert main(["users", "enable", "old@larkspur.example"]) == 0
    assert main(["users", "disable", "root@larkspur.example"]) == 0  # old@ is an enabled admin again


def test_disable_puts_the_chats_the_agent_holds_back_in_the_queue(data_dir, capsys):
    from bot.console import takeover
    from bot.db.engine import Database
    from bot.db.models import Conversation, User

    assert main(["users", "add", "lea@larkspur.example", "--password", "first-password-1", "--role", "agent"]) == 0
    db = Database(get_settings().resolved_database_url)
    with db.unit_of_work() as session:
        session.add(Conversation(id="c-held-by-lea", token_hash="x" * 64, mode="bot"))
        lea = session.query(User).filter_by(email="lea@larkspur.example").one()
    takeover.take_over(db, "c-held-by-lea", lea)
    capsys.readouterr()
    assert main(["users", "disable", "lea@larkspur.example"]) == 0
    assert "1 chat(s) they held are back in the waiting queue" in capsys.readouterr().out
    with db.unit_of_work() as session:
        conv = session.get(Conversation, "c-held-by-lea")
        assert (conv.mode, conv.held_by_user_id) == ("handoff_requested", None)
