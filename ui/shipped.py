"""The shipped real-X-ray generator's samples, shown on Home and Samples from a fresh clone, with the
label its model card gives (what it was trained on, and that the images are synthetic)."""

from __future__ import annotations

import streamlit as st

from ui import cache
from ui.errors import attempt
from ui.images import tile, upscale

SEED = 7  # fixed latents: the same samples on every visit and in every screenshot


def generator_samples(n: int, columns: int) -> None:
    """A grid of `n` samples of the shipped generator with its label; nothing when this copy
    has no shipped generator."""
    path = cache.shipped_generator_path()
    if path is None:
        return
    got = attempt(cache.shipped_samples, n, SEED, path.stat().st_mtime_ns,
                  what="sampling the shipped generator")
    if got is None:
        return
    images, meta = got
    label = (meta.get("card") or {}).get("label") or "shipped generator (synthetic images)"
    st.image(upscale(tile(images, ncol=columns), 2), width="stretch",
             caption=f"Synthetic chest X-rays, not patients: {label}.")
