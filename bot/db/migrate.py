"""Run Alembic migrations from code (used by the CLI, `init` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from bot.db.engine import check_connection, make_engine
from knowledge.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (creating a SQLite file if needed)."""
    engine = make_engine(url)
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def known_revisions() -> list[str]:
    """This version's schema revisions, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def not_initialised(where: str) -> ConfigurationError:
    """The error for a database nothing migrated yet (``where``: its URL, password hidden)."""
    return ConfigurationError(
        f"The database at {where} is not initialised; run `hybridesk init` (or `hybridesk db upgrade`) "
        "first, with the same HYBRIDESK_DATA_DIR / HYBRIDESK_DATABASE_URL.", code="database_not_initialised")


def require_current_schema(engine: Engine) -> None:
    """Refuse to run on a database whose schema is not this version's newest: an older one fails
    customers' requests later (a table or constraint the code needs is missing), a newer one was made
    by a later hybridesk. A database never migrated gets ``database_not_initialised``."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        now = MigrationContext.configure(conn).get_current_revision()
    known = known_revisions()
    if now == known[-1]:
        return
    where = engine.url.render_as_string(hide_password=True)
    if now is None:
        raise not_initialised(where)
    if now in known:
        raise ConfigurationError(
            f"The database at {where} is at schema revision {now}; this version of hybridesk needs {known[-1]}. "
            "Run `hybridesk db upgrade` (back the database up first), then start again.", code="schema_outdated")
    raise ConfigurationError(
        f"The database at {where} is at schema revision {now}, which this version of hybridesk does not know "
        f"(its newest is {known[-1]}): it was upgraded by a newer hybridesk. Run that version, or restore a backup.",
        code="schema_unknown")
