"""Fixtures for the reliability and security tests.

Fast tests run the real app, database, manager, rasa-sdk actions and guardrails with the web
tests' fake knowledge/NLU/generator (tests/web/web_fakes.py): in process through TestClient, or
as a real uvicorn subprocess (``serve_app.py``) when the test needs a process to kill or logs
to read. The real models appear only in tests marked ``slow``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (HERE, ROOT / "tests" / "web"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from harness import ServerProcess  # noqa: E402

ADMIN_EMAIL = "admin@larkspur.example"
ADMIN_PASSWORD = "Larkspur-admin-Pa55word-9c1e"


def add_admin(services: Any, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    from bot.cli_users import add_user

    with services.db.unit_of_work() as session:
        add_user(session, email, "admin", password, "Admin")


def make_app(tmp: Path, *, unlimited: bool = False, delay: float = 0.0) -> tuple[Any, Any]:
    """The real app over a fresh SQLite file with fake models (default rate limits unless told)."""
    from web_fakes import build_app, build_services

    services = build_services(tmp, delay=delay)
    add_admin(services)
    return build_app(services, unlimited=unlimited), services


@pytest.fixture
def app_and_services(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    app, services = make_app(tmp_path)
    yield app, services
    services.close()


@pytest.fixture
def client(app_and_services):
    from fastapi.testclient import TestClient

    app, _ = app_and_services
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def server_factory(tmp_path: Path):
    """Start ``serve_app.py`` subprocesses; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def make(**kwargs: Any) -> ServerProcess:
        data_dir = kwargs.pop("data_dir", tmp_path / f"srv{len(started)}")
        srv = ServerProcess(data_dir, **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def start_conversation(client: Any) -> tuple[str, dict[str, str], str]:
    r = client.post("/api/conversations")
    assert r.status_code == 201, r.text
    body = r.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}, body["token"]
