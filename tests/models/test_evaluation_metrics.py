"""The evaluation's own metrics (ROUGE-L via LCS, invented figures)."""

from __future__ import annotations

import pytest

from models.evaluation import invented_figures, lcs_length, rouge_l, tokenize_words


def test_lcs():
    assert lcs_length(["a", "b", "c", "d"], ["a", "c", "d", "e"]) == 3
    assert lcs_length([], ["a"]) == 0


def test_rouge_l():
    assert rouge_l("the cat sat", "the cat sat") == pytest.approx(1.0)
    assert rouge_l("", "x") == 0.0
    # LCS "the cat on the mat" (5) of 6 and 7 words
    assert rouge_l("the cat sat on the mat", "the cat was on the red mat") == pytest.approx(
        2 * (5 / 6) * (5 / 7) / (5 / 6 + 5 / 7)
    )
    assert tokenize_words("Visit {{Website Name}}!") == ["visit", "{{website name}}"]


def test_invented_figures():
    prompt = "Facts: {{Return Window}} = 30 days"
    assert invented_figures("You have 30 days. 1. Log in to {{Website Name}}.", prompt) == []
    found = invented_figures("Call 0800 123 4567 or see www.x.com within 14 days", prompt)
    assert sorted(found) == ["0800 123 4567", "14", "www.x.com"]
