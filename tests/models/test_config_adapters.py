"""Training config loading/validation and the adapter registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from knowledge.errors import InvalidInput, NotFound
from models.adapters import AdapterRegistry, read_metadata
from models.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_loads_with_overrides():
    cfg = TrainConfig.from_yaml(
        REPO / "models" / "configs" / "default.yaml",
        ["lora_r=4", "learning_rate=1e-3", "target_modules=q_proj,v_proj", "packing=true", "max_steps=3"],
    )
    assert cfg.lora_r == 4 and cfg.learning_rate == 1e-3
    assert cfg.target_modules == ["q_proj", "v_proj"]
    assert cfg.packing is True and cfg.max_steps == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lora_r=0", "lora_r"),
        ("dtype=float16", "dtype"),
        ("nonsense=1", "Unknown training config key"),
        ("learning_rate=abc", "learning_rate"),
        ("version=../evil", "version"),
        ("novalue", "key=value"),
        # wrong types are refused before any model loads (lora_r=true reached torch, learning_rate=true trained)
        ("lora_r=true", "lora_r=True is not a whole number"),
        ("lora_r=1.5", "lora_r=1.5 is not a whole number"),
        ("lora_r=[1, 2]", "lora_r=\\[1, 2\\] is not a whole number"),
        ("lora_r= ", "lora_r needs a value"),
        ("learning_rate=true", "learning_rate=True is not a number"),
        ("learning_rate=nan", "not a finite number"),
        ("target_modules={a: 1}", "target_modules"),
        ("dtype=[float32]", "dtype"),
        # text YAML cannot parse is kept as text and refused for its type, not a YAML traceback
        ("lora_r=[1", "lora_r='\\[1' is not a whole number"),
        ("max_steps=2026-13-45", "max_steps='2026-13-45' is not a whole number"),
    ],
)
def test_bad_config_is_rejected(override, message):
    with pytest.raises(InvalidInput, match=message):
        TrainConfig.from_yaml(None, [override])


def test_scalars_are_read_as_text_where_text_belongs():
    cfg = TrainConfig.from_yaml(None, ["version=5", "target_modules=[q_proj, v_proj]", "lora_top_layers="])
    assert cfg.version == "5" and cfg.target_modules == ["q_proj", "v_proj"] and cfg.lora_top_layers is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("lora_r: 4 # caf\xe9\n".encode("latin-1"), "not UTF-8"),
        (b"lora_r: [unclosed\n", "not valid YAML"),
        (b"max_steps: 2026-13-45\n", "not valid YAML"),
        (b"1: 2\nlora_r: 4\n", "Unknown training config key"),
    ],
)
def test_broken_config_files_are_refused(tmp_path, content, message):
    path = tmp_path / "train.yaml"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        TrainConfig.from_yaml(path)
    with pytest.raises(InvalidInput, match="is a directory"):
        TrainConfig.from_yaml(tmp_path)


LORA_CONFIG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]}


def write_weights(path: Path) -> None:
    """A small but real safetensors file (two LoRA matrices)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((2, 8), np.float32),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.ones((8, 2), np.float16)},
              str(path), metadata={"format": "pt"})


def _fake_adapter(root: Path, name: str, created: str) -> None:
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps(LORA_CONFIG), encoding="utf-8")
    write_weights(path / "adapter_model.safetensors")
    (path / "metadata.json").write_text(json.dumps({"created_at": created, "metrics": {}}), encoding="utf-8")


def test_registry_list_show_activate(tmp_path):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _fake_adapter(shipped, "default-v1", "2026-01-01T00:00:00")
    (shipped / "ACTIVE").write_text("default-v1\n", encoding="utf-8")
    registry = AdapterRegistry(user, shipped)
    assert registry.active_id() == "default-v1"
    _fake_adapter(user, "mine-v2", "2026-02-01T00:00:00")
    assert [a.id for a in registry.list()] == ["mine-v2", "default-v1"]
    registry.activate("mine-v2")
    assert registry.active_id() == "mine-v2"  # user choice wins, no restart needed
    assert (user / "ACTIVE").read_text().strip() == "mine-v2"
    assert (shipped / "ACTIVE").read_text().strip() == "default-v1"  # shipped root untouched
    assert registry.get("default-v1").root == "shipped"
    registry.activate(None)
    assert registry.active_id() is None
    with pytest.raises(NotFound, match="default-v1"):
        registry.activate("missing")


