"""Checkpoints that cannot run code: model snapshots as safetensors with their config as JSON in the
header, resumable training state through torch.load(weights_only=True); every write is atomic."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from core.atomic import atomic_path
from core.errors import CheckpointError, UserError

# A checkpoint's config may not describe a model larger than this (counted before any weight is
# allocated): the largest networks here, the report's at 256 px, have a few million.
MAX_PARAMETERS = 200_000_000

_META_KEY = "xray_gan_studio"


def save_model(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write an inference snapshot: tensors as safetensors, `meta` (kind, configs, classes, step...)
    as JSON in the header, so the file alone rebuilds its model. Temp file then rename: a reader
    (or a crash) never sees half a checkpoint."""
    path = Path(path)
    # safetensors refuses shared or non-contiguous storage; BatchNorm's num_batches_tracked is fine.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return path


def read_meta(path: str | Path) -> dict:
    """The JSON metadata of a snapshot without loading its tensors (cheap, for listings)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not a readable model checkpoint ({exc})") from None
    if raw is None:
        raise CheckpointError(f"{path.name} is a safetensors file but not an X-Ray GAN Studio checkpoint")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path.name} has corrupt metadata") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path.name}: its metadata is not a JSON object")
    return meta


def load_model(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, meta) of a snapshot; `kind` (e.g. "generator", "classifier") is checked."""
    meta = read_meta(path)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{Path(path).name} holds a {meta.get('kind')!r} model, not a {kind!r}")
    try:
        return load_file(str(path), device="cpu"), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{Path(path).name} is corrupt ({exc})") from None


def load_into(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], name: str = "checkpoint") -> None:
    """load_state_dict with a clear message instead of a wall of missing-key text."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{name} does not match the model its config describes: {first}") from None


def save_training_state(path: str | Path, state: dict) -> Path:
    """Resumable state (optimisers, RNG states, step, fixed z): plain tensors, numbers and dicts
    only, so that load_training_state can use weights_only=True."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_training_state(path: str | Path) -> dict:
    """Load resumable state without executing code from the file (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training state not found: {path}")
    if path.stat().st_size == 0:   # a disk that filled, or a copy that failed
        raise CheckpointError(f"{path} is empty (zero bytes); it cannot be resumed from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "refuse this file"
        if "Weights only load failed" in str(exc):
            raise CheckpointError(f"{path.name} was refused: it holds objects other than tensors and "
                                  "numbers, and loading it could run code") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} cannot be read: {first}") from None


def checked_budget(cls, data, build, name: str, what: str):
    """The config `data` (from a file or a form) checked against its dataclass
    (core.config.checked), and the parameters of the model `build(config)` makes counted on
    PyTorch's meta device, nothing allocated: CheckpointError naming `name` and the field, or
    the size, otherwise."""
    from core.config import checked

    try:
        config = checked(cls, data)
        with torch.device("meta"):   # shapes only: count before allocating anything
            n_params = sum(p.numel() for p in build(config).parameters())
    except (ValueError, TypeError, UserError) as exc:
        raise CheckpointError(f"{name} has no usable {what} config: {exc}") from None
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{name} describes a {what} of {n_params:,} parameters (its filters "
                              f"and width), more than the {MAX_PARAMETERS:,} allowed; refused")
    return config


def build_checked(cls, data, build, name: str, what: str):
    """(config, model) for a config read from a checkpoint that may come from anywhere:
    checked_budget, then built. CheckpointError naming the file and the problem otherwise."""
    config = checked_budget(cls, data, build, name, what)
    return config, build(config)
