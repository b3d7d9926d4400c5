"""Rasa's REST channel, so existing Rasa clients talk to hybridesk unchanged.

``POST /webhooks/rest/webhook`` takes ``{"sender", "message", "metadata"?}`` and returns
``[{"recipient_id", "text", "custom"?}, ...]``; ``custom.sources`` lists the cited policy sections.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from bot.web.deps import ManagerDep

router = APIRouter(tags=["rasa"])


class RestMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sender: str = Field(..., min_length=1, max_length=128, description="the customer's id in your system")
    message: str = Field(..., description="what the customer wrote")
    metadata: dict[str, Any] | None = None


@router.get("/webhooks/rest/", summary="Rasa REST channel health check")
async def rest_health() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/webhooks/rest/webhook", summary="Rasa REST channel: send a message, get the bot's replies")
async def rest_webhook(body: RestMessage, manager: ManagerDep) -> list[dict[str, Any]]:
    import asyncio

    conv = await asyncio.to_thread(manager.by_sender, "rest", body.sender, body.metadata)
    _message, outcome = await manager.handle(conv.id, body.message)
    if outcome is None or outcome.suppressed:
        return []  # an agent holds the conversation; their replies reach the customer separately
    return [{
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
