"""core/data/splits.py: patient-level splits (no patient in two parts, stratified, generated copies
kept to training) and the ablation's training-patient fractions."""

import numpy as np
import pytest

from core import CLASSES
from core.data.dataset import ImageDataset
from core.errors import UserError
from core.data.splits import holdout_patients, split_by_patient, subsample_patients


def _toy(n_patients=30, per_patient=3, seed=0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    labels, metas = [], []
    for p in range(n_patients):
        for j in range(per_patient):
            labels.append(p % 3)
            metas.append({"patient": f"p{p}", "file": f"p{p}_{j}.png"})
    n = len(labels)
    return ImageDataset(rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), np.array(labels),
                        list(CLASSES), metas)


def test_split_by_patient_no_leak_and_stratified():
    ds = _toy()
    split = split_by_patient(ds, val_fraction=0.2, test_fraction=0.2, seed=1)
    pats = {k: {ds.patients[i] for i in v} for k, v in split.items()}
    assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"])
    assert not (pats["val"] & pats["test"])
    all_idx = np.concatenate(list(split.values()))
    assert sorted(all_idx) == list(range(len(ds)))  # a partition
    for part in ("val", "test"):
        assert 0.1 <= len(split[part]) / len(ds) <= 0.3
        assert set(ds.labels[split[part]]) == {0, 1, 2}  # stratified: every class present
    other = split_by_patient(ds, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert not np.array_equal(other["val"], split["val"])  # the seed matters


def test_split_keeps_augmented_and_synthetic_in_train():
    ds = _toy()
    extra = ImageDataset(np.zeros((6, 8, 8), np.uint8), np.array([0, 1, 2, 0, 1, 2]), list(CLASSES),
                         [{"patient": f"p{k}", "augmented": True} for k in range(3)]
                         + [{"synthetic": True} for _ in range(3)])
    both = ds.concat(extra)
    split = split_by_patient(both, val_fraction=0.3, seed=0)
    made = set(range(len(ds), len(both)))
    assert not made & set(split["val"].tolist())
    val_patients = {both.patients[i] for i in split["val"]}
    for i in made:
        if both.metas[i].get("synthetic"):
            assert i in split["train"]
        else:  # an augmented copy goes to train unless its source patient is held out
            assert (i in split["train"]) == (both.patients[i] not in val_patients)


def test_split_refuses_single_patient_and_bad_fractions():
    ds = _toy(n_patients=1)
    with pytest.raises(UserError, match="one patient"):
        split_by_patient(ds)
    with pytest.raises(UserError, match="fractions"):
        split_by_patient(_toy(), val_fraction=0.6, test_fraction=0.5)


def test_subsample_patients_is_stratified_nested_and_checked():
    ds = _toy(n_patients=40)
    idx = np.arange(len(ds))
    quarter, half = (subsample_patients(ds, idx, f, seed=0) for f in (0.25, 0.5))
    patients = {f: {ds.patients[i] for i in part} for f, part in (("q", quarter), ("h", half))}
    assert abs(len(patients["q"]) - 10) <= 2 and abs(len(patients["h"]) - 20) <= 2  # per-class rounding
    assert patients["q"] < patients["h"]  # same seed: a smaller fraction keeps a subset
    assert set(ds.labels[quarter]) == {0, 1, 2}
    assert np.array_equal(subsample_patients(ds, idx, 1.0, seed=0), idx)
    with pytest.raises(UserError, match="fraction"):
        subsample_patients(ds, idx, 0.0, seed=0)


def test_holdout_patients_keeps_whole_patients_out_and_is_capped():
    data = _toy(n_patients=60, per_patient=3)                       # 180 images
    train, held = holdout_patients(data, 0.1, seed=0)
    patients = np.array(data.patients)
    assert not set(patients[train]) & set(patients[held])          # no patient on both sides
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(180))
    assert 12 <= len(held) <= 24                                    # about 10%, whole patients
    np.testing.assert_array_equal(holdout_patients(data, 0.1, seed=0)[1], held)   # seeded
    assert len(holdout_patients(data, 0.4, seed=0, max_images=30)[1]) <= 36        # capped
    # Off: asked to, too few images to score, or too few patients for a small share.
    for fraction, kwargs in [(0.0, {}), (0.02, {}), (0.1, {"min_images": 40})]:
        train, held = holdout_patients(data, fraction, seed=0, **kwargs)
        assert len(held) == 0 and len(train) == 180
    two = _toy(n_patients=2, per_patient=20)
    assert len(holdout_patients(two, 0.2, seed=0)[1]) == 0         # would hold out half


def test_holdout_patients_takes_every_source():
    # 90 patients of one class: two thirds from one hospital, a third from another. A held-out
    # set from one hospital only would score differently for that reason alone.
    data = _toy(n_patients=90, per_patient=1)
    data.labels[:] = 0
    for i, m in enumerate(data.metas):
        m["source"] = "A" if i % 3 else "B"
    _, held = holdout_patients(data, 0.2, seed=0)
    sources = [data.metas[i]["source"] for i in held]
    assert sources.count("A") == 12 and sources.count("B") == 6


def test_one_patient_split_read_from_every_config_that_names_it():
    from core.classify.config import ClassifierTrainConfig
    from core.data.config import DataConfig
    from core.data.splits import PatientSplit

    # The defaults of both configs are the split's: a GAN on --data-split train and a
    # classifier with default settings hold out the same patients.
    assert PatientSplit.of_data(DataConfig()) == PatientSplit.of_classifier(ClassifierTrainConfig())
    assert PatientSplit.of_data(DataConfig(split_seed=3)) != PatientSplit()
    assert PatientSplit.of_data({"split_seed": 3}) == PatientSplit(seed=3)
    assert PatientSplit.of_meta({"val_fraction": 0.2, "seed": 1}) == PatientSplit(0.2, 0.0, 1, 1.0)
    ds = _toy(30)
    split = PatientSplit(0.2, 0.2, 0, 0.5)
    parts = split.parts(ds)
    whole = PatientSplit(0.2, 0.2, 0).parts(ds)
    assert set(parts["train"]) < set(whole["train"])          # half of the training patients
    assert list(parts["val"]) == list(whole["val"]) and list(parts["test"]) == list(whole["test"])
