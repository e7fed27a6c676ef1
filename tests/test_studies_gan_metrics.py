"""core/studies/gan_metrics.py: FD/KID/precision-recall/C2ST on features (identical sets give FD ~ 0,
shifted sets do not), sampling a GAN run, and `gan-metrics` on a tiny generator and classifier."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import saved_generator
from core import __main__ as cli
from core.classify.model import ClassifierConfig, build_classifier, save_classifier
from core.studies.gan_metrics import (
    GanMetricsConfig,
    feature_metrics,
    frechet_distance,
    precision_recall,
    two_sample_test,
)
from core.gan.runs import run_class, sample_run


def gaussian(n, d=6, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g) + shift).double()


def test_frechet_distance_known_values():
    a, b = gaussian(400, seed=1), gaussian(400, seed=2)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means apart by 2 in every one of 6 dims: FD ~ |mu|^2 = 24.
    assert frechet_distance(a, gaussian(400, shift=2.0, seed=3)) == pytest.approx(24, rel=0.15)
    assert frechet_distance(a, b) < 1.0


def test_precision_recall_and_c2st():
    real = gaussian(200, seed=1)
    p, r = precision_recall(real, real, k=3)
    assert p == 1.0 and r == 1.0
    far = gaussian(200, shift=10.0, seed=2)
    p, r = precision_recall(real, far, k=3)
    assert p == 0.0 and r == 0.0
    # Mode collapse: generated points all near one real point -> high precision, low recall.
    collapsed = real[:1] + 0.01 * gaussian(200, seed=3)
    p, r = precision_recall(real, collapsed, k=3)
    assert p > 0.9 and r < 0.2
    assert two_sample_test(real, far) > 0.95
    assert 0.3 < two_sample_test(real, gaussian(200, seed=4)) < 0.7


def test_feature_metrics_fields():
    real, fake = gaussian(120, seed=1), gaussian(80, shift=0.5, seed=2)
    m = feature_metrics(real, fake, GanMetricsConfig(kid_subsets=10))
    for key in ("fid", "kid", "kid_std", "relative_fd", "precision", "recall", "c2st_accuracy"):
        assert math.isfinite(m[key]), key
    assert m["relative_fd"] > 1.0  # a shifted set is further than another real half
    same = feature_metrics(real, real, GanMetricsConfig(kid_subsets=10))
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    # KID is unbiased: about 0 for another sample of the same distribution, well above for a shift.
    other = feature_metrics(real, gaussian(120, seed=5), GanMetricsConfig(kid_subsets=10))
    assert abs(other["kid"]) < 0.2 * m["kid"]


@pytest.fixture
def tiny_run(tmp_path):
    return saved_generator(tmp_path / "gan", {"data": {"source": "phantom:8", "classes": ["COVID-19"]},
                                              "loss": "wgan-gp", "step": 3})


def test_sample_run(tiny_run):
    images, meta, cls = sample_run(tiny_run, 10, seed=1, size=16)
    assert images.shape == (10, 1, 16, 16) and images.dtype == np.uint8
    assert cls == "COVID-19" and meta["loss"] == "wgan-gp"
    again, _, _ = sample_run(tiny_run, 10, seed=1, size=16)
    assert np.array_equal(images, again)
    assert run_class({"data": {"classes": []}}) is None


def test_cli_on_tiny_run(tiny_run, tmp_path):
    clf = build_classifier(ClassifierConfig(size=32, width=0.25)).eval()
    ckpt = save_classifier(tmp_path / "clf.safetensors", clf,
                           {"classes": ["COVID-19", "NORMAL", "PNEUMONIA"]})
    out = tmp_path / "m.json"
    rc = cli.main(["gan-metrics", "--run-dir", str(tiny_run), "--real", "phantom:12",
                   "--classifier", str(ckpt), "--json", str(out), "--n", "24",
                   "--kid-subsets", "5"])
    assert rc == 0
    m = json.loads(out.read_text())
    assert m["gan_class"] == "COVID-19" and m["n_real"] == 12 and m["n_fake"] == 24
    for key in ("fid", "kid", "relative_fd", "precision", "recall", "c2st_accuracy"):
        assert m[key] is not None and math.isfinite(m[key]), key
    # An untrained generator is far from the phantoms: further than real-vs-real.
    assert m["relative_fd"] > 1.0


def _xrays(folder, n, seed):
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(folder / f"{i}.png")


def test_one_class_real_data_and_real_class(tiny_run, tmp_path, capsys):
    clf = build_classifier(ClassifierConfig(size=32, width=0.25)).eval()
    ckpt = save_classifier(tmp_path / "clf.safetensors", clf,
                           {"classes": ["COVID-19", "NORMAL", "PNEUMONIA"]})
    _xrays(tmp_path / "covid-only" / "COVID-19", 10, seed=1)        # a folder of one class
    _xrays(tmp_path / "mixed" / "covid", 10, seed=2)
    _xrays(tmp_path / "mixed" / "normal", 12, seed=3)

    def metrics(real, *extra):
        out = tmp_path / "m.json"
        out.unlink(missing_ok=True)
        rc = cli.main(["gan-metrics", "--run-dir", str(tiny_run), "--real", str(real),
                       "--classifier", str(ckpt), "--json", str(out), "--n", "16",
                       "--kid-subsets", "3", *extra])
        return rc, (json.loads(out.read_text()) if rc == 0 else capsys.readouterr().err)

    rc, m = metrics(tmp_path / "covid-only")
    assert rc == 0 and m["real_class"] == "COVID-19" and m["n_real"] == 10
    assert math.isfinite(m["fid"]) and m["gan_weights"] == "raw"
    rc, m = metrics(tmp_path / "mixed")                  # the GAN's own class of two
    assert rc == 0 and m["real_class"] == "COVID-19" and m["n_real"] == 10
    rc, m = metrics(tmp_path / "mixed", "--real-class", "normal")   # the user's choice wins
    assert rc == 0 and m["real_class"] == "NORMAL" and m["n_real"] == 12
    rc, err = metrics(tmp_path / "covid-only", "--real-class", "PNEUMONIA")
    assert rc == 2 and "--real-class 'PNEUMONIA' is not in" in err and "COVID-19" in err
    _xrays(tmp_path / "normal-only" / "NORMAL", 6, seed=4)
    rc, err = metrics(tmp_path / "normal-only")          # only another class: said so
    assert rc == 2 and "the GAN's class 'COVID-19' is not in" in err and "--real-class" in err
