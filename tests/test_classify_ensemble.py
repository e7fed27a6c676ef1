"""core/classify/ensemble.py: the ensemble's output is the log of the mean calibrated probability, members
must share classes, size, data and split, and `evaluate` and `predict` take several checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import __main__ as cli
from core.classify.model import ClassifierConfig, build_classifier, load_classifier
from core.classify.ensemble import Ensemble, load_ensemble
from core.errors import UserError
from core.classify.predict import predict_image

TINY = ClassifierConfig(size=32, width=0.25)


def test_output_is_log_mean_of_calibrated_probabilities():
    torch.manual_seed(0)
    members = [build_classifier(TINY).eval() for _ in range(3)]
    temps = [0.5, 1.0, 2.0]
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(x) / t, 1) for m, t in zip(members, temps)]).mean(0)
        got = Ensemble(members, temps).eval()(x)
    torch.testing.assert_close(got.exp(), want)
    with torch.no_grad():  # one member at T: its own temperature-scaled log-softmax
        one = Ensemble(members[:1], [2.0]).eval()(x)
        torch.testing.assert_close(one, torch.log_softmax(members[0](x) / 2.0, 1))
    with pytest.raises(UserError):
        Ensemble([], [])


def _train(run, *extra):
    assert cli.main(["train-classifier", "--data", "phantom:8", "--size", "32", "--width", "0.25",
                     "--epochs", "1", "--run-dir", str(run), *extra]) == 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    _train(root / "a", "--seed", "0")
    _train(root / "b", "--seed", "1")
    return root / "a", root / "b"


def test_evaluate_an_ensemble_and_refuse_mismatched_members(pair, tmp_path):
    a, b = pair
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--checkpoint", str(a), str(b), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    _, meta = load_classifier(a / "checkpoints" / "best.safetensors")
    assert res["split"] == "test" and res["n"] == meta["training_data"]["n_test"]
    assert len(res["checkpoint"]) == 2 and res["temperature"] == 1.0

    model, emeta = load_ensemble([a, b])
    assert len(model.members) == 2 and emeta["classes"] == meta["classes"]
    other = tmp_path / "other"
    _train(other, "--split-seed", "3")  # another patient split: its test images are a's training
    with pytest.raises(UserError, match=r"in split \(\{'seed': 3\} vs \{'seed': 0\}\)"):
        load_ensemble([a, other])  # names only the setting that differs
    assert cli.main(["evaluate", "--checkpoint", str(a), str(other)]) != 0


def test_predict_with_an_ensemble(pair, tmp_path, capsys):
    a, b = pair
    model, meta = load_ensemble([a, b])
    img = np.random.default_rng(0).random((80, 60))
    out = predict_image(model, meta, img)
    members = [load_classifier(p / "checkpoints" / "best.safetensors") for p in pair]
    singles = [predict_image(m, mm, img) for m, mm in members]
    for c in meta["classes"]:  # the mean of the members' calibrated probabilities
        assert out["probabilities"][c] == pytest.approx(
            np.mean([s["probabilities"][c] for s in singles]), abs=1e-6)
    assert out["predicted"] == max(out["probabilities"], key=out["probabilities"].get)
    assert out["heatmap"].shape == (32, 32) and out["heatmap"].max() == pytest.approx(1.0)
    ratios = [s["ood"]["ratio"] for s in singles]
    assert out["ood"]["ratio"] == pytest.approx(np.mean(ratios))
    assert out["ood"]["flag"] == (np.mean(ratios) > 1)

    png = tmp_path / "x.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(png)
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(a), "--checkpoint", str(b), str(png)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["ok"] and len(line["members"]) == 2