@pytest.mark.parametrize("bad_id", ["../user/mine-v2", "..", ".", "", "a/b", "a\\b", ".hidden"])
def test_registry_refuses_ids_that_leave_the_roots(tmp_path, bad_id):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _fake_adapter(user, "mine-v2", "2026-02-01T00:00:00")
    _fake_adapter(tmp_path / "elsewhere", "evil", "2026-02-01T00:00:00")
    registry = AdapterRegistry(user, shipped)
    for adapter_id in (bad_id, "../elsewhere/evil"):
        with pytest.raises(InvalidInput, match="not an adapter id") as exc:
            registry.activate(adapter_id)
        assert exc.value.code == "bad_adapter_id"
        with pytest.raises(InvalidInput, match="not an adapter id"):
            registry.get(adapter_id)
    assert not (user / "ACTIVE").exists()
    (user / "ACTIVE").write_text("../elsewhere/evil\n", encoding="utf-8")  # written by hand
    assert registry.active_id() is None


def test_a_broken_adapter_is_not_activated_and_the_previous_one_stays(tmp_path):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _fake_adapter(user, "good-v1", "2026-01-01T00:00:00")
    _fake_adapter(user, "bad-config", "2026-02-01T00:00:00")
    (user / "bad-config" / "adapter_config.json").write_text("{not json", encoding="utf-8")
    _fake_adapter(user, "no-weights", "2026-03-01T00:00:00")
    (user / "no-weights" / "adapter_model.safetensors").unlink()
    registry = AdapterRegistry(user, shipped)
    registry.activate("good-v1")
    with pytest.raises(InvalidInput, match="adapter_config.json is not valid JSON.*still good-v1"):
        registry.activate("bad-config")
    with pytest.raises(InvalidInput, match="adapter_model.safetensors is missing.*still good-v1"):
        registry.activate("no-weights")
    assert registry.active_id() == "good-v1"
    assert registry.get("no-weights").to_dict()["problem"] == "the weights file adapter_model.safetensors is missing"
    assert "problem" not in registry.get("good-v1").to_dict()


@pytest.mark.parametrize(("text", "error"), [("{broken", "unreadable metadata.json"), ("[1, 2]", "not a JSON object")])
def test_broken_metadata_is_reported_not_raised(tmp_path, text, error):
    user = tmp_path / "user"
    _fake_adapter(user, "odd-v1", "2026-01-01T00:00:00")
    _fake_adapter(user, "fine-v1", "2026-02-01T00:00:00")
    (user / "odd-v1" / "metadata.json").write_text(text, encoding="utf-8")
    assert error in read_metadata(user / "odd-v1")["error"]
    registry = AdapterRegistry(user, None)
    assert [a.id for a in registry.list()] == ["fine-v1", "odd-v1"]
    with pytest.raises(NotFound, match="odd-v1"):
        registry.get("missing")


def _damage(path: Path, how: str) -> None:
    weights = path / "adapter_model.safetensors"
    data = weights.read_bytes()
    if how == "truncated header":
        weights.write_bytes(data[:40])
    elif how == "truncated data":
        weights.write_bytes(data[:-10])
    elif how == "random bytes":
        weights.write_bytes(bytes(range(256)) * 40)
    elif how == "empty":
        weights.write_bytes(b"")
    elif how == "header not JSON":
        weights.write_bytes((20).to_bytes(8, "little") + b"not json at all!!!!!" + b"\0" * 16)
    elif how == "wrong byte range":
        header = b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}'
        weights.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)


