"""A GAN run seen from outside its training loop: its named presets, the images it trains on
(and holds out), its generator checkpoint, its samples and the class it learned. The training
job, the metrics, the copy check, the classifier's synthetic arm and the pages all read runs
through here; none of them imports the training job."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from core.budget import mapped, resident_limit
from core.config import checked
from core.data.config import DataConfig
from core.data.sources import load_dataset
from core.errors import CheckpointError, UserError
from core.gan.trainer import TrainConfig
from core.gan.models import CriticConfig, GeneratorConfig
from core.runs.header import RunHeader
from core.data.splits import holdout_patients

HELDOUT_MAX = 256      # images the memorisation check holds out and scores, at most


# Named starting points; explicit flags override them. cpu-tiny: about 110 s of CPU time on one
# thread (docs/performance.md); one thread because these tiny convolutions gain little from a
# second one, and OpenMP spin-waits slowed them 5-10x whenever the CPU was shared (the app runs
# beside the job). n_critic 3 for 900 steps gave clearer lungs than 5 for 600 at the same cost.
# gpu: the report's networks at 128 px; 24 ms per step on an H100, so 20,000 steps take about
# 9.5 minutes with start-up (docs/performance.md).
PRESETS = {
    "cpu-tiny": {
        "data": {"size": 32, "phantom_per_class": 300},           # the app's default data
        "generator": {"latent_dim": 64, "width": 0.125},      # filters 32/16/8
        "critic": {"width": 0.5},                             # filters 8/16/32/64
        "train": {"batch_size": 16, "steps": 900, "n_critic": 3, "lr_critic": 2e-4, "lr_gen": 2e-4,
                  "betas": (0.5, 0.9), "log_every": 10, "sample_every": 50,
                  "checkpoint_every": 300, "n_samples": 36, "compile": "off", "threads": 1},
    },
    "gpu": {
        "data": {"size": 128},
        "generator": {},
        "critic": {},
        "train": {"batch_size": 64, "steps": 20000, "log_every": 25, "sample_every": 250,
                  "checkpoint_every": 2000},
    },
}


def load_images(data_config: DataConfig, gen_config: GeneratorConfig, config: TrainConfig,
                rank: int = 0, world: int = 1, download: bool = False) -> tuple[Tensor, Tensor, list]:
    """(training images, held-out images, classes) of a run, uint8 (N, C, S, S) on the CPU, in
    memory (see training_images)."""
    images, rows, held, classes = training_images(data_config, gen_config, config, rank, world,
                                                  download)
    return (images if rows is None else images[rows]), held, classes


def training_images(data_config: DataConfig, gen_config: GeneratorConfig, config: TrainConfig,
                    rank: int = 0, world: int = 1, download: bool = False
                    ) -> tuple[Tensor, Tensor | None, Tensor, list]:
    """(images, rows, held-out images, classes) of a run, uint8 (N, C, S, S) on the CPU: the
    training images are images[rows], or all of `images` when rows is None. A training set
    larger than core.budget.resident_limit() that comes memory-mapped from the decoded-data
    cache stays mapped (rows set), and the trainer reads its batches from the file; a smaller
    one is copied into memory (rows None). The held-out patients are the same on every process,
    on resume and when core.gan.nearest reloads a finished run's images (seeded); under torchrun
    each process then trains on its own shard of the rest. `download`: the spec is the user's
    own flag (core.data.sources.load_dataset)."""
    dataset = load_dataset(data_config, download=download)   # narrowed to data_config.classes
    with warnings.catch_warnings():   # a mapped cache entry is read-only; nothing writes to it
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(dataset.images)                   # uint8 (N, C, S, S)
    if images.shape[1] != gen_config.channels or images.shape[-1] != gen_config.size:
        raise UserError(f"the data are {tuple(images.shape[1:])} but the generator makes "
                        f"({gen_config.channels}, {gen_config.size}, {gen_config.size}) images")
    if len(images) < 2:
        raise UserError("the GAN needs at least 2 training images")
    keep, held = holdout_patients(dataset, config.holdout, config.seed, max_images=HELDOUT_MAX)
    rows, held_images = torch.from_numpy(keep), images[torch.from_numpy(held)]
    if world > 1:   # DistributedSampler-style: each rank keeps its own interleaved shard
        rows = rows[rank::world]
    if mapped(dataset.images) and len(rows) * images[0].numel() > resident_limit():
        return images, rows, held_images, dataset.classes
    return images[rows], None, held_images, dataset.classes


def run_images(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) uint8 (N, C, S, S) images of a GAN run, reloaded exactly as it split
    them (rendering or decoding them again: seconds, so callers keep the answer)."""
    from core.runs.store import RunStore

    header = RunStore(run_dir).header()
    if not all(header.section(k) for k in ("data", "generator", "train")):
        raise UserError(f"{run_dir} holds no GAN training config")
    try:
        data, gen, _, train = saved_configs(header)
    except ValueError as exc:
        raise UserError(f"{run_dir}: {exc}") from None
    images, held, _ = load_images(data, gen, train)   # read from disk only: never downloads
    return images.numpy(), held.numpy()


