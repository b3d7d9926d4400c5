"""Convert a peft LoRA adapter folder into a GGUF LoRA file for llama.cpp.

llama.cpp applies a LoRA adapter at run time (``llama_adapter_lora_init``), on top of the base
model's own quantised weights, so the adapter stays a separate, switchable file and the base
weights are exactly the shipped GGUF's. The file holds, for every adapted linear layer, the
adapter's ``A`` (``[r, in]``) and ``B`` (``[out, r]``) matrices under the base tensor's GGUF name
(``blk.3.attn_q.weight.lora_a``), plus ``adapter.lora.alpha``; llama.cpp scales by alpha / r like
peft does.

One detail matters: GGUF files of llama-architecture models store the query and key projections
with their rows permuted (llama.cpp's rotary embedding pairs neighbouring dimensions, Hugging Face
pairs the two halves of a head). ``delta = B @ A`` has the projection's rows, so ``B`` of ``q_proj``
and ``k_proj`` gets the same permutation; ``A`` is unchanged.

Converted files are cached: :func:`gguf_lora_for` writes
``<cache>/<adapter name>-<hash of the adapter's weights and config>.gguf`` once and reuses it, so
a retrained adapter with the same name gets a new file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from knowledge.errors import InvalidInput

#: Hugging Face module name -> GGUF tensor name (llama architecture)
_MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")


def _permute_rows(weights: Any, n_head: int) -> Any:
    """Reorder output rows from Hugging Face's rotary layout to llama.cpp's (per head)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def base_gguf_info(gguf_path: Path | str) -> dict[str, Any]:
    """Architecture and head counts of a base GGUF file (what the conversion needs)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise InvalidInput(
            f"LoRA conversion supports llama-architecture GGUF models; {gguf_path} is {arch!r}.",
            code="unsupported_architecture",
        )
    return {
        "architecture": arch,
        "n_head": int(field("llama.attention.head_count")),
        "n_head_kv": int(field("llama.attention.head_count_kv") or field("llama.attention.head_count")),
        "n_layer": int(field("llama.block_count")),
    }


def content_hash(*paths: Path | str) -> str:
    """SHA-256 (hex) over the bytes of those ``paths`` that exist, in order, read 1 MiB at a time.

    Derived files (converted adapters, re-encoded models) are named after their sources' hash, so
    a changed source gets a new file and an unchanged one is reused.
    """
    digest = hashlib.sha256()
    for path in map(Path, paths):
        if path.is_file():
            with path.open("rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(adapter_dir: Path | str) -> str:
    """A short hash of an adapter folder's config and weights (names the converted file)."""
    adapter_dir = Path(adapter_dir)
    return content_hash(adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors")[:16]


def read_peft_lora(adapter_dir: Path | str, n_layer: int) -> tuple[float, int, dict[tuple[int, str], dict[str, Any]]]:
    """``(alpha, rank, {(layer, module): {"A": a, "B": b}})`` of a peft LoRA folder, as float32 arrays.

    ``alpha`` is scaled so that ``alpha / rank`` is the factor of ``B @ A`` (peft's rsLoRA divides by
    the square root of the rank instead). Anything llama.cpp's LoRA files cannot hold is refused.
    """
    import numpy as np
    from safetensors.torch import load_file  # adapters are often saved in bf16, which numpy lacks

    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise InvalidInput(
            f"{adapter_dir} is not a peft adapter folder (adapter_config.json and "
            "adapter_model.safetensors are needed).",
            code="bad_adapter",
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise InvalidInput(f"Only LoRA adapters convert to GGUF, not {config.get('peft_type')}.", code="bad_adapter")
    for unsupported in ("use_dora", "modules_to_save"):
        if config.get(unsupported):
            raise InvalidInput(
                f"Adapter {adapter_dir.name} uses {unsupported}, which llama.cpp LoRA files cannot hold.",
                code="bad_adapter",
            )
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise InvalidInput(
            f"Adapter {adapter_dir.name} has per-layer ranks or alphas; llama.cpp takes one alpha per file.",
            code="bad_adapter",
        )
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):
        # peft scales by alpha / sqrt(r), llama.cpp by alpha / r: give llama.cpp the alpha that matches
        alpha = alpha * math.sqrt(rank)

    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in load_file(str(weights_path)).items():
        match = _KEY_RE.search(key)
        if match is None:
            raise InvalidInput(
                f"Adapter tensor {key!r} targets a module llama.cpp LoRA conversion does not support "
                "(supported: q/k/v/o projections and the MLP's gate/up/down).",
                code="bad_adapter",
            )
        layer, module, which = int(match.group(1)), match.group(2), match.group(3)
        if layer >= n_layer:
            raise InvalidInput(f"Adapter tensor {key!r} names layer {layer}; the base has {n_layer}.", code="bad_adapter")
        pairs.setdefault((layer, module), {})[which] = value.float().numpy().astype(np.float32)
    for (layer, module), ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise InvalidInput(f"Adapter layer {layer} {module} lacks its lora_A or lora_B.", code="bad_adapter")
    return alpha, rank, pairs


def convert_peft_lora(adapter_dir: Path | str, out_path: Path | str, base_gguf: Path | str) -> Path:
    """Write ``adapter_dir`` (a peft LoRA folder) as a GGUF LoRA file at ``out_path``."""
    import gguf
    import numpy as np

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    info = base_gguf_info(base_gguf)
    alpha, _rank, pairs = read_peft_lora(adapter_dir, info["n_layer"])

    with _written_whole(out_path, info["architecture"]) as writer:
        writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_string("hybridesk.adapter_id", adapter_dir.name)
        for (layer, module), ab in sorted(pairs.items()):
            a, b = ab["A"], ab["B"]
            if module == "self_attn.q_proj":
                b = _permute_rows(b, info["n_head"])
            elif module == "self_attn.k_proj":
                b = _permute_rows(b, info["n_head_kv"])
            name = f"blk.{layer}.{_MODULES[module]}.weight"
            writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a))
            writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b))
    return out_path


