"""glibc's memory controls, opened once for the whole process; no-ops where the C library is not glibc.

The training loop, the PyTorch prefill and the server each hand freed heap pages back to the OS or
cap malloc's arenas; they share this one handle instead of opening ``libc.so.6`` themselves.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

#: glibc's mallopt parameter number for the arena cap
M_ARENA_MAX = -8


@lru_cache(maxsize=1)
def libc() -> Any:
    """The C library when it is glibc (it has ``malloc_trim`` and ``mallopt``), else None."""
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim.argtypes = [ctypes.c_size_t]
        lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return lib


def malloc_trim() -> bool:
    """Return freed heap pages to the OS; whether glibc did anything (False off glibc)."""
    lib = libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt``; whether it accepted the setting (False off glibc)."""
    lib = libc()
    return bool(lib.mallopt(param, value)) if lib is not None else False
