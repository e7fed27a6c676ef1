"""The in-memory image set every data source returns (`ImageDataset`), and the decoding loop
they share. Its own module so that core.data.sources and core.data.natural both import it without a cycle."""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

Progress = Callable[[float, str], None]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm",
                  ".ppm", ".dcm", ".dicom"}


def walk_files(root) -> list:
    """Every file under `root` (Paths), as os.walk lists them top-down with sorted names, hidden
    files and folders (.DS_Store, __MACOSX) and linked folders left out. With its own stack:
    os.walk recurses, and a folder nested a thousand deep (a data set from elsewhere) raised
    RecursionError."""
    from pathlib import Path

    out, stack = [], [str(root)]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:   # unreadable, or a path too long for the system: as os.walk, skipped
            continue
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not e.name.startswith((".", "__MACOSX")) and not e.is_symlink():
                    subdirs.append(e.path)
            elif not e.name.startswith("."):
                out.append(Path(e.path))
        stack.extend(reversed(subdirs))   # the first folder is walked next, as os.walk does
    return out


def _float(images: np.ndarray) -> torch.Tensor:
    """uint8 images as float in [-1, 1]. A cache entry's images are a read-only mapping;
    from_numpy warns about that, but only the new float tensor is ever written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(images).float().div_(127.5).sub_(1.0)


class ImageDataset(Dataset):
    """Images held in memory as uint8 (N, C, S, S); items are (float tensor (C, S, S) in [-1, 1],
    label, metadata dict). Metadata keys used across the project: "patient", "source", "file",
    "augmented" (True for Augmentor copies), "synthetic" (True for GAN samples)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str],
                 metas: list[dict] | None = None, skipped: list[tuple[str, str]] | None = None,
                 name: str = ""):
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3:  # (N, S, S) -> (N, 1, S, S)
            images = images[:, None]
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.metas = metas if metas is not None else [{} for _ in range(len(images))]
        self.skipped = skipped or []   # (file, reason) for inputs that could not be used
        self.name = name
        assert len(self.images) == len(self.labels) == len(self.metas)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = _float(self.images[i])   # (C, S, S) in [-1, 1]
        return x, int(self.labels[i]), self.metas[i]

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def patients(self) -> list[str]:
        """Patient id per item; an item without one is its own patient."""
        return [str(m.get("patient") or f"item-{i}") for i, m in enumerate(self.metas)]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def tensor(self) -> torch.Tensor:
        """All images as one float tensor (N, C, S, S) in [-1, 1], e.g. to keep on the GPU."""
        return _float(self.images)

    def subset(self, indices) -> "ImageDataset":
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDataset(self.images[idx], self.labels[idx], self.classes,
                            [self.metas[i] for i in idx], self.skipped, self.name)

    def concat(self, other: "ImageDataset") -> "ImageDataset":
        if other.classes != self.classes:
            raise ValueError(f"class lists differ: {self.classes} vs {other.classes}")
        return ImageDataset(np.concatenate([self.images, other.images]),
                            np.concatenate([self.labels, other.labels]), self.classes,
                            self.metas + other.metas, self.skipped + other.skipped, self.name)



def decode_parallel(items: list, decode: Callable, progress: Progress | None) -> tuple[list, list]:
    """Run `decode(item) -> (result, None) | (None, (file, reason))` over items, in order, on a
    few threads for large inputs (Pillow and zlib release the GIL). Returns (results, skipped)."""
    results, skipped = [], []
    n = len(items)
    step = max(1, n // 100)
    t0 = time.monotonic()
    workers = 1 if n < 256 else min(4, os.cpu_count() or 1)
    chunk = 256 * workers   # submitted a chunk at a time: 100,000 pending futures cost 300 MB
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = (r for start in range(0, n, chunk) for r in pool.map(decode, items[start:start + chunk]))
        for i, (ok, bad) in enumerate(done):
            if ok is not None:
                results.append(ok)
            else:
                skipped.append(bad)
            if progress is not None and (i + 1) % step == 0:
                rate = (i + 1) / max(time.monotonic() - t0, 1e-6)
                progress((i + 1) / n, f"decoded {i + 1:,} of {n:,} images · {rate:,.0f}/s · "
                                      f"about {(n - i - 1) / rate:,.0f} s left")
    if progress is not None:
        progress(1.0, f"decoded {n:,} images, {len(skipped):,} skipped")
    return results, skipped