@contextlib.contextmanager
def _written_whole(out_path: Path, arch: str) -> Iterator[Any]:
    """A ``GGUFWriter`` to fill; its file appears at ``out_path`` only once written whole (a temporary file
    beside it until then, removed when filling fails)."""
    import gguf

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, arch=arch)
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def gguf_lora_for(adapter_dir: Path | str, cache_dir: Path | str, base_gguf: Path | str, *,
                  fingerprint: str | None = None) -> Path:
    """The GGUF LoRA file for ``adapter_dir``, converted on first use and cached by content hash
    (``fingerprint``: :func:`adapter_fingerprint` of the folder, when the caller has it already)."""
    adapter_dir = Path(adapter_dir)
    target = Path(cache_dir) / f"{adapter_dir.name}-{fingerprint or adapter_fingerprint(adapter_dir)}.gguf"
    if not target.is_file():
        convert_peft_lora(adapter_dir, target, base_gguf)
    return target


def _float_matrix(tensor: Any) -> Any:
    """A GGUF reader tensor as a float32 ``[rows, cols]`` array (dequantised when quantised)."""
    import gguf
    import numpy as np

    if tensor.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        shape = [int(x) for x in reversed(tensor.shape)]
        return np.asarray(tensor.data, dtype=np.float32).reshape(shape)
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)


def _encode_like(weights: Any, kind: Any) -> tuple[Any, Any]:
    """``weights`` as the layout file stores that tensor when it is a float type, else as Q8_0; returns
    (array to write, its GGML type). Re-rounding to a 4- or 5-bit type would wash out most of the
    adapter's change (measured: replies of the Q4_1 file merged in Q4_1 agreed with the Q8_0 merge's own
    choices on 63 % of tokens, where the two encodings unmerged agree on over 90 %), while Q8_0's step is a
    sixteenth of Q4_1's."""
    import gguf
    import numpy as np

    Q = gguf.GGMLQuantizationType
    if kind == Q.F32:
        return weights.astype(np.float32), Q.F32
    if kind == Q.F16:
        return weights.astype(np.float16), Q.F16
    if kind == Q.BF16:
        return gguf.quants.quantize(weights, Q.BF16), Q.BF16
    return gguf.quants.quantize(weights, Q.Q8_0), Q.Q8_0


