"""A fully initialised product on a temporary SQLite database, with the real models, offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.settings import Settings


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, str | bytes)  # AF_UNIX sockets (e.g. the PostgreSQL socket)


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every non-loopback connection: proves nothing downloads at run time."""
    real_connect = socket.socket.connect
    attempts: list[object] = []

    def guarded(self, address):
        if not _is_loopback(address):
            attempts.append(address)
            raise OSError(f"network access blocked in tests: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, a: guarded(self, a) or 0)
    return attempts


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """The converted base model, shared by every integration test of the session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def product(tmp_path_factory, model_cache):
    """Services over a fresh data dir, initialised like `hybridesk init` does (once per session)."""
    from bot.bootstrap import initialise
    from bot.services import Services

    data_dir = tmp_path_factory.mktemp("hybridesk-data")
    (data_dir / "models").symlink_to(model_cache, target_is_directory=True)
    # NLU on the company's own tickets only: the public-data training is covered in tests/nlu
    settings = Settings(data_dir=data_dir, env="test", max_new_tokens=96, nlu_use_public_data=False,
                        generation_timeout_s=600)
    services = Services(settings)
    lines: list[str] = []
    summary = initialise(services, admin_email="admin@larkspur.example", out=lines.append)
    services.init_output = lines
    services.init_summary = summary
    yield services
    services.close()
