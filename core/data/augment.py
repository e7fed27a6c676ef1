"""Classic augmentation on Augmentor: a pipeline built from AugmentConfig, reproducible batch
augmentation, a live preview for the dashboard, class balancing with marked copies, and an
on-the-fly transform for training."""

from __future__ import annotations

import random
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import Augmentor
import numpy as np
import torch
from PIL import Image

from core.config import checked, ranged, to_dict
from core.data.dataset import ImageDataset
from core.errors import UserError


@dataclass
class AugmentConfig:
    # Per operation a probability and magnitude(s). Probability 0 (or a magnitude that makes the
    # operation the identity) leaves the operation out: Augmentor rejects probability 0.
    rotate_p: float = ranged(0.0, 1.0, 0.7)
    rotate_deg: float = ranged(0.0, 25.0, 5.0)   # the report rotated 2-5 degrees; whole degrees
    # The report used flips, but a left-right flip moves the heart to the right side of the chest
    # (an anatomy a test X-ray will almost never show); keep that in mind when judging results.
    flip_lr_p: float = ranged(0.0, 1.0, 0.5)
    shear_p: float = ranged(0.0, 1.0, 0.3)
    shear_deg: float = ranged(0.0, 25.0, 5.0)
    skew_p: float = ranged(0.0, 1.0, 0.0)
    skew_mag: float = ranged(0.0, 1.0, 0.1)      # skew_tilt: 1.0 means 45 degrees
    distortion_p: float = ranged(0.0, 1.0, 0.0)
    # Grid cells per side (more = finer distortion) and the pixels each vertex may move; the
    # upper bounds keep a config file from asking Augmentor for a million-cell mesh.
    distortion_grid: int = ranged(2, 32, 4)
    distortion_mag: int = ranged(0, 32, 2)
    # Zoom factors: Augmentor enlarges the image by the factor before cropping, so 1e6 would
    # ask for terabytes; 4 is far past any use on a radiograph.
    zoom_p: float = ranged(0.0, 1.0, 0.0)
    zoom_min: float = ranged(0.01, 4.0, 1.0)
    zoom_max: float = ranged(0.01, 4.0, 1.1)
    brightness_p: float = ranged(0.0, 1.0, 0.0)
    brightness_min: float = ranged(0.0, 10.0, 0.9)
    brightness_max: float = ranged(0.0, 10.0, 1.1)
    contrast_p: float = ranged(0.0, 1.0, 0.0)
    contrast_min: float = ranged(0.0, 10.0, 0.9)
    contrast_max: float = ranged(0.0, 10.0, 1.1)
    seed: int = 0                    # mixed with each call's seed; seeds torch_transform's stream


def _check(config: AugmentConfig) -> None:
    """Raise UserError, with a message for a person, for a setting Augmentor would reject or
    that is out of its field's range (a config file may hold anything)."""
    try:
        checked(AugmentConfig, to_dict(config))
    except ValueError as exc:
        raise UserError(f"Augmentation setting {exc}") from None
    for name in ("rotate_p", "flip_lr_p", "shear_p", "skew_p", "distortion_p", "zoom_p",
                 "brightness_p", "contrast_p"):
        p = getattr(config, name)
        if not 0.0 <= p <= 1.0:
            raise UserError(f"Augmentation probability {name} must be between 0 and 1, not {p}.")
    if not 0 <= config.rotate_deg <= 25:
        raise UserError(f"Rotation must be 0-25 degrees (Augmentor's limit), "
                        f"not {config.rotate_deg}.")
    if not 0 <= config.shear_deg <= 25:
        raise UserError(f"Shear must be 0-25 degrees (Augmentor's limit), not {config.shear_deg}.")
    if not 0 <= config.skew_mag <= 1:
        raise UserError(f"Skew magnitude must be between 0 and 1, not {config.skew_mag}.")
    if config.distortion_grid < 2:
        raise UserError(f"The distortion grid needs at least 2 cells per side, "
                        f"not {config.distortion_grid}.")
    if config.distortion_mag < 0:
        raise UserError(f"Distortion magnitude cannot be negative ({config.distortion_mag}).")
    if not 0 < config.zoom_min <= config.zoom_max:
        raise UserError(f"Zoom needs 0 < minimum <= maximum, "
                        f"not {config.zoom_min}-{config.zoom_max}.")
    for op in ("brightness", "contrast"):
        lo, hi = getattr(config, f"{op}_min"), getattr(config, f"{op}_max")
        if not 0 <= lo <= hi:
            raise UserError(f"The {op} factor needs 0 <= minimum <= maximum, not {lo}-{hi}.")


