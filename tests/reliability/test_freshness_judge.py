"""The freshness benchmark's own judge (benchmarks/freshness.py): a value counts as stated only as a
figure of its own. Until session 13 it matched digits anywhere, so "5 years" was "stated" by the
"555" of the phone number and the hybrid's accuracy read 0.98 where it was 0.82-0.86."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import freshness as fr  # noqa: E402


@pytest.mark.parametrize(("reply", "value", "stated"), [
    ("You can return items within 45 days.", "45", True),
    ("Standard delivery takes 2–4 business days.", "2-4", True),
    ("Standard delivery takes 2 to 4 business days.", "2-4", True),
    ("It costs €5.25.", "€5.25", True),
    ("A 12 % restocking fee applies.", "12%", True),
    ("Write to care@larkspur.example.", "care@larkspur.example", True),
    ("Call +31 20 555 0199.", "+31 20 555 0199", True),
    ("Call +31 20 555 0199.", "5", False),
    ("Call +31 20 555 0199.", "1", False),
    ("We are open Monday to Saturday, 08:00-20:00 CET.", "20", False),
    ("Standard delivery takes 2-4 business days.", "2", False),
    ("Free from €600.", "€60", False),
    ("A 12 % restocking fee applies.", "12", False),  # 12 % is not 12
    ("Write to help@larkspur.example.", "care@larkspur.example", False),
    ("1. Open Help.\n2. Choose Gift cards.\n3. Follow the steps.", "3", False),
])
def test_a_value_is_stated_only_as_a_whole_figure(reply, value, stated):
    assert fr.states(reply, value) is stated


def test_rescoring_recomputes_accuracy_and_keeps_the_old_figures(tmp_path):
    sample = {"q": "How long is a gift card valid?", "fact": "gift_card_validity_years", "raw": "",
              "verdict": "passed", "guardrail": {}}
    data = {"rows": [], "details": {
        "hybrid/before": {"summary": {"system": "hybrid", "phase": "before", "current_fact_accuracy": 1.0,
                                      "stale_share": 0.0, "model_stated_share": 1.0},
                          "samples": [{**sample, "value": "3", "reply": "Call +31 20 555 0142."}]},
        "hybrid/after": {"summary": {"system": "hybrid", "phase": "after", "current_fact_accuracy": 1.0,
                                     "stale_share": 0.0, "model_stated_share": 1.0},
                         "samples": [{**sample, "value": "5", "reply": "Gift cards stay valid for 3 years."}]},
    }}
    path = tmp_path / "freshness.json"
    path.write_text(json.dumps(data))
    fr.rescore(path)
    rows = {r["phase"]: r for r in json.loads(path.read_text())["rows"]}
    assert rows["before"]["current_fact_accuracy"] == 0.0
    assert rows["before"]["before_rescoring"]["current_fact_accuracy"] == 1.0
    assert rows["after"]["current_fact_accuracy"] == 0.0 and rows["after"]["stale_share"] == 1.0
    fr.rescore(path)  # again: the figures as first reported are kept
    rows = {r["phase"]: r for r in json.loads(path.read_text())["rows"]}
    assert rows["before"]["before_rescoring"]["current_fact_accuracy"] == 1.0
