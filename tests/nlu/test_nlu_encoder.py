"""The int8 encoder variant (format-2 folders) and loading format-1 (fp32) folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.conversation.nlu import NLU, NLURegistry
from bot.conversation.nlu.encoder import is_ffn_output, shared_encoder
from knowledge.errors import ConfigurationError

pytestmark = pytest.mark.slow

TEXTS = ["where is my order", "I FORGOT MY PASSWORD!!", "x", "café naïve ünïcode", "refund " * 50,
         "can I pay with a credit card or only by bank transfer?"]


def test_int8_variant_quantises_all_but_the_ffn_outputs() -> None:
    import torch

    enc = shared_encoder(None, "int8")
    enc.encode_one("hello")
    kinds = {name: type(m).__module__ for name, m in enc._model.named_modules()
             if "dense" in name.rsplit(".", 1)[-1] or name.endswith(("query", "key", "value"))}
    ffn_out = [n for n in kinds if is_ffn_output(n) and n.startswith("encoder.")]
    assert len(ffn_out) == 6
    for name, module in enc._model.named_modules():
        if name in ffn_out:
            assert type(module) is torch.nn.Linear, name
        elif name.startswith("encoder.layer.") and name.endswith(("query", "key", "value", "dense")):
            assert "quantized" in type(module).__module__, name
    # The retriever's shared fp32 module is not modified by quantisation.
    fp32 = shared_encoder(None, "fp32")
    fp32.encode_one("hello")
    assert all(type(m) is torch.nn.Linear for n, m in fp32._model.named_modules() if n.endswith("query"))


def test_int8_batch_encoding_is_the_single_message_path() -> None:
    int8, fp32 = shared_encoder(None, "int8"), shared_encoder(None, "fp32")
    int8.clear_cache()
    batch = int8.encode(TEXTS)
    one = np.stack([int8.encode_one(t) for t in TEXTS])
    np.testing.assert_array_equal(batch, one)  # training sees exactly what inference sees
    ref = fp32.encode(TEXTS)
    cos = (batch * ref).sum(1)
    assert cos.min() > 0.95 and not np.allclose(batch, ref, atol=1e-4)


def test_new_folders_record_the_encoder_variant(nlu_model: NLU, tmp_path: Path) -> None:
    nlu_model.save(tmp_path / "v2")
    meta = json.loads((tmp_path / "v2" / "metadata.json").read_text())
    assert meta["format"] == 3 and meta["encoder"] == "int8"
    assert NLU.load(tmp_path / "v2").encoder.variant == "int8"


def test_format_1_folder_still_loads_with_the_fp32_encoder(nlu_model: NLU, tmp_path: Path) -> None:
    root = tmp_path / "nlu"
    nlu_model.save(root / "old")
    meta_path = root / "old" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = 1
    meta.pop("encoder")
    meta_path.write_text(json.dumps(meta))
    registry = NLURegistry(root)
    old = registry.activate("old")
    assert old.encoder.variant == "fp32"
    result = old.predict("I forgot my password and cannot log in")
    assert result.intent == "recover_password" and not result.out_of_scope
    meta["format"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigurationError):
        NLU.load(root / "old")