def build_pipeline(config: AugmentConfig) -> Augmentor.Pipeline:
    """An Augmentor pipeline with no source directory; operations in a fixed order (geometry,
    then intensity). An operation whose probability is 0, or whose magnitude makes it the
    identity, is left out."""
    _check(config)
    c = config
    p = Augmentor.Pipeline()
    if c.rotate_p > 0 and c.rotate_deg > 0:
        p.rotate(probability=c.rotate_p, max_left_rotation=c.rotate_deg,
                 max_right_rotation=c.rotate_deg)
    if c.flip_lr_p > 0:
        p.flip_left_right(probability=c.flip_lr_p)
    if c.shear_p > 0 and c.shear_deg > 0:
        p.shear(probability=c.shear_p, max_shear_left=c.shear_deg, max_shear_right=c.shear_deg)
    if c.skew_p > 0 and c.skew_mag > 0:
        p.skew_tilt(probability=c.skew_p, magnitude=c.skew_mag)
    if c.distortion_p > 0 and c.distortion_mag > 0:
        p.random_distortion(probability=c.distortion_p, grid_width=int(c.distortion_grid),
                            grid_height=int(c.distortion_grid), magnitude=int(c.distortion_mag))
    if c.zoom_p > 0 and not c.zoom_min == c.zoom_max == 1.0:
        p.zoom(probability=c.zoom_p, min_factor=c.zoom_min, max_factor=c.zoom_max)
    if c.brightness_p > 0 and not c.brightness_min == c.brightness_max == 1.0:
        p.random_brightness(probability=c.brightness_p, min_factor=c.brightness_min,
                            max_factor=c.brightness_max)
    if c.contrast_p > 0 and not c.contrast_min == c.contrast_max == 1.0:
        p.random_contrast(probability=c.contrast_p, min_factor=c.contrast_min,
                          max_factor=c.contrast_max)
    return p


# --- randomness -------------------------------------------------------------------------------
# Augmentor draws from the global `random` module and numpy's global RandomState. We keep our
# own stream (a saved state of each) and swap it in around every use, restoring the caller's
# global state afterwards; the lock keeps two threads (e.g. Streamlit sessions) from
# interleaving their swaps.
_LOCK = threading.RLock()


class _Stream:
    def __init__(self, *seeds: int):
        py_seed, np_seed = np.random.SeedSequence([int(s) & 0xFFFFFFFF for s in seeds]) \
            .generate_state(2)
        self.py_state = random.Random(int(py_seed)).getstate()
        self.np_state = np.random.RandomState(int(np_seed)).get_state()

    @contextmanager
    def active(self):
        with _LOCK, warnings.catch_warnings():
            # Augmentor's skew uses np.matrix, which NumPy flags as pending deprecation.
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            saved_py, saved_np = random.getstate(), np.random.get_state()
            random.setstate(self.py_state)
            np.random.set_state(self.np_state)
            try:
                yield
            finally:
                self.py_state, self.np_state = random.getstate(), np.random.get_state()
                random.setstate(saved_py)
                np.random.set_state(saved_np)


def _apply(pipeline: Augmentor.Pipeline, image: Image.Image) -> Image.Image:
    # Same rule as Augmentor's torch_transform: each op runs with its own probability.
    size = image.size
    for op in pipeline.operations:
        if random.uniform(0, 1) < op.probability:
            image = op.perform_operation([image])[0]
    if image.size != size:  # guard: every op used here keeps the size, but rounding could not
        image = image.resize(size, resample=Image.BICUBIC)
    return image


