"""Input hygiene: every message becomes a bounded, valid Unicode string (or a clear error)."""

from __future__ import annotations

import html
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
# Markup a customer pasted or typed: shown to people as text, but not words to classify.
_HIDDEN_BLOCK_RE = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)|<!--.*?(?:-->|$)", re.I | re.S)
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]{0,500}>")


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


def strip_markup(text: str) -> str:
    """``text`` without HTML tags, comments and script/style blocks, entities decoded.

    The classifiers read what a person would see if the markup were rendered: "<p>where is my
    order?</p>" is a question about an order; "<img src=x onerror=alert(1)>" holds no words at
    all. Text without "<" or "&" is returned unchanged ("<3" and "a < b" are not tags).
    """
    if "<" not in text and "&" not in text:
        return text
    text = _HIDDEN_BLOCK_RE.sub(" ", text)
    text = _TAG_RE.sub(" ", text)
    return html.unescape(text)


def as_read(text: str) -> str:
    """What a person reads of a message with tags in it ("<script>alert(1)</script> where is my order?" asks
    where the order is); text without a "<" is read as written (a tweet's "&amp;" stays as trained)."""
    return strip_markup(text) if "<" in text else text


def has_words(text: str) -> bool:
    """True when the text holds at least one letter or digit (emoji-only and punctuation-only do not)."""
    return _WORD_RE.search(text) is not None


def _is_pictograph(ch: str) -> bool:
    # emoji and other pictographs: "So" symbols outside the Latin/punctuation blocks
    return ord(ch) >= 0x2300 and unicodedata.category(ch) == "So"


def spell_emoji(text: str) -> str:
    """Emoji written out as their Unicode names ("\U0001F624" -> " face with look of triumph ").

    MiniLM's vocabulary has no emoji: every one becomes the same unknown token, although in chat
    they often carry the tone ("pressured \U0001F626", "happy birthday \U0001F389"). A run of the
    same emoji is written once; skin-tone modifiers, variation selectors and joiners are dropped.
    """
    if text.isascii():
        return text
    out: list[str] = []
    last = ""
    for ch in text:
        if _is_pictograph(ch):
            if ch != last:
                name = unicodedata.name(ch, "")
                out.append(f" {name.lower()} " if name else " ")
            last = ch
            continue
        if unicodedata.category(ch) in ("Sk", "Mn", "Cf") and ord(ch) >= 0x2000:
            continue  # modifiers, selectors and joiners between emoji
        last = "" if not ch.isspace() else last
        out.append(ch)
    return "".join(out)


def model_text(text: str, *, emoji_names: bool = False) -> str:
    """The bounded, whitespace-collapsed text the classifiers see.

    ``emoji_names`` writes emoji out as words (:func:`spell_emoji`); models trained since NLU
    format 3 read text that way.
    """
    text = text[: MAX_MODEL_CHARS * 2]
    if emoji_names:
        text = spell_emoji(text)
    return _SPACE_RE.sub(" ", text).strip()[:MAX_MODEL_CHARS]
