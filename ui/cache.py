"""Every st.cache_* helper of the dashboard, in one place. Cached objects are shared by all
sessions: callers must never mutate them (make copies, as balance() and subset() do).

Datasets load with a progress bar. A cached function may not draw into an element created outside
it (Streamlit replays the drawing on a cache hit), so cache_resource only holds a per-key slot and
the load runs outside it, filling the slot once under a lock."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.data.augment import AugmentConfig
from core.config import to_dict
from core.data.config import DataConfig
from core.data.dataset import ImageDataset
from ui.images import upscale

Progress = Callable[[float, str], None]
DISPLAY_MIN = 256  # px: smaller images are shown enlarged (nearest neighbour) on Diagnose


def _key(config) -> str:
    return json.dumps(to_dict(config), sort_keys=True)


def source_stamp(source: str) -> str:
    """Changes when a folder source changes (files added to an upload), so its cache entry is
    replaced; constant for generated sources."""
    path = Path(str(source).split(":", 1)[1] if str(source).startswith("folder:") else str(source))
    if not path.exists():
        return ""
    try:
        dirs = [path, *[p for p in path.iterdir() if p.is_dir()]]
        return ",".join(f"{p.stat().st_mtime_ns}" for p in dirs)
    except OSError:
        return ""


@st.cache_resource(max_entries=6, show_spinner=False)
def _slot(kind: str, key: str) -> dict:
    return {"lock": threading.Lock()}


def _once(kind: str, key: str, make: Callable[[], object]):
    slot = _slot(kind, key)
    with slot["lock"]:  # two sessions asking for the same data load it once
        if "value" not in slot:
            slot["value"] = make()
    return slot["value"]


def dataset(config: DataConfig, progress: Progress | None = None) -> ImageDataset:
    """core.data.sources.load_dataset(config), cached by config and the source's modification stamp."""
    from core.data.sources import load_dataset

    key = _key(config) + "|" + source_stamp(config.source)
    # The source was typed into a form just now, by the user: a missing MNIST may download.
    return _once("dataset", key, lambda: load_dataset(config, progress, download=True))


def balanced(config: DataConfig, augment: AugmentConfig, per_class: int,
             progress: Progress | None = None) -> ImageDataset:
    """core.data.augment.balance of the cached dataset, cached by (data, augmentation, target)."""
    from core.data.augment import balance

    base = dataset(config)
    key = "|".join([_key(config), source_stamp(config.source), _key(augment), str(per_class)])
    return _once("balanced", key, lambda: balance(base, per_class, augment, seed=config.seed,
                                                  progress=progress))


@st.cache_data(max_entries=64, show_spinner=False)
def augment_preview(image: np.ndarray, augment_json: str, n: int, seed: int) -> list[np.ndarray]:
    """core.data.augment.preview of one (H, W) uint8 image; the config comes as JSON so it hashes."""
    from core.data.augment import preview
    from core.config import from_dict

    return preview(image, from_dict(AugmentConfig, json.loads(augment_json)), n=n, seed=seed)


@st.cache_resource(show_spinner=False)
def device_name() -> str:
    """core.device.describe() once per server (it imports torch and may query CUDA)."""
    from core.device import describe

    return describe()


@st.cache_resource(max_entries=4, show_spinner=False)
def generator(path: str, mtime_ns: int):
    """(Generator in eval mode on CPU, meta) of a checkpoint; `mtime_ns` renews the entry when
    the file is rewritten (`latest.safetensors` is, every few steps)."""
    from core.gan.models import load_generator

    return load_generator(path, device="cpu")


@st.cache_data(max_entries=32, show_spinner=False)
def generate(path: str, mtime_ns: int, z: np.ndarray) -> np.ndarray:
    """Images of the generator at `path` for latent vectors z (N, latent_dim): uint8 (N, S, S)
    (first channel; X-ray generators have one)."""
    from ui.images import sample_u8

    model, _ = generator(path, mtime_ns)
    return sample_u8(model, z)


