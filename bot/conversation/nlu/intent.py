"""Intent head: MiniLM-embedding logistic regression + TF-IDF linear SVM, calibrated together.

Both components see different evidence (meaning vs. exact words and sub-words), so their
errors differ; the ensemble combines ``log p_emb + beta * svm_margin`` and turns the result
into probabilities with one temperature.  ``beta`` and the temperature are fitted on a held-out
slice, then both components are refitted on all data.  The out-of-scope verdict uses two
tests, each with a threshold set from held-out *in-scope* messages (so no out-of-scope data
is needed): the calibrated confidence and the cosine similarity to the nearest training
message.  When the company supplies out-of-scope examples they also become a class of their own.

With too few examples to hold any out (an intent with one example), or fewer than
:data:`MIN_HELD_OUT_IN_SCOPE` held-out in-scope messages to set the thresholds from, the head keeps
out-of-scope detection on with a fixed similarity threshold (:data:`FALLBACK_SIM_THRESHOLD`) instead of
accepting every message, and its metrics say so (``oos_fallback``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from bot.conversation.nlu.types import OUT_OF_SCOPE

BETAS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
#: each intent needs this many examples for a held-out slice to calibrate on (one held out, one kept)
MIN_EXAMPLES_TO_CALIBRATE = 2
#: the out-of-scope thresholds are quantiles of at least this many held-out in-scope messages
MIN_HELD_OUT_IN_SCOPE = 5
#: the nearest-training-message cosine a message needs when the thresholds could not be calibrated.
#: Measured with MiniLM on the sample tickets, training on 1 / 2 / 3 tickets per intent (5 draws each):
#: it turns away 91% / 88% / 81% of off-topic questions (the sample's out-of-scope file) and 22% / 13% / 6%
#: of the company's other tickets. The sample model calibrated on all 312 tickets sets 0.44 itself.
FALLBACK_SIM_THRESHOLD = 0.4
# sklearn warns "`y` could represent a regression problem" when most classes have one example: the
# data is small, not continuous; `nlu train` says what small data does to the model instead.
_FEW_PER_CLASS_WARNING = "The number of unique classes is greater than 50% of the number of samples"


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def make_vectorizer() -> FeatureUnion:
    """Word 1-2-grams (what is asked) + char 2-5-grams (typos, inflections, 'activ8')."""
    return FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
    ])


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising held-out negative log-likelihood (golden-section on log T)."""
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(scores / np.exp(log_t))[rows, y].mean())

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


