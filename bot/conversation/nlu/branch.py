"""Tone branch: a tone-specific copy of MiniLM's top layers, fine-tuned on emotion data.

The intent path runs the whole (shared) encoder once per message.  The branch starts from the
hidden states of that same pass at layer ``start`` (the lower layers are shared, so the intent
path is unchanged) and runs its own fine-tuned copy of the top ``6 - start`` layers, then mean
pooling and a linear classifier.  Per message it costs only those extra layers.

Training reads the lower-layer hidden states once (they are frozen), so each epoch is a
forward/backward pass through the top layers only: warm-up then linear decay of the learning
rate, label smoothing, and early stopping on a validation set (the best epoch's weights are
kept).  The weights are stored as a plain tensor file (``tone_branch.pt``, loaded with
``weights_only=True``), not a pickle.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BRANCH_FILE = "tone_branch.pt"
N_LAYERS = 6
PRECISIONS = ("auto", "int8", "bfloat16", "float32")


def _pool_logits(h: Any, mask: Any, head: Any, scale: float) -> Any:
    import torch

    if mask is None:
        pooled = h.mean(1)
    else:
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return head(torch.nn.functional.normalize(pooled, dim=-1) * scale)


def _average(states: Sequence[dict]) -> dict:
    """The element-wise mean of several state dicts of one architecture."""
    return {k: sum(st[k].float() for st in states) / len(states) if states[0][k].is_floating_point()
            else states[0][k] for k in states[0]}


class ToneBranch:
    """Fine-tuned top layers + linear head over :attr:`classes` (built by :meth:`fit` or :meth:`load`)."""

    scale = 20.0  # logits are a scaled cosine: the head sees unit vectors, like the LR head

    def __init__(self, start: int, classes: Sequence[str], layers: Any, head: Any, *,
                 info: dict[str, Any] | None = None, cache_size: int = 2048, int8: bool = True,
                 precision: str | None = None) -> None:
        self.start = start
        #: how the layers (trained in float32) are served: "int8" (dynamically quantised like the shared
        #: encoder), "bfloat16", "float32", or "auto" (bfloat16 where the CPU computes it natively, else
        #: int8); ``int8`` is the older flag (True: "int8", False: "float32")
        if precision is None:
            precision = "int8" if int8 else "float32"
        if precision not in PRECISIONS:
            raise ValueError(f"unknown tone-branch precision {precision!r}; one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.classes = list(classes)
        self.layers = layers.eval()
        self.head = head.eval()
        self.info = info or {}
        self._graph: Any = None
        self._graph_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_size = cache_size

    # --- inference ----------------------------------------------------------------------------
    def served_precision(self) -> str:
        """The precision the layers run in: ``precision``, with "auto" resolved for this CPU."""
        if self.precision != "auto":
            return self.precision
        from models.torch_prefill import default_dtype

        # (a message's few tokens make the branch read its weights more than compute: bf16 halves
        # float32's bytes and, unlike int8's dynamic quantisation, keeps the activations' precision)
        return "bfloat16" if default_dtype() == "bfloat16" else "int8"

    def _module(self) -> Any:
        import torch

        from bot.conversation.nlu.encoder import quantize_int8

        branch = self
        precision = self.served_precision()
        served, head, dtype = self.layers, self.head, torch.float32
        if precision == "int8":
            served = quantize_int8(self.layers)
        elif precision == "bfloat16":
            served, head, dtype = (copy.deepcopy(self.layers).to(torch.bfloat16),
                                   copy.deepcopy(self.head).to(torch.bfloat16), torch.bfloat16)

        class _Top(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.layers = served
                self.head = head

            def forward(self, h: torch.Tensor) -> torch.Tensor:  # one unpadded message: no mask
                h = h.to(dtype)
                for layer in self.layers:
                    h = layer(h)
                    if isinstance(h, tuple):
                        h = h[0]
                return torch.softmax(_pool_logits(h, None, self.head, branch.scale).float(), dim=-1)

        return _Top().eval()

    def _compiled(self) -> Any:
        """A frozen TorchScript trace of the top layers (checked against eager; eager on any problem)."""
        if self._graph is not None:
            return self._graph
        import torch

        with self._graph_lock:
            if self._graph is None:
                eager = self._module()
                graph: Any = eager
                try:
                    with warnings.catch_warnings(), torch.inference_mode():
                        warnings.simplefilter("ignore")
                        gen = torch.Generator().manual_seed(0)
                        example = torch.randn(1, 9, 384, generator=gen)
                        traced = torch.jit.freeze(torch.jit.trace(eager, (example,), check_trace=False))
                        # (bf16 rounds each step: the trace may fuse steps the eager module rounds apart)
                        atol = 2e-3 if self.served_precision() == "bfloat16" else 1e-5
                        for n in (1, 23):
                            probe = torch.randn(1, n, 384, generator=gen)
                            if not torch.allclose(traced(probe), eager(probe), atol=atol):
                                raise ValueError("traced tone branch differs from eager")
                        graph = traced
                except Exception:  # noqa: BLE001 - tracing is an optimisation; eager always works
                    graph = eager
                self._graph = graph
        return self._graph

    def probs_from_hidden(self, hidden: Any) -> np.ndarray:
        """Class probabilities from one message's layer-``start`` hidden states (``(tokens, 384)``)."""
        import torch

        with torch.inference_mode():
            return self._compiled()(hidden.reshape(1, -1, hidden.shape[-1])).float().numpy()[0]

    def cached(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
            return hit

    def remember(self, text: str, probs: np.ndarray) -> None:
        with self._cache_lock:
            self._cache[text] = probs
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        import torch

        torch.save({"start": self.start, "classes": self.classes, "info": self.info,
                    "int8": self.precision == "int8", "precision": self.precision,
                    "layers": self.layers.state_dict(), "head": self.head.state_dict()}, path)

    @classmethod
    def load(cls, path: Path, encoder: Any) -> ToneBranch:
        import torch

        blob = torch.load(path, map_location="cpu", weights_only=True)
        layers = encoder.fp32_top_layers(int(blob["start"]))
        layers.load_state_dict(blob["layers"])
        head = torch.nn.Linear(layers[0].output.dense.out_features, len(blob["classes"]))
        head.load_state_dict(blob["head"])
        return cls(int(blob["start"]), blob["classes"], layers, head, info=dict(blob.get("info") or {}),
                   int8=bool(blob.get("int8", False)), precision=blob.get("precision"))

    # --- training -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, encoder: Any, hidden: Sequence[Any], labels: Sequence[str], val_hidden: Sequence[Any],
            val_labels: Sequence[str], *, start: int = 3, epochs: int = 4, lr: float = 1e-4,
            head_lr: float = 2e-3, label_smoothing: float = 0.1, batch_size: int = 32, seed: int = 0,
            log: Any = None, int8: bool = True, soup: int = 1, last_epoch: bool = False,
            precision: str | None = None) -> ToneBranch:
        """Fine-tune a copy of layers ``start..5`` on precomputed layer-``start`` hidden states.

        ``hidden`` / ``val_hidden`` hold one ``(tokens, 384)`` tensor per text (from
        :meth:`Encoder.encode_with_hidden`); the epoch with the best validation macro-F1 is kept.
        ``last_epoch`` keeps the last epoch's weights instead and needs no validation set: the refit on
        training + validation data after the number of epochs was chosen (see ``model.train_tone``).

        ``soup`` > 1 fine-tunes that many runs from the same starting weights (seeds ``seed``,
        ``seed + 1``, ...) and averages their weights greedily: runs join in order of validation
        macro-F1 while the average does no worse on validation. One branch's cost at inference.
        """
        import torch
        from sklearn.metrics import f1_score

        t0 = time.perf_counter()
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[c] for c in labels])
        val_y = np.array([index.get(c, -1) for c in val_labels])
        torch.manual_seed(seed)
        layers = encoder.fp32_top_layers(start).train()
        head = torch.nn.Linear(layers[0].output.dense.out_features, len(classes))
        # every run of a soup starts from these same weights (a soup averages runs of one starting point)
        init_layers, init_head = copy.deepcopy(layers.state_dict()), copy.deepcopy(head.state_dict())
        config = encoder.config()
        from transformers.masking_utils import create_bidirectional_mask

        def batches(hs: Sequence[Any], order: np.ndarray) -> list[tuple[np.ndarray, Any, Any]]:
            out = []
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                n = max(hs[i].shape[0] for i in idx)
                h = torch.zeros(len(idx), n, hs[idx[0]].shape[-1])
                mask = torch.zeros(len(idx), n, dtype=torch.long)
                for row, i in enumerate(idx):
                    h[row, :hs[i].shape[0]] = hs[i]
                    mask[row, :hs[i].shape[0]] = 1
                out.append((idx, h, mask))
            return out

        def forward(h: Any, mask: Any) -> Any:
            m4 = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=mask)
            for layer in layers:
                h = layer(h, attention_mask=m4)
                if isinstance(h, tuple):
                    h = h[0]
            return _pool_logits(h, mask, head, cls.scale)

        # Length-sorted buckets (little padding), visited in a random order every epoch.
        train_batches = batches(hidden, np.argsort([h.shape[0] for h in hidden], kind="stable"))
        val_batches = batches(val_hidden, np.argsort([h.shape[0] for h in val_hidden], kind="stable"))
        # Scored over the classes the validation set has (e.g. 4 emotions, no "neutral"):
        # argmax among those, macro-F1 over those.
        present = sorted(set(val_y[val_y >= 0].tolist()))
        known = val_y >= 0

        def validation_f1() -> float:
            layers.eval()
            pred = np.zeros(len(val_hidden), dtype=int)
            with torch.inference_mode():
                for idx, h, mask in val_batches:
                    pred[idx] = np.array(present)[forward(h, mask)[:, present].argmax(-1).numpy()]
            return (float(f1_score(val_y[known], pred[known], labels=present, average="macro"))
                    if known.any() else 0.0)

        def one_run(run: int) -> tuple[float, int, Any, Any, list[float]]:
            """Fine-tune from the shared starting weights with this run's seed; its best epoch."""
            layers.load_state_dict(init_layers)
            head.load_state_dict(init_head)
            torch.manual_seed(seed + run)
            rng = np.random.default_rng(seed + run)
            opt = torch.optim.AdamW([{"params": layers.parameters(), "lr": lr},
                                     {"params": head.parameters(), "lr": head_lr}], weight_decay=0.01)
            steps = max(1, epochs * len(train_batches))
            warm = max(1, int(0.1 * steps))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
            loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
            best: tuple[float, int, Any, Any] = (-1.0, -1, None, None)
            history: list[float] = []
            for epoch in range(epochs):
                layers.train()
                for b in rng.permutation(len(train_batches)):
                    idx, h, mask = train_batches[b]
                    loss = loss_fn(forward(h, mask), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_([*layers.parameters(), *head.parameters()], 1.0)
                    opt.step()
                    sched.step()
                if last_epoch:  # nothing held out to score: the last epoch is the one kept
                    if log:
                        log(f"tone branch (refit) epoch {epoch + 1}/{epochs} ({time.perf_counter() - t0:.0f} s)")
                    continue
                f1 = validation_f1()
                history.append(round(f1, 4))
                if log:
                    log(f"tone branch{f' run {run + 1}/{soup}' if soup > 1 else ''} epoch {epoch + 1}/{epochs}: "
                        f"validation macro-F1 {f1:.4f} ({time.perf_counter() - t0:.0f} s)")
                if f1 > best[0]:
                    best = (f1, epoch, copy.deepcopy(layers.state_dict()), copy.deepcopy(head.state_dict()))
            if last_epoch:
                best = (-1.0, epochs - 1, copy.deepcopy(layers.state_dict()), copy.deepcopy(head.state_dict()))
            return (*best, history)

        if last_epoch and soup > 1:
            raise ValueError("a soup chooses its runs on validation data; last_epoch keeps one run")
        runs = [one_run(r) for r in range(max(1, soup))]
        runs.sort(key=lambda r: -r[0])
        best = runs[0]
        layers.load_state_dict(best[2])
        head.load_state_dict(best[3])
        chosen, soup_f1 = [0], best[0]
        # greedy soup: a run joins the average when the averaged weights do at least as well on validation
        for i in range(1, len(runs)):
            trial = [runs[j] for j in (*chosen, i)]
            layers.load_state_dict(_average([r[2] for r in trial]))
            head.load_state_dict(_average([r[3] for r in trial]))
            f1 = validation_f1()
            if f1 >= soup_f1:
                chosen, soup_f1 = [*chosen, i], f1
        layers.load_state_dict(_average([runs[j][2] for j in chosen]))
        head.load_state_dict(_average([runs[j][3] for j in chosen]))
        history = runs[0][4]
        info = {"start_layer": start, "epochs": epochs, "best_epoch": best[1] + 1, "lr": lr,
                "label_smoothing": label_smoothing, "val_macro_f1": history, "n_train": len(hidden),
                "soup_runs": len(runs), "soup_chosen": len(chosen),
                "soup_val_macro_f1": None if last_epoch else round(soup_f1, 4),
                "runs_val_macro_f1": [] if last_epoch else [round(r[0], 4) for r in runs],
                "kept": "last epoch" if last_epoch else "best epoch on validation",
                "train_seconds": round(time.perf_counter() - t0, 1)}
        return cls(start, classes, layers, head, info=info, int8=int8, precision=precision)
