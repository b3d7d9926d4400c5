"""Alembic environment: one migration history for the tables of every hybridesk package.

Each package owns its own metadata (``bot``, ``knowledge``, ``models``);
:func:`bot.db.metadata.all_metadata` combines them for autogenerate.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from bot.db.engine import make_engine
from bot.db.metadata import all_metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = all_metadata()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from bot.settings import get_settings

    return get_settings().resolved_database_url


def render_item(type_: str, obj, autogen_context):
    """Render our UTC TypeDecorators as plain timezone-aware DateTime (migrations stay decoupled)."""
    if type_ == "type" and obj.__class__.__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


# Tables managed outside the ORM metadata (the pgvector backend creates its own embeddings table).
UNMANAGED_TABLES = {
    "kb_chunk_embeddings",
    # full-text search over messages (bot/console/search_index.py creates them idempotently)
    "messages_fts", "messages_fts_data", "messages_fts_idx", "messages_fts_docsize", "messages_fts_config",
}
UNMANAGED_INDEXES = {"ix_messages_text_fts"}


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", None)
    if reflected and compare_to is None and type_ == "index" and name in UNMANAGED_INDEXES:
        return False
    return not (reflected and compare_to is None and table_name in UNMANAGED_TABLES)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True, render_item=render_item,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a table's constraints by rebuilding it (batch mode): dropping the old table
        # with foreign keys on would first delete the rows of every table that references it (ON
        # DELETE CASCADE). SQLite's own procedure: keys off, outside any transaction (the pragma is
        # ignored inside one), rebuild, check the keys, keys on again.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        render_item=render_item,
        include_object=include_object,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
