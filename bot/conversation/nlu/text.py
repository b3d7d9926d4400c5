"""Input hygiene: every message becomes a bounded, valid Unicode string (or a clear error)."""

from __future__ import annotations

import re
import unicodedata

from knowledge.errors import InvalidInput

# Classifiers only ever see the head of a message: intent is stated early, and a 20 KB paste must
# not cost 20 KB of tokenisation.  Tone rules look at a longer window.
MAX_MODEL_CHARS = 600
MAX_RULE_CHARS = 4000
MAX_INPUT_BYTES = 1_000_000

_WORD_RE = re.compile(r"[^\W_]", re.UNICODE)  # any letter or digit, in any script
_SPACE_RE = re.compile(r"\s+")


def coerce_text(text: str | bytes | None) -> str:
    """Return ``text`` as a clean ``str``; raise :class:`InvalidInput` for undecodable bytes.

    Lone surrogates (what ``surrogateescape`` decoding leaves behind) are replaced instead of
    crashing the tokenizer later; control characters become spaces.
    """
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_INPUT_BYTES:
            raise InvalidInput(f"The message is {len(text)} bytes; send at most {MAX_INPUT_BYTES}.",
                               code="message_too_long")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("The message is not valid UTF-8 text; send it UTF-8 encoded.",
                               code="invalid_encoding", position=exc.start) from None
    if not isinstance(text, str):
        raise InvalidInput(f"Expected text, got {type(text).__name__}.", code="invalid_type")
    text = text[: MAX_INPUT_BYTES]
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    text = unicodedata.normalize("NFC", text)
    return "".join(" " if unicodedata.category(c) == "Cc" and c not in "\n\t" else c for c in text)


def has_words(text: str) -> bool:
    """True when the text holds at least one letter or digit (emoji-only and punctuation-only do not)."""
    return _WORD_RE.search(text) is not None


def model_text(text: str) -> str:
    """The bounded, whitespace-collapsed text the classifiers see."""
    return _SPACE_RE.sub(" ", text[: MAX_MODEL_CHARS * 2]).strip()[:MAX_MODEL_CHARS]
