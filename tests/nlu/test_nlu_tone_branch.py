"""The fine-tuned tone branch: trains on real MiniLM hidden states, saves, loads, and is what predict uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bot.conversation.nlu import NLU
from bot.conversation.nlu.branch import BRANCH_FILE
from bot.conversation.nlu.tone import mix

pytestmark = pytest.mark.slow

def test_branch_is_trained_saved_and_recorded(nlu_branched: NLU) -> None:
    branch = nlu_branched.tone.branch
    assert branch is not None and branch.start == 5
    assert sorted(branch.classes) == sorted(nlu_branched.tone.head.classes_)
    info = nlu_branched.metadata["metrics"]["tone"]
    assert len(info["branch"]["val_macro_f1"]) == info["branch"]["epochs"]
    assert set(info["validation_macro_f1_by_weight"]) >= {"0.0", "1.0"}
    assert "tone branch" in nlu_branched.metadata["tone"]
    # validation chose the epoch count; the shipped branch was trained again on training + validation
    refit = info["branch"]["refit"]
    assert refit["epochs"] == info["branch"]["best_epoch"]
    assert refit["n_train"] == info["branch"]["n_train"] + 8  # TONE_VALIDATION's 8 messages
    assert branch.info["kept"] == "last epoch" and branch.info["epochs"] == refit["epochs"]
    assert branch.precision == "int8" and branch.served_precision() == "int8"  # TONE_BRANCH_PRECISION
    # The fine-tuned layers moved away from the pretrained ones they were copied from.
    pretrained = nlu_branched.encoder.fp32_top_layers(5).state_dict()
    tuned = branch.layers.state_dict()
    assert any(not torch.allclose(pretrained[k], tuned[k]) for k in tuned if tuned[k].is_floating_point())


def test_branch_changes_tone_and_survives_a_reload(nlu_branched: NLU, tmp_path) -> None:
    text = "I'm so happy with the lamp, it made my day"
    nlu_branched.tone.branch_weight = 0.5  # whatever the tiny validation set chose, exercise the mix
    nlu_branched.tone.branch.clear_cache()
    result = nlu_branched.predict(text)
    probs = nlu_branched.tone.branch.cached(text)
    assert probs is not None and probs.shape == (len(nlu_branched.tone.branch.classes),)
    assert np.isclose(probs.sum(), 1.0, atol=1e-5)
    emb = nlu_branched.encoder.encode_one(text)
    head_only = nlu_branched.tone.head.predict_proba_one(text, emb)
    mixed = mix(head_only, nlu_branched.tone.branch_probs_for_head(probs), 0.5)
    assert not np.allclose(np.log(mixed), np.log(head_only), atol=0.1)  # the branch moves the scores
    assert nlu_branched.tone.emotion_probs(text, emb, probs) == pytest.approx(
        dict(zip(nlu_branched.tone.head.classes_, mixed, strict=True)), abs=1e-6)

    nlu_branched.save(tmp_path / "copy")
    assert (tmp_path / "copy" / BRANCH_FILE).exists()
    loaded = NLU.load(tmp_path / "copy")
    assert loaded.tone.branch is not None
    loaded.tone.branch_weight = 0.5
    loaded.encoder.clear_cache()
    again = loaded.predict(text)
    np.testing.assert_allclose(loaded.tone.branch.cached(text), probs, atol=1e-5)
    assert again.tone.scores == pytest.approx(result.tone.scores, abs=1e-3)


def test_traced_branch_matches_eager_and_padding(nlu_branched: NLU) -> None:
    branch = nlu_branched.tone.branch
    texts = ["hi", "where is my order, I am so angry about this!!"]
    _, hidden = nlu_branched.encoder.encode_with_hidden(texts, branch.start)
    eager = branch._module()
    with torch.inference_mode():
        for h in hidden:
            np.testing.assert_allclose(branch.probs_from_hidden(h), eager(h[None])[0].numpy(), atol=1e-5)


def test_average_is_the_elementwise_mean_and_keeps_integer_buffers() -> None:
    from bot.conversation.nlu.branch import _average

    a = {"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([0, 1])}
    out = _average([a, b])
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 4.0]))
    assert out["ids"] is a["ids"]
    torch.testing.assert_close(_average([a])["w"], a["w"])


def test_a_soup_of_runs_is_one_branch_no_worse_on_validation_than_its_best_run(nlu_branched: NLU, tone_data) -> None:
    """soup=3: three runs from one starting point, averaged greedily; the weights it keeps are the
    soup's (their validation macro-F1 is the one recorded), and it costs one branch at inference."""
    from sklearn.metrics import f1_score

    from bot.conversation.nlu.branch import ToneBranch

    train, validation = tone_data
    enc = nlu_branched.encoder
    texts, labels = [t for t, _ in train], [y for _, y in train]
    val_texts, val_labels = [t for t, _ in validation], [y for _, y in validation]
    _, hidden = enc.encode_with_hidden(texts, 5)
    _, val_hidden = enc.encode_with_hidden(val_texts, 5)
    branch = ToneBranch.fit(enc, hidden, labels, val_hidden, val_labels, start=5, epochs=2, seed=3,
                            soup=3, int8=False)
    info = branch.info
    assert info["soup_runs"] == 3 and 1 <= info["soup_chosen"] <= 3
    assert len(info["runs_val_macro_f1"]) == 3 and info["soup_val_macro_f1"] >= max(info["runs_val_macro_f1"])
    assert len(branch.layers) == 1  # one branch, whatever the number of runs
    present = sorted(set(val_labels))
    probs = np.stack([branch.probs_from_hidden(h) for h in val_hidden])
    cols = [branch.classes.index(c) for c in present]
    pred = [present[i] for i in probs[:, cols].argmax(1)]
    assert f1_score(val_labels, pred, labels=present, average="macro") == pytest.approx(
        info["soup_val_macro_f1"], abs=1e-3)


