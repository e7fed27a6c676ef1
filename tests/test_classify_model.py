"""core/classify/model.py: shapes of both architectures, penultimate features, save/load round trip."""

from __future__ import annotations

import pytest
import torch

from core.classify.model import (
    ClassifierConfig,
    PenultimateFeatures,
    build_classifier,
    find_checkpoint,
    load_classifier,
    penultimate,
    save_classifier,
)
from core.errors import CheckpointError, UserError


@pytest.mark.parametrize("arch", ["report-cnn", "resnet"])
@pytest.mark.parametrize("size", [32, 64])
def test_shapes(arch, size):
    cfg = ClassifierConfig(arch=arch, size=size, width=0.25)
    model = build_classifier(cfg).eval()
    x = torch.rand(3, 1, size, size) * 2 - 1
    logits = model(x)
    assert logits.shape == (3, 3)
    feats = penultimate(model, x)
    assert feats.shape == (3, model.num_features)
    # The head of the penultimate features is the forward pass (dropout is off in eval mode).
    assert torch.allclose(model.head(feats), logits, atol=1e-5)
    act = {}
    h = model.cam_layer.register_forward_hook(lambda m, i, o: act.setdefault("a", o))
    model(x)
    h.remove()
    assert act["a"].dim() == 4 and act["a"].shape[-1] < size  # a spatial map, coarser than input


def test_report_cnn_matches_report():
    model = build_classifier(ClassifierConfig(size=64))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(p == 0.2 for p in drops)
    assert model.num_features == 128


def test_bad_config():
    with pytest.raises(UserError):
        build_classifier(ClassifierConfig(arch="vgg"))
    with pytest.raises(UserError):
        build_classifier(ClassifierConfig(size=60))  # not a multiple of 8


def test_penultimate_module_for_torchmetrics():
    model = build_classifier(ClassifierConfig(size=32, width=0.25))
    ext = PenultimateFeatures(model)
    ext.train()  # must stay in eval mode: dropout would make features random
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    assert torch.equal(ext(x), ext(x))
    assert ext.num_features == ext(x).shape[1]


@pytest.mark.parametrize("arch", ["report-cnn", "resnet"])
def test_round_trip(tmp_path, arch):
    from core.classify.model import ood_features

    model = build_classifier(ClassifierConfig(arch=arch, size=32, width=0.25)).eval()
    d = ood_features(model, torch.zeros(1, 1, 32, 32)).shape[1]   # pooled convs + penultimate
    ood = {"means": torch.randn(3, d), "precision": torch.eye(d)}
    path = save_classifier(tmp_path / "c.safetensors", model,
                           {"classes": ["COVID-19", "NORMAL", "PNEUMONIA"], "temperature": 1.5}, ood)
    loaded, meta = load_classifier(find_checkpoint(tmp_path / "c.safetensors"))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert meta["temperature"] == 1.5 and meta["model"]["arch"] == arch
    assert torch.equal(meta["ood_tensors"]["means"], ood["means"])
    assert path.exists()


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_classifier(bad)
    with pytest.raises(CheckpointError):
        find_checkpoint(tmp_path)  # a directory without checkpoints


def test_equalize_histogram_in_the_model():
    """equalize_histogram maps each image's pixels to their rank share, whatever its exposure;
    a model built with equalize=True gives the same answer for an image and its brightened,
    contrast-stretched copy (a monotone change of its grey levels)."""
    from core.classify.model import equalize_histogram

    x = torch.rand(2, 1, 8, 8) * 2 - 1
    y = equalize_histogram(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.allclose(y.flatten(1).mean(1), torch.zeros(2), atol=1e-6)
    assert torch.equal(equalize_histogram(torch.zeros(1, 1, 4, 4)), torch.zeros(1, 1, 4, 4))
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(size=32, width=0.25, equalize=True)).eval()
    img = torch.rand(1, 1, 32, 32) * 2 - 1
    brighter = ((img + 1) / 2) ** 0.5 * 1.6 - 0.7            # monotone in img
    torch.testing.assert_close(model(img), model(brighter))
