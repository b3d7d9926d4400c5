"""The operator's command line fails in one line with a non-zero exit code, never with a traceback,
and never destroys data by default (QA report A11, A12, A14)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.settings import get_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data dir nobody initialised (HYBRIDESK_DATA_DIR points at it)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(folder))
    monkeypatch.delenv("HYBRIDESK_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_downgrade_names_its_revision_and_base_needs_yes(tmp_path, capsys):
    """A11: `db downgrade` without arguments dropped every table, without asking."""
    from bot.cli import _known_revisions

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    capsys.readouterr()
    assert main(["db", "downgrade", "--url", url]) == 1
    err = capsys.readouterr().err
    assert "revision_required" in err and "downgrade base --yes" in err
    assert "users" in _tables(url)
    every = f"-{len(_known_revisions())}"
    for target in ("base", every):
        assert main(["db", "downgrade", target, "--url", url]) == 1
        err = capsys.readouterr().err
        assert "confirmation_required" in err and "drops every table" in err and "--yes" in err
        assert "users" in _tables(url)
    first = _known_revisions()[0]
    assert main(["db", "downgrade", first, "--url", url]) == 0  # a named revision: no question asked
    assert "users" in _tables(url)
    assert main(["db", "downgrade", "base", "--yes", "--url", url]) == 0
    assert "users" not in _tables(url)


@pytest.mark.parametrize("argv", [["db", "upgrade", "bogusrev"], ["db", "downgrade", "bogus"]])
def test_an_unknown_revision_is_one_line(tmp_path, capsys, argv):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    capsys.readouterr()
    assert main([*argv, "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad_revision" in err and "Can't locate revision" in err
    assert "head, base" in err


@pytest.mark.parametrize("argv", [["kb", "list"], ["users", "list"], ["chat", "-m", "hi"],
                                  ["tickets", "export-corrections", "--out", "-"],
                                  ["users", "add", "x@example.com", "--password", "long-enough-1"]])
def test_a_data_dir_never_initialised_says_what_to_run(data_dir, capsys, argv):
    """A12: a SQLAlchemy "no such table" traceback, and an empty hybridesk.db left behind."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "database_not_initialised" in err and "hybridesk init" in err and "hybridesk db upgrade" in err
    assert not (data_dir / "hybridesk.db").exists()
    data_dir.mkdir(exist_ok=True)
    (data_dir / "hybridesk.db").write_bytes(b"")  # the empty file an earlier version left
    assert main(argv) == 2
    assert "database_not_initialised" in capsys.readouterr().err


def test_a_database_missing_a_table_says_to_upgrade(data_dir, capsys):
    assert main(["db", "upgrade"]) == 0
    engine = sa.create_engine(get_settings().resolved_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("PRAGMA foreign_keys=OFF"))
        conn.execute(sa.text("DROP TABLE login_attempts"))
        conn.execute(sa.text("DROP TABLE console_sessions"))
        conn.execute(sa.text("DROP TABLE users"))
    engine.dispose()
    capsys.readouterr()
    assert main(["users", "list"]) == 2
    err = capsys.readouterr().err
    assert "no such table: users" in err and "hybridesk db upgrade" in err


def test_a_data_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(afile))
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 2
        assert main(["kb", "list"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.count("bad_data_dir") == 2 and "is a file, not a folder" in err


def test_users_add_without_a_terminal_or_password(data_dir, monkeypatch, capsys):
    """A12: `users add x </dev/null` gave a GetPassWarning and an EOFError traceback."""
    import getpass

    assert main(["db", "upgrade"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["users", "add", "nopw@example.com"]) == 1
    assert main(["users", "set-password", "nopw@example.com"]) == 1
    err = capsys.readouterr().err
    assert err.count("password_required") == 2 and "--password" in err and "--generate" in err

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(sys, "stdin", Tty(""))
    monkeypatch.setattr(getpass, "getpass", eof)  # Ctrl-D at the prompt
    assert main(["users", "add", "nopw@example.com"]) == 1
    assert "password_required" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert "nopw@example.com" not in capsys.readouterr().out


def test_init_checks_the_admin_email_before_doing_anything(data_dir, capsys):
    """A14: a bad --admin-email failed after the migration, the KB import and NLU training."""
    assert main(["init", "--admin-email", "not-an-email", "--skip-nlu"]) == 1
    assert "invalid_email" in capsys.readouterr().err
    assert not (data_dir / "hybridesk.db").exists()


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """A12: `hybridesk adapters list | head -3` ended with a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has gone before the first line is written
    env = {**os.environ, "HYBRIDESK_DATA_DIR": str(tmp_path / "data")}
    try:
        done = subprocess.run([sys.executable, "-m", "bot.cli", "adapters", "list"], cwd=REPO, env=env,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141  # as a shell reports a writer ended by SIGPIPE


def test_db_current_says_the_revision_and_changes_nothing(tmp_path, capsys):
    from bot.cli import _known_revisions

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "current", "--url", url]) != 0  # no database yet: one line, no empty file left
    assert "database_not_initialised" in capsys.readouterr().err and not (tmp_path / "x.db").exists()
    assert main(["db", "upgrade", _known_revisions()[0], "--url", url]) == 0
    capsys.readouterr()
    assert main(["db", "current", "--url", url]) == 0
    out = capsys.readouterr().out
    assert f"at revision {_known_revisions()[0]}" in out and "hybridesk db upgrade" in out
    assert main(["db", "upgrade", "--url", url]) == 0
    capsys.readouterr()
    assert main(["db", "current", "--url", url]) == 0
    assert "(newest)" in capsys.readouterr().out


@pytest.mark.postgres
def test_db_downgrade_base_drops_the_pgvector_table_too_and_a_refused_one_is_one_line(pg_url, capsys):
    """QA on PostgreSQL: the pgvector index's table (made when the index is built, not by a migration)
    references kb_chunks, so `downgrade base --yes` failed with an 85-line traceback; and a downgrade
    the data does not fit (two conversations of one sender, which 0001 forbids) was a traceback too."""
    from bot.cli import _known_revisions

    assert main(["db", "upgrade", "--url", pg_url]) == 0
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            conn.execute(sa.text("CREATE TABLE kb_chunk_embeddings (chunk_id INTEGER PRIMARY KEY "
                                 "REFERENCES kb_chunks(id) ON DELETE CASCADE, embedding vector(3))"))
            for token in ("a", "b"):
                conn.execute(sa.text(
                    "INSERT INTO conversations (id, token_hash, channel, sender_id, status, mode, state, "
                    "customer_metadata, created_at, updated_at, last_message_at, message_count) VALUES (:id, :t, 'rest', "
                    "'same-sender', :st, 'bot', '{}', '{}', now(), now(), now(), 0)"),
                    {"id": token * 8, "t": token * 64, "st": "ended" if token == "a" else "open"})
    finally:
        engine.dispose()
    capsys.readouterr()
    assert main(["db", "downgrade", _known_revisions()[0], "--url", pg_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "downgrade_refused" in err, err
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:  # the older schema's one conversation per sender, and base
            conn.execute(sa.text("DELETE FROM conversations WHERE status = 'ended'"))
    finally:
        engine.dispose()
    assert main(["db", "downgrade", "base", "--yes", "--url", pg_url]) == 0
    assert not {"kb_chunks", "kb_chunk_embeddings", "users"} & _tables(pg_url)