def test_last_epoch_needs_no_validation_and_refuses_a_soup(nlu_branched: NLU, tone_data) -> None:
    from bot.conversation.nlu.branch import ToneBranch

    train, _ = tone_data
    enc = nlu_branched.encoder
    texts, labels = [t for t, _ in train], [y for _, y in train]
    _, hidden = enc.encode_with_hidden(texts, 5)
    one = ToneBranch.fit(enc, hidden, labels, (), (), start=5, epochs=1, seed=3, int8=False, last_epoch=True)
    two = ToneBranch.fit(enc, hidden, labels, (), (), start=5, epochs=2, seed=3, int8=False, last_epoch=True)
    assert one.info["best_epoch"] == 1 and two.info["best_epoch"] == 2 and two.info["val_macro_f1"] == []
    # the second epoch trained on: the kept weights are the last epoch's, not the first's
    a, b = one.layers.state_dict(), two.layers.state_dict()
    assert any(not torch.allclose(a[k], b[k]) for k in a if a[k].is_floating_point())
    with pytest.raises(ValueError, match="soup"):
        ToneBranch.fit(enc, hidden, labels, (), (), start=5, epochs=1, soup=2, last_epoch=True)


def test_each_precision_serves_the_same_branch_and_survives_a_reload(nlu_branched: NLU, tmp_path) -> None:
    """int8, bfloat16 and float32 serve the float32-trained weights; the choice is saved with them."""
    from bot.conversation.nlu.branch import ToneBranch

    branch = nlu_branched.tone.branch
    _, hidden = nlu_branched.encoder.encode_with_hidden(["I am so angry, where is my parcel?!"], branch.start)
    probs = {}
    for precision in ("float32", "bfloat16", "int8"):
        copy_ = ToneBranch(branch.start, branch.classes, branch.layers, branch.head, precision=precision)
        assert copy_.served_precision() == precision
        probs[precision] = copy_.probs_from_hidden(hidden[0])
        assert np.isclose(probs[precision].sum(), 1.0, atol=1e-3)
        copy_.save(tmp_path / f"{precision}.pt")
        loaded = ToneBranch.load(tmp_path / f"{precision}.pt", nlu_branched.encoder)
        assert loaded.precision == precision
        np.testing.assert_allclose(loaded.probs_from_hidden(hidden[0]), probs[precision], atol=1e-5)
    np.testing.assert_allclose(probs["bfloat16"], probs["float32"], atol=0.03)
    np.testing.assert_allclose(probs["int8"], probs["float32"], atol=0.05)
    with pytest.raises(ValueError, match="precision"):
        ToneBranch(branch.start, branch.classes, branch.layers, branch.head, precision="int4")


def test_a_branch_saved_before_precisions_loads_with_its_int8_flag(nlu_branched: NLU, tmp_path) -> None:
    from bot.conversation.nlu.branch import ToneBranch

    branch = nlu_branched.tone.branch
    for flag, expected in ((True, "int8"), (False, "float32")):
        torch.save({"start": branch.start, "classes": branch.classes, "info": {}, "int8": flag,
                    "layers": branch.layers.state_dict(), "head": branch.head.state_dict()}, tmp_path / "old.pt")
        assert ToneBranch.load(tmp_path / "old.pt", nlu_branched.encoder).precision == expected


@pytest.mark.parametrize(("cpu", "served"), [("bfloat16", "bfloat16"), ("float32", "int8")])
def test_auto_serves_bf16_only_where_the_cpu_computes_it(nlu_branched: NLU, monkeypatch, cpu, served) -> None:
    import models.torch_prefill
    from bot.conversation.nlu.branch import ToneBranch

    monkeypatch.setattr(models.torch_prefill, "default_dtype", lambda: cpu)
    branch = nlu_branched.tone.branch
    auto = ToneBranch(branch.start, branch.classes, branch.layers, branch.head, precision="auto")
    assert auto.served_precision() == served
