"""Result types of the NLU: what the conversation manager and the policy read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OUT_OF_SCOPE = "out_of_scope"
TONE_LABELS: tuple[str, ...] = ("angry", "urgent", "confused", "neutral", "positive")


@dataclass(frozen=True)
class Tone:
    """The customer's tone: one label, a score per label (summing to 1) and the rule signals seen."""

    label: str = "neutral"
    scores: dict[str, float] = field(default_factory=lambda: {t: (1.0 if t == "neutral" else 0.0)
                                                              for t in TONE_LABELS})
    signals: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NLUResult:
    """Intent (with calibrated confidence and an explicit out-of-scope verdict) and tone.

    ``confidence`` is the calibrated probability of the best known intent, also when the verdict is
    out-of-scope (then ``intent`` is ``"out_of_scope"``); ``top`` lists the three best known intents.
    ``reason`` says why the verdict was reached (``"confident"``, ``"confident_family"`` (the intents
    of one family hold the probability together), ``"low_confidence"``,
    ``"far_from_training"``, ``"no_words"``, ``"empty"``...); ``context_used`` is true when the
    previous customer turn was needed to classify a follow-up.
    """

    intent: str
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool
    tone: Tone
    version: str
    reason: str = "confident"
    context_used: bool = False
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["top"] = [[name, p] for name, p in self.top]
        return data
