"""Adapter registry: versioned LoRA adapter folders and which one is active.

Layout of a root folder::

    <root>/
      ACTIVE                      # one line: the id of the active adapter (optional)
      <adapter id>/
        adapter_config.json       # peft
        adapter_model.safetensors # peft (bf16)
        metadata.json             # base model, data hash, config, metrics, created_at

Two roots: the **shipped** default (``models/adapters/`` in the repository, read-only in
practice) and the **user** root under the data directory, where ``hybridesk train`` writes and
``hybridesk adapters activate`` records the choice. The user root's ``ACTIVE`` wins; without it,
the shipped one applies. :meth:`AdapterRegistry.active_id` re-reads the file on every call (it
is tiny), so activating an adapter takes effect without a restart.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.errors import InvalidInput, NotFound

SHIPPED_ROOT = Path(__file__).resolve().parent / "adapters"
ACTIVE_FILE = "ACTIVE"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass
class AdapterInfo:
    """One adapter version found in a root."""

    id: str
    path: Path
    root: str  # "user" | "shipped"
    metadata: dict[str, Any] = field(default_factory=dict)
    active: bool = False

    @property
    def problem(self) -> str | None:
        """Why the bot could not answer with this adapter (None when it can)."""
        return adapter_problem(self.path)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "path": str(self.path),
            "root": self.root,
            "active": self.active,
            "metadata": self.metadata,
        }
        problem = self.problem
        if problem is not None:
            data["problem"] = problem
        return data


def check_adapter_id(adapter_id: str) -> str:
    """``adapter_id`` if it names a folder inside a root, else :class:`InvalidInput` (no ``/``, ``..``)."""
    if not adapter_id or adapter_id.startswith(".") or "/" in adapter_id or "\\" in adapter_id:
        raise InvalidInput(
            f"{adapter_id!r} is not an adapter id: use a name from `hybridesk adapters list` "
            "(a folder name, without '/' or a leading '.').",
            code="bad_adapter_id",
        )
    return adapter_id


def adapter_problem(adapter_dir: Path) -> str | None:
    """What makes ``adapter_dir`` unusable for generation (config not JSON, no weights), or None."""
    try:
        config = json.loads((Path(adapter_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except OSError as exc:
        return f"{CONFIG_FILE} cannot be read ({exc.strerror})"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{CONFIG_FILE} is not valid JSON ({exc})"
    if not isinstance(config, dict):
        return f"{CONFIG_FILE} is not a JSON object"
    if not (Path(adapter_dir) / WEIGHTS_FILE).is_file():
        return f"the weights file {WEIGHTS_FILE} is missing"
    return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
    os.replace(tmp, path)


def write_metadata(adapter_dir: Path, metadata: dict[str, Any]) -> None:
    _write_atomic(Path(adapter_dir) / METADATA_FILE, json.dumps(metadata, indent=2, default=str) + "\n")


def read_metadata(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {"error": f"unreadable {METADATA_FILE} ({exc})"}
    if not isinstance(data, dict):  # callers read it with .get()
        return {"error": f"{METADATA_FILE} is not a JSON object"}
    return data


class AdapterRegistry:
    """Lists, shows and activates adapters across the user root and the shipped root."""

    def __init__(self, user_root: Path | None, shipped_root: Path | None = SHIPPED_ROOT) -> None:
        self.user_root = Path(user_root) if user_root is not None else None
        self.shipped_root = Path(shipped_root) if shipped_root is not None else None

    @property
    def roots(self) -> list[tuple[str, Path]]:
        """``(kind, path)`` in lookup order: the user's adapters shadow shipped ones of the same id."""
        out = []
        if self.user_root is not None:
            out.append(("user", self.user_root))
        if self.shipped_root is not None:
            out.append(("shipped", self.shipped_root))
        return out

    def root_paths(self) -> list[Path]:
        return [p for _, p in self.roots]

    def list(self) -> list[AdapterInfo]:
        """Every adapter, newest first."""
        active = self.active_id()
        seen: dict[str, AdapterInfo] = {}
        for kind, root in self.roots:
            if not root.is_dir():
                continue
            for child in sorted(root.iterdir()):
                if child.name in seen or not (child / "adapter_config.json").is_file():
                    continue
                seen[child.name] = AdapterInfo(
                    id=child.name,
                    path=child,
                    root=kind,
                    metadata=read_metadata(child),
                    active=child.name == active,
                )
        return sorted(seen.values(), key=lambda a: str(a.metadata.get("created_at", "")), reverse=True)

    def get(self, adapter_id: str) -> AdapterInfo:
        """The adapter ``adapter_id`` or :class:`NotFound` naming the known ones."""
        check_adapter_id(adapter_id)
        for kind, root in self.roots:
            path = root / adapter_id
            if (path / "adapter_config.json").is_file():
                return AdapterInfo(
                    id=adapter_id,
                    path=path,
                    root=kind,
                    metadata=read_metadata(path),
                    active=adapter_id == self.active_id(),
                )
        known = ", ".join(a.id for a in self.list()) or "none"
        raise NotFound(f"No adapter {adapter_id!r}; known adapters: {known}.", code="adapter_not_found")

    def active_id(self) -> str | None:
        """The active adapter id (user choice first, then the shipped default), or None."""
        for _, root in self.roots:
            marker = root / ACTIVE_FILE
            if marker.is_file():
                value = marker.read_text(encoding="utf-8").strip()
                if value == "none":
                    return None
                if value and not value.startswith(".") and "/" not in value and any((r / value / "adapter_config.json").is_file() for r in self.root_paths()):
                    return value
        return None

    def active(self) -> AdapterInfo | None:
        adapter_id = self.active_id()
        return None if adapter_id is None else self.get(adapter_id)

    def activate(self, adapter_id: str | None, *, root: Path | None = None) -> None:
        """Make ``adapter_id`` active (``None``: use the base model); written to the user root."""
        if adapter_id is not None:
            problem = self.get(adapter_id).problem  # get raises NotFound
            if problem is not None:
                raise InvalidInput(
                    f"Adapter {adapter_id!r} cannot be used: {problem}. The active adapter is still "
                    f"{self.active_id() or 'none (the base model)'}.",
                    code="broken_adapter",
                )
        target = root or self.user_root or self.shipped_root
        if target is None:
            raise InvalidInput("No adapter root configured to record the active adapter.", code="no_root")
        _write_atomic(Path(target) / ACTIVE_FILE, (adapter_id or "none") + "\n")
