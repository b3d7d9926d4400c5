"""PostgreSQL + pgvector backend: chunk vectors in ``kb_chunk_embeddings`` with an HNSW index.

The table is created here (``CREATE EXTENSION vector`` + table + HNSW index), not in
``knowledge.db``'s metadata, so SQLite deployments never see a ``vector`` column; the
lead's Alembic migration may adopt the DDL in :data:`DDL` as is.

Lexical scoring and the "in force at T" decision use the same in-memory
:class:`~knowledge.snapshot.Snapshot` as the local backend (texts and dates come from the
database), so both backends return the same top results; only nearest-neighbour search runs in
PostgreSQL, restricted to the revisions allowed at query time (pgvector's iterative index
scan keeps filtered HNSW queries from coming back short).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from knowledge.embeddings import EMBEDDING_DIM
from knowledge.errors import ConfigurationError, Unavailable
from knowledge.index import Embedder, SyncedIndex
from knowledge.snapshot import Snapshot

log = logging.getLogger(__name__)

TABLE = "kb_chunk_embeddings"
POSTFILTER_SHARE = 0.5  # filter in Python when at least this share of rows is allowed


def ddl(dim: int = EMBEDDING_DIM) -> list[str]:
    """Statements that create the pgvector table and its HNSW index (idempotent)."""
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            chunk_id INTEGER PRIMARY KEY REFERENCES kb_chunks(id) ON DELETE CASCADE,
            revision_id INTEGER NOT NULL,
            content_hash VARCHAR(64) NOT NULL,
            embedding vector({dim}) NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_revision ON {TABLE} (revision_id)",
        f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_hash ON {TABLE} (content_hash)",
        f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_hnsw ON {TABLE} "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
    ]


DDL = ddl()


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in np.asarray(v, dtype=np.float32).tolist()) + "]"


def parse_vector(text: Any) -> np.ndarray:
    if isinstance(text, str):
        return np.asarray([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)
    return np.asarray(text, dtype=np.float32)


class PgVectorIndex(SyncedIndex):
    """Vectors in PostgreSQL (pgvector, HNSW, cosine distance)."""

    backend = "pgvector"

    def __init__(
        self, engine: Engine, embedder: Embedder, *, ef_search: int = 100, dim: int = EMBEDDING_DIM
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ConfigurationError(
                "The pgvector backend needs PostgreSQL; use backend='local' with SQLite.",
                code="pgvector_needs_postgres",
            )
        super().__init__(embedder)
        self.engine = engine
        self.ef_search = int(ef_search)
        self.dim = dim
        # Session settings once per pooled connection, so a query is one round trip.  Both only
        # affect HNSW scans: a wider candidate list, and iterative scans so that a filtered query
        # (revisions in force, tags) still returns its n rows.
        event.listen(engine, "connect", self._configure_connection)
        engine.pool.dispose()  # connections opened before the listener get the settings too

    def _configure_connection(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"SET hnsw.ef_search = {self.ef_search}")
            cur.execute("SET hnsw.iterative_scan = relaxed_order")
        except Exception:  # noqa: BLE001 - the extension may not be loaded yet on a fresh database
            dbapi_conn.rollback()
        else:
            dbapi_conn.commit()
        finally:
            cur.close()

    def create_schema(self) -> None:
        try:
            with self.engine.begin() as conn:
                for stmt in ddl(self.dim):
                    conn.execute(sa.text(stmt))
        except sa.exc.DBAPIError as exc:
            raise Unavailable(
                f"Could not set up pgvector ({str(exc.orig).strip().splitlines()[0]}); the server needs the "
                "`vector` extension installed.",
                code="pgvector_unavailable",
            ) from exc

    def open(self, store: Any) -> None:
        self.create_schema()
        self.sync(store, force=True)

    # -- vectors -----------------------------------------------------------------

    def _vectors_for(self, snap: Snapshot | None, rows: list[dict[str, Any]]) -> None:
        """Store vectors for new chunk rows, reusing any vector already stored for the same hash."""
        if not rows:
            self._last_embedded = 0
            return None
        with self.engine.connect() as conn:
            present = {
                r[0]
                for r in conn.execute(
                    sa.text(f"SELECT chunk_id FROM {TABLE} WHERE chunk_id = ANY(:ids)"),
                    {"ids": [r["chunk_id"] for r in rows]},
                )
            }
            todo = [r for r in rows if r["chunk_id"] not in present]
            known: dict[str, np.ndarray] = {}
            hashes = sorted({r["hash"] for r in todo})
            if hashes:
                for h, emb in conn.execute(
                    sa.text(
                        f"SELECT DISTINCT ON (content_hash) content_hash, embedding::text FROM {TABLE} "
                        "WHERE content_hash = ANY(:h)"
                    ),
                    {"h": hashes},
                ):
                    known[h] = parse_vector(emb)
        vecs = self._embed_missing(known, todo)
        if todo:
            self.insert_vectors(todo, vecs)
        return None

    def insert_vectors(self, rows: list[dict[str, Any]], vectors: np.ndarray) -> None:
        """Insert one vector per chunk row (also used by the scale benchmark with synthetic vectors)."""
        payload = [
            {"c": r["chunk_id"], "r": r["revision_id"], "h": r["hash"], "e": vector_literal(v)}
            for r, v in zip(rows, vectors, strict=True)
        ]
        stmt = sa.text(
            f"INSERT INTO {TABLE} (chunk_id, revision_id, content_hash, embedding) "
            "VALUES (:c, :r, :h, CAST(:e AS vector)) ON CONFLICT (chunk_id) DO NOTHING"
        )
        with self.engine.begin() as conn:
            for i in range(0, len(payload), 1000):
                conn.execute(stmt, payload[i : i + 1000])

    def vector_scores(
        self, snap: Snapshot, query_vec: np.ndarray, row_mask: np.ndarray, n: int
    ) -> dict[int, float]:
        lit = vector_literal(query_vec)
        allowed_share = float(row_mask.mean()) if len(row_mask) else 0.0
        if allowed_share >= POSTFILTER_SHARE:
            # Most rows are allowed (the usual case: few superseded revisions, no tag filter):
            # ask the HNSW index for a few more rows than needed and filter here.  Sending the
            # list of allowed revisions instead costs more than the search itself at 100k rows.
            want = int(n / allowed_share) + 10
            out = self._nearest(snap, lit, row_mask, want, None)
            if len(out) >= min(n, int(row_mask.sum())):
                return dict(sorted(out.items(), key=lambda kv: -kv[1])[:n])
        rev_ids = self._allowed(snap, row_mask)
        if not rev_ids:
            return {}
        return self._nearest(snap, lit, row_mask, n, rev_ids)

    def _nearest(
        self, snap: Snapshot, lit: str, row_mask: np.ndarray, n: int, rev_ids: list[int] | None
    ) -> dict[int, float]:
        where = "WHERE revision_id = ANY(:revs) " if rev_ids is not None else ""
        params: dict[str, Any] = {"q": lit, "n": n}
        if rev_ids is not None:
            params["revs"] = rev_ids
        with self.engine.connect() as conn:
            if n > self.ef_search:
                conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {int(n)}"))
            rows = conn.execute(
                sa.text(
                    f"SELECT chunk_id, embedding <=> CAST(:q AS vector) AS d FROM {TABLE} "
                    f"{where}ORDER BY d LIMIT :n"
                ),
                params,
            ).all()
        out: dict[int, float] = {}
        for chunk_id, dist in rows:
            i = snap.row_by_chunk.get(chunk_id)
            if i is not None and row_mask[i]:
                out[i] = 1.0 - float(dist)
        return out

    @staticmethod
    def _allowed(snap: Snapshot, row_mask: np.ndarray) -> list[int]:
        if not row_mask.any():
            return []
        return snap.revision_ids_at(np.unique(snap.row_rev[row_mask]))
