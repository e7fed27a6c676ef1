"""Image helpers for pages: tile a batch into one grid, PNG and ZIP bytes for downloads, spherical
interpolation of latent vectors, and writing generated images as a class-folder dataset."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def tile(images: np.ndarray, ncol: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """uint8 (N, H, W) -> one uint8 grid image with `ncol` columns and `pad` pixels between."""
    images = np.asarray(images)
    n, h, w = images.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad), fill, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    return grid


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so small images stay crisp in the browser."""
    factor = max(1, int(factor))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def sample_u8(model, z: np.ndarray, batch: int = 256) -> np.ndarray:
    """Images of a generator for latent vectors z (N, latent_dim): uint8 (N, S, S), first channel
    (X-ray generators have one), computed in batches without gradients."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(z), batch):
            x = model(torch.from_numpy(np.asarray(z[start:start + batch], dtype=np.float32)))
            out.append(((x[:, 0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.uint8)


def zip_of_pngs(images: np.ndarray, prefix: str = "sample") -> bytes:
    """A ZIP (in memory) of one PNG per image: prefix_0000.png, ..."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, img in enumerate(images):
            zf.writestr(f"{prefix}_{i:04d}.png", png(img))
    return buf.getvalue()


def latents(seed: int, n: int, dim: int) -> np.ndarray:
    """n standard-normal latent vectors (n, dim), the same for the same seed."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def slerp(z0: np.ndarray, z1: np.ndarray, steps: int) -> np.ndarray:
    """`steps` points on the great circle from z0 to z1 (dim,), shape (steps, dim): spherical
    interpolation keeps the norm a Gaussian latent expects, unlike a straight line."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    a, b = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
    omega = np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))
    if omega < 1e-6:  # (anti)parallel: fall back to a straight line
        return ((1 - t) * z0 + t * z1).astype(np.float32)
    out = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)
    return out.astype(np.float32)


def export_dataset(images: np.ndarray, class_name: str, root: Path, name: str) -> Path:
    """Write images as root/<name>-<time>/<class_name>/synthetic_0000.png, a class-folder dataset
    the Classifier page can read; returns the dataset folder."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in class_name) or "class"
    out = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / safe).mkdir(parents=True, exist_ok=False)
    for i, img in enumerate(images):
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(out / safe / f"synthetic_{i:04d}.png")
    return out
