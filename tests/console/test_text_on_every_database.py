"""Text PostgreSQL refuses (NUL characters, lone surrogate halves) is cleaned before any statement, so a
form field or JSON value holding it is stored (without it) instead of failing with a 500.

Seen on PostgreSQL (QA): a NUL in the sign-in e-mail, a KB body, title or change note, a rating comment
or a webhook sender raised ``psycopg.DataError`` on every path but the customer's message text.
"""

from __future__ import annotations

import pytest
from console_support import build_console, login

from bot.db.engine import clean_text

BODY = "# Gift wrap\x00\n\n## Prices\n\nGift wrap costs €4.50 per item.\x00\n"


def test_clean_text():
    assert clean_text("a\x00b") == "ab"
    assert clean_text("half \ud800 pair") == "half ? pair"
    assert clean_text("€ fine 😀") == "€ fine 😀"


def _hostile_text_is_stored_cleaned(c) -> None:
    client = c.client()
    page = client.get("/console/login")
    # a NUL in the sign-in e-mail: refused as any wrong sign-in, not a server error
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post("/console/login", data={"email": "editor\x00@larkspur.example", "password": "x",
                                            "csrf_token": token, "next": "/console"}, follow_redirects=False)
    assert r.status_code in (400, 401, 422), r.status_code
    csrf = login(client, "editor")
    r = client.post("/console/kb/new", follow_redirects=False, data={
        "csrf_token": csrf, "document_id": "gift-wrap", "title": "Gift\x00 wrap", "body": BODY,
        "facts": "", "tags": "gifts\x00, wrap", "action": "publish", "change_note": "first\x00"})
    assert r.status_code == 303, r.text
    rev = c.services.knowledge.get("gift-wrap", 1)
    assert rev.title == "Gift wrap" and "\x00" not in rev.content and "€4.50 per item." in rev.content
    assert rev.tags and all("\x00" not in t for t in rev.tags)


def test_hostile_text_is_stored_cleaned_on_sqlite(tmp_path):
    c = build_console(f"sqlite:///{tmp_path / 'console.db'}", tmp_path)
    try:
        _hostile_text_is_stored_cleaned(c)
    finally:
        c.services.close()


@pytest.mark.postgres
def test_hostile_text_is_stored_cleaned_on_postgres(pg_url, tmp_path):
    c = build_console(pg_url, tmp_path)
    try:
        _hostile_text_is_stored_cleaned(c)
    finally:
        c.services.close()
