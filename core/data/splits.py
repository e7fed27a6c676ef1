"""Patient-level splits: train / validation / test with no patient in two parts, and the
training-patient fractions of the ablation. Everything that holds patients out (train-classifier,
evaluate, a GAN trained with --data-split train) goes through these two functions, so the same
fractions and seed give the same patients everywhere."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
import numpy as np

from core.config import checked, ranged
from core.data.dataset import ImageDataset
from core.errors import UserError


@dataclass(frozen=True)
class PatientSplit:
    """Which patients train, validate and test: the one definition of the split. A data config
    names it with its split_* fields (a GAN trained on the classifier's training patients), a
    classifier's train config with val_fraction, test_fraction, split_seed and train_fraction,
    a classifier checkpoint in its "split" meta; all three read into this, and the defaults
    here are theirs. Two runs saw the same patients exactly when their splits are equal."""

    val_fraction: float = ranged(0.0, 0.9, 0.15)
    test_fraction: float = ranged(0.0, 0.9, 0.15)
    seed: int = ranged(0, 2**31 - 1, 0)
    train_fraction: float = ranged(0.0, 1.0, 1.0)   # the share of the training patients used (the ablation)

    @classmethod
    def of_data(cls, data) -> "PatientSplit":
        """From a DataConfig or its dict (a checkpoint's "data")."""
        get = data.get if isinstance(data, dict) else lambda k, d=None: getattr(data, k, d)
        return cls(get("split_val_fraction", cls.val_fraction),
                   get("split_test_fraction", cls.test_fraction),
                   get("split_seed", cls.seed), get("split_train_fraction", cls.train_fraction))

    @classmethod
    def of_classifier(cls, tc) -> "PatientSplit":
        """From a ClassifierTrainConfig."""
        return cls(tc.val_fraction, tc.test_fraction, tc.split_seed, tc.train_fraction)

    @classmethod
    def of_meta(cls, split: dict) -> "PatientSplit":
        """From a classifier checkpoint's "split" meta (older checkpoints: no test part),
        checked, since a checkpoint may come from anywhere (ValueError naming the field)."""
        if not isinstance(split, dict):
            raise ValueError("the split is not a JSON object")
        return checked(cls, {"test_fraction": 0.0, **split})

    def parts(self, dataset: ImageDataset) -> dict[str, np.ndarray]:
        """{"train", "val"(, "test")} indices; "train" holds train_fraction of its patients."""
        parts = split_by_patient(dataset, self.val_fraction, self.test_fraction, self.seed)
        parts["train"] = subsample_patients(dataset, parts["train"], self.train_fraction, self.seed)
        return parts


def _group_fold(idx: np.ndarray, y: np.ndarray, groups: np.ndarray, fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) with about `fraction` of `idx` held out, whole groups only, stratified by
    class as far as the groups allow (one fold of a StratifiedGroupKFold)."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise UserError("Cannot split: all images belong to one patient.")
    n_splits = int(round(1.0 / fraction))
    # scikit-learn refuses more folds than the largest class has members (a tiny data set):
    # then whole patients are drawn at random, unstratified.
    if n_splits >= 2 and min(n_splits, n_groups) <= np.bincount(y).max():
        n_splits = min(n_splits, n_groups)
        with warnings.catch_warnings():  # "least populated class has only k members"
            warnings.simplefilter("ignore", UserWarning)
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            rest, held = next(folds.split(idx, y, groups))
    else:  # more than half held out (no K-fold matches) or a tiny set: draw groups at random
        gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        rest, held = next(gss.split(idx, y, groups))
    return idx[rest], idx[held]


def split_by_patient(dataset: ImageDataset, val_fraction: float = 0.2, test_fraction: float = 0.0,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Indices {"train", "val"(, "test")} with no patient in two splits, stratified by class as
    far as patients allow. Items marked meta["augmented"] or meta["synthetic"] only ever go to
    "train", and are dropped when their patient landed in val/test (they are copies of a held-out
    image; keeping them in train would leak it). Items without a patient id count as their own."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise UserError(f"Split fractions must be in [0, 1) and sum below 1 "
                        f"(val {val_fraction}, test {test_fraction}).")
    patients = np.array(dataset.patients)
    made = np.array([bool(m.get("augmented") or m.get("synthetic")) for m in dataset.metas], bool)
    idx = np.flatnonzero(~made)
    out = {}
    rest = idx
    if test_fraction > 0:
        rest, out["test"] = _group_fold(rest, dataset.labels[rest], patients[rest],
                                        test_fraction, seed)
    if val_fraction > 0:
        frac = val_fraction / (1.0 - test_fraction)
        rest, out["val"] = _group_fold(rest, dataset.labels[rest], patients[rest], frac, seed + 1)
    else:
        out["val"] = np.array([], np.int64)
    held = set(patients[np.concatenate([out["val"], out.get("test", np.array([], np.int64))])])
    extra = [i for i in np.flatnonzero(made) if patients[i] not in held]
    result = {"train": np.sort(np.concatenate([rest, np.array(extra, np.int64)]))}
    result["val"] = np.sort(out["val"])
    if "test" in out:
        result["test"] = np.sort(out["test"])
    return {k: v.astype(np.int64) for k, v in result.items()}


def subsample_patients(dataset: ImageDataset, idx: np.ndarray, fraction: float,
                       seed: int) -> np.ndarray:
    """About `fraction` of the patients behind `idx` (at least one per class), stratified by each
    patient's first label. train-classifier's train_fraction and a GAN's split_train_fraction
    both call this with the split seed, so an ablation arm and the GAN run that feeds it see the
    same training patients."""
    if fraction >= 1.0:
        return idx
    if not 0 < fraction < 1:
        raise UserError(f"the training fraction must be in (0, 1], not {fraction}")
    patients = np.array(dataset.patients)[idx]
    first: dict[str, int] = {}
    for p, y in zip(patients, dataset.labels[idx]):
        first.setdefault(p, int(y))
    rng = np.random.default_rng([seed, 7919])
    keep = set()
    for k in sorted(set(first.values())):
        group = sorted(p for p, y in first.items() if y == k)
        n = max(1, int(round(fraction * len(group))))
        keep.update(rng.permutation(group)[:n].tolist())
    return idx[np.isin(patients, list(keep))]


def holdout_patients(dataset: ImageDataset, fraction: float, seed: int, max_images: int = 256,
                     min_images: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(train, held) indices: whole patients, stratified by class and source, about `fraction` of
    the images but at most `max_images`, kept out of a GAN's training set so its critic can be
    scored on real images it never saw (core.gan.job's memorisation check). `held` is empty
    when fraction is 0, or it would hold fewer than `min_images` images or leave fewer than two."""
    idx = np.arange(len(dataset), dtype=np.int64)
    n = len(idx)
    fraction = min(fraction, max_images / max(n, 1))
    if fraction <= 0 or round(fraction * n) < min_images or n - round(fraction * n) < 2 \
            or len(set(dataset.patients)) < 2:
        return idx, np.array([], np.int64)
    # Stratified by class and source: a held-out set from another hospital than the training
    # images would score lower for that reason alone, and read as memorising.
    strata = [f"{y}|{m.get('source', '')}" for y, m in zip(dataset.labels, dataset.metas)]
    strata = np.unique(strata, return_inverse=True)[1]
    train, held = _group_fold(idx, strata, np.array(dataset.patients), fraction, seed)
    if len(held) > 2 * round(fraction * n) or len(train) < 2:   # too few patients for a small share
        return idx, np.array([], np.int64)
    return np.sort(train), np.sort(held)
