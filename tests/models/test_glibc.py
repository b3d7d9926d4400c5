"""The one glibc handle the training loop, the PyTorch prefill and the server share."""

from __future__ import annotations

import platform

import pytest

from models import glibc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_libc_is_opened_once_and_trims_and_sets_options():
    assert glibc.libc() is glibc.libc() is not None
    # freeing a heap full of small blocks leaves pages glibc can hand back
    blocks = [bytearray(4000) for _ in range(20_000)]
    del blocks
    assert glibc.malloc_trim() in (True, False)
    assert glibc.mallopt(glibc.M_ARENA_MAX, 4) is True  # a setting glibc accepts


def test_without_glibc_every_call_is_a_no_op(monkeypatch):
    monkeypatch.setattr(glibc, "libc", lambda: None)
    assert glibc.malloc_trim() is False and glibc.mallopt(glibc.M_ARENA_MAX, 2) is False
