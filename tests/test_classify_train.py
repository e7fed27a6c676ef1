"""core/classify/train.py: a 2-epoch run into a tmp run dir (finite metrics, checkpoints,
calibration and OOD meta), patient-level split with augmentation and GAN samples only in
training, early stopping, the stop signal, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core import __main__ as cli
from core.classify.model import ClassifierConfig, load_classifier
from core.classify.config import ClassifierTrainConfig
from core.classify.synthetic import parse_synthetic
from core.classify.train import group_balanced_weights, train_classifier
from core.data.config import DataConfig
from core.data.dataset import ImageDataset
from core.errors import UserError
from core.runs.store import RunStore

TINY = ClassifierConfig(size=32, width=0.25)


def toy_dataset(n_per_class=12, size=32, seed=0, patients_per=2):
    """Three separable classes (dark / mid / bright discs), two images per patient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2
    images, labels, metas = [], [], []
    for k, cls in enumerate(["COVID-19", "NORMAL", "PNEUMONIA"]):
        for i in range(n_per_class):
            img = rng.integers(0, 40, (size, size)).astype(np.float64)
            img[disc] += 60 + 70 * k
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(k)
            metas.append({"patient": f"{cls}-{i // patients_per}", "source": f"src{k % 2}"})
    return ImageDataset(np.stack(images), np.array(labels), ["COVID-19", "NORMAL", "PNEUMONIA"],
                        metas, name="toy")


