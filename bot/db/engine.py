"""Engine factory and unit of work.

SQLite is the embedded default (one file, WAL journal so readers never block the writer);
PostgreSQL is the at-scale backend. The same code and migrations serve both.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from knowledge.errors import ConfigurationError, Unavailable

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def clean_text(value: str) -> str:
    """``value`` as a database stores it the same everywhere: without NUL characters (PostgreSQL
    refuses them in text and JSON) and with lone surrogate halves (not encodable as UTF-8) replaced."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def _json(value: Any) -> str:
    return json.dumps(_clean(value))


def _clean_parameters(_conn, _cursor, statement, parameters, _context, executemany):  # noqa: ANN001
    """Every text a statement writes goes through :func:`clean_text` (sign-in e-mails, KB bodies,
    rating comments, webhook senders ...): one NUL byte in any form field was a 500 on PostgreSQL."""
    if executemany and isinstance(parameters, list | tuple):
        return statement, type(parameters)(_clean(p) for p in parameters)
    return statement, _clean(parameters)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url``; a malformed URL raises a ConfigurationError naming the fix.

    ``hide_parameters``: a database error's message (logged with its trace) names the statement but
    not its values, which can be password hashes, CSRF tokens or customers' messages.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"The database URL (HYBRIDESK_DATABASE_URL, or a command's --url) is not valid ({exc}). Use e.g. "
            "sqlite:///var/hybridesk.db or postgresql+psycopg://user:pass@host/dbname.",
            code="bad_database_url",
        ) from exc
    if parsed.drivername == "postgres":  # the scheme hosted PostgreSQL services hand out
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, echo=echo, hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_json,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _clean_parameters, retval=True)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(
            parsed, echo=echo, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=20,
            pool_recycle=1800, json_serializer=_json,
        )
        event.listen(engine, "before_cursor_execute", _clean_parameters, retval=True)
        return engine
    raise ConfigurationError(
        f"Unsupported database backend {backend!r}; hybridesk runs on SQLite or PostgreSQL.",
        code="bad_database_url",
    )


def check_connection(engine: Engine) -> None:
    """Fail fast with an actionable message when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except OperationalError as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise Unavailable(
            f"Cannot reach the database at {url}: {str(exc.orig).strip().splitlines()[0]}. "
            "Check HYBRIDESK_DATABASE_URL and that the server is running.",
            code="database_unreachable",
        ) from exc


class Database:
    """Owns the engine and the session factory; ``unit_of_work()`` commits or rolls back."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session whose work is committed together when the block exits without error."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


_done_once: set[tuple[str, int, str]] = set()
_once_lock = threading.Lock()


def once_per_engine(engine: Engine, task: str, setup: Callable[[Engine], None]) -> None:
    """Run ``setup(engine)`` the first time ``task`` is asked for on this engine in this process.

    For idempotent schema additions that live outside the migrations (triggers, search indexes):
    later calls cost one set lookup; concurrent first calls run ``setup`` once.
    """
    key = (task, id(engine), str(engine.url))
    if key in _done_once:
        return
    with _once_lock:
        if key in _done_once:
            return
        setup(engine)
        _done_once.add(key)