# --- array <-> PIL ----------------------------------------------------------------------------
def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Any image array -> uint8. 16-bit (and other integer) data is scaled by its dtype's range
    (Augmentor needs 8-bit 'L'); floats are read as [-1, 1] when negative values occur, else
    as [0, 1]."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        x = (a.astype(np.float64) - max(info.min, 0)) / (info.max - max(info.min, 0))
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        if x.size and np.nanmin(x) < 0:
            x = (x + 1.0) / 2.0
    else:
        raise UserError(f"Cannot augment images of type {a.dtype}.")
    return np.round(np.clip(np.nan_to_num(x), 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_pil(chw: np.ndarray) -> Image.Image:
    # (C, H, W) uint8 with C = 1 or 3 -> 'L' or 'RGB'
    hwc = chw[0] if chw.shape[0] == 1 else np.ascontiguousarray(chw.transpose(1, 2, 0))
    return Image.fromarray(hwc)


def _from_pil(image: Image.Image, channels: int) -> np.ndarray:
    a = np.asarray(image, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)  # (C, H, W)


def _augment_nchw(pipeline: Augmentor.Pipeline, images: np.ndarray) -> np.ndarray:
    # (N, C, H, W) uint8 -> (N, C, H, W) uint8; call inside an active stream
    if not pipeline.operations:
        return images.copy()
    out = np.empty_like(images)
    for i, chw in enumerate(images):
        out[i] = _from_pil(_apply(pipeline, _to_pil(chw)), images.shape[1])
    return out


def _as_nchw(images: np.ndarray) -> np.ndarray:
    a = _to_uint8(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise UserError(f"Expected images shaped (N, H, W) or (N, 1|3, H, W), got {a.shape}.")
    return a


def augment_images(images: np.ndarray, config: AugmentConfig, seed: int) -> np.ndarray:
    """Augment a batch: (N, H, W) or (N, C, H, W) images (uint8; 16-bit or float are converted
    to uint8 first) -> uint8 of the same shape. The same (config, seed) gives the same output;
    the caller's global `random`/numpy state is left untouched."""
    shape = np.shape(images)
    batch = _as_nchw(images)
    pipeline = build_pipeline(config)
    with _Stream(config.seed, seed).active():
        out = _augment_nchw(pipeline, batch)
    return out.reshape(shape)


def preview(image: np.ndarray, config: AugmentConfig, n: int = 8,
            seed: int = 0) -> list[np.ndarray]:
    """n augmented versions of one image, as uint8 (H, W) arrays, for the live preview. The input
    may be (H, W) or (1, H, W), uint8, 16-bit, or float in [0, 1] or [-1, 1]."""
    a = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise UserError(f"Preview needs one grayscale image (H, W), got shape {a.shape}.")
    batch = np.repeat(_to_uint8(a)[None], max(int(n), 0), axis=0)  # (n, H, W)
    return list(augment_images(batch, config, seed))


def balance(dataset: ImageDataset, per_class: int, config: AugmentConfig, seed: int = 0,
            indices: np.ndarray | None = None,
            progress: Callable[[float, str], None] | None = None) -> ImageDataset:
    """Grow every class to `per_class` items with augmented copies of its items (only those in
    `indices`, e.g. the training split, when given). Returns `dataset` (or its subset at
    `indices`) followed by the new items. A new item's metadata copies its source's plus
    {"augmented": True, "augmented_from": source index in `dataset`, "patient": the source's
    patient}, so a patient-level split keeps it with its source. Kept items without a patient id
    get the id `dataset.patients` gives them ("item-<index>") for the same reason. A class with
    no items, or already at `per_class`, gets no copies. `dataset` is not modified."""
    if per_class < 1:
        raise UserError(f"The target per class must be at least 1, not {per_class}.")
    n = len(dataset)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise UserError(f"Training indices fall outside the dataset of {n} images.")
    idx = idx % max(n, 1)  # negative indices -> positions, so augmented_from is always >= 0
    patients = dataset.patients

    # The source of every copy: per class, its items in a shuffled order, reshuffled each pass,
    # so every source is used about equally often (555 -> 2,055 uses each COVID image 2-3 times).
    rng = np.random.default_rng([config.seed & 0xFFFFFFFF, seed & 0xFFFFFFFF])
    sources: list[int] = []
    labels = dataset.labels[idx]
    for c in range(len(dataset.classes)):
        members = idx[labels == c]
        need = per_class - len(members)
        if need <= 0 or len(members) == 0:
            continue
        passes = -(-need // len(members))
        order = np.concatenate([rng.permutation(members) for _ in range(passes)])[:need]
        sources.extend(int(i) for i in order)

    kept_metas = [dict(dataset.metas[i]) for i in idx]
    for meta, i in zip(kept_metas, idx):
        if not meta.get("patient"):
            meta["patient"] = patients[i]
    kept = ImageDataset(dataset.images[idx], dataset.labels[idx], dataset.classes, kept_metas,
                        list(dataset.skipped), dataset.name)
    if not sources:
        if progress:
            progress(1.0, "every class already has enough images")
        return kept

    src = np.asarray(sources, dtype=np.int64)
    pipeline = build_pipeline(config)
    new_images = np.empty((len(src),) + dataset.images.shape[1:], dtype=np.uint8)
    stream = _Stream(config.seed, seed)
    chunk = 256  # release the lock between chunks so a live preview is not starved
    for start in range(0, len(src), chunk):
        part = src[start:start + chunk]
        with stream.active():
            new_images[start:start + len(part)] = _augment_nchw(pipeline, dataset.images[part])
        if progress:
            done = start + len(part)
            progress(done / len(src), f"augmented {done}/{len(src)} images")
    new_metas = [{**dataset.metas[i], "augmented": True, "augmented_from": int(i),
                  "patient": patients[i]} for i in src]
    return kept.concat(ImageDataset(new_images, dataset.labels[src], dataset.classes, new_metas,
                                    name=dataset.name))


def torch_transform(config: AugmentConfig) -> Callable:
    """An on-the-fly transform for training, built on Augmentor's `pipeline.torch_transform()`.
    Takes a PIL image (returns PIL, as Augmentor does), a uint8 array (H, W)/(C, H, W), or a
    float tensor (C, H, W) or (N, C, H, W) in [-1, 1] (returns the same shape, dtype and device).
    Its random stream is seeded from config.seed in the main process, and from torch's per-worker
    seed inside DataLoader workers (so workers and epochs differ, yet repeat under
    torch.manual_seed); the global random state is never disturbed."""
    pipeline = build_pipeline(config)
    transform = pipeline.torch_transform()  # Augmentor: PIL -> PIL, drawing from global `random`
    state = {"stream": _Stream(config.seed), "worker_seed": None}

    def stream() -> _Stream:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != state["worker_seed"]:
            state["stream"], state["worker_seed"] = _Stream(config.seed, info.seed), info.seed
        return state["stream"]

    def on_pil(image: Image.Image) -> Image.Image:
        if image.mode not in ("L", "RGB"):  # 16-bit 'I;16'/'I', RGBA, ... -> 8-bit first
            a = _to_uint8(np.asarray(image))
            image = Image.fromarray(a if a.ndim == 2 else a[..., :3]).convert(
                "L" if a.ndim == 2 else "RGB")
        with stream().active():
            return transform(image)

    def apply(x):
        if isinstance(x, Image.Image):
            return on_pil(x)
        if isinstance(x, torch.Tensor):
            batch = x.detach().float().cpu()
            batch = batch[None] if batch.dim() == 3 else batch  # (N, C, H, W)
            u8 = ((batch + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            with stream().active():
                out = _augment_nchw(pipeline, _as_nchw(u8))
            y = torch.from_numpy(out).float().div_(127.5).sub_(1.0)
            return y.reshape(x.shape).to(device=x.device, dtype=x.dtype)
        a = np.asarray(x)
        if a.ndim == 2:
            return np.asarray(on_pil(Image.fromarray(_to_uint8(a))))
        with stream().active():
            return _augment_nchw(pipeline, _as_nchw(a[None]))[0]

    return apply
