"""Password hashing (argon2id) for console accounts."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
ROLES = ("agent", "editor", "admin")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(12)


def visible_text(text: str | None, *, one_line: bool = False) -> str:
    """``text`` a console user wrote for others to read (a correction, its note, a display name) without
    the characters the conversation manager takes out of chat messages (``_INVISIBLE``: bidi embeddings,
    overrides and isolates, the zero-width space, word joiner and byte-order mark: a "\\u202e" in a
    correction reversed the console's text around it and went into the exported training file) and
    without control characters (tab and newline kept, unless ``one_line``: then every run of white
    space is one space). Trimmed."""
    import unicodedata

    from bot.conversation.manager import _INVISIBLE

    text = "".join(ch for ch in (text or "") if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = text.translate(_INVISIBLE)
    return " ".join(text.split()) if one_line else text.strip()
