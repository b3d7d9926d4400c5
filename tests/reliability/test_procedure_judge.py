"""The procedure benchmark's judge (benchmarks/procedures.py): a step counts as documented only when
the knowledge base says it, and as the right procedure only when it comes from the question's own
document."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import procedures as pr  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "knowledge" / "sample"
CORPUS = {p.stem: pr.norm(p.read_text(encoding="utf-8")) for p in SAMPLE.glob("*.md") if p.name != "SLOTS.md"}


def test_the_kb_steps_are_documented_and_made_up_ones_are_not():
    reply = ("Happy to help!\nHere is how (Register your return):\n"
             "1. Sign in and open My Account › Returns & refunds, or open the order in My Account › Orders and "
             "press View order.\n2. Press Start a return.\n\nAnything else?")
    verdict = pr.judge(reply, "returning-an-item", CORPUS)
    assert verdict == {"steps": 2, "documented": 2, "from_right_doc": 2, "undocumented": []}
    # steps of another document are documented, but not the right procedure
    assert pr.judge(reply, "cancelling-an-order", CORPUS)["from_right_doc"] == 0

    made_up = "Sure:\n1. Visit our larkspur.example.\n2. Fill in the return form.\n3. Press Start a return."
    verdict = pr.judge(made_up, "returning-an-item", CORPUS)
    assert verdict["steps"] == 3 and verdict["documented"] == 1
    assert verdict["undocumented"] == ["Visit our larkspur.example.", "Fill in the return form."]
    assert pr.judge("No steps here. 1 item costs €5.", "returning-an-item", CORPUS)["steps"] == 0