def merge_lora_gguf(layout_gguf: Path | str, exact_gguf: Path | str, lora_gguf: Path | str,
                    out_path: Path | str) -> Path:
    """Write a model file whose adapted weights are ``W + (alpha / r) * B @ A``: the LoRA merged in.

    llama.cpp applies a LoRA file at run time as two extra small matrix products per adapted layer
    and token (210 for the shipped adapter), which costs about 15 % of the decode speed of this small
    model (134 against 114 tokens/s on two cores). A merged file runs at the base model's speed and chooses the same tokens as the
    run-time adapter, up to rounding.

    ``layout_gguf`` is the file the runtime would load (its metadata, tokenizer, every tensor the
    adapter leaves alone, and each tensor's encoding are kept). ``exact_gguf`` is the file it was
    derived from: each adapted weight is read from there, so that it is rounded once, after the
    adapter's change is added, rather than twice (the shipped Q4_1 re-encoded to Q8_0 and then, with
    the change, to Q8_0 again). Both may be the same file.
    """
    import gguf

    layout_gguf, exact_gguf, lora_gguf, out_path = map(Path, (layout_gguf, exact_gguf, lora_gguf, out_path))
    lora = gguf.GGUFReader(str(lora_gguf))
    if "adapter.lora.alpha" not in lora.fields:
        raise InvalidInput(f"{lora_gguf.name} is not a GGUF LoRA file (no adapter.lora.alpha).", code="bad_adapter")
    alpha = float(lora.fields["adapter.lora.alpha"].contents())
    lora_tensors = {t.name: t for t in lora.tensors}
    layout = gguf.GGUFReader(str(layout_gguf))
    exact = {t.name: t for t in gguf.GGUFReader(str(exact_gguf)).tensors} if exact_gguf != layout_gguf else {}
    names = {t.name for t in layout.tensors}
    unknown = sorted({n.rsplit(".lora_", 1)[0] for n in lora_tensors} - names)
    if unknown:
        raise InvalidInput(f"{lora_gguf.name} adapts tensors the base model lacks: {', '.join(unknown[:3])}.",
                           code="bad_adapter")
    with _written_whole(out_path, layout.fields["general.architecture"].contents()) as writer:
        for name, f in layout.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue  # written by the writer itself
            kind = f.types[0]
            writer.add_key_value(name, f.contents(), kind, f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
        writer.add_string("hybridesk.merged_adapter", lora_gguf.stem)
        for tensor in layout.tensors:
            a, b = lora_tensors.get(tensor.name + ".lora_a"), lora_tensors.get(tensor.name + ".lora_b")
            if a is None and b is None:
                writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
                continue
            if a is None or b is None:
                raise InvalidInput(f"{lora_gguf.name} lacks lora_a or lora_b for {tensor.name}.", code="bad_adapter")
            a_m, b_m = _float_matrix(a), _float_matrix(b)
            weights = _float_matrix(exact.get(tensor.name, tensor))
            if b_m.shape[1] != a_m.shape[0] or (b_m.shape[0], a_m.shape[1]) != weights.shape:
                raise InvalidInput(f"{lora_gguf.name}: {tensor.name} is {weights.shape}, the adapter's B @ A is "
                                   f"{(b_m.shape[0], a_m.shape[1])}.", code="bad_adapter")
            weights += (b_m @ a_m) * (alpha / a_m.shape[0])
            data, kind = _encode_like(weights, tensor.tensor_type)
            writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=kind)
    return out_path


def merged_gguf_for(layout_gguf: Path | str, exact_gguf: Path | str, lora_gguf: Path | str,
                    cache_dir: Path | str) -> Path:
    """The merged model file for ``lora_gguf`` on ``layout_gguf`` (:func:`merge_lora_gguf`), written once
    into ``cache_dir``. The name carries the LoRA file's name (itself named after the adapter's content
    hash), the layout file's name and the exact file's content hash, so a retrained adapter or another
    base gets a new file."""
    layout_gguf, exact_gguf, lora_gguf = map(Path, (layout_gguf, exact_gguf, lora_gguf))
    key = hashlib.sha256(f"{layout_gguf.name}:{content_hash(exact_gguf)}".encode()).hexdigest()[:10]
    target = Path(cache_dir) / f"{lora_gguf.stem}.merged-{key}.gguf"
    if not target.is_file():
        merge_lora_gguf(layout_gguf, exact_gguf, lora_gguf, target)
    return target