def test_two_epochs(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    ds = toy_dataset()
    summary = train_classifier(store, DataConfig(source="toy", size=32), TINY,
                               ClassifierTrainConfig(epochs=2, batch_size=8, patience=5),
                               dataset=ds)
    assert summary["state"] == "finished" and summary["epochs_run"] == 2
    wide = store.metrics_wide()
    for name in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert name in wide.columns
        assert wide[name].dropna().size == 2
        assert all(math.isfinite(v) for v in wide[name].dropna())
    assert store.status()["state"] == "finished"
    assert store.header().section("train")["epochs"] == 2
    assert store.header().started and store.header().classes == ["COVID-19", "NORMAL", "PNEUMONIA"]

    model, meta = load_classifier(store.checkpoints_dir / "best.safetensors")
    assert meta["final"] and meta["classes"] == ds.classes
    assert meta["temperature"] > 0
    assert meta["ood"]["threshold"] > 0
    d = meta["ood_tensors"]["means"].shape[1]
    assert d > model.num_features  # pooled conv activations + penultimate features
    assert meta["ood_tensors"]["precision"].shape == (d, d)
    assert meta["training_data"]["real"] is True  # not a phantom source
    assert (store.checkpoints_dir / "latest.safetensors").is_file()
    ev = json.loads((store.path / "eval.json").read_text())
    assert ev["val"]["n"] == meta["training_data"]["n_val"]


def test_split_is_by_patient_and_extras_only_train(tmp_path, monkeypatch):
    """Augmented copies and GAN samples go to training; no val/test patient is trained on."""
    import core.classify.train as ct

    ds = toy_dataset(n_per_class=12)
    seen = {}
    real_concat = ImageDataset.concat

    def spy(self, other):  # record the final training set
        out = real_concat(self, other)
        seen["train"] = out
        return out

    monkeypatch.setattr(ImageDataset, "concat", spy)

    def fake_synth(specs, per_class, size, classes, seed, progress):
        imgs = np.full((per_class, 1, size, size), 200, np.uint8)
        metas = [{"synthetic": True, "patient": f"syn{i}", "source": "synthetic:x"}
                 for i in range(per_class)]
        return [ImageDataset(imgs, np.zeros(per_class, int), classes, metas)]

    monkeypatch.setattr(ct, "synthetic_items", fake_synth)
    monkeypatch.setattr(ct, "synthetic_fraction", lambda *args: None)  # "x" is no real run
    from core.data.augment import AugmentConfig
    store = RunStore(tmp_path / "run", create=True)
    cfg = ClassifierTrainConfig(epochs=1, batch_size=8, synthetic_runs=("COVID-19=x",),
                                synthetic_per_class=5, augment_per_class=12)
    train_classifier(store, DataConfig(source="toy", size=32), TINY, cfg,
                     augment_config=AugmentConfig(), dataset=ds)
    _, meta = load_classifier(store.checkpoints_dir / "best.safetensors")
    td = meta["training_data"]
    assert td["n_synthetic"] == 5 and td["n_augmented"] > 0
    train = seen["train"]
    from core.data.splits import split_by_patient
    parts = split_by_patient(ds, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    held = {ds.patients[i] for i in np.concatenate([parts["val"], parts["test"]])}
    assert held and not held & set(train.patients)
    assert sum(bool(m.get("synthetic")) for m in train.metas) == 5


def test_early_stopping_and_fraction(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    summary = train_classifier(store, DataConfig(source="toy", size=32), TINY,
                               ClassifierTrainConfig(epochs=50, batch_size=8, patience=1, lr=0.05,
                                                     train_fraction=0.5),
                               dataset=toy_dataset())
    assert summary["epochs_run"] < 50 and "early stopping" in summary["reason"]
    assert summary["training_data"]["n_train_real"] < 24  # half of ~24 training images


def test_stop_signal(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.send_control(stop=True)
    summary = train_classifier(store, DataConfig(source="toy", size=32), TINY,
                               ClassifierTrainConfig(epochs=3, batch_size=8), dataset=toy_dataset())
    assert summary["state"] == "stopped"
    assert store.status()["state"] == "stopped"


def test_bad_balance_fails_cleanly(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    with pytest.raises(UserError):
        train_classifier(store, DataConfig(), TINY, ClassifierTrainConfig(balance="oversample"),
                         dataset=toy_dataset())


def test_one_class_is_refused_in_one_line(tmp_path):
    from core.data.sources import select_classes

    one = select_classes(toy_dataset(), ["COVID-19"])
    store = RunStore(tmp_path / "run", create=True)
    with pytest.raises(UserError, match="one class .COVID-19, 12 images.; a classifier needs at least two"):
        train_classifier(store, DataConfig(), TINY, ClassifierTrainConfig(epochs=1), dataset=one)


def test_group_balanced_weights_give_every_cell_the_same_total():
    # source a: 6 COVID-19, 1 NORMAL; source b: 3 NORMAL (the confound, in miniature)
    labels = np.array([0] * 6 + [1] + [1] * 3)
    groups = ["a"] * 7 + ["b"] * 3
    w = group_balanced_weights(labels, groups)
    assert w.mean() == pytest.approx(1.0)
    totals = {(g, y): 0.0 for g, y in zip(groups, labels)}
    for g, y, wi in zip(groups, labels, w):
        totals[(g, y)] += wi
    assert sorted(totals) == [("a", 0), ("a", 1), ("b", 1)]
    assert all(t == pytest.approx(10 / 3) for t in totals.values())
    assert w[6] == pytest.approx(6 * w[0])  # the lone adult NORMAL weighs as much as 6 COVID-19
    assert group_balanced_weights(np.array([], dtype=int), []).size == 0


def test_group_weights_train_and_need_the_column(tmp_path):
    ds = toy_dataset()
    store = RunStore(tmp_path / "run", create=True)
    summary = train_classifier(store, DataConfig(source="toy", size=32), TINY,
                               ClassifierTrainConfig(epochs=1, batch_size=8,
                                                     group_weights="source"), dataset=ds)
    assert summary["state"] == "finished"
    assert math.isfinite(store.metrics_wide()["train/loss"].dropna().iloc[0])
    with pytest.raises(UserError, match="site"):
        train_classifier(RunStore(tmp_path / "bad", create=True), DataConfig(source="toy", size=32),
                         TINY, ClassifierTrainConfig(epochs=1, group_weights="site"), dataset=ds)


def test_source_adversary_trains_and_reverses_the_gradient(tmp_path):
    import torch

    from core.classify.adversary import _GradientReversal

    x = torch.ones(3, requires_grad=True)
    _GradientReversal.apply(x, 0.5).sum().backward()
    assert x.grad.tolist() == [-0.5, -0.5, -0.5]      # the features are pushed the other way
    ds = toy_dataset()
    store = RunStore(tmp_path / "run", create=True)
    summary = train_classifier(store, DataConfig(source="toy", size=32), TINY,
                               ClassifierTrainConfig(epochs=1, batch_size=8, source_adversary=0.5),
                               dataset=ds)
    assert summary["state"] == "finished"
    assert math.isfinite(store.metrics_wide()["train/loss"].dropna().iloc[0])
    for m in ds.metas:
        m["source"] = "one"
    with pytest.raises(UserError, match="two sources"):
        train_classifier(RunStore(tmp_path / "bad", create=True), DataConfig(source="toy", size=32),
                         TINY, ClassifierTrainConfig(epochs=1, source_adversary=0.5), dataset=ds)


def test_parse_synthetic():
    assert parse_synthetic("COVID-19=runs/a") == ("COVID-19", "runs/a")
    assert parse_synthetic("runs/a") == (None, "runs/a")


def test_cli_phantom(tmp_path, capsys):
    run = tmp_path / "cli"
    rc = cli.main(["train-classifier", "--data", "phantom:8", "--size", "32", "--width", "0.25",
                   "--epochs", "1", "--batch-size", "8", "--run-dir", str(run)])
    assert rc == 0
    assert '"state": "finished"' in capsys.readouterr().out
    _, meta = load_classifier(run / "checkpoints" / "best.safetensors")
    assert meta["training_data"]["real"] is False and meta["data"]["source"] == "phantom:8"
    assert meta["model"]["size"] == 32


def test_from_config_trains_what_config_json_says(tmp_path, capsys):
    from core.data.augment import AugmentConfig
    from core.classify.train import build_configs, header

    data, model, train = build_configs(None, {"data": {"source": "phantom:8", "size": 32},
                                              "model": {"width": 0.25},
                                              "train": {"epochs": 1, "batch_size": 8}})
    assert data.size == model.size == 32
    store = RunStore(tmp_path / "run", create=True)
    store.write_header(header(data, model, train, AugmentConfig(rotate_p=0.5)))
    assert cli.main(["train-classifier", "--run-dir", str(store.path), "--from-config"]) == 0
    assert '"state": "finished"' in capsys.readouterr().out
    _, meta = load_classifier(store.path / "checkpoints" / "best.safetensors")
    assert meta["augment"]["rotate_p"] == 0.5 and meta["model"]["width"] == 0.25
    assert cli.main(["train-classifier", "--run-dir", str(store.path), "--from-config",
                     "--epochs", "2"]) == 2


def test_cli_synthetic_needs_count(tmp_path):
    rc = cli.main(["train-classifier", "--data", "phantom:4", "--synthetic", "x", "--run-dir",
                   str(tmp_path / "r")])
    assert rc == 2


def test_a_run_that_reaches_its_last_epoch_is_not_called_early_stopped(tmp_path):
    # lr 1e-30 leaves the weights as they are, so epoch 2's validation loss is no lower and
    # patience 1 runs out exactly at the last epoch: the run simply finished.
    store = RunStore(tmp_path / "run", create=True)
    summary = train_classifier(store, DataConfig(source="toy", size=32), TINY,
                               ClassifierTrainConfig(epochs=2, batch_size=8, patience=1, lr=1e-30),
                               dataset=toy_dataset())
    assert summary["epochs_run"] == 2
    assert "early stopping" not in summary["reason"] and "finished 2 epochs" in summary["reason"]


def test_cxr_preset_runs_on_tiny_data_and_flags_phantoms(tmp_path):
    """The real-X-ray recipe (--preset cxr) with its architecture, on tiny data that is not
    phantoms: explicit flags override it, and its OOD statistics learn phantoms as known
    outliers."""
    from conftest import metadata_tree

    from core.classify.train import PRESETS

    metadata_tree(tmp_path / "data", 24, size=40)
    run = tmp_path / "cxr"
    assert cli.main(["train-classifier", "--data", str(tmp_path / "data"), "--preset", "cxr",
                     "--size", "32", "--width", "0.125", "--epochs", "1", "--batch-size", "8",
                     "--run-dir", str(run)]) == 0
    _, meta = load_classifier(run / "checkpoints" / "best.safetensors")
    assert meta["model"]["arch"] == PRESETS["cxr"]["model"]["arch"]        # from the preset
    assert meta["model"]["width"] == 0.125 and meta["model"]["size"] == 32  # from the flags
    assert meta["train"]["epochs"] == 1 and meta["training_data"]["real"] is True
    assert meta["ood"]["known_outliers"] == ["phantom"]
    assert meta["ood_tensors"]["outlier_means"].shape[0] == 3


def test_intensity_jitter_keeps_range_and_leaves_geometry_only_runs_unchanged():
    import torch

    from core.classify.jitter import jitter

    x = torch.rand(6, 1, 16, 16) * 2 - 1
    plain = ClassifierTrainConfig()
    both = ClassifierTrainConfig(jitter_gamma=0.4)
    a = jitter(x, plain, torch.Generator().manual_seed(0))
    b = jitter(x, plain, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    c = jitter(x, both, torch.Generator().manual_seed(0))
    assert c.shape == x.shape and c.min() >= -1 and c.max() <= 1 and not torch.equal(a, c)


def test_random_blur_blurs_about_half_and_keeps_the_mean():
    import torch

    from core.classify.jitter import _random_blur

    x = torch.rand(64, 1, 16, 16)
    y = _random_blur(x, 1.5, torch.Generator().manual_seed(0))
    changed = [(a - b).abs().max() > 1e-4 for a, b in zip(x, y)]
    assert 16 < sum(changed) < 48
    assert all(b.std() < a.std() for a, b, c in zip(x, y, changed) if c)   # smoother
    torch.testing.assert_close(y.mean(), x.mean(), atol=0.02, rtol=0)
