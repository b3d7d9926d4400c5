"""``KnowledgeService``: the one object the bot, console and CLI use (store + index).

Every write goes to the database first (one transaction), then the index catches up before
the call returns, so the very next retrieval sees the change.  A retrieval also compares the
store's generation counter with the index's (one cheap query) and catches up with writes made
by other processes.  If the index cannot catch up (say the embedding model fails), the store
keeps the change and the index keeps serving its last consistent snapshot until the next try.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from knowledge.db import KnowledgeBase
from knowledge.errors import ConfigurationError
from knowledge.index import Embedder, LocalIndex, SyncedIndex
from knowledge.ingest import ImportReport, ParsedDocument, import_folder, parse_bytes
from knowledge.preview import (
    KnowledgePreview,
    PreviewCache,
    build_preview_index,
    check_overrides,
    make_retriever,
)
from knowledge.retrieval import HybridRetriever, Passage, RetrievalConfig
from knowledge.store import DocumentSummary, Fact, KnowledgeStore, RevisionInfo

log = logging.getLogger(__name__)
BACKENDS = ("local", "pgvector")


class KnowledgeService:
    """Facade over :class:`KnowledgeStore` and an index backend; safe for concurrent readers."""

    def __init__(
        self,
        engine_or_session_factory: Engine | Callable[[], Session],
        index_dir: str | Path,
        embed_model_dir: str | Path | None = None,
        backend: str = "local",
        *,
        embed_model: Any | None = None,
        config: RetrievalConfig | None = None,
        create_tables: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"Unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}.", code="bad_backend"
            )
        if isinstance(engine_or_session_factory, Engine):
            self.engine: Engine | None = engine_or_session_factory
            self.session_factory: Callable[[], Session] = sessionmaker(self.engine, expire_on_commit=False)
        else:
            self.session_factory = engine_or_session_factory
            self.engine = getattr(engine_or_session_factory, "kw", {}).get("bind")
        if create_tables:
            if self.engine is None:
                raise ConfigurationError("create_tables needs an engine.", code="bad_backend")
            KnowledgeBase.metadata.create_all(self.engine)
        self.store = KnowledgeStore(self.session_factory)
        self.index_dir = Path(index_dir)
        self.backend = backend
        self._embed_model_dir = embed_model_dir
        self._embed_model = embed_model
        self._config = config
        self._index: SyncedIndex | None = None
        self._retriever: HybridRetriever | None = None
        self._open_lock = threading.Lock()
        self._fact_matcher: Any = None  # knowledge.fact_match.FactMatcher, built on first use
        self._previews = PreviewCache()

    # ------------------------------------------------------------ index plumbing

    def _open(self) -> tuple[SyncedIndex, HybridRetriever]:
        index, retriever = self._index, self._retriever
        if index is not None and retriever is not None:
            return index, retriever
        with self._open_lock:
            if self._index is None or self._retriever is None:
                model = self._embed_model
                if model is None:
                    from knowledge.embeddings import make_llama_embedding

                    model = make_llama_embedding(self._embed_model_dir)
                embedder = Embedder(model)
                new_index: SyncedIndex
                if self.backend == "pgvector":
                    from knowledge.pgvector_index import PgVectorIndex

                    if self.engine is None:
                        raise ConfigurationError("The pgvector backend needs an engine.", code="bad_backend")
                    new_index = PgVectorIndex(self.engine, embedder)
                else:
                    new_index = LocalIndex(self.index_dir, embedder)
                new_index.open(self.store)  # type: ignore[attr-defined]
                self._retriever = HybridRetriever(new_index, embedder, config=self._config)
                self._index = new_index
            return self._index, self._retriever

    @property
    def index(self) -> SyncedIndex:
        return self._open()[0]

    @property
    def retriever(self) -> HybridRetriever:
        return self._open()[1]

    def refresh(self, *, wait: bool = True) -> bool:
        """Catch the index up with the database (True when a new snapshot was installed)."""
        index, _ = self._open()
        return index.sync(self.store, wait=wait)

    # ------------------------------------------------------------ writes

    def import_folder(
        self, path: str | Path, author: str = "importer", *, publish: bool = True, restore: bool = False
    ) -> ImportReport:
        """Import a folder (or one file) of Markdown/text/HTML; see :func:`knowledge.ingest.import_folder`
        (``restore``: an explicit import, which brings a file back over a later console edit or retirement)."""
        report = import_folder(self.store, path, author=author, publish=publish, restore=restore)
        if report.imported or report.updated or report.scheduled:
            self.refresh()
        return report

    def import_bytes(self, data: bytes, filename: str, *, author: str, publish: bool = False) -> str:
        """Import one uploaded file; returns ``imported`` / ``updated`` / ``unchanged``."""
        outcome = self.store.import_parsed(parse_bytes(data, filename), author=author, publish=publish,
                                           restore=True)  # an editor's upload is meant to take effect
        if publish and outcome != "unchanged":
            self.refresh()
        return outcome

    def create_document(
        self, doc: ParsedDocument, *, author: str, publish: bool = False, at: datetime | None = None
    ) -> RevisionInfo:
        rev = self.store.create_document(doc, author=author, publish=publish, at=at)
        if publish:
            self.refresh()
        return rev

    def add_revision(self, doc_id: str, body: str, *, author: str, **kwargs: Any) -> RevisionInfo:
        """New revision (draft unless ``publish=True``); see :meth:`KnowledgeStore.add_revision`."""
        rev = self.store.add_revision(doc_id, body, author=author, **kwargs)
        if kwargs.get("publish"):
            self.refresh()
        return rev

    def publish(
        self, doc_id: str, revision: int | None = None, *, at: datetime | None = None
    ) -> RevisionInfo:
        """Publish now, or from ``at`` (scheduled: takes effect then, with no rebuild)."""
        rev = self.store.publish(doc_id, revision, at=at)
        self.refresh()
        return rev

    def unschedule(self, doc_id: str, revision: int) -> RevisionInfo:
        """Cancel a scheduled revision: back to draft."""
        rev = self.store.unschedule(doc_id, revision)
        self.refresh()
        return rev

    def retire(
        self, doc_id: str, *, at: datetime | None = None, note: str | None = None
    ) -> list[RevisionInfo]:
        revs = self.store.retire(doc_id, at=at, note=note)
        self.refresh()
        return revs

    def cancel_retirement(self, doc_id: str) -> list[RevisionInfo]:
        """Cancel a scheduled retirement: the document stays in force."""
        revs = self.store.cancel_retirement(doc_id)
        self.refresh()
        return revs

    # ------------------------------------------------------------ reads

    def retrieve(
        self,
        query: str,
        *,
        at: datetime | None = None,
        history: Sequence[Any] | None = None,
        k: int = 5,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Passage]:
        """Passages in force at ``at`` (default now), with recent turns in view for follow-ups."""
        _, retriever = self._caught_up()
        return retriever.search(query, at=at, history=history, k=k, filters=filters)

    def _caught_up(self) -> tuple[SyncedIndex, HybridRetriever]:
        index, retriever = self._open()
        if self.store.generation() != index.generation:
            # another process (or a failed earlier sync) left us behind; if someone else is
            # already syncing, keep answering from the current consistent snapshot
            index.sync(self.store, wait=index.generation < 0)
        return index, retriever

    def preview(self, revisions: Sequence[tuple[str, int | None]]) -> KnowledgePreview:
        """A read-only view of the KB with these revisions in force, without publishing them.

        ``revisions`` are ``(document_id, revision number)`` pairs (``None``: the latest
        revision), at most one per document. In the view each replaces whatever revision of its
        document is in force, at any time; drafts included. Nothing is written and no other
        reader sees the change. See :mod:`knowledge.preview`.
        """
        infos = [self.store.get(doc_id, number) for doc_id, number in revisions]
        check_overrides(infos)
        return KnowledgePreview(self, infos)

    def _preview_retriever(self, revisions: Sequence[RevisionInfo]) -> HybridRetriever:
        index, retriever = self._caught_up()
        snap = index.current()

        def build() -> HybridRetriever:
            rows = self.store.chunks_for([r.id for r in revisions if r.id not in snap.revisions])
            preview_index = build_preview_index(index, snap, retriever.embedder, revisions, rows)
            return make_retriever(preview_index, retriever.embedder, retriever.config)

        key = (tuple(sorted(r.id for r in revisions)), snap.generation)
        return self._previews.get_or_build(key, build)

    def facts(self, at: datetime | None = None) -> dict[str, Fact]:
        return self.store.facts_at(at)

    def superseded_values(self, at: datetime | None = None) -> dict[str, str]:
        return self.store.superseded_values(at)

    def match_facts(self, question: str, *, at: datetime | None = None, k: int = 3) -> list[tuple[Fact, float]]:
        """The facts in force at ``at`` that ``question`` most likely asks for, with a cosine score."""
        return self.fact_matcher().rank(question, self.facts(at), k=k)

    def fact_matcher(self) -> Any:
        """The :class:`~knowledge.fact_match.FactMatcher` over the retriever's embedder (built once)."""
        from knowledge.fact_match import FactMatcher

        _, retriever = self._open()
        with self._open_lock:
            if self._fact_matcher is None or self._fact_matcher.embedder is not retriever.embedder:
                self._fact_matcher = FactMatcher(retriever.embedder)
            return self._fact_matcher

    def resolve_placeholder(self, slot: str, at: datetime | None = None) -> Fact | None:
        return self.store.resolve_placeholder(slot, at)

    def in_force(self, at: datetime | None = None) -> list[RevisionInfo]:
        return self.store.in_force(at)

    def get(self, doc_id: str, revision: int | None = None) -> RevisionInfo:
        return self.store.get(doc_id, revision)

    def list_documents(self, *, at: datetime | None = None) -> list[DocumentSummary]:
        return self.store.list(at=at)

    def history(self, doc_id: str) -> list[RevisionInfo]:
        return self.store.history(doc_id)

    def diff(self, doc_id: str, r1: int, r2: int) -> str:
        return self.store.diff(doc_id, r1, r2)
