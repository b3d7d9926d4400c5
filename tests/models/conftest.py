"""Fixtures for the models package: the converted base model (once per session), no network."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from pathlib import Path

import pytest


def model_cache_dir() -> Path:
    """Converted base models are cached across test sessions (conversion takes ~40 s)."""
    return Path(
        os.environ.get("HYBRIDESK_TEST_MODEL_CACHE", Path(tempfile.gettempdir()) / "hybridesk-test-models")
    )


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    from models.base import ensure_base_model

    return ensure_base_model(model_cache_dir())


@pytest.fixture(scope="session")
def tokenizer(base_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model_dir), local_files_only=True)


@pytest.fixture(scope="session")
def base_model(base_model_dir: Path):
    """(model, tokenizer) in float32, loaded once per session; tests must not modify it."""
    import torch

    from models.base import load_base_model

    return load_base_model(base_model_dir, torch.float32, num_threads=2)


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths and the like are local


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuse every socket connection that is not loopback; returns the attempts made."""
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: object) -> None:
        if not _is_loopback(address):
            attempts.append(address)
            raise OSError(f"network access blocked in tests: {address!r}")

    def connect(self, address):  # type: ignore[no-untyped-def]
        guard(address)
        return real_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        guard(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in (None, "localhost") and not _is_loopback((host,)):
            attempts.append(host)
            raise OSError(f"DNS lookup blocked in tests: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts
