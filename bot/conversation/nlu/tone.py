"""Tone: a learned emotion head on the shared embedding, plus support-specific rule signals.

The learned part is trained on TweetEval emotion (anger, joy, optimism, sadness) with a fifth,
"neutral" class taken from ordinary support requests (public tickets without offensive
language), because tweets have no neutral class and most support messages are neutral.
Tweets say little about urgency or confusion, so those come from rules; rules also add the
things a support team knows signal anger (all caps, "third time", threats to leave).  Each
tone score is a noisy-OR of the model's probability and the rule evidence, normalised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.conversation.nlu.types import TONE_LABELS, Tone

EMOTIONS = ("anger", "joy", "optimism", "sadness", "neutral")


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile(r"(?:" + "|".join(parts) + r")", re.IGNORECASE)


PROFANITY = _rx(r"\b(?:f+u+c+k+\w*|f\*+c?k\w*|f\*+\w*|sh[i1]t+\w*|s\*+t|crap+y?|damn\w*|goddamn\w*|bloody|wtf|"
                r"bs|bullsh\w+|hell|piss\w*|bastard\w*|asshole\w*|a\*+hole|idiot\w*|moron\w*|screw (?:you|this))\b")
# (a joke gift, a joke mug: a product, not a verdict)
_JOKE = r"joke\b(?!\s+(?:gift|present|card|book|mug|item|shirt|t-shirt|toy|product|cup|sock)s?\b)"
FRUSTRATION = _rx(r"\b(?:ridiculous|unacceptable|useless|pathetic|terrible|horrible|awful|worst|disgust\w*|"
                  r"furious|angry|fed up|sick of|tired of|outrage\w*|incompetent|scam\w*|rip[- ]?off|"
                  r"frustrat\w*|annoy\w*|livid|disappoint\w*)\b",
                  # "joke" only as a verdict on the service ("is this a joke?", "what a joke", "your service is a
                  # joke", "you're joking"), not as a request for one ("Tell me a joke" read angry, 0.59)
                  r"\b(?:is|are|was) (?:this|that|it) (?:some (?:kind|sort) of )?(?:a )?" + _JOKE,
                  r"\b(?:this|that|it|which|service|company|shop|store|website|site|app|support|delivery|"
                  r"refund|response|reply|answer|offer|policy|process)(?: is|['’]s| was| has been)"
                  r" (?:a |an |such a |one big |a (?:complete|total|bad|sick|bloody|absolute|real) |an absolute )" + _JOKE,
                  r"\bwhat a (?:\w+ )?" + _JOKE, r"\b(?:a|an absolute|a complete|a total) joke of an? \w+",
                  r"\b(?:you(?:['’]re| are)|you must be|you have to be|you['’]ve got to be|you got to be|are you)"
                  r" (?:\w+ )?(?:joking|kidding)\b")
REPEAT_CONTACT = _rx(r"\b(?:second|third|fourth|fifth|2nd|3rd|4th|5th|\d+th|nth|umpteenth) time\b",
                     r"\bhow many times\b", r"\bagain and again\b", r"\bover and over\b",
                     r"\balready (?:asked|told|contacted|called|emailed|e-mailed|written|wrote|sent|explained)\b",
                     r"\bkeep (?:asking|calling|writing|telling)\b", r"\bstill (?:no|not|haven'?t|hasn'?t|nothing|waiting)\b",
                     r"\b(?:no one|nobody) (?:has )?(?:answer|repl|respond|got back|help)\w*",
                     r"\b(?:times|days|weeks) (?:now|already)\b", r"\bonce again\b")
THREAT_TO_LEAVE = _rx(r"\b(?:cancel|close|delete|terminate) my (?:whole |entire )?(?:account|membership|subscription)\b",
                      r"\bswitch\w* to (?:another|a different|an other|your competitor|a competitor|\w+ instead)",
                      r"\b(?:another|a different|other) (?:store|shop|company|retailer|website|site)\b",
                      r"\bnever (?:order\w*|buy\w*|shop\w*|purchas\w*|com\w*) (?:here |from you |with you )?again\b",
                      r"\btake my (?:business|money) elsewhere\b", r"\b(?:last|final) time i (?:order|buy|shop)\w*",
                      r"\b(?:bad|negative|1[- ]star|one[- ]star) review\b", r"\bcharge ?back\b",
                      r"\b(?:lawyer|attorney|sue you|legal action|better business bureau|bbb|report you)\b",
                      r"\b(?:done|finished) with (?:you|this (?:store|company|shop))\b")
URGENCY = _rx(r"\basap\b", r"\burgent\w*\b", r"\bimmediate\w*\b", r"\bright (?:now|away)\b", r"\bemergency\b",
              r"\bas soon as possible\b", r"\btime[- ]sensitive\b", r"\bhurry\b", r"\bstraight away\b",
              r"\b(?:need|needs|want) (?:it|this|them|my \w+) (?:by|before|for) (?:today|tonight|tomorrow|"
              r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|the weekend)\b",
              r"\b(?:today|tonight) please\b", r"\bno time\b", r"\bquickly\b", r"\bdeadline\b")
CONFUSION = _rx(r"\bi (?:do not|don'?t|dont|can'?t|cannot) (?:understand|get it|follow|figure)\b",
                r"\bconfus\w*\b", r"\b(?:makes|make) no sense\b", r"\b(?:doesn'?t|does not|didn'?t) make (?:any )?sense\b",
                r"\bwhat (?:does|do) (?:that|this|it|you) mean\b", r"\bnot sure (?:what|how|if|whether|where|which)\b",
                r"\bi'?m (?:lost|puzzled|baffled)\b", r"\bunclear\b", r"\bno idea (?:what|how|where|why)\b",
                r"\b(?:huh|what\?)\b", r"\bwhich one\b", r"\bhow (?:do|does) (?:this|that|it) (?:even )?work\b")
GRATITUDE = _rx(r"\bthanks?\b(?! for nothing)", r"\bthank you\b(?! for nothing)", r"\bappreciate\w*\b",
                r"\b(?:great|awesome|perfect|excellent|wonderful|fantastic|amazing|brilliant|lovely)\b",
                r"\bgood job\b", r"\bmuch better\b", r"\bsolved\b")
REPEATED_PUNCT = re.compile(r"(?:!\s*){2,}|\?{3,}|\?!|!\?")
ANGRY_EMOJI = re.compile("[\U0001F620\U0001F621\U0001F92C\U0001F44E\U0001F624\U0001F4A2]")
CONFUSED_EMOJI = re.compile("[\U0001F914\U0001F615\U0001F928\u2753]")
POSITIVE_EMOJI = re.compile("[\U0001F600-\U0001F60D\U0001F642\U0001F917\U0001F44D\u2764\u263A\U0001F64F]")

# signal -> (tone it supports, weight in the noisy-OR)
SIGNAL_WEIGHTS: dict[str, tuple[str, float]] = {
    "all_caps": ("angry", 0.5),
    "repeated_punctuation": ("angry", 0.35),
    "profanity": ("angry", 0.65),
    "frustration_words": ("angry", 0.55),
    "repeat_contact": ("angry", 0.6),
    "threat_to_leave": ("angry", 0.65),
    "angry_emoji": ("angry", 0.6),
    "urgency": ("urgent", 0.75),
    "confusion": ("confused", 0.75),
    "confused_emoji": ("confused", 0.5),
    "gratitude": ("positive", 0.45),
    "positive_emoji": ("positive", 0.5),
}

_CHECKS: list[tuple[str, Callable[[str], bool]]] = [
    ("profanity", lambda t: PROFANITY.search(t) is not None),
    ("frustration_words", lambda t: FRUSTRATION.search(t) is not None),
    ("repeat_contact", lambda t: REPEAT_CONTACT.search(t) is not None),
    ("threat_to_leave", lambda t: THREAT_TO_LEAVE.search(t) is not None),
    ("urgency", lambda t: URGENCY.search(t) is not None),
    ("confusion", lambda t: CONFUSION.search(t) is not None),
    ("gratitude", lambda t: GRATITUDE.search(t) is not None),
    ("repeated_punctuation", lambda t: REPEATED_PUNCT.search(t) is not None),
    ("angry_emoji", lambda t: ANGRY_EMOJI.search(t) is not None),
    ("confused_emoji", lambda t: CONFUSED_EMOJI.search(t) is not None),
    ("positive_emoji", lambda t: POSITIVE_EMOJI.search(t) is not None),
]


def _all_caps(text: str) -> bool:
    """Shouting: mostly upper-case letters over several words (a lone 'ASAP' or 'UPS' is not)."""
    words = [w for w in re.findall(r"[^\W\d_]{2,}", text)]
    if len(words) < 3:
        return False
    upper = [w for w in words if w.isupper()]
    letters = sum(len(w) for w in words)
    return len(upper) >= 3 and sum(len(w) for w in upper) / max(letters, 1) >= 0.6


def rule_signals(text: str) -> list[str]:
    """Names of the support-specific signals present in ``text``."""
    found = ["all_caps"] if _all_caps(text) else []
    found += [name for name, check in _CHECKS if check(text)]
    if "gratitude" in found and any(s in found for s in ("profanity", "frustration_words", "repeat_contact")):
        found.remove("gratitude")  # "thanks for nothing", "great, third time" is not gratitude
    return found


def emotion_to_tone(probs: dict[str, float]) -> dict[str, float]:
    """Map emotion-head probabilities onto our tone labels (sadness in support reads as frustration)."""
    sad = probs.get("sadness", 0.0)
    return {
        "angry": probs.get("anger", 0.0) + 0.5 * sad,
        "urgent": 0.0,
        "confused": 0.0,
        "neutral": probs.get("neutral", 0.0) + 0.5 * sad,
        "positive": probs.get("joy", 0.0) + probs.get("optimism", 0.0),
    }


def combine(model_scores: dict[str, float] | None, signals: list[str]) -> Tone:
    """Noisy-OR the rule evidence into the model's tone scores, normalise, pick the label."""
    # Rules alone (no learned head, or no words): neutral only half-believed, so one clear signal wins.
    base = model_scores or {t: (0.5 if t == "neutral" else 0.0) for t in TONE_LABELS}
    evidence = dict.fromkeys(TONE_LABELS, 0.0)
    for s in signals:
        tone, w = SIGNAL_WEIGHTS.get(s, ("neutral", 0.0))
        evidence[tone] = 1 - (1 - evidence[tone]) * (1 - w)
    scores = {t: 1 - (1 - base.get(t, 0.0)) * (1 - evidence[t]) for t in TONE_LABELS}
    # Any emotional evidence makes "neutral" less likely, in proportion to how strong it is.
    scores["neutral"] = base.get("neutral", 0.0) * float(np.prod([1 - evidence[t] for t in TONE_LABELS]))
    total = sum(scores.values()) or 1.0
    scores = {t: round(v / total, 4) for t, v in scores.items()}
    label = max(TONE_LABELS, key=lambda t: (scores[t], t != "neutral"))  # a tie goes to the signal
    return Tone(label=label, scores=scores, signals=list(signals))


def mix(head_probs: np.ndarray, branch_probs: np.ndarray | None, weight: float) -> np.ndarray:
    """Geometric mix ``p_head^(1-w) * p_branch^w`` (renormalised) of two distributions over the same classes."""
    if branch_probs is None or weight <= 0:
        return head_probs
    logp = (1 - weight) * np.log(np.clip(head_probs, 1e-9, None)) + weight * np.log(np.clip(branch_probs, 1e-9, None))
    logp = logp - logp.max(axis=-1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=-1, keepdims=True)


@dataclass
class ToneModel:
    """The learned emotion part: a calibrated head over :data:`EMOTIONS` (may be absent), optionally
    mixed with a fine-tuned tone branch (:class:`branch.ToneBranch`, stored next to the pickle)."""

    head: object | None = None  # an IntentHead fitted on emotion labels
    branch: Any = None  # ToneBranch or None; never pickled (saved as tone_branch.pt)
    branch_weight: float = 0.0  # weight of the branch in the geometric mix (fitted on validation data)

    def branch_probs_for_head(self, branch_probs: np.ndarray | None) -> np.ndarray | None:
        """The branch's probabilities re-ordered to the head's classes (0 for a class it lacks)."""
        if branch_probs is None or self.branch is None or self.head is None:
            return None
        order = {c: i for i, c in enumerate(self.branch.classes)}
        return np.array([branch_probs[order[c]] if c in order else 0.0
                         for c in self.head.classes_])  # type: ignore[attr-defined]

    def emotion_probs(self, text: str, emb: np.ndarray, branch_probs: np.ndarray | None = None
                      ) -> dict[str, float] | None:
        if self.head is None:
            return None
        probs = self.head.predict_proba_one(text, emb)  # type: ignore[attr-defined]
        probs = mix(probs, self.branch_probs_for_head(branch_probs), self.branch_weight)
        return dict(zip(self.head.classes_, map(float, probs), strict=True))  # type: ignore[attr-defined]

    def tone(self, text: str, rule_text: str, emb: np.ndarray | None, extra_signals: Sequence[str] = (),
             branch_probs: np.ndarray | None = None) -> Tone:
        probs = self.emotion_probs(text, emb, branch_probs) if emb is not None else None
        signals = rule_signals(rule_text)
        signals += [s for s in extra_signals if s not in signals]
        return combine(emotion_to_tone(probs) if probs else None, signals)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["branch"] = None
        return state
