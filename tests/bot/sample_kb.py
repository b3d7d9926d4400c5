"""A knowledge-base service over some of the sample company's policy files (real MiniLM embeddings)."""

from __future__ import annotations


def kb_service(tmp_path_factory, name: str, paths):
    """A KB service over ``paths`` (sample policy files), real MiniLM embeddings; yields it."""
    import sqlalchemy as sa

    from knowledge.db import KnowledgeBase
    from knowledge.embeddings import make_llama_embedding
    from knowledge.service import KnowledgeService

    tmp = tmp_path_factory.mktemp(name)
    engine = sa.create_engine(f"sqlite:///{tmp / 'kb.db'}")
    KnowledgeBase.metadata.create_all(engine)
    service = KnowledgeService(engine, index_dir=tmp / "index", embed_model=make_llama_embedding())
    for path in paths:
        service.import_bytes(path.read_bytes(), path.name, author="test", publish=True)
    yield service
    engine.dispose()
