"""DataConfig: which images a run reads (source, size, channels, classes, the patient split and
its part, filters), one dataclass with each field's default and range, saved with every run."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import ranged
from core.data.splits import PatientSplit

# phantom:N renders N images of each class on the CPU, about 2 ms each at 64 px: 20,000 per
# class is two minutes, and a count from a form or a file above it is a mistake, not a wish.
MAX_PHANTOM_PER_CLASS = 20_000

@dataclass
class DataConfig:
    source: str = "phantom"      # see load_dataset for the accepted specs
    size: int = ranged(8, 1024, 64)      # images are resized to (size, size)
    channels: int = ranged(1, 3, 1)      # 1 for X-rays; 3 only for RGB sources that keep colour
    # The app's default data: 100 was too few for the classifier.
    phantom_per_class: int = ranged(1, MAX_PHANTOM_PER_CLASS, 300)
    keep_extra_classes: bool = False  # e.g. Kaggle's Lung_Opacity
    # Keep only these classes (empty = all). A GAN for augmentation is trained on one class,
    # e.g. ("COVID-19",), as the report did for the minority class.
    classes: tuple[str, ...] = ()
    # Keep only one part of the patient-level split ("train", "val" or "test"; empty = all). The
    # fractions and seed default to train-classifier's, so a GAN trained with split="train"
    # never sees the classifier's validation or test patients (its samples may then be added to
    # the classifier's training set without leaking them).
    split: str = ""
    # The split itself (core.data.splits.PatientSplit), flat here so that each is a --data-split-*
    # flag. With split="train", split_train_fraction keeps about this share of the training
    # patients, chosen exactly as train-classifier's train_fraction chooses them.
    split_val_fraction: float = ranged(0.0, 0.9, PatientSplit.val_fraction)
    split_test_fraction: float = ranged(0.0, 0.9, PatientSplit.test_fraction)
    split_seed: int = PatientSplit.seed
    split_train_fraction: float = ranged(0.0, 1.0, PatientSplit.train_fraction)
    seed: int = 0
    # Keep only items whose metadata matches: "COLUMN=GLOB" entries, several for one column
    # meaning any of them, different columns all of them (e.g. only the sources and licences
    # that may train shipped weights; see checkpoints/classifier-cxr.md). Applied before
    # decoding and before the patient split.
    where: tuple[str, ...] = ()
    # NIH ChestX-ray14: the findings counted as PNEUMONIA (torchxrayvision's label is
    # "Pneumonia" alone; e.g. ("Pneumonia", "Consolidation") counts consolidation too).
    pneumonia_findings: tuple[str, ...] = ("Pneumonia",)