@dataclass
class IntentHead:
    """Calibrated intent classifier with an out-of-scope test; pickled into a model version."""

    emb_c: float = 10.0
    svm_c: float = 0.5
    oos_quantile: float = 0.02
    #: hold out at least one row per class and MIN_HELD_OUT_IN_SCOPE rows, when every class has two (the
    #: intent head: a small set is calibrated rather than left uncalibrated; off for the tone head, as before)
    small_set_holdout: bool = False
    classes_: list[str] = field(default_factory=list)
    beta: float = 1.0
    temperature: float = 1.0
    conf_threshold: float = 0.0
    sim_threshold: float = -1.0
    vectorizer: FeatureUnion | None = None
    emb_clf: LogisticRegression | None = None
    svm: LinearSVC | None = None
    train_emb: np.ndarray | None = None  # float16, for the nearest-neighbour test

    # --- training -----------------------------------------------------------------------------
    def _fit_components(self, texts: Sequence[str], emb: np.ndarray, y: np.ndarray) -> None:
        self.vectorizer = make_vectorizer()
        tf = self.vectorizer.fit_transform(texts)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FEW_PER_CLASS_WARNING, category=UserWarning)
            self.svm = LinearSVC(C=self.svm_c).fit(tf, y)
            self.emb_clf = LogisticRegression(C=self.emb_c, max_iter=3000).fit(emb, y)

    def _raw_scores(self, texts: Sequence[str], emb: np.ndarray) -> np.ndarray:
        assert self.vectorizer is not None and self.svm is not None and self.emb_clf is not None
        lp = self.emb_clf.predict_log_proba(emb)
        margin = self.svm.decision_function(self.vectorizer.transform(texts))
        if margin.ndim == 1:  # two classes: sklearn returns one column
            margin = np.stack([-margin, margin], axis=1)
        return lp + self.beta * margin

    def fit(self, texts: Sequence[str], labels: Sequence[str], emb: np.ndarray, *,
            seed: int = 0, holdout: float = 0.15) -> dict[str, Any]:
        """Fit on ``texts`` (with their embeddings); returns held-out metrics of the calibration.

        Without a calibration (see the module's docstring) the metrics hold ``oos_fallback``: why, and
        the intents with fewer than :data:`MIN_EXAMPLES_TO_CALIBRATE` examples.
        """
        self.classes_ = sorted(set(labels))
        if len(self.classes_) < 2:
            raise ValueError("intent training needs at least two intents")
        index = {c: i for i, c in enumerate(self.classes_)}
        y = np.array([index[c] for c in labels])
        texts = list(texts)
        metrics: dict[str, Any] = {}
        counts = np.bincount(y)
        # A stratified hold-out needs every class twice and at least one held-out row per class. With
        # small_set_holdout a small set holds out more than `holdout` of itself (a row per class, and enough
        # to set thresholds from): the components are refitted on everything afterwards.
        n_ho = int(np.ceil(holdout * len(texts)))
        if self.small_set_holdout:
            n_ho = max(n_ho, len(self.classes_), MIN_HELD_OUT_IN_SCOPE)
        if counts.min() >= MIN_EXAMPLES_TO_CALIBRATE and len(self.classes_) <= n_ho <= len(texts) - len(self.classes_):
            tr, ho = train_test_split(np.arange(len(texts)), test_size=n_ho, random_state=seed, stratify=y)
            if len(set(y[tr])) == len(self.classes_):
                metrics = self._calibrate(texts, emb, y, tr, ho)
        if "sim_threshold_from" not in metrics:
            # Not calibrated: keep out-of-scope detection on with a fixed similarity test, rather than
            # accept every message as the best intent (a 27-intent x 1-example model read "What's the
            # weather like in Paris today?" as delivery_period).
            few = [c for c, k in zip(self.classes_, counts, strict=True) if k < MIN_EXAMPLES_TO_CALIBRATE]
            if few:
                n_few = len([c for c in few if c != OUT_OF_SCOPE])
                reason = " and ".join(
                    ([f"{n_few} intent{'s' if n_few != 1 else ''} ha{'ve' if n_few != 1 else 's'} fewer than "
                      f"{MIN_EXAMPLES_TO_CALIBRATE} examples"] if n_few else [])
                    + ([f"fewer than {MIN_EXAMPLES_TO_CALIBRATE} out-of-scope examples"] if OUT_OF_SCOPE in few else []))
            elif metrics:
                reason = f"fewer than {MIN_HELD_OUT_IN_SCOPE} held-out in-scope examples to set the thresholds from"
            else:
                reason = f"{len(texts)} examples are too few to hold some out for {len(self.classes_)} intents"
            self.conf_threshold = 0.0  # uncalibrated probabilities say nothing as absolute values
            self.sim_threshold = FALLBACK_SIM_THRESHOLD
            metrics.update({"conf_threshold": self.conf_threshold, "sim_threshold": self.sim_threshold,
                            "oos_fallback": {"reason": reason, "intents_with_few_examples": few,
                                             "min_examples": MIN_EXAMPLES_TO_CALIBRATE}})
        self._fit_components(texts, emb, y)
        self.train_emb = emb.astype(np.float16)
        return metrics

    def _calibrate(self, texts: list[str], emb: np.ndarray, y: np.ndarray, tr: np.ndarray,
                   ho: np.ndarray) -> dict[str, Any]:
        self._fit_components([texts[i] for i in tr], emb[tr], y[tr])
        ho_texts = [texts[i] for i in ho]
        lp = self.emb_clf.predict_log_proba(emb[ho])  # type: ignore[union-attr]
        margin = self.svm.decision_function(self.vectorizer.transform(ho_texts))  # type: ignore[union-attr]
        if margin.ndim == 1:
            margin = np.stack([-margin, margin], axis=1)
        best = (-1.0, 0.0, 0.0)
        for beta in BETAS:  # accuracy first, NLL (after its own temperature) breaks ties
            z = lp + beta * margin
            acc = float((z.argmax(1) == y[ho]).mean())
            t = fit_temperature(z, y[ho])
            nll = float(-_log_softmax(z / t)[np.arange(len(ho)), y[ho]].mean())
            if (acc, -nll) > (best[0], -best[1]):
                best = (acc, nll, beta)
        self.beta = best[2]
        z = lp + self.beta * margin
        self.temperature = fit_temperature(z, y[ho])
        probs = np.exp(_log_softmax(z / self.temperature))
        conf = probs.max(1)
        # Out-of-scope thresholds from in-scope messages only: flag at most ~oos_quantile of them.
        oos_idx = self.classes_.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in self.classes_ else -1
        in_scope = y[ho] != oos_idx
        sims = (emb[ho] @ emb[tr].T).max(1)
        calibrated = in_scope.sum() >= MIN_HELD_OUT_IN_SCOPE
        if calibrated:
            self.conf_threshold = float(np.quantile(conf[in_scope], self.oos_quantile))
            self.sim_threshold = float(np.quantile(sims[in_scope], self.oos_quantile))
        return {
            **({"sim_threshold_from": int(in_scope.sum())} if calibrated else {}),
            "holdout_accuracy": best[0],
            "holdout_nll": best[1],
            "holdout_ece": expected_calibration_error(probs, y[ho]),
            "beta": self.beta,
            "temperature": self.temperature,
            "conf_threshold": self.conf_threshold,
            "sim_threshold": self.sim_threshold,
        }

    # --- inference ----------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], emb: np.ndarray) -> np.ndarray:
        return np.exp(_log_softmax(self._raw_scores(texts, emb) / self.temperature))

    def max_similarity(self, emb: np.ndarray) -> np.ndarray:
        """Cosine similarity of each row to its nearest training message."""
        if self.train_emb is None or len(self.train_emb) == 0:
            return np.ones(len(emb))
        ref = self.__dict__.get("_train32")
        if ref is None:  # float16 on disk, float32 in memory (converted once, not per message)
            ref = self.__dict__["_train32"] = np.ascontiguousarray(self.train_emb, dtype=np.float32)
        if len(emb) == 1:
            # One message: einsum, not BLAS gemv. Measured here, a 2-thread OpenBLAS gemv waits
            # ~10 ms for a second core on a busy machine; single-threaded einsum takes ~1 ms.
            return np.array([float(np.einsum("ij,j->i", ref, emb[0].astype(np.float32)).max())])
        return (emb.astype(np.float32) @ ref.T).max(1)

    # --- one-message fast path ----------------------------------------------------------------
    # sklearn's per-call validation, FeatureUnion's joblib machinery and pandas/narwhals checks
    # cost ~10x the arithmetic for a single message; this path does the same arithmetic
    # directly (tests check it matches predict_proba).
    def _fast(self) -> dict:
        fast = self.__dict__.get("_fast_parts")
        if fast is None:
            parts, offset = [], 0
            assert self.vectorizer is not None and self.svm is not None and self.emb_clf is not None
            for _, vec in self.vectorizer.transformer_list:
                parts.append((vec.build_analyzer(), vec.vocabulary_, vec.idf_.astype(np.float64),
                              bool(vec.sublinear_tf), offset))
                offset += len(vec.idf_)
            fast = self.__dict__["_fast_parts"] = {
                "parts": parts,
                "svm_coef": np.asarray(self.svm.coef_, dtype=np.float64),
                "svm_b": np.asarray(self.svm.intercept_, dtype=np.float64),
                "lr_coef": np.asarray(self.emb_clf.coef_, dtype=np.float64),
                "lr_b": np.asarray(self.emb_clf.intercept_, dtype=np.float64),
            }
        return fast

    def _tfidf_one(self, text: str, fast: dict) -> tuple[np.ndarray, np.ndarray]:
        idx_all, val_all = [], []
        for analyzer, vocab, idf, sublinear, offset in fast["parts"]:
            counts: dict[int, int] = {}
            for tok in analyzer(text):
                j = vocab.get(tok)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if sublinear:
                tf = 1.0 + np.log(tf)
            val = tf * idf[idx]
            val /= np.sqrt((val * val).sum()) or 1.0  # each vectorizer is l2-normalised on its own
            idx_all.append(idx + offset)
            val_all.append(val)
        if not idx_all:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(idx_all), np.concatenate(val_all)

    def predict_proba_one(self, text: str, emb: np.ndarray) -> np.ndarray:
        """``predict_proba([text], emb[None])[0]``, without sklearn's per-call overhead."""
        fast = self._fast()
        z_lr = fast["lr_coef"] @ emb.astype(np.float64) + fast["lr_b"]
        if z_lr.shape[0] == 1:  # binary logistic regression: one logit, p = [1 - s(z), s(z)]
            lp = _log_softmax(np.array([[0.0, z_lr[0]]]))[0]
        else:
            lp = _log_softmax(z_lr[None, :])[0]
        idx, val = self._tfidf_one(text, fast)
        margin = fast["svm_coef"][:, idx] @ val + fast["svm_b"]
        if margin.shape[0] == 1:
            margin = np.array([-margin[0], margin[0]])
        return np.exp(_log_softmax(((lp + self.beta * margin) / self.temperature)[None, :])[0])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_train32", None)
        state.pop("_fast_parts", None)
        return state


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class probability (equal-width bins)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)
