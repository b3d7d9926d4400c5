"""What keeps a publish fast: incremental BM25, a lean sync query, small embeds on one thread.

No model is loaded here (a fake embedding model records what it was asked).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from kb_helpers import load_small_kb

from knowledge import lexical
from knowledge.db import KnowledgeBase
from knowledge.index import Embedder, torch_threads
from knowledge.lexical import LexicalIndex
from knowledge.snapshot import build_bm25, lexical_text
from knowledge.store import KnowledgeStore

TEXTS = [
    "Returns policy > Who can return\nYou can return any unused item within 30 days of delivery.",
    "Returns policy > Refunds\nRefunds go back to the original payment method within 5 business days.",
    "Shipping policy > Delivery times\nStandard delivery takes 3 to 5 business days; express is next day.",
    "Gift cards\nGift cards never expire. Gift cards gift CARDS.",
    "the of and",  # only stop words
    "",
    "Wix Stores > Setting UpCreate a product (glued words from lost markup)",
]
QUERIES = [
    "how many days to return an item",
    "refund refund",
    "gift card expiry",
    "the",
    "unknownword",
    "set up create product",
]


class FakeModel:
    """A LlamaIndex-like embedding model: 3-d vectors from word counts; records torch threads."""

    model_name = "fake-3d"

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []  # (texts, torch threads during the call)

    def _vec(self, text: str) -> list[float]:
        t = text.lower()
        return [1.0 + t.count("return"), 1.0 + t.count("ship"), 1.0 + t.count("gift")]

    def get_text_embedding_batch(self, texts: list[str], **_: Any) -> list[list[float]]:
        import torch

        self.batches.append((len(texts), torch.get_num_threads()))
        return [self._vec(t) for t in texts]

    def get_query_embedding(self, text: str) -> list[float]:
        import torch

        self.batches.append((0, torch.get_num_threads()))
        return self._vec(text)


def _llama_scores(texts: list[str], query: str) -> np.ndarray:
    """Scores of LlamaIndex's own BM25Retriever (bm25s) over the same texts."""
    import bm25s
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    nodes = [TextNode(id_=str(i), text=t) for i, t in enumerate(texts)]
    ret = BM25Retriever(nodes=nodes, similarity_top_k=1, language="en")
    tokens = bm25s.tokenize(
        query, stopwords="en", stemmer=ret.stemmer, return_ids=False, show_progress=False
    )[0]
    ids = ret.bm25.get_tokens_ids(tokens)
    return np.zeros(len(texts), np.float32) if not ids else np.asarray(ret.bm25.get_scores(ids), np.float32)


def test_scores_are_those_of_llamaindex_bm25() -> None:
    texts = [lexical_text(t) for t in TEXTS]
    ours = LexicalIndex.build(texts)
    for q in QUERIES:
        want = _llama_scores(texts, lexical_text(q))
        got = ours.scores(lexical_text(q))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=q)
        assert list(np.argsort(-got, kind="stable")) == list(np.argsort(-want, kind="stable")), q


def test_a_derived_index_equals_one_built_from_scratch() -> None:
    base = LexicalIndex.build(TEXTS)
    keep = [0, 2, 3, 6]
    new = ["Returns policy > Who can return\nYou can return any unused item within 45 days.", "zebra zebra"]
    derived = base.derive(keep, new)
    scratch = LexicalIndex.build([TEXTS[i] for i in keep] + new)
    assert len(derived) == len(scratch) == 6
    for q in [*QUERIES, "zebra", "45 days return"]:
        np.testing.assert_allclose(derived.scores(q), scratch.scores(q), rtol=1e-6, err_msg=q)
    # the parent is untouched (immutable snapshots share it with readers)
    np.testing.assert_allclose(base.scores("zebra"), np.zeros(len(TEXTS)))
    assert "zebra" not in base.vocab


