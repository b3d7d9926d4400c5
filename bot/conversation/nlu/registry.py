"""Versioned NLU models, stored like adapters: ``<root>/<version>/`` plus an ``active`` pointer.

The registry loads the active model once and hands it out through :meth:`NLURegistry.current`.
Activating another version (here, or from the CLI in another process, which rewrites the
pointer file) swaps the model under a lock on the next call: requests already running keep the
object they got, new ones get the new model, and nobody restarts anything.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.conversation.nlu.data import (
    load_bitext,
    load_categories,
    load_out_of_scope,
    load_tickets,
    load_tweeteval,
    tone_training_data,
)
from bot.conversation.nlu.model import NLU, new_version, read_model_metadata
from knowledge.errors import HybrideskError, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

ACTIVE = "active"
#: Ticket categories whose intents are one question asked two ways. Chosen by measurement on the
#: product model (benchmarks/RESULTS.md, session 17): a message split between the REFUND intents
#: ("How long does it take to process my refund once you get the return?": check_refund_policy 0.52,
#: track_refund 0.46) is a refund question; merging
#: every category would also accept BANKING77's identity and card questions split between ACCOUNT or
#: PAYMENT intents, and some tweets split between complaint and review.
DEFAULT_FAMILIES = ("REFUND",)
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class NLURegistry:
    """Model versions under ``root``; ``current()`` is the active one (reloaded when the pointer moves)."""

    def __init__(self, root: Path, embedding_dir: Path | None = None, *, check_interval: float = 2.0) -> None:
        self.root = Path(root)
        self.embedding_dir = embedding_dir
        self.check_interval = check_interval
        self._lock = threading.RLock()
        self._model: NLU | None = None
        self._pointer: str | None = None
        self._checked_at = 0.0

    # --- versions -----------------------------------------------------------------------------
    def _dir(self, version: str) -> Path:
        if not _VERSION_RE.match(version or ""):
            raise InvalidInput(f"{version!r} is not a valid model version name.", code="bad_version")
        return self.root / version

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "metadata.json").is_file())

    def list(self) -> list[dict[str, Any]]:
        """Every stored version with its metadata and whether it is active (oldest first)."""
        active = self.active_version()
        out = []
        for v in self.versions():
            meta = read_model_metadata(self.root / v)
            out.append({**meta, "version": v, "active": v == active})
        return out

    def active_version(self) -> str | None:
        pointer = self.root / ACTIVE
        if not pointer.is_file():
            return None
        v = pointer.read_text(encoding="utf-8").strip()
        return v or None

    def has_active(self) -> bool:
        v = self.active_version()
        return v is not None and (self.root / v / "metadata.json").is_file()

    def activate(self, version: str) -> NLU:
        """Point ``active`` at ``version`` (atomically) and swap it in for new requests."""
        path = self._dir(version)
        if not (path / "metadata.json").is_file():
            known = ", ".join(self.versions()) or "none yet"
            raise NotFound(f"NLU version {version!r} not found under {self.root} (known: {known}).",
                           code="nlu_version_not_found")
        with self._lock:
            model = NLU.load(path, self.embedding_dir)  # load first: a broken folder never goes live
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{ACTIVE}.{os.getpid()}.{threading.get_ident()}"
            tmp.write_text(version, encoding="utf-8")
            os.replace(tmp, self.root / ACTIVE)
            self._model, self._pointer, self._checked_at = model, version, time.monotonic()
        log.info("NLU model %s is active", version)
        return model

    def load_active(self) -> NLU:
        """Load (or return the already loaded) active model."""
        with self._lock:
            # Read the pointer under the lock: a thread that read it before another thread swapped
            # it must not load the old version over the new one.
            version = self.active_version()
            if version is None:
                raise Unavailable(f"No NLU model is active under {self.root}; run `hybridesk nlu train` "
                                  "(or `hybridesk init`).", code="nlu_not_trained")
            if self._model is None or self._pointer != version:
                self._model = NLU.load(self._dir(version), self.embedding_dir)
                self._pointer = version
            self._checked_at = time.monotonic()
            return self._model

    def current(self) -> NLU:
        """The active model; re-reads the pointer at most every ``check_interval`` seconds."""
        model = self._model
        if model is not None and time.monotonic() - self._checked_at < self.check_interval:
            return model
        try:
            return self.load_active()
        except (OSError, ValueError, HybrideskError) as exc:
            if model is not None:  # a broken pointer or folder: keep serving the loaded model
                log.warning("NLU pointer unreadable (%s); keeping %s", exc, model.version)
                self._checked_at = time.monotonic()  # retry after check_interval, not on every call
                return model
            raise

    def delete(self, version: str) -> None:
        if version == self.active_version():
            raise InvalidInput("The active NLU version cannot be deleted; activate another first.",
                               code="nlu_version_active")
        shutil.rmtree(self._dir(version), ignore_errors=True)

    # --- training -----------------------------------------------------------------------------
    def train(self, examples: list[tuple[str, str]], *, activate: bool = True, **kwargs: Any) -> NLU:
        """Train a new version into the registry (and make it active unless told otherwise)."""
        version = kwargs.pop("version", None) or new_version()
        if "tone_examples" not in kwargs and "tone_from" not in kwargs and self.has_active():
            kwargs["tone_from"] = self.load_active()
        model = NLU.train(examples, self._dir(version), embedding_dir=self.embedding_dir, version=version,
                          **kwargs)
        if activate:
            self.activate(version)
        return model

    def train_default(self, tickets: Path | list[Path], shared_data_dir: Path | None = None, *,
                      out_of_scope: Path | None = None, use_public: bool = True, activate: bool = True,
                      version: str | None = None, families: Sequence[str] = DEFAULT_FAMILIES,
                      log_fn: Any = None) -> str:
        """The product's default training: the company's tickets + public tickets + public emotion data.

        Works with the company's tickets alone: the public sets are used when present.
        ``families``: ticket categories whose intents are one question asked two ways (see
        :data:`DEFAULT_FAMILIES`); the tickets' own ``category`` says which intents belong to each.
        Returns the new version's name.
        """
        paths = [tickets] if isinstance(tickets, str | Path) else list(tickets)
        examples: list[tuple[str, str]] = []
        sources: dict[str, Any] = {}
        wanted = {f.strip().upper() for f in families if f.strip()}
        grouped: dict[str, str] = {}
        for p in paths:
            rows = load_tickets(Path(p))
            examples += rows
            # the file's absolute path: `nlu eval` recognises it from any working directory
            sources[str(Path(p).resolve())] = len(rows)
            grouped.update({i: c for i, c in load_categories(Path(p)).items() if c in wanted})
        oos_path = out_of_scope or (Path(paths[0]).parent / "out_of_scope.jsonl" if paths else None)
        # a file the operator named must exist; the default one next to the tickets is optional
        oos = load_out_of_scope(oos_path, required=out_of_scope is not None) if oos_path else []
        if oos:
            sources[str(Path(oos_path).resolve())] = len(oos)
        tone_examples, tone_validation = None, []
        if use_public and shared_data_dir is not None:
            try:
                bitext = load_bitext(shared_data_dir)
                examples += bitext
                sources["bitext_customer_support"] = len(bitext)
            except NotFound:
                log.info("public tickets not found under %s; training on the company's tickets only",
                         shared_data_dir)
            try:
                tone_examples = tone_training_data(shared_data_dir, include_val=False)
                tone_validation = load_tweeteval(shared_data_dir, "val")
                sources["tone_training"] = len(tone_examples)
                sources["tweeteval_emotion_val"] = len(tone_validation)
            except NotFound:
                log.info("emotion data not found under %s; tone keeps its previous head or rules", shared_data_dir)
        kwargs: dict[str, Any] = {"out_of_scope": oos, "sources": sources, "version": version,
                                  "families": grouped}
        if log_fn is not None:
            kwargs["log_fn"] = log_fn
        if tone_examples:
            kwargs["tone_examples"] = tone_examples
            kwargs["tone_validation"] = tone_validation
        model = self.train(examples, activate=activate, **kwargs)
        return model.version
