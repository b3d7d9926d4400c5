"""Retrieval quality on WixQA (expert sample): recall@1, recall@5, MRR@10 at document level.

Usage: .venv/bin/python benchmarks/retrieval_quality.py [--data DIR] [--quick]

Indexes the 173 gold articles, asks the 160 expert questions; a question is answered at k if
one of its gold articles is among the top k *documents*.  Each step of the pipeline is
measured on its own (chunking, titles in the indexed text, glued-word splitting for BM25,
fusion method and weight, document pooling, the lead-section boost), then the production path
(SQLite store + ``KnowledgeService`` with the default ``RetrievalConfig``) is run end to end.

Chunk size, fusion, BM25 weight, pooling share and lead weight are chosen on these 160
questions, so the script also reports 2-fold cross-validated figures (choose on one half, score
the other): the fixed split used since the first run, and the mean over 50 random splits.
Writes benchmarks/results/retrieval_quality.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from itertools import product
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from _common import scratch_dir  # noqa: E402

from knowledge.chunking import chunk_markdown, content_hash  # noqa: E402
from knowledge.index import Embedder, LocalIndex  # noqa: E402
from knowledge.retrieval import HybridRetriever, RetrievalConfig  # noqa: E402
from knowledge.snapshot import RevMeta, Snapshot, build_bm25  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CACHE = Path(tempfile.gettempdir()) / "hybridesk-bench-embeddings"


def load(data_dir: Path) -> tuple[dict[str, tuple[str, str]], list[tuple[str, set[str]]]]:
    path = data_dir / "wixqa_expert_sample160" / "wixqa_public_rag_sample.jsonl"
    if not path.exists():
        raise SystemExit(f"WixQA sample not found at {path} (pass --data or set HYBRIDESK_SHARED_DATA_DIR)")
    articles: dict[str, tuple[str, str]] = {}
    questions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for c in row["contexts"]:
            articles[c["id"]] = (c["title"], c["text"])
        questions.append((row["question"], set(row["article_ids"])))
    return articles, questions


class CachedEmbedder(Embedder):
    """Embeds through the real model, caching document vectors on disk between runs."""

    def __init__(self, model) -> None:
        super().__init__(model)
        CACHE.mkdir(parents=True, exist_ok=True)
        self.path = CACHE / "minilm.npz"
        self.cache = dict(np.load(self.path)) if self.path.exists() else {}
        self.seconds = 0.0
        self.embedded = 0

    def texts(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        todo = [(k, t) for k, t in dict(zip(keys, texts, strict=True)).items() if k not in self.cache]
        if todo:
            t0 = time.perf_counter()
            vecs = super().texts([t for _, t in todo])
            self.seconds += time.perf_counter() - t0
            self.embedded += len(todo)
            self.cache.update({k: v for (k, _), v in zip(todo, vecs, strict=True)})
            np.savez(self.path, **self.cache)
        return np.vstack([self.cache[k] for k in keys])


def article_body(title: str, text: str) -> str:
    first, _, rest = text.partition("\n")
    return rest if first.strip() == title.strip() else text


def rows_llamaindex_default(articles: dict[str, tuple[str, str]]) -> list[dict]:
    """LlamaIndex defaults: SentenceSplitter(512 tokens, 200 overlap) over the raw text."""
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=512)
    rows = []
    for rid, (aid, (_title, text)) in enumerate(articles.items(), 1):
        for n in splitter.get_nodes_from_documents([Document(text=text)]):
            rows.append(_row(len(rows), rid, aid, (), n.get_content(), n.get_content(), len(rows)))
    return rows


def rows_sections(articles: dict[str, tuple[str, str]], max_words: int, with_title: bool) -> list[dict]:
    rows = []
    for rid, (aid, (title, text)) in enumerate(articles.items(), 1):
        for c in chunk_markdown(article_body(title, text), title, max_words=max_words):
            indexed = c.text if with_title else c.body
            rows.append(_row(len(rows), rid, aid, c.heading_path, c.body, indexed, c.ordinal))
    return rows


def _row(chunk_id: int, rid: int, aid: str, path: tuple, body: str, text: str, ordinal: int) -> dict:
    return {
        "chunk_id": chunk_id,
        "revision_id": rid,
        "document_id": aid,
        "revision": 1,
        "ordinal": ordinal,  # the lead-section boost needs each revision's first chunk
        "heading_path": list(path),
        "anchor": "a",
        "body": body,
        "text": text,
        "hash": content_hash(text),
    }


def snapshot(articles, rows, embedder, *, camel_split: bool = True) -> Snapshot:
    from datetime import UTC, datetime

    revs = [
        RevMeta(i, aid, 1, "published", t, datetime(2020, 1, 1, tzinfo=UTC), None)
        for i, (aid, (t, _)) in enumerate(articles.items(), 1)
    ]
    vectors = embedder.texts([r["text"] for r in rows])
    bm25 = None
    if not camel_split:  # BM25 over the text exactly as given (glued words stay glued)
        bm25 = build_bm25([dict(r, text=r["text"]) for r in rows], split_glued=False)
    snap = Snapshot(0, revs, rows, vectors, bm25=bm25, model_id=embedder.model_id)
    # the grid asks the same 160 questions hundreds of times: remember each BM25 score vector
    # (same numbers as the product's Snapshot.bm25_scores, computed once per question)
    memo: dict[str, np.ndarray] = {}
    plain = snap.bm25_scores

    def bm25_scores(query: str) -> np.ndarray:
        if query not in memo:
            memo[query] = plain(query)
        return memo[query]

    snap.bm25_scores = bm25_scores  # type: ignore[method-assign]
    return snap


def ranks(retriever: HybridRetriever, questions, qvecs) -> list[int | None]:
    """Rank (0-based) of the first gold document among the top 10 documents, per question."""
    out = []
    for i, (q, gold) in enumerate(questions):
        docs = [p.document_id for p in retriever.search(q, k=10, query_vector=qvecs[i])]
        out.append(next((j for j, d in enumerate(docs) if d in gold), None))
    return out


def metrics(rk: list[int | None], subset=None) -> dict[str, float]:
    sel = rk if subset is None else [rk[i] for i in subset]
    n = len(sel)
    return {
        "recall@1": sum(r == 0 for r in sel) / n,
        "recall@5": sum(r is not None and r < 5 for r in sel) / n,
        "mrr@10": sum(0.0 if r is None else 1.0 / (r + 1) for r in sel) / n,
    }


def run_config(index, embedder, cfg: RetrievalConfig, questions, qvecs) -> list[int | None]:
    return ranks(HybridRetriever(index, embedder, config=cfg), questions, qvecs)


def fmt(m: dict[str, float]) -> str:
    return f"{m['recall@1']:.3f} / {m['recall@5']:.3f} / {m['mrr@10']:.3f}"


KNOBS = ("max_words", "fusion", "bm25_weight", "doc_pool", "lead_weight")


def criterion(rk: list[int | None], subset=None) -> float:
    m = metrics(rk, subset)
    return m["mrr@10"] + m["recall@1"]


def cross_validate(grid: list[dict], n: int, seeds: range) -> dict:
    """2-fold CV of the choice among ``grid``: pick on one half by r@1 + MRR, score the other."""
    per_seed = []
    for seed in seeds:
        perm = np.random.default_rng(seed).permutation(n)
        folds = [perm[: n // 2].tolist(), perm[n // 2 :].tolist()]
        for a, b in ((0, 1), (1, 0)):
            chosen = max(grid, key=lambda g: criterion(g["_ranks"], folds[a]))
            per_seed.append(
                {"seed": seed, "chosen": [chosen[k] for k in KNOBS]} | metrics(chosen["_ranks"], folds[b])
            )
    keys = ("recall@1", "recall@5", "mrr@10")
    mean = {k: float(np.mean([c[k] for c in per_seed])) for k in keys}
    # spread of the 2-fold figure from one random split to the next (each split: mean of 2 folds)
    per_split = {k: [np.mean([c[k] for c in per_seed if c["seed"] == s]) for s in seeds] for k in keys}
    chosen = Counter(tuple(c["chosen"]) for c in per_seed).most_common(5)
    return mean | {
        "splits": len(seeds),
        "std_over_splits": {k: float(np.std(v)) for k, v in per_split.items()},
        "most_chosen": [{"config": list(cfg), "folds": n} for cfg, n in chosen],
        "folds": per_seed if len(seeds) == 1 else per_seed[:4],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("HYBRIDESK_SHARED_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    ap.add_argument("--quick", action="store_true", help="fewer grid points")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from knowledge.embeddings import make_llama_embedding

    articles, questions = load(args.data)
    embedder = CachedEmbedder(make_llama_embedding())
    t0 = time.perf_counter()
    qvecs = [embedder.query(q) for q, _ in questions]
    query_ms = (time.perf_counter() - t0) * 1000 / len(questions)
    tmp = scratch_dir("hybridesk-quality-")
    results: dict[str, object] = {"questions": len(questions), "articles": len(articles), "steps": []}
    steps: list[dict] = results["steps"]  # type: ignore[assignment]

    def measure(name: str, rows: list[dict], cfgs: dict[str, RetrievalConfig], **snap_kw) -> dict[str, dict]:
        index = LocalIndex(tmp / name, embedder)
        index.install(snapshot(articles, rows, embedder, **snap_kw))
        out = {}
        for label, cfg in cfgs.items():
            m = metrics(run_config(index, embedder, cfg, questions, qvecs))
            out[label] = m
            steps.append({"chunking": name, "retriever": label, "chunks": len(rows), **m})
            print(f"{name:<28} {label:<34} {len(rows):>5}  {fmt(m)}", flush=True)
        return out

    def trio(**kw) -> dict[str, RetrievalConfig]:
        base = dict(per_document=1, doc_pool=0.0, lead_weight=0.0) | kw
        return {
            "bm25": RetrievalConfig(use_vector=False, **base),
            "vector": RetrievalConfig(use_bm25=False, **base),
            "rrf (equal weights)": RetrievalConfig(fusion="rrf", bm25_weight=0.5, **base),
        }

    print(f"{'chunking':<28} {'retriever':<34} {'chunks':>5}  r@1 / r@5 / MRR@10")
    measure("llamaindex-default-512tok", rows_llamaindex_default(articles), trio(), camel_split=False)
    measure("sections-180w-no-title", rows_sections(articles, 180, False), trio(), camel_split=False)
    measure("sections-180w+title", rows_sections(articles, 180, True), trio(), camel_split=False)
    measure("sections-180w+title+split", rows_sections(articles, 180, True), trio())
    best = (-1.0, None, None)
    sizes = [120, 180] if args.quick else [100, 140, 180, 250, 400]
    weights = [0.2, 0.3, 0.4] if args.quick else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    pools = [0.0, 0.1] if args.quick else [0.0, 0.05, 0.1, 0.2, 0.3]
    leads = [0.0, 0.3] if args.quick else [0.0, 0.1, 0.2, 0.3, 0.5]
    grid_log = []
    t_grid = time.perf_counter()
    for size in sizes:
        rows = rows_sections(articles, size, True)
        index = LocalIndex(tmp / f"grid{size}", embedder)
        index.install(snapshot(articles, rows, embedder))
        for fusion, w, pool, lead in product(["weighted", "rrf"], weights, pools, leads):
            cfg = RetrievalConfig(
                fusion=fusion, bm25_weight=w, doc_pool=pool, lead_weight=lead, per_document=1
            )
            rk = run_config(index, embedder, cfg, questions, qvecs)
            m = metrics(rk)
            grid_log.append(dict(zip(KNOBS, (size, fusion, w, pool, lead), strict=True)) | m | {"_ranks": rk})
            score = m["mrr@10"] + m["recall@1"]
            if score > best[0]:
                best = (score, (size, fusion, w, pool, lead), m)
        print(f"grid: max_words={size} done; best so far {best[1]} {fmt(best[2])}", flush=True)
    results["grid_seconds"] = round(time.perf_counter() - t_grid, 1)
    size, fusion, w, pool, lead = best[1]
    results["best"] = dict(zip(KNOBS, best[1], strict=True)) | best[2]
    print(f"best on all 160: {best[1]} -> {fmt(best[2])}")
    no_lead = [g for g in grid_log if g["lead_weight"] == 0.0]
    b0 = max(no_lead, key=lambda g: criterion(g["_ranks"]))
    results["best_without_lead"] = {k: v for k, v in b0.items() if k != "_ranks"}
    print(f"best without the lead-section boost: {[b0[k] for k in KNOBS]} -> {fmt(b0)}")
    at_best = [g for g in grid_log if [g[k] for k in KNOBS[:4]] == [size, fusion, w, pool]]
    results["lead_weight_sensitivity"] = [
        {"lead_weight": g["lead_weight"]} | metrics(g["_ranks"]) for g in at_best
    ]
    print("lead weight at the best setting: " + ", ".join(f"{g['lead_weight']} -> {fmt(g)}" for g in at_best))

    # 2-fold cross-validation of the choice (choose on one half, score on the other): the fixed
    # split of every earlier run (seed 0), and the mean over 50 random splits
    n_q = len(questions)
    results["cross_validated"] = cross_validate(grid_log, n_q, range(1))
    results["cross_validated_50_splits"] = cross_validate(grid_log, n_q, range(1, 51))
    results["cross_validated_without_lead"] = cross_validate(no_lead, n_q, range(1))
    results["cross_validated_without_lead_50_splits"] = cross_validate(no_lead, n_q, range(1, 51))
    print(
        f"2-fold cross-validated (seed 0): {fmt(results['cross_validated'])}; "
        f"mean of 50 splits: {fmt(results['cross_validated_50_splits'])}"
    )
    print(f"  spread over the 50 splits (std): {results['cross_validated_50_splits']['std_over_splits']}")
    print(f"  most chosen settings: {results['cross_validated_50_splits']['most_chosen']}")
    print(
        f"  same, grid without the lead boost: {fmt(results['cross_validated_without_lead'])}; "
        f"50 splits: {fmt(results['cross_validated_without_lead_50_splits'])}"
    )
    results["grid"] = [{k: v for k, v in g.items() if k != "_ranks"} for g in grid_log]
    best_cfg = RetrievalConfig(fusion=fusion, bm25_weight=w, doc_pool=pool, lead_weight=lead)

    # production path: SQLite store + KnowledgeService with the shipped defaults
    import knowledge.chunking as chunking

    shipped_words = chunking.MAX_WORDS
    chunking.MAX_WORDS = size
    prod = production_run(articles, questions, embedder, tmp / "best", best_cfg)
    chunking.MAX_WORDS = shipped_words
    results["production"] = prod | {"config": best_cfg.__dict__, "max_words": size}
    print(f"production path (SQLite + KnowledgeService, best config): {fmt(prod)}  chunks={prod['chunks']}")
    shipped = production_run(articles, questions, embedder, tmp / "shipped", None)
    results["production_shipped_defaults"] = shipped | {
        "config": RetrievalConfig().__dict__,
        "max_words": shipped_words,
    }
    print(f"production path (shipped RetrievalConfig defaults): {fmt(shipped)}")
    results["query_embedding_ms_mean"] = round(query_ms, 2)
    results["document_embedding"] = {"chunks": embedder.embedded, "seconds": round(embedder.seconds, 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval_quality.json").write_text(dump(results), encoding="utf-8")
    print(f"wrote {RESULTS / 'retrieval_quality.json'}")


def dump(results: dict) -> str:
    """JSON with one line per grid point (1,500 of them), the rest indented."""
    head = json.dumps({k: v for k, v in results.items() if k != "grid"}, indent=2)
    grid = ",\n".join("    " + json.dumps(g) for g in results.get("grid", []))
    return head[:-2] + ',\n  "grid": [\n' + grid + "\n  ]\n}\n"


def production_run(articles, questions, embedder, tmp: Path, config: RetrievalConfig | None) -> dict:
    import sqlalchemy as sa

    from knowledge.db import KnowledgeBase
    from knowledge.ingest import ParsedDocument
    from knowledge.service import KnowledgeService

    tmp.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{tmp / 'kb.db'}")
    KnowledgeBase.metadata.create_all(engine)
    svc = KnowledgeService(engine, tmp / "prod-index", embed_model=embedder.model, config=config)
    svc._open()  # noqa: SLF001 - swap in the caching embedder below
    svc.index.embedder = embedder
    svc.retriever.embedder = embedder
    for i, (_aid, (title, text)) in enumerate(articles.items()):
        doc = ParsedDocument(
            id=f"a{i:03d}", title=title, body=article_body(title, text), content_format="text"
        )
        svc.store.create_document(doc, author="bench", publish=True)
    svc.refresh()
    ids = {f"a{i:03d}": aid for i, aid in enumerate(articles)}
    r1 = r5 = mrr = 0.0
    t0 = time.perf_counter()
    for q, gold in questions:
        docs = []
        for p in svc.retrieve(q, k=20):
            if ids[p.document_id] not in docs:
                docs.append(ids[p.document_id])
        rank = next((j for j, d in enumerate(docs) if d in gold), None)
        r1 += rank == 0
        r5 += rank is not None and rank < 5
        mrr += 0.0 if rank is None else 1.0 / (rank + 1)
    n = len(questions)
    ms = (time.perf_counter() - t0) * 1000 / n
    return {
        "recall@1": r1 / n,
        "recall@5": r5 / n,
        "mrr@10": mrr / n,
        "chunks": len(svc.index.current()),
        "ms_per_query": ms,
    }


if __name__ == "__main__":
    main()
