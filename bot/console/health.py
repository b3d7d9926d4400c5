"""Whether the model is writing the replies: the console warns agents when it is not.

When the generator fails (an adapter damaged after it was activated, a llama.cpp or OpenAI-compatible
server that is down, a model that times out), each customer still gets a reply: the policy quoted, or a
"we don't know" with the offer of a person. Nothing looks broken to the customer, so nobody would look.
The model calls are logged (``model_calls``); the latest generation calls tell whether it is failing now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.db.models import ModelCall

#: how many of the latest generation calls are read to count a run of failures
WINDOW = 20


@dataclass(frozen=True)
class ModelAlert:
    """The latest generation calls failed: how many in a row, since when, and the last error."""

    failing: int  # consecutive failed calls, counting back from the latest (at most WINDOW)
    since: datetime  # when the first of them was made
    adapter_id: str | None
    error: str  # the latest call's error, first line only

    @property
    def at_least(self) -> bool:
        """True when every call read failed (there may be more before them)."""
        return self.failing >= WINDOW


def model_alert(session: Any) -> ModelAlert | None:
    """The run of failed generation calls ending with the latest one, or None when the latest succeeded."""
    rows = session.execute(
        sa.select(ModelCall.status, ModelCall.error, ModelCall.adapter_id, ModelCall.created_at)
        .where(ModelCall.kind == "generate").order_by(ModelCall.id.desc()).limit(WINDOW)
    ).all()
    failing = 0
    for row in rows:
        if row.status != "error":
            break
        failing += 1
    if not failing:
        return None
    latest = rows[0]
    text = (latest.error or "").strip()
    error = text.splitlines()[0][:300] if text else "unknown error"
    return ModelAlert(failing=failing, since=rows[failing - 1].created_at, adapter_id=latest.adapter_id,
                      error=error)
