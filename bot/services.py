"""The container of long-lived components (database, knowledge base, NLU, generator).

Built explicitly by ``create_app(settings, services)``, the CLI, or a test; each heavy part is
loaded on first use and then shared. rasa-sdk's action server imports the actions module
without arguments, so :func:`runtime_services` lazily builds one container from settings there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import cached_property
from typing import Any

from bot.db.engine import Database
from bot.settings import Settings

log = logging.getLogger(__name__)

#: how long the shop's product names are kept before they are read again
PRODUCT_WORDS_TTL_S = 600.0
#: how long the company's contact details (the KB's phone and e-mail facts) are kept before they are read again
COMPANY_CONTACTS_TTL_S = 60.0


class Services:
    """Lazily constructed, thread-safe holder of the product's components."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        knowledge: Any = None,
        nlu: Any = None,
        generator: Any = None,
    ) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._products: tuple[float, frozenset[str]] = (0.0, frozenset())  # (expires, words)
        self._contacts: tuple[float, tuple[tuple[str, str], ...]] = (0.0, ())  # (expires, contacts)
        self._contacts_failed = False
        if db is not None:
            self.__dict__["db"] = db
        if knowledge is not None:
            self.__dict__["knowledge"] = knowledge
        if nlu is not None:
            self.__dict__["nlu"] = nlu
        if generator is not None:
            self.__dict__["generator"] = generator
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.resolved_database_url)

    @cached_property
    def knowledge(self) -> Any:
        with self._lock:
            from knowledge.service import KnowledgeService

            return KnowledgeService(
                self.db.engine,
                index_dir=self.settings.index_dir,
                embed_model_dir=self.settings.embedding_model_dir,
                backend="pgvector" if self.db.engine.dialect.name == "postgresql" else "local",
            )

    @cached_property
    def nlu(self) -> Any:
        """The NLU registry; ``services.nlu.current()`` is the active intent + tone model."""
        with self._lock:
            from bot.conversation.nlu import NLURegistry

            return NLURegistry(self.settings.nlu_dir, embedding_dir=self.settings.embedding_model_dir)

    @cached_property
    def generator(self) -> Any:
        with self._lock:
            return build_generator(self.settings)

    @cached_property
    def adapters(self) -> Any:
        """The LoRA adapter registry (shipped + user-trained); its active adapter answers customers."""
        from models.adapters import AdapterRegistry

        return AdapterRegistry(self.settings.user_adapters_dir, self.settings.adapters_dir)

    @cached_property
    def speller(self) -> Any:
        """Misspelt words of a message read as the knowledge base spells them ("pasword" -> "password"),
        against the documents in force; rebuilt when the index installs a new snapshot."""
        from bot.conversation.spelling import KnowledgeSpeller, tokenizer_words
        from knowledge.embeddings import resolve_embedding_dir

        try:  # the embedding model's whole words: real words the KB does not use are not typos
            known = tokenizer_words(resolve_embedding_dir(self.settings.embedding_model_dir))
        except Exception:
            log.warning("no tokenizer vocabulary for the speller; it knows the KB's words only", exc_info=True)
            known = frozenset()
        return KnowledgeSpeller(lambda: [f"{r.title}\n{r.content}" for r in self.knowledge.in_force()],
                                lambda: self.knowledge.index.generation, known)

    def product_words(self) -> frozenset[str]:
        """The words of the shop's product names ("lamp", "rug"), read from its orders at most every 10
        minutes: a customer's "lamp" is an item to the policy (KB coverage, procedure matching)."""
        expires, words = self._products
        if time.monotonic() < expires:
            return words
        try:
            from bot.conversation.limits import product_words
            from bot.db.repositories import OrderRepository

            with self.db.unit_of_work() as session:
                words = product_words(OrderRepository(session).item_names())
        except Exception:  # no orders table yet: product names are a help, not a need
            log.warning("could not read the shop's product names", exc_info=True)
        self._products = (time.monotonic() + PRODUCT_WORDS_TTL_S, words)
        return words

    def company_contacts(self) -> tuple[tuple[str, str], ...]:
        """The company's own phone numbers and e-mail addresses, ``(value, "{{Slot}}")``, from the KB's facts in
        force (and their earlier values), read at most every minute (:func:`models.pii.company_contacts`)."""
        expires, contacts = self._contacts
        if time.monotonic() < expires:
            return contacts
        try:
            from models.pii import company_contacts

            knowledge = self.knowledge
            contacts = tuple(company_contacts(knowledge.facts(), knowledge.superseded_values()))
            self._contacts_failed = False
        except Exception as exc:  # no KB yet: a reply's "call us on ..." still counts, the KB's values do not
            if not self._contacts_failed:
                log.warning("cannot read the company's contact details from the knowledge base (%s); scrubbing "
                            "agents' replies without them", type(exc).__name__)
            self._contacts_failed = True
            contacts = ()
        self._contacts = (time.monotonic() + COMPANY_CONTACTS_TTL_S, contacts)
        return contacts

    def active_adapter_id(self) -> str | None:
        """Read on every reply, so `hybridesk adapters activate` takes effect without a restart."""
        try:
            return self.adapters.active_id()
        except Exception:  # a broken registry must not stop answers: fall back to the base model
            log.exception("cannot read the active adapter; answering with the base model")
            return None

    def warm_up(self) -> None:
        """Load the models before the first customer arrives (time to first reply)."""
        self.knowledge.retrieve("opening hours", k=1)  # loads the index and the embedding model
        self.nlu.current().predict("hello")
        warm = getattr(self.generator, "warm", None)
        if warm is None:
            return
        adapter_id = self.active_adapter_id()
        try:
            warm(adapter_id)  # llama.cpp: converts the adapter to a GGUF LoRA file once
        except Exception as exc:  # the first reply reports a broken adapter; starting up must not fail on it
            from knowledge.errors import HybrideskError

            if adapter_id is None:
                raise
            reason = None
            try:  # what is wrong with its files, as `adapters list` says it
                from models.adapters import adapter_problem

                reason = adapter_problem(self.adapters.get(adapter_id).path)
            except Exception:  # noqa: BLE001 - then the error itself says it
                reason = None
            if not reason:
                reason = exc.message if isinstance(exc, HybrideskError) else f"{type(exc).__name__}: {exc}"
            # one line an operator can act on (a traceback said neither which adapter nor what to do)
            log.error("the active adapter %r cannot be loaded (%s); the base model is warmed up instead, and the "
                      "model cannot answer with this adapter until it is fixed: run `hybridesk adapters activate "
                      "<other adapter>`, or `hybridesk adapters activate none` for the base model",
                      adapter_id, " ".join(str(reason).split())[:300])
            log.debug("loading adapter %r failed", adapter_id, exc_info=True)
            warm(None)

    def close(self) -> None:
        """Release what was built: the generator's batching worker, the database pool."""
        generator = self.__dict__.get("generator")
        if generator is not None and hasattr(generator, "close"):
            generator.close()
        if "db" in self.__dict__:
            self.db.dispose()


