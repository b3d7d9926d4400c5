"""The local persisted index: incremental, atomic updates from the KB store.

``sync()`` brings the index up to the store's generation:

1. it reads which revisions were ever published (with their current dates and status);
2. it loads chunks only for revisions it has not seen, and embeds only chunks whose content
   hash it has no vector for (an edit that changes one section re-embeds one chunk);
3. it builds a complete new :class:`~knowledge.snapshot.Snapshot`, writes it to a new folder,
   flips the ``CURRENT`` pointer with an atomic rename, then swaps the in-memory reference.

Readers never lock: they read ``current()`` once per query.  A missing or corrupt index on
disk is detected by its manifest checksums and rebuilt from the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.errors import Unavailable
from knowledge.snapshot import RevMeta, Snapshot

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.store import KnowledgeStore, RevisionInfo

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def normalize(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        return v / max(float(np.linalg.norm(v)), 1e-12)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


#: Up to this many texts are embedded on one torch thread (see :func:`torch_threads`).
SMALL_BATCH = 8


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` torch intra-op threads, then restore the setting.

    Why: a query or a one-section edit is a handful of short sequences.  On a busy 2-core box
    two OpenMP threads spend their time waiting for each other (measured here: MiniLM query
    474 ms p50 with 2 threads vs 53 ms with 1 at load 6; one 100-word chunk 1.8 s vs 0.22 s),
    and on an idle one the second thread buys little for inputs this small.  Bulk imports keep
    the process setting.  With OpenMP the count is per calling thread, so other threads'
    work (e.g. generation) is not throttled; calls are serialised by the ``Embedder`` lock.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; a fake model needs nothing
        yield
        return
    before = torch.get_num_threads()
    if before <= n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Embedder:
    """Wraps an explicit LlamaIndex embedding model; serialises calls (torch is not re-entrant)."""

    def __init__(self, embed_model: Any, *, small_batch: int = SMALL_BATCH) -> None:
        if embed_model is None:
            raise Unavailable("An embedding model must be passed explicitly.", code="missing_embedding_model")
        self.model = embed_model
        self.model_id = str(getattr(embed_model, "model_name", type(embed_model).__name__))
        self.small_batch = small_batch
        self._lock = threading.Lock()
        self.last_batch_seconds = 0.0

    def texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        t0 = time.perf_counter()
        with self._lock, self._threads(len(texts)):
            vecs = self.model.get_text_embedding_batch(texts)
        self.last_batch_seconds = time.perf_counter() - t0
        return normalize(np.asarray(vecs, dtype=np.float32))

    def query(self, text: str) -> np.ndarray:
        with self._lock, self._threads(1):
            return normalize(np.asarray(self.model.get_query_embedding(text), dtype=np.float32))

    def _threads(self, count: int) -> AbstractContextManager[None]:
        return torch_threads(1) if count <= self.small_batch else nullcontext()


def rev_meta(r: RevisionInfo) -> RevMeta:
    return RevMeta(
        id=r.id,
        document_id=r.document_id,
        number=r.number,
        status=r.status,
        title=r.title,
        effective_from=r.effective_from,
        effective_until=r.effective_until,
        tags=tuple(r.tags),
        audience=r.audience,
    )


class SyncedIndex:
    """Shared sync logic; subclasses decide where vectors live and how they are searched."""

    backend = "base"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._snap: Snapshot | None = None
        self._write_lock = threading.Lock()
        self.last_sync: dict[str, Any] = {}

    # -- what readers use ------------------------------------------------------

    def current(self) -> Snapshot:
        snap = self._snap
        if snap is None:
            raise Unavailable(
                "The knowledge index is not built yet; import documents first.", code="index_empty"
            )
        return snap

    def install(self, snap: Snapshot) -> None:
        """Make ``snap`` current without a store (benchmarks with synthetic data)."""
        with self._write_lock:
            self._snap = snap

    @property
    def generation(self) -> int:
        return -1 if self._snap is None else self._snap.generation

    def vector_scores(
        self, snap: Snapshot, query_vec: np.ndarray, row_mask: np.ndarray, n: int
    ) -> dict[int, float]:
        """Cosine similarity of the best ``n`` allowed rows (row index -> score)."""
        raise NotImplementedError

    # -- subclasses ------------------------------------------------------------

    def _vectors_for(self, snap: Snapshot | None, rows: list[dict[str, Any]]) -> np.ndarray | None:
        raise NotImplementedError

    def _commit(self, snap: Snapshot) -> None:
        """Persist a snapshot before it becomes current (local: files; pgvector: nothing)."""

    # -- sync ------------------------------------------------------------------

    def sync(self, store: KnowledgeStore, *, wait: bool = True, force: bool = False) -> bool:
        """Bring the index up to the store.  Returns True when a new snapshot was installed.

        With ``wait=False`` a caller that finds another sync in progress returns at once and
        keeps using the current (old, consistent) snapshot.
        """
        if not self._write_lock.acquire(blocking=wait):
            return False
        try:
            gen = store.generation()
            if self._snap is not None and self._snap.generation == gen and not force:
                return False
            t0 = time.perf_counter()
            revs = [rev_meta(r) for r in store.indexable_revisions()]
            old = self._snap
            have = set(old.revisions) if old is not None else set()
            wanted = {r.id for r in revs}
            added = sorted(wanted - have)
            if old is not None and not force:
                keep = [i for i, row in enumerate(old.rows) if row["revision_id"] in wanted]
                rows = [old.rows[i] for i in keep]
            else:
                keep, rows = [], []
            new_rows = store.chunks_for(added)
            all_rows = rows + new_rows
            vectors = self._merge_vectors(old if not force else None, keep, new_rows)
            bm25 = None  # force / first build: from every row
            if old is not None and not force:
                same_rows = not new_rows and len(keep) == len(old.rows)
                # an edit tokenizes only its new chunks; the other rows' term counts are reused
                bm25 = old.bm25 if same_rows else old.derive_bm25(keep, new_rows)
            snap = Snapshot(gen, revs, all_rows, vectors, bm25=bm25, model_id=self.embedder.model_id)
            self._commit(snap)
            self._snap = snap  # the atomic swap readers see
            self.last_sync = {
                "generation": gen,
                "new_revisions": len(added),
                "new_chunks": len(new_rows),
                "embedded": self._last_embedded,
                "seconds": round(time.perf_counter() - t0, 4),
            }
            log.info("knowledge index synced: %s", self.last_sync)
            return True
        finally:
            self._write_lock.release()

    _last_embedded = 0

    def _merge_vectors(
        self, old: Snapshot | None, keep: list[int], new_rows: list[dict[str, Any]]
    ) -> np.ndarray | None:
        new_vecs = self._vectors_for(old, new_rows)
        if new_vecs is None:  # vectors live elsewhere (pgvector)
            return None
        dim = (
            new_vecs.shape[1]
            if new_vecs.size
            else (old.vectors.shape[1] if old is not None and old.vectors is not None else 0)
        )
        kept = (
            old.vectors[keep]
            if old is not None and old.vectors is not None and keep
            else np.zeros((0, dim), dtype=np.float32)
        )
        if not new_vecs.size:
            return kept
        if kept.size and kept.shape[1] != new_vecs.shape[1]:
            raise Unavailable("Embedding dimension changed; rebuild the index.", code="index_dimension")
        return np.vstack([kept, new_vecs]) if kept.size else new_vecs

    def _embed_missing(self, known: dict[str, np.ndarray], rows: list[dict[str, Any]]) -> np.ndarray:
        """Vectors for ``rows``, embedding only texts whose hash is not in ``known``."""
        todo: dict[str, str] = {}
        for r in rows:
            if r["hash"] not in known:
                todo.setdefault(r["hash"], r["text"])
        self._last_embedded = len(todo)
        if todo:
            fresh = self.embedder.texts(list(todo.values()))
            known = dict(known) | dict(zip(todo.keys(), fresh, strict=True))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([known[r["hash"]] for r in rows]).astype(np.float32)


class LocalIndex(SyncedIndex):
    """Vectors in memory (numpy, exact cosine), persisted as versioned snapshot folders on disk."""

    backend = "local"

    def __init__(self, index_dir: str | Path, embedder: Embedder) -> None:
        super().__init__(embedder)
        self.dir = Path(index_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- search ----------------------------------------------------------------

    def vector_scores(
        self, snap: Snapshot, query_vec: np.ndarray, row_mask: np.ndarray, n: int
    ) -> dict[int, float]:
        if snap.vectors is None or not len(snap.rows):
            return {}
        # einsum runs single-threaded: a threaded BLAS matvec on 2 busy cores was 15x slower (p50)
        sims = np.einsum("ij,j->i", snap.vectors, query_vec)
        allowed = np.flatnonzero(row_mask)
        if not len(allowed):
            return {}
        sub = sims[allowed]
        top = np.argpartition(-sub, n - 1)[:n] if len(sub) > n else np.arange(len(sub))
        return {int(allowed[i]): float(sub[i]) for i in top}

    def all_vector_scores(self, snap: Snapshot, query_vec: np.ndarray) -> np.ndarray | None:
        return None if snap.vectors is None else np.einsum("ij,j->i", snap.vectors, query_vec)

    #: chunks missing from the snapshot in memory at which the one on disk is read for their vectors first
    DISK_REUSE_MIN = 16

    def _vectors_for(self, snap: Snapshot | None, rows: list[dict[str, Any]]) -> np.ndarray:
        known: dict[str, np.ndarray] = {}
        need = {r["hash"] for r in rows}
        if snap is not None and snap.vectors is not None:
            known = {row["hash"]: snap.vectors[i] for i, row in enumerate(snap.rows) if row["hash"] in need}
        if len(need - known.keys()) >= self.DISK_REUSE_MIN and self._pointer() != self._disk_name:
            # another process (`hybridesk kb import`) wrote a newer snapshot, so it may have embedded them
            # already: reuse its vectors (QA: the first reply after a 440 KB import waited 71 s while the
            # server embedded every chunk again). This process's own snapshot on disk is not read again.
            try:
                disk = self._read()
            except Exception as exc:  # noqa: BLE001 - a damaged snapshot only means embedding here
                log.info("knowledge index on disk not reused (%s)", exc)
                disk = None
            if disk is not None and disk.vectors is not None:
                known |= {row["hash"]: disk.vectors[i] for i, row in enumerate(disk.rows)
                          if row["hash"] in need and row["hash"] not in known}
        return self._embed_missing(known, rows)

    # -- persistence -----------------------------------------------------------

    def _commit(self, snap: Snapshot) -> None:
        name = f"snap-{snap.generation:08d}-{os.getpid()}-{time.time_ns()}"
        tmp = self.dir / (name + ".tmp")
        tmp.mkdir(parents=True)
        rows_path = tmp / "rows.json"
        rows_path.write_text(
            json.dumps({"revisions": [r.to_json() for r in snap.revisions.values()], "rows": snap.rows}),
            encoding="utf-8",
        )
        vec = snap.vectors if snap.vectors is not None else np.zeros((0, 0), dtype=np.float32)
        np.save(tmp / "vectors.npy", vec, allow_pickle=False)
        manifest = {
            "format": FORMAT_VERSION,
            "generation": snap.generation,
            "model_id": snap.model_id,
            "rows": len(snap.rows),
            "sha256": {p.name: _sha256(p) for p in (rows_path, tmp / "vectors.npy")},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        os.replace(tmp, self.dir / name)
        pointer = self.dir / "CURRENT.tmp"
        pointer.write_text(name, encoding="utf-8")
        os.replace(pointer, self.dir / "CURRENT")  # atomic: readers on disk see old or new
        self._disk_name = name
        for old in self.dir.glob("snap-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, *, first_start: bool = False) -> bool:
        """Load the snapshot on disk; False (with a log line saying why) when it is missing or corrupt.

        ``first_start``: nothing was ever written to the knowledge base, so no index is expected yet.
        """
        try:
            snap = self._read()
        except Exception as exc:  # noqa: BLE001 - any damage means "rebuild"
            log.warning(
                "knowledge index at %s is unusable (%s); rebuilding it from the database", self.dir, exc
            )
            return False
        if snap is None:
            log.log(logging.INFO if first_start else logging.WARNING,
                    "knowledge index at %s is missing; building it from the database", self.dir)
            return False
        self._snap = snap
        return True

    #: the snapshot folder this process last wrote or read (its own: no need to read it again)
    _disk_name: str | None = None

    def _pointer(self) -> str | None:
        """The snapshot folder ``CURRENT`` names, or None."""
        try:
            return (self.dir / "CURRENT").read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def _read(self) -> Snapshot | None:
        name = self._pointer()
        if name is None:
            return None
        folder = self.dir / name
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {manifest.get('format')} != {FORMAT_VERSION}")
        if manifest.get("model_id") != self.embedder.model_id:
            raise ValueError(f"built with {manifest.get('model_id')}, not {self.embedder.model_id}")
        for fname, digest in manifest["sha256"].items():
            if _sha256(folder / fname) != digest:
                raise ValueError(f"checksum mismatch in {fname}")
        data = json.loads((folder / "rows.json").read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        rows = data["rows"]
        if len(rows) != manifest["rows"] or (rows and vectors.shape[0] != len(rows)):
            raise ValueError("row count does not match the vectors")
        revs = [RevMeta.from_json(r) for r in data["revisions"]]
        self._disk_name = name
        return Snapshot(manifest["generation"], revs, rows, vectors, model_id=manifest["model_id"])

    def open(self, store: KnowledgeStore) -> None:
        """Load from disk if possible, then catch up with (or rebuild from) the database."""
        if not self.load(first_start=store.generation() == 0):
            self.sync(store, force=True)
        else:
            self.sync(store)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
