"""`hybridesk chat`: the same conversation manager, in a terminal."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from knowledge.errors import HybrideskError


def citation_label(c: dict) -> str:
    """"Title › Section", the title alone when the section is the title or unknown, else the id."""
    title, heading = c.get("title"), c.get("heading")
    if title and heading and heading != title:
        return f"{title} › {heading}"
    return str(title or c.get("document_id") or "policy")


def quiet_model_loading() -> None:
    """No progress bars or library notices from loading the models: they would land in the chat."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def run_chat(services: Any, *, sender: str = "terminal", once: str | None = None) -> int:
    from bot.conversation.manager import ConversationManager
    from bot.db.engine import check_connection
    from bot.services import set_runtime_services

    check_connection(services.db.engine)
    set_runtime_services(services)
    quiet_model_loading()
    if once is None:  # load the models before the first prompt, not after the customer typed
        print("Loading the models...", flush=True)
        services.warm_up()
    manager = ConversationManager(services)
    conv = manager.by_sender("cli", sender)

    async def turn(text: str) -> None:
        """One message and its reply: streamed replies as they come, every other one (a handoff, a
        question back, an order lookup, a quoted policy) when it is ready; each printed once."""
        streamed: list[str] = []

        async def sink(event: dict[str, Any]) -> None:
            if event.get("type") == "token" and event.get("text"):
                if not streamed:
                    sys.stdout.write("bot> ")
                streamed.append(event["text"])
                sys.stdout.write(event["text"])
                sys.stdout.flush()

        _msg, outcome = await manager.handle(conv.id, text, sink=sink)  # HybrideskError: the caller says it
        if streamed:
            print()
        if outcome is None or outcome.suppressed:
            print("(an agent is handling this conversation)")
            return
        if not streamed:
            print(f"bot> {outcome.text}")
        elif _words(outcome.text) != _words("".join(streamed)):
            # the stored reply is not what streamed (the guardrails replaced it, e.g. with the policy quoted):
            # the customer sees the stored one
            print(f"   [reply as delivered]\nbot> {outcome.text}")
        for c in outcome.citations:
            print(f"   source: {citation_label(c)} (rev {c.get('revision')}, #{c.get('anchor')})")
        print(f"   [intent={outcome.intent} tone={outcome.tone} action={outcome.action} verdict={outcome.verdict}]")

    loop = asyncio.new_event_loop()
    try:
        if once is not None:
            loop.run_until_complete(turn(once))  # an invalid message is an error (exit code 1), said once
            return 0
        print("Type a message (Ctrl-D to quit).")
        refused = 0
        while True:
            try:
                text = input("you> ")
            except EOFError:
                print()
                return 1 if refused else 0  # messages piped in: a script learns that some were refused
            if text.strip():
                try:
                    loop.run_until_complete(turn(text))
                except HybrideskError as exc:
                    refused += 1
                    sys.stdout.flush()
                    print(f"[{exc.code}] {exc.message}", file=sys.stderr)
    finally:
        loop.close()


def _words(text: str) -> list[str]:
    return (text or "").split()
