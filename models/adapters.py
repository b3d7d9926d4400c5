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
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.errors import Conflict, InvalidInput, NotFound

SHIPPED_ROOT = Path(__file__).resolve().parent / "adapters"
ACTIVE_FILE = "ACTIVE"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
log = logging.getLogger(__name__)
#: ``(ACTIVE file, name)`` pairs already warned about (``active_id`` runs on every reply)
_WARNED_MISSING: set[tuple[str, str]] = set()


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
    """What makes ``adapter_dir`` unusable for generation, or None.

    Cheap enough for every ``adapters list``: the config is parsed and its LoRA fields type-checked,
    and of the weights only the safetensors header is read (a truncated or overwritten file, whose
    loading fails in the middle of a customer's reply, is caught here).
    """
    try:
        config = json.loads((Path(adapter_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except OSError as exc:
        return f"{CONFIG_FILE} cannot be read ({exc.strerror})"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{CONFIG_FILE} is not valid JSON ({exc})"
    if not isinstance(config, dict):
        return f"{CONFIG_FILE} is not a JSON object"
    problem = config_problem(config)
    if problem is not None:
        return f"{CONFIG_FILE} is damaged: {problem}"
    weights = Path(adapter_dir) / WEIGHTS_FILE
    if not weights.is_file():
        return f"the weights file {WEIGHTS_FILE} is missing"
    problem = safetensors_problem(weights)
    if problem is not None:
        return f"the weights file {WEIGHTS_FILE} is damaged: {problem}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a peft LoRA ``adapter_config.json`` (as loaded), or None."""
    peft_type = config.get("peft_type", "LORA")
    if peft_type != "LORA":
        return f"peft_type is {peft_type!r}, not 'LORA'"
    rank = config.get("r")
    if not _is_int(rank) or rank < 1:
        return f"r (the LoRA rank) is {rank!r}, not a whole number of at least 1"
    alpha = config.get("lora_alpha", rank)
    if not _is_number(alpha) or alpha <= 0:
        return f"lora_alpha is {alpha!r}, not a positive number"
    dropout = config.get("lora_dropout", 0.0)
    if not _is_number(dropout) or not 0 <= dropout < 1:
        return f"lora_dropout is {dropout!r}, not a number from 0 to below 1"
    targets = config.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
        isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)
    ):
        return f"target_modules is {targets!r}, not a module name or a list of them"
    layers = config.get("layers_to_transform")
    if layers is not None and not _is_int(layers) and not (
        isinstance(layers, list) and all(_is_int(i) and i >= 0 for i in layers)
    ):
        return f"layers_to_transform is {layers!r}, not a layer index or a list of them"
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            return f"{key} is {config[key]!r}, not a JSON object"
    return None


#: bytes per element of each safetensors dtype
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: the safetensors library refuses headers larger than this
_MAX_HEADER = 100_000_000


def safetensors_problem(path: Path) -> str | None:
    """What makes ``path`` an unreadable safetensors file, reading its header only (None when it is sound).

    The layout: an 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype,
    shape and byte range, then the data, which the ranges must cover exactly.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"the file has {size} bytes, too few for a safetensors header"
            length = int.from_bytes(head, "little")
            if length > _MAX_HEADER or 8 + length > size:
                return f"its header claims {length} bytes, but the file has {size} (truncated or not safetensors)"
            raw = fh.read(length)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "its header is not valid JSON (not a safetensors file)"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    data_size = size - 8 - length
    tensors = 0
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        tensors += 1
        if not isinstance(spec, dict):
            return f"tensor {name!r} has no description"
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            return f"tensor {name!r} has no valid shape"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has no valid byte range"
        if offsets[1] > data_size:
            return (f"tensor {name!r} ends at byte {offsets[1]} of the data, but the file holds {data_size} "
                    "(truncated)")
        if dtype not in _DTYPE_SIZES:
            return f"tensor {name!r} has an unknown dtype {dtype!r}"
        count = 1
        for d in shape:
            count *= d
        if count * _DTYPE_SIZES[dtype] != offsets[1] - offsets[0]:
            return f"tensor {name!r} does not fill its byte range"
    if tensors == 0:
        return "it holds no tensors"
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

    def stray_folders(self) -> list[tuple[str, Path]]:
        """``(kind, folder)`` of folders in the roots that are not adapters (no ``adapter_config.json``):
        damaged or half-copied adapters that :meth:`list` leaves out. Hidden folders (``.runs``) are skipped."""
        out = []
        for kind, root in self.roots:
            if not root.is_dir():
                continue
            for child in sorted(root.iterdir()):
                if child.is_dir() and not child.name.startswith(".") and not (child / CONFIG_FILE).is_file():
                    out.append((kind, child))
        return out

    def existing(self, adapter_id: str) -> list[tuple[str, Path]]:
        """``(kind, folder)`` of every root that already holds a folder named ``adapter_id`` (adapter or not)."""
        check_adapter_id(adapter_id)
        return [(kind, root / adapter_id) for kind, root in self.roots if (root / adapter_id).exists()]

    def check_new_id(self, adapter_id: str) -> None:
        """:class:`Conflict` (``adapter_exists``) when ``adapter_id`` is taken in any root: a new adapter must
        neither replace one (its weights and metadata would be lost) nor shadow a shipped one of that id
        (the user root wins, so the bot would switch to it unasked)."""
        taken = self.existing(adapter_id)
        if taken:
            where = ", ".join(f"{kind}: {path}" for kind, path in taken)
            active = " (the active adapter)" if adapter_id == self.active_id() else ""
            raise Conflict(
                f"Adapter {adapter_id!r}{active} already exists ({where}); adapters are never overwritten. "
                "Choose another id with --set version=NEW_ID (see `hybridesk adapters list`).",
                code="adapter_exists",
            )

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
        """The active adapter id (user choice first, then the shipped default), or None.

        An ``ACTIVE`` file that names an adapter no root holds (deleted or moved by hand) is skipped, with
        a warning logged once per file and name: the bot falls back to the next root's choice.
        """
        return self._active_from([r for _, r in self.roots], warn=True)

    def _active_from(self, roots: list[Path], *, warn: bool = False) -> str | None:
        """The adapter the first of ``roots`` whose ``ACTIVE`` file names one (or "none") makes active."""
        for i, root in enumerate(roots):
            marker = root / ACTIVE_FILE
            if not marker.is_file():
                continue
            value = marker.read_text(encoding="utf-8").strip()
            if value == "none":
                return None
            if self._names_adapter(value):
                return value
            if warn and value and (str(marker), value) not in _WARNED_MISSING:
                _WARNED_MISSING.add((str(marker), value))
                log.warning("%s names adapter %r, which is missing; falling back to %s", marker, value,
                            self._active_from(roots[i + 1:]) or "the base model")
        return None

    def _names_adapter(self, value: str) -> bool:
        return bool(value) and not value.startswith(".") and "/" not in value and any(
            (r / value / CONFIG_FILE).is_file() for r in self.root_paths())

    def _fallback_after(self, root: Path) -> str | None:
        """The adapter the roots after ``root`` make active (what the bot falls back to)."""
        roots = [r for _, r in self.roots]
        return self._active_from(roots[roots.index(root) + 1:])

    def missing_active(self) -> list[tuple[Path, str]]:
        """``(ACTIVE file, name)`` of each ``ACTIVE`` file, in lookup order up to the one in force, that names
        an adapter which is missing (``adapters list`` says so)."""
        out = []
        for _, root in self.roots:
            marker = root / ACTIVE_FILE
            if not marker.is_file():
                continue
            value = marker.read_text(encoding="utf-8").strip()
            if value == "none" or self._names_adapter(value):
                break
            if value:
                out.append((marker, value))
        return out

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