def build_generator(settings: Settings) -> Any:
    """The configured generation backend: llama.cpp or transformers + peft in process, or OpenAI-compatible."""
    from bot.settings import resolved_generator

    backend = resolved_generator(settings)
    if backend == "openai":
        from models.generation import OpenAICompatibleGenerator

        if not settings.openai_base_url:
            from knowledge.errors import ConfigurationError

            raise ConfigurationError(
                "HYBRIDESK_GENERATOR=openai needs HYBRIDESK_OPENAI_BASE_URL (e.g. http://127.0.0.1:8080).",
                code="missing_openai_url",
            )
        return OpenAICompatibleGenerator(settings.openai_base_url, settings.openai_model)
    from models.base import ensure_base_model

    adapters = [settings.adapters_dir, settings.user_adapters_dir]
    if backend == "llamacpp":
        from models.base import find_base_gguf
        from models.llamacpp import LlamaCppGenerator

        gguf = settings.gguf_path or find_base_gguf()
        # the tokenizer and chat template: the converted base folder (or read from the GGUF itself)
        tokenizer_dir = settings.base_model_dir or (
            ensure_base_model(settings.model_cache_dir) if settings.gguf_path is None else None
        )
        return LlamaCppGenerator(
            gguf,
            tokenizer_dir,
            adapters_root=adapters,
            cache_dir=settings.model_cache_dir / "gguf-lora",
            n_ctx=settings.llamacpp_context,
            n_threads=settings.torch_threads,
            max_batch=max(1, settings.generation_max_batch),
            prefix_cache_size=settings.prefix_cache_size,
            weights=settings.llamacpp_weights
            if settings.llamacpp_weights != "auto"
            else ("q8_0" if settings.gguf_path is None else "shipped"),
            merge_adapters=settings.llamacpp_merge_adapter,
            torch_prefill=settings.llamacpp_torch_prefill,
            flash_attn=1 if settings.llamacpp_flash_attn else 0,
        )
    import torch

    from models.generation import TransformersGenerator

    torch.set_num_threads(settings.torch_threads)
    model_dir = settings.base_model_dir or ensure_base_model(settings.model_cache_dir)
    return TransformersGenerator(
        model_dir,
        adapters_root=adapters,
        max_batch=settings.generation_max_batch,
        prefix_cache_size=settings.prefix_cache_size,
    )


_runtime: Services | None = None
_runtime_lock = threading.Lock()


def set_runtime_services(services: Services | None) -> None:
    """Register the container that in-process rasa-sdk actions use."""
    global _runtime
    with _runtime_lock:
        _runtime = services


def runtime_services() -> Services:
    """The registered container, or one built from settings (rasa-sdk action server)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            from bot.settings import get_settings

            _runtime = Services(get_settings())
        return _runtime
