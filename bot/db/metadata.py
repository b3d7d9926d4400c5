"""Combine the table metadata of every package for Alembic (each package owns its own)."""

from __future__ import annotations

import importlib

import sqlalchemy as sa

# (module, attribute) of each package's declarative base; bot first, then what it imports.
METADATA_SOURCES = [
    ("bot.db.models", "BotBase"),
    ("knowledge.db", "KnowledgeBase"),
    ("models.db", "ModelsBase"),
]


def all_metadata() -> list[sa.MetaData]:
    result = []
    for module_name, attr in METADATA_SOURCES:
        module = importlib.import_module(module_name)
        result.append(getattr(module, attr).metadata)
    return result
