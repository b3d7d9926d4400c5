"""The evaluation's own metrics (ROUGE-L via LCS, invented figures)."""

from __future__ import annotations

import pytest

from models.evaluation import (
    bootstrap_ci,
    format_table,
    invented_figures,
    lcs_length,
    rouge_l,
    tokenize_words,
)

BITEXT_HEADER = "flags,instruction,category,intent,response,entity_type,entity_value\n"


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


def test_bootstrap_interval_of_the_mean():
    values = [0.80, 0.90, 0.85, 0.70, 0.95, 0.88, 0.83, 0.91]
    low, high = bootstrap_ci(values)
    assert low < sum(values) / len(values) < high
    assert low >= 0.70 and high <= 0.95
    assert bootstrap_ci(values) == [low, high]  # fixed seed: the report repeats
    assert bootstrap_ci([0.5] * 10) == [0.5, 0.5] and bootstrap_ci([0.5]) is None
    wide, narrow = bootstrap_ci(values[:3]), bootstrap_ci(values * 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    table = format_table({"adapter_id": "a", "n_tickets": 8, "metrics": {
        "adapter": {"cosine": 0.85, "cosine_ci95": [low, high]}, "base": {"cosine": 0.5, "cosine_ci95": None}}})
    assert f"| cosine 95% interval | {low:.3f}-{high:.3f} | - |" in table


def test_invented_figures():
    prompt = "Facts: {{Return Window}} = 30 days"
    assert invented_figures("You have 30 days. 1. Log in to {{Website Name}}.", prompt) == []
    found = invented_figures("Call 0800 123 4567 or see www.x.com within 14 days", prompt)
    assert sorted(found) == ["0800 123 4567", "14", "www.x.com"]
    # figures are compared whole and by kind, not as substrings of the prompt
    facts = "Refund: 100% of the item price. Free delivery from €60. Call +31 20 123 4567 or see www.larkspur.example."
    assert invented_figures("You get 100% back; delivery is free from € 60.", facts) == []
    assert invented_figures("Call +31 (20) 123-4567 or visit www.larkspur.example.", facts) == []
    assert invented_figures("Spend 60 and get 100 back.", facts) == []  # bare numbers the facts hold
    assert invented_figures("It costs $100. Orders from €600 or 1000 items.", facts) == ["$100", "€600", "1000"]
    # a single digit is a figure too, unless it numbers a list line
    assert invented_figures("1. Log in.\n2. Your refund arrives within 3 business days.", "Refunds take 5 days.") \
        == ["3"]


def test_two_adapters_are_compared_on_tickets_neither_trained_on(tmp_path):
    from models.evaluation import held_out_tickets
    from models.tickets import read_tickets

    rows = "".join(
        f'B,question number {i} about my order,ORDER,{intent},"Answer {i}: see {{{{Order History}}}}.",,\n'
        for i, intent in enumerate(["track_order", "cancel_order"] * 5)
    )
    path = tmp_path / "bitext.csv"
    path.write_text(BITEXT_HEADER + rows, encoding="utf-8")
    tickets, _ = read_tickets(path, "bitext")
    hashes = [t.data_hash for t in tickets]

    def meta(val):  # every row trained on except the held-out ones (bitext_limit: all rows)
        return {"config": {"bitext_csv": str(path), "bitext_limit": None, "seed": 0}, "val_hashes": val}

    parent, child = meta(hashes[:6]), meta(hashes[2:8])
    own = held_out_tickets(parent, shared_data_dir=tmp_path, limit=50, seed=7)
    assert sorted(t.data_hash for t in own) == sorted(hashes[:6])
    common = held_out_tickets(parent, shared_data_dir=tmp_path, limit=50, seed=7, also=[child])
    assert sorted(t.data_hash for t in common) == sorted(hashes[2:6])
    assert held_out_tickets(parent, shared_data_dir=tmp_path, limit=50, seed=7, also=[meta([])]) == []


def test_long_reply_tickets_are_the_ones_no_run_of_the_chain_trained_on(tmp_path):
    from models.evaluation import untrained_long_reply_tickets

    def reply(words):
        return " ".join(["word"] * words)

    rows = "".join(f'B,question {i},ORDER,{intent},"{reply(n)}",,\n'
                   for i, (intent, n) in enumerate([("track_order", 5), ("track_order", 12), ("cancel_order", 30),
                                                    ("cancel_order", 9), ("track_order", 11)]))
    (tmp_path / "bitext.csv").write_text(BITEXT_HEADER + rows, encoding="utf-8")

    def words(text, add_special_tokens=False):  # one token per word: enough to test the filter
        return {"input_ids": text.split()}

    def meta(cap, csv="bitext.csv"):
        return {"config": {"bitext_csv": csv, "max_reply_tokens": cap, "sample_tickets": None}}

    # the child trained on replies up to 8 tokens, its parent up to 10: only replies over 10 are unseen
    found = untrained_long_reply_tickets([meta(8), meta(10)], shared_data_dir=tmp_path, tokenizer=words,
                                         limit=10, seed=7)
    assert sorted(len(t.agent_reply.split()) for t in found) == [11, 12, 30]
    assert {t.intent for t in found} == {"track_order", "cancel_order"}
    assert len(untrained_long_reply_tickets([meta(8)], shared_data_dir=tmp_path, tokenizer=words,
                                            limit=2, seed=7)) == 2
    assert untrained_long_reply_tickets([meta(8, csv=None)], shared_data_dir=tmp_path, tokenizer=words,
                                        limit=10, seed=7) == []


def test_no_shared_held_out_tickets_is_a_clear_error_before_any_model_loads(tmp_path):
    import json

    from knowledge.errors import InvalidInput
    from models.evaluation import evaluate
    from models.tickets import read_tickets

    csv = tmp_path / "bitext.csv"
    csv.write_text(BITEXT_HEADER
                   + 'B,where is my order,ORDER,track_order,"See {{Order History}}.",,\n', encoding="utf-8")
    mine, theirs = tmp_path / "mine-v1", tmp_path / "theirs-v1"
    held_out = read_tickets(csv, "bitext")[0][0].data_hash
    for folder, val in ((mine, [held_out]), (theirs, [])):  # theirs trained on the one ticket
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps({"id": folder.name, "config": {"bitext_csv": str(csv),
                                                           "sample_tickets": None}, "val_hashes": val}))
    with pytest.raises(InvalidInput, match="theirs-v1 did not train on either"):
        evaluate(mine, data_dir=tmp_path, base_model_dir=tmp_path / "absent", same_tickets_as=[theirs])


def test_intent_match_never_compares_a_reply_with_its_own_reference():
    """A reply that copies its own reference must not match its intent through that reference: with one
    ticket per intent there is no other reference, so nothing is scored."""
    from knowledge.embeddings import load_sentence_transformer
    from models.evaluation import EvalOptions, _score
    from models.tickets import Ticket

    embedder = load_sentence_transformer()
    refs = {"cancel_order": ["You can cancel an order in My Account › Orders while it is Placed.",
                             "To cancel, open the order and press Cancel order before it is packed."],
            "track_order": ["Your parcel's tracking link is in the shipping e-mail."]}
    tickets = [Ticket(source="t", customer_message="?", agent_reply=r, intent=k) for k, rs in refs.items() for r in rs]
    gens = [{"text": t.agent_reply, "cut": False, "tokens": 12} for t in tickets]  # each copies its reference
    result = _score(gens, tickets, [""] * 3, [set()] * 3, embedder, True, EvalOptions(), None)
    # only the two cancel tickets have another reference of their intent; each matches through the other
    assert result["intent_match"] == 1.0
    alone = _score(gens[2:], tickets[2:], [""], [set()], embedder, True, EvalOptions(), None)
    assert alone["intent_match"] is None
