"""What the console tells its user after an action: a code in the redirect's query (``?done=published``)
read back as one sentence in the page's status region. Only these codes are shown, never text from the
URL, so a crafted link cannot put words on a console page."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

NOTICES: dict[str, str] = {
    # agents
    "taken_over": "You hold this chat now: the bot stays silent until you hand it back.",
    "handed_back": "Handed back to the bot.",
    "correction_saved": "Correction saved.",
    "chat_ended": "Chat ended.",
    "chat_already_ended": "This chat had already ended.",
    "nothing_to_export": "No new corrections to export: nothing was downloaded.",
    # knowledge-base editors
    "draft_saved": "Draft saved.",
    "published": "Published: customers get this revision from now on.",
    "scheduled": "Scheduled: the revision takes effect at the time shown.",
    "schedule_cancelled": "The schedule was cancelled; the revision is a draft again.",
    "retired": "Retired: the bot no longer answers from this document.",
    "retirement_scheduled": "Retirement scheduled.",
    "retirement_cancelled": "Retirement cancelled: the document stays in force.",
    # admins
    "user_added": "User added.",
    "user_disabled": "User disabled: they can no longer sign in, and the chats they held are back in the waiting queue.",
    "user_enabled": "User enabled again.",
    "signed_out": "You are signed out.",
}


def with_notice(url: str, code: str) -> str:
    """``url`` with ``?done=code`` added (before any ``#fragment``)."""
    if code not in NOTICES:
        raise KeyError(code)
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"done": code})))


def notice_for(code: str | None) -> str | None:
    """The sentence for a ``done`` code, or None for a missing or unknown one."""
    return NOTICES.get(code or "")
