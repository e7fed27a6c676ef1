"""core/evaluate.py: metric fields and their consistency with scikit-learn on hand-made logits,
temperature scaling on a miscalibrated toy, ECE, by-source breakdown, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from core import __main__ as cli
from core.evaluate import expected_calibration_error, fit_temperature, scores

CLASSES = ["COVID-19", "NORMAL", "PNEUMONIA"]


def onehot_logits(pred, scale=3.0):
    return torch.nn.functional.one_hot(torch.as_tensor(pred), 3).float() * scale


def test_fields_and_sklearn_agreement():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 2, 2])
    r = scores(onehot_logits(pred), labels, CLASSES)
    assert r["n"] == 10 and r["accuracy"] == pytest.approx(0.7)
    cm = np.array(r["confusion"])
    assert cm.sum() == 10 and np.trace(cm) == 7
    assert cm[0].tolist() == [2, 1, 0] and cm[2].tolist() == [1, 0, 3]  # rows are true classes
    f1 = f1_score(labels, pred, average=None)
    for i, c in enumerate(CLASSES):
        assert r["per_class"][c]["f1"] == pytest.approx(f1[i])
    # By hand: COVID-19 precision 2/3, recall 2/3; PNEUMONIA recall 3/4.
    assert r["per_class"]["COVID-19"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["PNEUMONIA"]["recall"] == pytest.approx(0.75)
    assert r["per_class"]["NORMAL"]["support"] == 3
    assert r["covid_sensitivity"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx(f1.mean())
    assert set(r["roc_auc"]) == set(CLASSES) and 0 <= r["roc_auc_macro"] <= 1
    assert len(r["roc_curves"]["NORMAL"]["fpr"]) == len(r["roc_curves"]["NORMAL"]["tpr"])


def test_auc_perfect_and_missing_class():
    labels = np.array([0, 0, 1, 1])
    logits = torch.tensor([[5.0, 0, 0], [4, 1, 0], [0, 5, 0], [1, 4, 0]])
    r = scores(logits, labels, CLASSES)
    assert r["roc_auc"]["COVID-19"] == pytest.approx(1.0)
    assert r["roc_auc"]["PNEUMONIA"] is None  # no positives: undefined, not a crash
    assert r["per_class"]["PNEUMONIA"]["support"] == 0


def test_temperature_fixes_overconfidence():
    # A miscalibrated toy: true logits z give labels; the model reports 4 * z (overconfident).
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 3, generator=gen)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=gen)[:, 0]
    logits = 4 * z
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(4.0, rel=0.15)
    nll_before = F.cross_entropy(logits, labels)
    nll_after = F.cross_entropy(logits / t, labels)
    assert nll_after < nll_before
    r = scores(logits, labels.numpy(), CLASSES, temperature=t)
    assert r["ece_scaled"] < r["ece"] and r["nll_scaled"] < r["nll"]


def test_ece_by_hand():
    # Two items at confidence 0.9 (one right), two at 0.6 (both right): ECE = 0.5*0.4 + 0.5*0.4
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    labels = np.array([0, 1, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)


def test_evaluate_by_source_and_cli(tmp_path, capsys):
    from core.classifier import ClassifierConfig, load_classifier
    from core.classifier_train import ClassifierTrainConfig, train_classifier
    from core.data import DataConfig, ImageDataset
    from core.evaluate import evaluate, split_indices
    from core.runstore import RunStore

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 12)
    images = rng.integers(0, 60, (36, 32, 32)).astype(np.uint8) + (70 * labels)[:, None, None].astype(np.uint8)
    metas = [{"patient": f"p{i // 2}", "source": f"src{i % 2}"} for i in range(36)]
    ds = ImageDataset(images, labels, CLASSES, metas)
    store = RunStore(tmp_path / "run", create=True)
    train_classifier(store, DataConfig(source="toy", size=32), ClassifierConfig(size=32, width=0.25),
                     ClassifierTrainConfig(epochs=1, batch_size=8), dataset=ds)
    model, meta = load_classifier(store.checkpoints_dir / "best.safetensors")
    idx = split_indices(meta, ds, "test")
    r = evaluate(model, meta, ds, idx)
    assert r["n"] == len(idx)
    assert set(r["by_source"]) <= {"src0", "src1"}
    assert sum(s["n"] for s in r["by_source"].values()) == r["n"]
    assert sum(np.array(s["confusion"]).sum() for s in r["by_source"].values()) == r["n"]

    # CLI on a phantom-trained checkpoint, default split reproduces its held-out test patients.
    run = tmp_path / "ph"
    assert cli.main(["train-classifier", "--data", "phantom:8", "--size", "32", "--width", "0.25",
                     "--epochs", "1", "--run-dir", str(run)]) == 0
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--checkpoint", str(run), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    _, pmeta = load_classifier(run / "checkpoints" / "best.safetensors")
    assert res["split"] == "test" and res["n"] == pmeta["training_data"]["n_test"]
    assert "phantom" in res["by_source"] and "ece_scaled" in res
