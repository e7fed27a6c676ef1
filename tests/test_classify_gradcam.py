"""core.classify.gradcam: the heatmap's shape and range on a tiny classifier, and that it lights
up the region the explained class depends on, and only that region."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.classify.gradcam import colorize, gradcam, overlay
from core.classify.model import ClassifierConfig, build_classifier

S = 16


class _Regions(nn.Module):
    # (N, 1, S, S) -> (N, 2, S, S): channel 0 is the image's top-left quarter, channel 1 its
    # bottom-right quarter (zero elsewhere).
    def __init__(self):
        super().__init__()
        mask = torch.zeros(2, S, S)
        mask[0, : S // 2, : S // 2] = 1
        mask[1, S // 2:, S // 2:] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return (x[:, :1] + 1) * self.mask


class TwoRegionClassifier(nn.Module):
    """Class 0's logit is the top-left quarter's sum, class 1's the bottom-right one's: each
    class depends on one image region only, so its Grad-CAM map must show that region."""

    def __init__(self):
        super().__init__()
        self.cam_layer = _Regions()

    def forward(self, x):
        return self.cam_layer(x).flatten(2).sum(-1)   # (N, 2)


def test_the_map_shows_the_region_the_class_depends_on():
    model = TwoRegionClassifier()
    x = torch.ones(2, 1, S, S)   # bright everywhere: only the model tells the regions apart
    top_left, bottom_right = np.s_[: S // 2, : S // 2], np.s_[S // 2:, S // 2:]
    logits, cam, feats = gradcam(model, x, target=0)
    assert logits.shape == (2, 2) and cam.shape == (2, S, S) and feats.shape == (2, 0)
    assert torch.all(cam[:, top_left[0], top_left[1]] > 0.99) and cam.max() <= 1
    assert torch.all(cam[:, bottom_right[0], bottom_right[1]] < 0.01)
    assert cam[:, : S // 2, S // 2:].max() < 0.01   # the other quarters stay cold too
    _, cam1, _ = gradcam(model, x, target=torch.tensor([1, 1]))
    assert torch.all(cam1[:, bottom_right[0], bottom_right[1]] > 0.99)
    assert torch.all(cam1[:, top_left[0], top_left[1]] < 0.01)


def test_shape_range_and_prediction_on_a_tiny_classifier():
    torch.manual_seed(1)   # a seed whose maps are not all zero (seed 0's are)
    model = build_classifier(ClassifierConfig(size=16, width=0.25))
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = model.eval()(x)
    for p in model.parameters():   # frozen weights, as the Diagnose page holds them
        p.requires_grad_(False)
    with torch.no_grad():   # and called inside no_grad: it still explains
        logits, cam, feats = gradcam(model, x)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert cam.shape == (3, 16, 16) and not cam.requires_grad
    assert cam.min() >= 0 and cam.max() <= 1
    assert torch.allclose(cam.flatten(1).max(1).values, torch.ones(3))   # scaled to max 1 each
    assert cam.flatten(1).std(1).min() > 0
    assert feats.shape[0] == 3 and feats.shape[1] > 0
    assert all(p.grad is None for p in model.parameters())


def test_colorize_and_overlay():
    lut = colorize(np.array([[0.0, 0.5, 1.0]]))
    assert lut.shape == (1, 3, 3) and lut.dtype == np.uint8
    assert lut[0, 0, 2] > lut[0, 0, 0] and lut[0, 2, 0] > lut[0, 2, 2]   # cold blue, hot red
    gray = np.full((8, 8), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    out = overlay(gray, heat)
    assert out.shape == (8, 8, 3) and np.all(out == 100)   # no heat: the X-ray unchanged
    hot = overlay(gray, np.ones((4, 4), np.float32), alpha=1.0)
    assert np.array_equal(hot[0, 0], colorize(np.ones((1, 1)))[0, 0])
