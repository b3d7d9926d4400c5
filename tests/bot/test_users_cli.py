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
