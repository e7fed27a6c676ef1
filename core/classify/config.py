"""ClassifierTrainConfig: how a classifier trains (epochs, batch, learning rate, the patient split,
balancing, Augmentor copies and GAN samples, on-the-fly jitter, the source adversary), one
dataclass with each field's default and range, saved with every classifier run."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import ranged
from core.data.splits import PatientSplit

BALANCE = ("weights", "augment", "none")


@dataclass
class ClassifierTrainConfig:
    epochs: int = ranged(1, 100_000, 20)
    batch_size: int = ranged(1, 65_536, 32)
    lr: float = ranged(1e-6, 1.0, 1e-3)   # Adam, as in the report
    weight_decay: float = 0.0
    patience: int = 6                # early stopping: epochs without a lower validation loss
    # The patient split (core.data.splits.PatientSplit, whose defaults these are); keep it fixed
    # across compared runs. The test patients are held out for `evaluate`, never trained on.
    val_fraction: float = PatientSplit.val_fraction
    test_fraction: float = PatientSplit.test_fraction
    split_seed: int = PatientSplit.seed
    train_fraction: float = PatientSplit.train_fraction   # this share of the training patients
    seed: int = 0                    # initialisation, shuffling, augmentation, GAN sampling
    balance: str = "weights"         # weights: inverse-frequency loss weights; augment: Augmentor
                                     # copies up to the largest class; none
    augment_per_class: int = 0       # with an augment config: grow each class to this many
                                     # training images (0: to the largest class)
    group_weights: str = ""          # a metadata column (e.g. source): loss weights give every
                                     # (value, class) cell the same total weight (see
                                     # group_balanced_weights); overrides `balance`'s weights
    synthetic_runs: tuple[str, ...] = ()  # GAN runs, "CLASS=RUN_DIR" or "RUN_DIR"
    synthetic_per_class: int = 0     # generated images added per named class
    lr_schedule: str = "cosine"      # constant | cosine (decay to 0 over `epochs`)
    jitter_shift: float = 0.05       # on-the-fly random translation, fraction of the image size
    jitter_rotate: float = 5.0       # on-the-fly random rotation, degrees
    jitter_scale: float = 0.05       # on-the-fly random zoom, +- fraction
    jitter_gamma: float = 0.0        # on-the-fly random gamma exp(+-g) and contrast 1 +- g/2:
                                     # each source has its own exposure and processing, and a
                                     # model should not tell the class by it
    jitter_blur: float = 0.0         # on-the-fly Gaussian blur, sigma uniform in [0, this] px, on
                                     # half the images: sources differ in sharpness (the NIH
                                     # images exist only at 64 px), and blur should not be a class
    source_adversary: float = ranged(0.0, 100.0, 0.0)   # weight of a class-conditional source
                                     # adversary (core.classify.adversary; 0: none)
    device: str = "auto"
    threads: int = 0                 # torch CPU threads (0: torch's default)