@st.cache_data(max_entries=2, show_spinner=False)
def run_images(run_path: str, config_mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """core.gan.runs.run_images: a GAN run's training and held-out images, loaded once per run
    (rendering or decoding them again takes seconds), whatever samples are compared with them."""
    from core.gan.runs import run_images as load

    return load(run_path)


GRID_MAX_PX = 4096 * 4096       # an enlarged grid's pixels, at most
FIGURE_MAX_BYTES = 8 * 2**20    # a grid PNG embedded in a page, at most


@st.cache_data(max_entries=256, show_spinner=False)
def sample_grid(path: str, mtime_ns: int, min_px: int = 480) -> np.ndarray:
    """A sample-grid PNG as a uint8 array, enlarged by a whole factor (nearest neighbour, so
    pixels stay sharp) until it is at least `min_px` wide; cached by modification time."""
    with Image.open(path) as im:
        im = im.convert("L") if im.mode not in ("L", "RGB") else im.copy()
    factor = max(1, -(-min_px // max(im.width, 1)))
    # A grid from elsewhere may be 1 x 5,000,000 pixels: enlarged 480 times it would not fit in
    # memory. Ours are at most a few megapixels; the enlargement stays under GRID_MAX_PX.
    factor = max(1, min(factor, math.isqrt(GRID_MAX_PX // max(im.width * im.height, 1))))
    if factor > 1:
        im = im.resize((im.width * factor, im.height * factor), Image.NEAREST)
    return np.asarray(im)


@st.cache_data(max_entries=64, show_spinner=False)
def sample_figure(path: str, mtime_ns: int, caption: str) -> str:
    """A sample-grid PNG and its caption as one HTML figure, the image inline (a data URI),
    shown pixel-sharp at the column's width. One element, so the image and its caption change
    together; no media-file URL, so a refresh of the live panel can never point the browser at
    a file Streamlit has already dropped (the broken image after a steer)."""
    import base64
    import html

    size = Path(path).stat().st_size
    if size > FIGURE_MAX_BYTES:   # not one of ours: a page must not carry it to every browser
        return (f'<figure style="margin:0"><figcaption style="font-size:0.875rem;opacity:0.6">'
                f'{html.escape(caption)}: the file is {size / 2**20:.0f} MB, too large to show '
                f'here (a sample grid is at most a few MB)</figcaption></figure>')
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure style="margin:0"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(caption)}" style="width:100%;image-rendering:pixelated"/>'
            f'<figcaption style="font-size:0.875rem;opacity:0.6;text-align:center">'
            f'{html.escape(caption)}</figcaption></figure>')


def run_stamp(status: dict) -> str:
    """Changes whenever a run writes new metrics (its step or state moves)."""
    return f"{status.get('state')}|{status.get('step')}|{status.get('heartbeat')}"


@st.cache_data(max_entries=128, show_spinner=False)
def run_metrics(path: str, names: tuple[str, ...], stamp: str):
    """Long metrics table (step, name, value, t) of a run, re-read only when `stamp` changes."""
    from core.runs.store import RunStore

    return RunStore(path).metrics(list(names) or None)


@st.cache_data(max_entries=128, show_spinner=False)
def run_summary(path: str, stamp: str) -> dict:
    """{"header": its RunHeader, "config": its configs and info flattened ("data.source", ...),
    "final": {metric: last value}, "names": [metric names]}."""
    from core.runs.store import RunStore

    store = RunStore(path)
    header = store.header()
    both = {**header.configs, **header.info}
    flat = pd.json_normalize(both, sep=".").iloc[0].to_dict() if both else {}
    last = store.metrics().groupby("name")["value"].last() if store.metric_names() else {}
    return {"header": header, "config": flat, "final": dict(last), "names": store.metric_names()}


# ---- classifier runs and predictions (Classifier and Diagnose pages) ----------------------

@st.cache_data(max_entries=64, show_spinner=False)
def json_file(path: str, mtime_ns: int) -> dict:
    """A run's eval.json / ablation.json, re-read when the file changes."""
    return json.loads(Path(path).read_text())


@st.cache_data(max_entries=64, show_spinner=False)
def csv_file(path: str, mtime_ns: int) -> pd.DataFrame:
    return pd.read_csv(path)


@st.cache_resource(max_entries=4, show_spinner=False)
def classifier_model(path: str, mtime_ns: int):
    """(classifier in eval mode on CPU, meta) of a checkpoint, renewed when the file changes."""
    from core.classify.model import load_classifier

    return load_classifier(path, device="cpu")


@st.cache_data(max_entries=16, show_spinner=False)
def phantom_example_png(label: str, size: int, seed: int) -> bytes:
    """A built-in example: a phantom radiograph of `label` as PNG bytes (rendered, not stored)."""
    import io

    from core.data.phantom import render

    image, _ = render(label, 0, size=size, seed=seed)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


SHIPPED_GENERATOR = Path(__file__).resolve().parent.parent / "checkpoints" / \
    "generator-cxr-covid.safetensors"


def shipped_generator_path() -> Path | None:
    """The shipped real-X-ray generator, when this copy has it."""
    return SHIPPED_GENERATOR if SHIPPED_GENERATOR.is_file() else None


@st.cache_data(max_entries=8, show_spinner=False)
def shipped_samples(n: int, seed: int, mtime_ns: int) -> tuple[np.ndarray, dict]:
    """(uint8 (n, S, S) samples of the shipped generator for fixed latents, its meta)."""
    from ui.images import latents, sample_u8

    model, meta = generator(str(SHIPPED_GENERATOR), mtime_ns)
    return sample_u8(model, latents(seed, n, model.config.latent_dim)), meta


@st.cache_data(max_entries=16, show_spinner=False)
def generated_example_png(path: str, seed: int) -> bytes:
    """A generated X-ray of the generator at `path` for latent seed `seed`, as PNG bytes."""
    import io

    from ui.images import latents, sample_u8

    model, _ = generator(path, Path(path).stat().st_mtime_ns)
    image = sample_u8(model, latents(seed, 1, model.config.latent_dim))[0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@st.cache_data(max_entries=32, show_spinner=False)
def prediction(path: str, mtime_ns: int, digest: str, _data: bytes, name: str,
               display_max: int = 512) -> dict:
    """core.classify.predict.predict_file on uploaded bytes (hashed by `digest`), plus a display-sized image
    and its Grad-CAM overlay; {"ok": False, "error": ...} for a file that cannot be read."""
    from core.classify.gradcam import overlay
    from core.classify.predict import predict_file

    model, meta = classifier_model(path, mtime_ns)
    out = predict_file(model, meta, _data, name)
    if not out.get("ok"):
        return out
    img = out.pop("image")                                   # (H, W) float in [0, 1]
    h, w = img.shape
    scale = min(1.0, display_max / max(h, w))
    if scale < 1.0:
        img = np.asarray(Image.fromarray(img).resize((max(1, round(w * scale)),
                                                      max(1, round(h * scale))), Image.BILINEAR))
    # A small image (a 64 px phantom example) is enlarged, crisply, to at least DISPLAY_MIN px.
    factor = DISPLAY_MIN // max(h, w)
    out["display"] = upscale((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), factor)  # (h', w')
    out["overlays"] = {c: upscale(overlay(img, heat), factor)               # (h', w', 3) uint8
                       for c, heat in out.pop("heatmaps").items()}
    out["overlay"] = out["overlays"][out["heatmap_class"]]
    return out
