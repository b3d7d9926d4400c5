"""Database access for the ``bot`` package: engine factory, unit of work, tables, repositories."""

from bot.db.engine import Database, make_engine

__all__ = ["Database", "make_engine"]
