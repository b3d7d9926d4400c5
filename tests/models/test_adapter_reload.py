"""An adapter replaced on disk under the same id is loaded again by the transformers backend.

QA (session 23) found the llama.cpp backend kept the first weights of an adapter retrained or copied in
under the same id; the transformers backend had the same gap. Real base model, two real shipped adapters.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "adapters"
MESSAGES = [{"role": "system", "content": "You are a support agent for Larkspur & Co."},
            {"role": "user", "content": "Hello, I would like to return a lamp I bought last week. What do I do?"}]


def _copy(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(src / name, dest / name)


@pytest.mark.slow
def test_an_adapter_replaced_under_the_same_id_answers_with_its_new_weights(tmp_path, base_model_dir):
    import torch

    from models.generation import TransformersGenerator

    first, second = SHIPPED / "larkspur-v1", SHIPPED / "larkspur-v9"
    roots = tmp_path / "adapters"
    _copy(first, roots / "mine")
    _copy(second, roots / "reference")
    gen = TransformersGenerator(base_model_dir, adapters_root=roots, dtype=torch.float32)
    try:
        before = gen.generate(MESSAGES, adapter_id="mine", max_new_tokens=24).text
        expected = gen.generate(MESSAGES, adapter_id="reference", max_new_tokens=24).text
        assert before != expected, "the two shipped adapters answer alike: pick two that differ"
        os.utime(roots / "mine" / "adapter_model.safetensors")  # touched, same weights: kept as it is
        assert gen.generate(MESSAGES, adapter_id="mine", max_new_tokens=24).text == before
        _copy(second, roots / "mine")  # retrained or copied in under the same id
        after = gen.generate(MESSAGES, adapter_id="mine", max_new_tokens=24).text
        # the new weights, for the whole prompt (no prefix cached with the old ones is reused)
        assert after == expected, (before, after, expected)
        assert sorted(gen.loaded_adapters()) == ["mine", "reference"]
    finally:
        gen.close()
