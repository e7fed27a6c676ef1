"""GAN samples joining a classifier's training set: which runs may (only GANs trained on the
classifier's own training patients, so samples never carry validation or test patients), and
the generated images themselves, marked synthetic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from core.classify.config import ClassifierTrainConfig
from core.config import to_dict
from core.data.config import DataConfig
from core.data.splits import PatientSplit
from core.errors import UserError


def parse_synthetic(spec: str) -> tuple[str | None, str]:
    if "=" in spec:
        cls, run = spec.split("=", 1)
        return cls.strip(), run.strip()
    return None, spec.strip()


def _loaded_as(data: dict) -> tuple[str, dict]:
    """(source family, the settings that decide which images it loads) of a data config dict.
    Every phantom spec is one family ("phantom" and "phantom:N" draw from the same generator),
    told apart by count and seed; a folder is its resolved path."""
    defaults = to_dict(DataConfig())
    source = str(data.get("source") or "")
    extra = bool(data.get("keep_extra_classes", defaults["keep_extra_classes"]))
    if source.startswith("phantom"):
        count = source.split(":", 1)[1] if ":" in source else \
            data.get("phantom_per_class", defaults["phantom_per_class"])
        return "phantom", {"images per class": str(count), "seed": data.get("seed", 0),
                           "keep_extra_classes": extra}
    path = Path(source).expanduser()
    # The split is drawn over what the filter kept, so a filtered copy is another source.
    return (str(path.resolve()) if path.exists() else source), {
        "keep_extra_classes": extra, "where": sorted(data.get("where") or [])}


def synthetic_fraction(spec: str, data_config, tc: ClassifierTrainConfig) -> float | None:
    """The share of this classifier's training patients that GAN run `spec` ("[CLASS=]RUN")
    was trained on, read from its checkpoint's data config: 1.0 for all of them, None when it
    was trained on another source (its samples cannot carry these patients).

    Raises UserError when the run saw patients outside the classifier's training split (all of
    the source, a differently loaded copy, another split, or more training patients than
    train_fraction keeps): its samples would be copies of validation or test patients and
    inflate every score."""
    from core.checkpoint import read_meta
    from core.gan.runs import run_checkpoint

    _, run = parse_synthetic(spec)
    gan = read_meta(run_checkpoint(run)).get("data") or {}
    if not isinstance(gan, dict):
        raise UserError(f"GAN run {run}: its checkpoint's data config is not a JSON object")
    (theirs, their_settings), (ours, our_settings) = _loaded_as(gan), _loaded_as(to_dict(data_config))
    if theirs != ours:
        return None
    fix = "train it with --data-split train (the default fractions and seed"
    if tc.train_fraction < 1:
        fix += f", and --data-split-train-fraction {tc.train_fraction:g}"
    fix += ")"
    # The split is drawn over the whole loaded source, so it matches only if the GAN loaded the
    # same images.
    differ = [f"{k} {v} (here {our_settings[k]})" for k, v in their_settings.items()
              if v != our_settings[k]]
    if differ:
        raise UserError(f"GAN run {run} loaded {gan.get('source')} differently "
                        f"({', '.join(differ)}), so its patients cannot be matched to this "
                        f"classifier's split: {fix}, with the same data settings")
    if gan.get("split") != "train":
        raise UserError(f"GAN run {run} was trained on all of {gan.get('source')}, including this "
                        f"classifier's validation and test patients; its samples would leak them: {fix}")
    theirs, ours = PatientSplit.of_data(gan), PatientSplit.of_classifier(tc)
    if replace(theirs, train_fraction=1.0) != replace(ours, train_fraction=1.0):
        raise UserError(f"GAN run {run} was trained on another patient split (val, test, seed = "
                        f"{theirs.val_fraction, theirs.test_fraction, theirs.seed}, here "
                        f"{ours.val_fraction, ours.test_fraction, ours.seed}): {fix}")
    if theirs.train_fraction > ours.train_fraction:
        raise UserError(f"GAN run {run} saw {theirs.train_fraction:g} of the training patients, "
                        f"more than the {ours.train_fraction:g} this classifier trains on: {fix}")
    return float(theirs.train_fraction)


def synthetic_items(specs, per_class: int, size: int, classes: list[str], seed: int, progress):
    """An ImageDataset of `per_class` generated images per GAN run, metas marked synthetic."""
    from core.data.dataset import ImageDataset
    from core.gan.runs import sample_run

    parts = []
    for j, spec in enumerate(specs):
        cls, run = parse_synthetic(spec)
        images, meta, run_cls = sample_run(run, per_class, seed=seed + 1000 * j, size=size)
        cls = cls or run_cls
        if cls is None:
            raise UserError(f"GAN run {run} does not say which class it was trained on; give it "
                            f"as CLASS={run}")
        if cls not in classes:
            raise UserError(f"synthetic class {cls!r} is not one of {', '.join(classes)}")
        name = Path(run).name
        metas = [{"synthetic": True, "source": f"synthetic:{name}", "gan_run": str(run),
                  "gan_loss": meta.get("loss"), "patient": f"synthetic:{name}:{i}",
                  "file": f"{name}#{i}"} for i in range(len(images))]
        parts.append(ImageDataset(images, np.full(len(images), classes.index(cls)), classes, metas))
        if progress:
            progress(0.0, f"generated {len(images)} {cls} images from {name}")
    return parts