def test_empty_index_and_empty_derivations() -> None:
    empty = LexicalIndex.build([])
    assert len(empty) == 0 and empty.scores("anything").shape == (0,)
    grown = empty.derive([], ["gift cards"])
    assert grown.scores("gift")[0] > 0
    assert len(grown.derive([], [])) == 0


def test_an_edit_tokenizes_only_the_new_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from knowledge.service import KnowledgeService

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    KnowledgeBase.metadata.create_all(engine)
    model = FakeModel()
    svc = KnowledgeService(engine, tmp_path / "idx", embed_model=model)
    load_small_kb(svc)
    tokenized: list[int] = []
    real = lexical.tokenize

    def counting(texts: list[str]) -> list[list[str]]:
        tokenized.append(len(texts))
        return real(texts)

    monkeypatch.setattr(lexical, "tokenize", counting)
    body = "# Returns policy\n\n## Who can return\nAny unused item within 60 days.\n\n## How refunds are paid\nSame."
    svc.add_revision("returns-policy", body, author="ed", publish=True)
    snap = svc.index.current()
    new_chunks = svc.index.last_sync["new_chunks"]
    assert tokenized[0] == new_chunks < len(snap.rows)  # the rest reused their term counts
    monkeypatch.setattr(lexical, "tokenize", real)
    scratch = build_bm25(snap.rows)
    for q in ("60 days return", "refund", "gift card", "phone"):
        np.testing.assert_allclose(snap.bm25_scores(q), scratch.scores(lexical_text(q)), rtol=1e-6)
    assert svc.retrieve("how many days to return an item", k=1)[0].revision == 2
    engine.dispose()


def test_small_embeds_run_on_one_torch_thread_and_restore_the_setting() -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = FakeModel()
        emb = Embedder(model, small_batch=4)
        emb.query("return")
        emb.texts(["a"] * 3)
        emb.texts(["a"] * 5)  # a bulk import keeps the process setting
        assert model.batches == [(0, 1), (3, 1), (5, 2)]
        assert torch.get_num_threads() == 2
        with torch_threads(4):  # never raises the count
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_sync_query_reads_no_chunk_or_revision_text(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    KnowledgeBase.metadata.create_all(engine)
    store = KnowledgeStore(engine)
    load_small_kb(store)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    revs = store.indexable_revisions()
    assert len(revs) == 6 and all(r.content == "" and r.effective_from is not None for r in revs)
    assert revs[0].effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert not any("kb_chunks" in s or "kb_facts" in s for s in statements), statements
    assert not any(re.search(r"kb_revisions\.content\b", s) for s in statements), statements
    engine.dispose()


def test_a_server_behind_another_process_reuses_the_vectors_it_wrote_to_disk(tmp_path: Path) -> None:
    """QA: after `hybridesk kb import` of a 440 KB manual, the running server embedded every chunk again
    on the next customer's question (71 s); the import had already written them in its snapshot."""
    from knowledge.service import KnowledgeService

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    KnowledgeBase.metadata.create_all(engine)
    server_model, cli_model = FakeModel(), FakeModel()
    server = KnowledgeService(engine, tmp_path / "idx", embed_model=server_model)
    load_small_kb(server)
    server.retrieve("returns", k=1)
    cli = KnowledgeService(engine, tmp_path / "idx", embed_model=cli_model)  # the CLI: same database and index
    sections = "\n\n".join(f"## Part {i}\nThe manual's part {i} says how to fit shelf {i} with screws." for i in range(40))
    cli.add_revision("returns-policy", "# Returns policy\n\n" + sections + "\n\n## Who can return\nWithin 30 days.",
                     author="ed", publish=True)
    assert sum(n for n, _ in cli_model.batches) >= 40  # the CLI embedded the new chunks
    before = sum(n for n, _ in server_model.batches)
    assert server.retrieve("shelf 7 screws", k=1)[0].revision == 2  # the server caught up ...
    assert sum(n for n, _ in server_model.batches) - before < 5  # ... with the CLI's vectors (the query aside)
    engine.dispose()
