"""Training config loading/validation and the adapter registry."""

from __future__ import annotations

import json
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


def _fake_adapter(root: Path, name: str, created: str) -> None:
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}", encoding="utf-8")
    (path / "adapter_model.safetensors").write_bytes(b"")
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