def saved_configs(header: RunHeader) -> tuple[DataConfig, GeneratorConfig, CriticConfig, TrainConfig]:
    """The configs a GAN run's config.json holds, as it trained with them; checked field by
    field, since a run directory may come from somewhere else (ValueError naming the bad field)."""
    parts = {}
    for key, cls in (("data", DataConfig), ("generator", GeneratorConfig), ("critic", CriticConfig),
                     ("train", TrainConfig)):
        value = header.configs.get(key, {} if key == "critic" else None)
        try:
            # A run saved before the held-out check trained on every image, before the weight
            # average and DiffAugment without either: keep it that way.
            parts[key] = checked(cls, {"holdout": 0.0, "ema_decay": 0.0, "diffaugment": "",
                                       **value} if key == "train" and isinstance(value, dict)
                                 else value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'{key}' in config.json: {exc}") from None
    return parts["data"], parts["generator"], parts["critic"], parts["train"]


def run_checkpoint(run: str | Path) -> Path:
    """The generator snapshot of a GAN run directory (checkpoints/latest), or `run` itself."""
    run = Path(run)
    if run.is_file():
        return run
    for cand in (run / "checkpoints" / "latest.safetensors", run / "latest.safetensors"):
        if cand.is_file():
            return cand
    raise CheckpointError(f"no generator checkpoint in {run} (expected checkpoints/latest.safetensors)")


def run_class(meta: dict) -> str | None:
    """The one class a GAN was trained on, from its checkpoint meta: meta["class"], or a
    single-class meta["data"]["classes"] / meta["classes"]; None when it does not say."""
    if isinstance(meta.get("class"), str):
        return meta["class"]
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    for classes in (data.get("classes"), meta.get("classes")):
        if isinstance(classes, (list, tuple)) and len(classes) == 1:
            return str(classes[0])
    return None


def to_u8(x: torch.Tensor) -> np.ndarray:
    # (N, C, S, S) in [-1, 1] -> uint8, quantised like every real image
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def resize_u8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, C, S, S) -> (N, C, size, size) with the resize used for real images."""
    from core.data.imageio import to_uint8

    if images.shape[-1] == size:
        return images
    out = np.empty(images.shape[:2] + (size, size), np.uint8)
    for i, img in enumerate(images):
        for c in range(img.shape[0]):
            out[i, c] = to_uint8(img[c], size)
    return out


def sample_run(run: str | Path, n: int, seed: int = 0, size: int | None = None, raw: bool = False
               ) -> tuple[np.ndarray, dict, str | None]:
    """n images of a GAN run (or generator file) as uint8 (n, C, S, S), resized to `size` when
    given; returns (images, generator meta, the run's class or None). The snapshot's sampling
    weights (its weight average when it has one), or with `raw` the raw generator's."""
    from core.gan.models import load_generator

    gen, meta = load_generator(run_checkpoint(run), raw=raw)
    g = torch.Generator().manual_seed(int(seed))
    parts = [to_u8(gen.sample(min(256, n - i), generator=g)) for i in range(0, n, 256)]
    images = np.concatenate(parts) if parts else np.zeros((0, gen.config.channels, gen.config.size,
                                                           gen.config.size), np.uint8)
    if size is not None:
        images = resize_u8(images, size)
    return images, meta, run_class(meta)