@pytest.mark.parametrize(("how", "said"), [
    ("truncated header", "its header claims"), ("truncated data", "truncated"), ("random bytes", "its header claims"),
    ("empty", "too few for a safetensors header"), ("header not JSON", "not valid JSON"),
    ("wrong byte range", "does not fill its byte range"),
])
def test_damaged_weights_are_found_from_the_header_and_never_activated(tmp_path, how, said):
    """A13: a weights file that cannot be loaded (cut short by a copy, overwritten) used to be activated;
    the bot then failed on every reply. Its safetensors header is read (not the weights) to tell."""
    from safetensors.numpy import load_file

    user = tmp_path / "user"
    _fake_adapter(user, "good-v1", "2026-01-01T00:00:00")
    _fake_adapter(user, "bad-v1", "2026-02-01T00:00:00")
    load_file(str(user / "good-v1" / "adapter_model.safetensors"))  # the helper writes what loads
    _damage(user / "bad-v1", how)
    with pytest.raises(Exception):  # noqa: B017 - whatever safetensors raises, it does not load
        load_file(str(user / "bad-v1" / "adapter_model.safetensors"))
    registry = AdapterRegistry(user, None)
    registry.activate("good-v1")
    with pytest.raises(InvalidInput, match=f"adapter_model.safetensors is damaged: .*{said}.*still good-v1") as exc:
        registry.activate("bad-v1")
    assert exc.value.code == "broken_adapter"
    assert registry.active_id() == "good-v1"
    assert registry.get("good-v1").problem is None


@pytest.mark.parametrize(("config", "said"), [
    ({"r": "eight"}, "r (the LoRA rank) is 'eight'"), ({"r": 0}, "r (the LoRA rank) is 0"), ({}, "r (the LoRA rank)"),
    ({"r": True}, "r (the LoRA rank) is True"), ({"r": 8, "lora_alpha": "16"}, "lora_alpha is '16'"),
    ({"r": 8, "lora_dropout": 2}, "lora_dropout is 2"), ({"r": 8, "target_modules": [1, 2]}, "target_modules"),
    ({"r": 8, "peft_type": "IA3"}, "peft_type is 'IA3'"), ({"r": 8, "layers_to_transform": ["x"]}, "layers_to"),
])
def test_an_adapter_config_with_wrong_types_is_refused(tmp_path, config, said):
    user = tmp_path / "user"
    _fake_adapter(user, "odd-v1", "2026-02-01T00:00:00")
    (user / "odd-v1" / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    registry = AdapterRegistry(user, None)
    with pytest.raises(InvalidInput, match=f"adapter_config.json is damaged: {re.escape(said)}"):
        registry.activate("odd-v1")
    assert registry.active_id() is None


def test_a_new_adapter_id_must_be_free_in_every_root(tmp_path):
    """A2: `train --set version=<id>` replaced an adapter of that id, or shadowed the shipped one."""
    from knowledge.errors import Conflict

    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _fake_adapter(shipped, "default-v1", "2026-01-01T00:00:00")
    (shipped / "ACTIVE").write_text("default-v1\n", encoding="utf-8")
    _fake_adapter(user, "mine-v1", "2026-02-01T00:00:00")
    (user / "half-copied").mkdir()
    registry = AdapterRegistry(user, shipped)
    for taken, where in (("default-v1", "shipped"), ("mine-v1", "user"), ("half-copied", "user")):
        with pytest.raises(Conflict, match=f"{taken}.*already exists \\({where}: ") as exc:
            registry.check_new_id(taken)
        assert exc.value.code == "adapter_exists"
    with pytest.raises(Conflict, match="the active adapter"):
        registry.check_new_id("default-v1")
    registry.check_new_id("mine-v2")
    with pytest.raises(InvalidInput, match="not an adapter id"):
        registry.check_new_id("../shipped/default-v1")
    assert [(kind, path.name) for kind, path in registry.stray_folders()] == [("user", "half-copied")]


def test_the_config_dataclass_defaults_are_the_shipped_default_yaml():
    # a key left out of a user's YAML takes the dataclass default: it must be the documented one
    import dataclasses

    import yaml

    from models.config import TrainConfig

    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "models" / "configs" / "default.yaml").read_text())
    code = TrainConfig()
    differ = {f.name: (shipped[f.name], getattr(code, f.name)) for f in dataclasses.fields(TrainConfig)
              if f.name in shipped and shipped[f.name] != getattr(code, f.name)}
    assert not differ


def test_every_shipped_config_loads_and_the_every_ticket_one_keeps_long_replies():
    from models.config import TrainConfig

    configs = sorted((REPO / "models" / "configs").glob("*.yaml"))
    assert len(configs) >= 2
    loaded = {path.stem: TrainConfig.from_yaml(path) for path in configs}
    fast = loaded["every-ticket"]
    assert fast.max_reply_tokens >= 320 and fast.max_length >= fast.max_reply_tokens + 256
    assert fast.prompt_backward is False and fast.lora_top_layers == 20 and not fast.packing
    assert loaded["default"].prompt_backward is True
