"""Intent and tone: calibrated classifiers trained on the company's own tickets.

Public API (used by the conversation manager and the CLI)::

    registry = NLURegistry(settings.nlu_dir, embedding_dir=settings.embedding_model_dir)
    result = registry.current().predict("where is my parcel??", history=["I ordered a lamp"])
    result.intent, result.confidence, result.out_of_scope, result.tone.label

``NLU.train(examples, out_dir)`` / ``NLU.load(model_dir)`` work without a registry.
"""

from bot.conversation.nlu.model import NLU
from bot.conversation.nlu.registry import NLURegistry
from bot.conversation.nlu.types import OUT_OF_SCOPE, TONE_LABELS, NLUResult, Tone
from knowledge.errors import InvalidInput


def train_nlu(examples, out_dir, **kwargs) -> NLU:  # noqa: ANN001 - thin alias, see NLU.train
    """Train an :class:`NLU` on ``(text, intent)`` pairs and save it to ``out_dir`` (see :meth:`NLU.train`)."""
    return NLU.train(examples, out_dir, **kwargs)


__all__ = ["NLU", "OUT_OF_SCOPE", "TONE_LABELS", "InvalidInput", "NLURegistry", "NLUResult", "Tone", "train_nlu"]
