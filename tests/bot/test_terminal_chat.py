"""`hybridesk chat`: every reply is printed, once, and a refused message is an error (QA A1, B12).

The real conversation manager, rasa-sdk actions, guardrails and SQLite; the NLU, knowledge base and
generator are the web tests' small deterministic fakes (tests/web/web_fakes.py).
"""

from __future__ import annotations

import io
import sys

import pytest
from web_fakes import DEFAULT_REPLY, build_services

from bot.services import set_runtime_services
from bot.terminal import run_chat
from knowledge.errors import HybrideskError


@pytest.fixture
def services(tmp_path):
    s = build_services(tmp_path / "data")
    yield s
    set_runtime_services(None)
    s.close()


def _stored_replies(services, sender: str) -> list[str]:
    from bot.conversation.manager import ConversationManager

    manager = ConversationManager(services)
    conv = manager.by_sender("cli", sender)
    return [m.text for m in manager.history(conv.id) if m.role == "bot" and m.status == "complete"]


def test_a_reply_that_is_not_streamed_is_printed(services, capsys):
    """A1: a handoff (or a question back, an order lookup) was shown as an empty `bot> `."""
    assert run_chat(services, sender="h", once="I want to talk to a human") == 0
    out = capsys.readouterr().out
    stored = _stored_replies(services, "h")
    assert len(stored) == 1 and stored[0]
    assert f"bot> {stored[0]}\n" in out and out.count("bot> ") == 1
    assert "action=handoff" in out


def test_a_streamed_reply_is_printed_once(services, capsys):
    assert run_chat(services, sender="s", once="How do I return a lamp?") == 0
    out = capsys.readouterr().out
    stored = _stored_replies(services, "s")
    assert services.generator.calls  # the model wrote it, streamed piece by piece
    assert stored and out.count("bot> ") == 1
    first_sentence = DEFAULT_REPLY.split(". ")[0]
    assert out.count(first_sentence) == 1 and stored[0].split() == out.split("bot> ")[1].split("\n   ")[0].split()


@pytest.mark.parametrize("message", ["", "   ", "x" * 5000])
def test_a_refused_message_is_an_error_without_an_empty_reply(services, capsys, message):
    """B12: `chat -m ""` printed `bot> ` and the error, and exited 0."""
    with pytest.raises(HybrideskError):  # bot.cli.main turns it into one line on stderr and exit code 1
        run_chat(services, sender="e", once=message)
    assert "bot>" not in capsys.readouterr().out


def test_chat_m_with_a_refused_message_exits_non_zero(tmp_path, monkeypatch, capsys):
    from bot.cli import main
    from bot.settings import get_settings

    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 0
        capsys.readouterr()
        assert main(["chat", "-m", "   "]) == 1
    finally:
        set_runtime_services(None)
        get_settings.cache_clear()
    captured = capsys.readouterr()
    assert "bot>" not in captured.out and "[empty_message]" in captured.err


def test_interactive_chat_prints_each_reply_and_reports_refused_lines(services, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("I want a human\n\nHow do I return a lamp?\n" + "y" * 5000 + "\n"))
    monkeypatch.setattr("builtins.input", lambda prompt="": _read_line(prompt))
    assert run_chat(services, sender="i") == 1  # one line was refused: a script can tell
    captured = capsys.readouterr()
    replies = [line for line in captured.out.splitlines() if "bot> " in line]
    assert len(replies) == 2 and all(line.split("bot> ", 1)[1].strip() for line in replies)
    assert "message_too_long" in captured.err


def _read_line(prompt: str) -> str:
    sys.stdout.write(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
