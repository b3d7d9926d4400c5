"""Rasa's REST channel, so existing Rasa clients talk to hybridesk unchanged.

``POST /webhooks/rest/webhook`` takes ``{"sender", "message", "metadata"?}`` and returns
``[{"recipient_id", "text", "custom"?}, ...]``; ``custom.sources`` lists the cited policy sections.
The message "/restart" ends the sender's conversation and is answered with the greeting; the
sender's next message starts a new conversation (so does one after the last ended or sat idle).
With ``HYBRIDESK_REST_TOKEN`` set, the webhook needs ``Authorization: Bearer <token>``.
The channel has no live connection: what an agent writes reaches the customer in the response to
their next message, before the bot's reply (``custom.role`` is ``agent`` or ``system``).
"""

from __future__ import annotations

import hmac
import json
import unicodedata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.console import takeover
from bot.conversation.manager import is_restart
from bot.web.deps import ManagerDep
from bot.web.routes_chat import greeting_for, respond_with_retry, retry_on_conflict

router = APIRouter(tags=["rasa"])


class RestMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sender: str = Field(..., min_length=1, max_length=128, description="the customer's id in your system")
    message: str = Field(..., description="what the customer wrote")
    metadata: dict[str, Any] | None = None

    @field_validator("sender")
    @classmethod
    def _printable_sender(cls, value: str) -> str:
        # an id is shown to agents (a conversation's title): a bidi override in it reordered the console's
        # tab title, and a zero-width id showed nothing (regression QA)
        if not value.strip() or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
            raise ValueError("must be printable text: no control, direction or zero-width characters")
        return value


async def rest_message(request: Request) -> RestMessage:
    """The body as JSON whatever its Content-Type, as Rasa's own REST channel reads it: clients
    such as ``curl -d '{...}'`` send JSON labelled application/x-www-form-urlencoded."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        pos = getattr(exc, "pos", None) or getattr(exc, "start", None) or 0
        if isinstance(exc, UnicodeDecodeError):
            reason = "the body is not UTF-8 text"
        elif isinstance(exc, RecursionError):  # under the body limit, ~1000 levels of [ or {
            reason = "nested too deeply"
        else:  # JSONDecodeError's own message, or e.g. an integer of more than 4300 digits
            reason = getattr(exc, "msg", None) or str(exc).split(";")[0][:120]
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": reason}}]) from None
    try:
        return RestMessage.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def require_rest_token(request: Request) -> None:
    """With ``HYBRIDESK_REST_TOKEN`` set, only a caller presenting it (``Authorization: Bearer``)
    may speak for a sender; without it the webhook is open, as Rasa's own REST channel is."""
    token = request.app.state.settings.rest_token
    if token is None or not token.get_secret_value():
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(401, "This webhook needs the header Authorization: Bearer <HYBRIDESK_REST_TOKEN>.",
                            headers={"WWW-Authenticate": 'Bearer realm="hybridesk-rest"'})


REST_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": RestMessage.model_json_schema()}}}}


@router.get("/webhooks/rest/", summary="Rasa REST channel health check")
async def rest_health() -> dict[str, str]:
    return {"status": "ok"}


def _as_rest_messages(sender: str, messages: list[Any]) -> list[dict[str, Any]]:
    """What agents wrote (and the bot's answer on their hand-back), as REST channel messages."""
    return [{"recipient_id": sender, "text": m.text,
             "custom": {"message_id": m.id, "role": m.role,
                        "sources": list(m.citations or []) if m.role == "bot" else [],
                        "action": None, "handoff": False}} for m in messages]


@router.post("/webhooks/rest/webhook", summary="Rasa REST channel: send a message, get the bot's replies",
             openapi_extra=REST_BODY_DOC, dependencies=[Depends(require_rest_token)])
async def rest_webhook(body: Annotated[RestMessage, Depends(rest_message)], request: Request,
                       manager: ManagerDep) -> list[dict[str, Any]]:
    import asyncio

    # Every message runs the model: the chat API's limits apply (per client address, and per sender
    # as per conversation), so a flood of messages or of made-up senders gets 429 with Retry-After.
    limits = request.app.state.chat_limits
    limits.per_ip.enforce(request.client.host if request.client else "unknown", "requests")
    limits.messages_per_conversation.enforce(f"rest:{body.sender}", "messages from this sender")
    if is_restart(body.message):  # as Rasa's: ends the conversation; the next message starts a new one
        # (the end of a chat an agent ended, not sent yet, comes first: the next conversation starts clean)
        ended = await asyncio.to_thread(takeover.undelivered_end, manager.db, "rest", body.sender)
        await asyncio.to_thread(manager.restart, "rest", body.sender)
        return _as_rest_messages(body.sender, ended) + [{
            "recipient_id": body.sender, "text": greeting_for(request.app.state.settings), "custom": {
                "message_id": None, "sources": [], "intent": None, "tone": None, "action": "restart",
                "handoff": False}}]
    # the sender's open conversation: a new one after it ended or sat idle (HYBRIDESK_SESSION_EXPIRY_MINUTES)
    conv, message = await asyncio.to_thread(retry_on_conflict, manager.receive_from_sender, "rest", body.sender,
                                            body.message, body.metadata)
    outcome = await respond_with_retry(manager, conv.id, message.id)
    # what agents wrote since the customer's last message: this response is the only way it reaches them
    from_people = _as_rest_messages(
        body.sender, await asyncio.to_thread(takeover.undelivered_from_people, manager.db, conv.id, message.seq))
    if outcome is None or outcome.suppressed:
        return from_people  # an agent holds the conversation: the bot stays silent
    return from_people + [{
        "recipient_id": body.sender,
        "text": outcome.text,
        "custom": {
            "message_id": outcome.message_id,
            "sources": outcome.citations,
            "intent": outcome.intent,
            "tone": outcome.tone,
            "action": outcome.action,
            "handoff": outcome.handoff,
        },
    }]
