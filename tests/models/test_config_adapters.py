"""Training config loading/validation and the adapter registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.errors import InvalidInput, NotFound
from models.adapters import AdapterRegistry
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
    ],
)
def test_bad_config_is_rejected(override, message):
    with pytest.raises(InvalidInput, match=message):
        TrainConfig.from_yaml(None, [override])


def _fake_adapter(root: Path, name: str, created: str) -> None:
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}", encoding="utf-8")
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
