"""Fixtures for the knowledge tests: one MiniLM per session, stores and services per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from knowledge.db import KnowledgeBase
from knowledge.store import KnowledgeStore


@pytest.fixture(scope="session")
def embed_model() -> Any:
    """The real all-MiniLM-L6-v2 (LlamaIndex wrapper), loaded once for the whole session."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from knowledge.embeddings import make_llama_embedding

    return make_llama_embedding()


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    return sa.create_engine(url)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(sqlite_url)
    KnowledgeBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[KnowledgeStore]:
    """A store on a fresh database: every store/import test runs on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = make_engine(url)
    KnowledgeBase.metadata.create_all(engine)
    yield KnowledgeStore(engine)
    engine.dispose()


@pytest.fixture
def make_service(embed_model: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build a KnowledgeService over a database URL (tables created) with the session model."""
    from knowledge.service import KnowledgeService

    engines: list[sa.Engine] = []

    def factory(url: str, backend: str = "local", index_dir: Path | None = None) -> KnowledgeService:
        engine = make_engine(url)
        engines.append(engine)
        KnowledgeBase.metadata.create_all(engine)
        return KnowledgeService(
            engine, index_dir or tmp_path / f"index-{len(engines)}", backend=backend, embed_model=embed_model
        )

    yield factory
    for e in engines:
        e.dispose()
