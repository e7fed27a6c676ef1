"""core/classify/evaluate.py: metric fields and their consistency with scikit-learn on hand-made logits,
temperature scaling on a miscalibrated toy, ECE, by-source, adults-only and shortcut-probe
reports, the unseen-patients split, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from core import __main__ as cli
from core.classify.evaluate import expected_calibration_error, fit_temperature, scores

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
    from core.classify.model import ClassifierConfig, load_classifier
    from core.classify.config import ClassifierTrainConfig
    from core.classify.train import train_classifier
    from core.data.config import DataConfig
    from core.data.dataset import ImageDataset
    from core.classify.evaluate import evaluate, split_indices
    from core.runs.store import RunStore

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


def test_is_child_by_age_view_and_source():
    from core.classify.evaluate import is_child

    assert is_child({"age": "7"}) and is_child({"patient_age": 12.0})
    assert is_child({"view": "AP (pediatric, per Kermany)"})
    assert is_child({"source": "ozanguldali/final-covid-chestxray"})
    assert not is_child({"age": "54", "source": "ieee8023/covid-chestxray-dataset", "view": "PA"})
    assert not is_child({"age": "unknown"}) and not is_child({})


def test_shortcut_probe_sees_a_source_the_features_encode():
    """Features that carry the source give a probe far above the majority baseline; features
    of pure noise stay near it. Sources under SHORTCUT_MIN_ITEMS images join 'other'."""
    from core.classify.evaluate import shortcut_probe

    rng = np.random.default_rng(0)
    sources = ["a"] * 60 + ["b"] * 40 + ["c"] * 3
    code = np.array([{"a": 0, "b": 1, "c": 2}[s] for s in sources])
    encoded = rng.normal(size=(103, 8)) + 3 * np.eye(8)[code]
    r = shortcut_probe(encoded, sources)
    assert r["accuracy"] > 0.95 and r["baseline"] == pytest.approx(60 / 100)
    assert r["sources"] == {"a": 60, "b": 40} and r["n"] == 100  # 'other' (3) cannot fold
    noise = shortcut_probe(rng.normal(size=(103, 8)), sources)
    assert noise["accuracy"] < 0.75
    assert shortcut_probe(encoded[:60], sources[:60]) is None  # one source: nothing to probe


def _toy(n_per_class=12, sources=("src0", "src1"), child_source=None, seed=0):
    from core.data.dataset import ImageDataset

    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], n_per_class)
    n = len(labels)
    images = (rng.integers(0, 60, (n, 32, 32)) + (70 * labels)[:, None, None]).astype(np.uint8)
    metas = [{"patient": f"p{i // 2}", "source": sources[i % len(sources)], "file": f"f{i}.png"}
             for i in range(n)]
    if child_source:
        for m in metas[::3]:
            m["source"] = child_source
    return ImageDataset(images, labels, CLASSES, metas)


def test_evaluate_reports_adults_and_shortcut(tmp_path):
    from core.classify.model import ClassifierConfig, load_classifier
    from core.classify.config import ClassifierTrainConfig
    from core.classify.train import train_classifier
    from core.data.config import DataConfig
    from core.classify.evaluate import evaluate, format_table
    from core.runs.store import RunStore

    ds = _toy(n_per_class=20, child_source="ozanguldali/final-covid-chestxray")
    store = RunStore(tmp_path / "run", create=True)
    train_classifier(store, DataConfig(source="toy", size=32), ClassifierConfig(size=32, width=0.25),
                     ClassifierTrainConfig(epochs=1, batch_size=8), dataset=ds)
    model, meta = load_classifier(store.checkpoints_dir / "best.safetensors")
    r = evaluate(model, meta, ds)
    children = sum(m["source"].startswith("ozanguldali") for m in ds.metas)
    assert r["adults"]["n"] == len(ds) - children
    assert np.array(r["adults"]["confusion"]).sum() == r["adults"]["n"]
    assert r["shortcut"]["n"] == len(ds) and 0 <= r["shortcut"]["accuracy"] <= 1
    table = format_table(r)
    assert "| adults only |" in table and "Shortcut probe:" in table


def test_unseen_split_leaves_out_every_training_and_validation_patient(tmp_path):
    """--split unseen: the checkpoint's test patients plus every patient of a source it never
    loaded (its data filter left that source out)."""
    from core.classify.model import load_classifier
    from core.classify.evaluate import split_indices

    from conftest import metadata_tree

    src = lambda i: "seen" if i < 30 else "never"  # noqa: E731
    metadata_tree(tmp_path / "data", 36, source=src, patient=lambda i: f"{src(i)}-{i // 3}")
    run = tmp_path / "run"
    assert cli.main(["train-classifier", "--data", str(tmp_path / "data"), "--data-where",
                     "source=seen", "--size", "32", "--width", "0.25", "--epochs", "1",
                     "--run-dir", str(run)]) == 0
    model, meta = load_classifier(run / "checkpoints" / "best.safetensors")
    from core.data.config import DataConfig
    from core.data.sources import load_dataset

    full = load_dataset(DataConfig(source=str(tmp_path / "data"), size=32))
    own = load_dataset(DataConfig(source=str(tmp_path / "data"), size=32, where=("source=seen",)))
    seen = {own.metas[i]["patient"] for part in ("train", "val")
            for i in split_indices(meta, own, part)}
    unseen = split_indices(meta, full, "unseen")
    patients = {full.metas[i]["patient"] for i in unseen}
    assert not patients & seen
    assert {full.metas[i]["source"] for i in unseen} == {"seen", "never"}
    assert sum(full.metas[i]["source"] == "never" for i in unseen) == 6
    out = tmp_path / "unseen.json"
    assert cli.main(["evaluate", "--checkpoint", str(run), "--data", str(tmp_path / "data"),
                     "--split", "unseen", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == len(unseen)
    # --split test on the whole folder is the checkpoint's own test patients, not a split drawn
    # anew over rows its filter left out (that one held training patients).
    own_test = {own.metas[i]["patient"] for i in split_indices(meta, own, "test")}
    test = split_indices(meta, full, "test", own_data=False)
    assert {full.metas[i]["patient"] for i in test} == own_test
    redrawn = {full.metas[i]["patient"] for i in split_indices(meta, full, "test")}
    assert redrawn != own_test   # what the check above guards against, on this data
    assert cli.main(["evaluate", "--checkpoint", str(run), "--data", str(tmp_path / "data"),
                     "--split", "test", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == len(test)
