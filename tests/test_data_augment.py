"""Tests for core.data.augment: pipeline construction, reproducibility, preview, class balancing."""

import dataclasses
import random

import numpy as np
import pytest
import torch
from PIL import Image

from core.data.augment import (AugmentConfig, augment_images, balance, build_pipeline, preview,
                          torch_transform)
from core.data.dataset import ImageDataset
from core.errors import UserError

ALL_ON = AugmentConfig(rotate_p=0.6, flip_lr_p=0.5, shear_p=0.4, skew_p=0.4, distortion_p=0.4,
                       zoom_p=0.4, brightness_p=0.4, contrast_p=0.4)
ALL_OFF = AugmentConfig(rotate_p=0, flip_lr_p=0, shear_p=0)
# Every operation certain to run, but with a magnitude that makes it the identity.
MAGNITUDE_ZERO = AugmentConfig(rotate_p=1, rotate_deg=0, flip_lr_p=0, shear_p=1, shear_deg=0,
                               skew_p=1, skew_mag=0, distortion_p=1, distortion_mag=0,
                               zoom_p=1, zoom_min=1, zoom_max=1, brightness_p=1,
                               brightness_min=1, brightness_max=1, contrast_p=1,
                               contrast_min=1, contrast_max=1)


def _image(size=32, shift=0):
    # (H, W) uint8 with structure everywhere, so any geometric op changes pixels
    yy, xx = np.mgrid[:size, :size]
    return ((np.sin((xx + shift) / 3.0) + np.cos(yy / 5.0) + 2) * 60).astype(np.uint8)


def _dataset(per_class=(6, 3, 4), size=24):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    images = np.stack([_image(size, shift=i) for i in range(len(labels))])
    metas = [{"patient": f"p{i // 2}", "file": f"f{i}.png"} for i in range(len(labels))]
    metas[7] = {"file": "f7.png"}  # an item with no patient id (class B: every B item gets copied)
    return ImageDataset(images, labels, ["A", "B", "C"], metas, name="toy")


def test_pipeline_op_count_and_order():
    assert len(build_pipeline(AugmentConfig()).operations) == 3  # rotate, flip, shear
    names = [type(op).__name__ for op in build_pipeline(ALL_ON).operations]
    assert names == ["RotateRange", "Flip", "Shear", "Skew", "Distort", "Zoom",
                     "RandomBrightness", "RandomContrast"]
    assert len(build_pipeline(AugmentConfig(rotate_p=0)).operations) == 2
    assert len(build_pipeline(ALL_OFF).operations) == 0
    assert len(build_pipeline(MAGNITUDE_ZERO).operations) == 0
    ops = build_pipeline(AugmentConfig(rotate_p=0.7, rotate_deg=4)).operations
    assert ops[0].probability == 0.7 and ops[0].max_right_rotation == 4


@pytest.mark.parametrize("bad", [dict(rotate_deg=30), dict(shear_p=1.5), dict(skew_mag=2.0),
                                 dict(zoom_min=1.2, zoom_max=1.1), dict(distortion_grid=1)])
def test_bad_settings_raise_user_error(bad):
    with pytest.raises(UserError):
        build_pipeline(AugmentConfig(**bad))


def test_preview_shapes_and_variety():
    img = _image(40)
    out = preview(img, ALL_ON, n=6, seed=1)
    assert len(out) == 6
    assert all(o.shape == (40, 40) and o.dtype == np.uint8 for o in out)
    assert len({o.tobytes() for o in out}) > 1
    assert any(not np.array_equal(o, img) for o in out)
    # float input in [-1, 1] and (1, H, W) are accepted
    f = torch.from_numpy(img[None].astype(np.float32) / 127.5 - 1.0)
    assert all(o.shape == (40, 40) for o in preview(f, AugmentConfig(), n=2))


def test_reproducible_and_leaves_global_state_alone():
    batch = np.stack([_image(32, s) for s in range(5)])[:, None]  # (5, 1, 32, 32)
    random.seed(123)
    np.random.seed(123)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    a = augment_images(batch, ALL_ON, seed=7)
    assert (random.random(), np.random.rand()) == (expected_py, expected_np)
    b = augment_images(batch, ALL_ON, seed=7)
    c = augment_images(batch, ALL_ON, seed=8)
    assert a.shape == batch.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # config.seed is part of the stream too
    other = dataclasses.replace(ALL_ON, seed=1)
    assert not np.array_equal(a, augment_images(batch, other, seed=7))


@pytest.mark.parametrize("config", [ALL_OFF, MAGNITUDE_ZERO], ids=["all-off", "magnitude-0"])
def test_identity_configs_return_images_unchanged(config):
    batch = np.stack([_image(32, s) for s in range(3)])  # (3, 32, 32)
    np.testing.assert_array_equal(augment_images(batch, config, seed=0), batch)
    assert all(np.array_equal(o, batch[0]) for o in preview(batch[0], config, n=3))


def test_16_bit_input():
    img16 = _image(32).astype(np.uint16) * 257  # full 16-bit range
    out = augment_images(img16[None], ALL_OFF, seed=0)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], _image(32))
    aug = augment_images(np.stack([img16] * 4), ALL_ON, seed=0)
    assert aug.shape == (4, 32, 32) and aug.dtype == np.uint8
    pil16 = Image.fromarray(img16)  # mode 'I;16'
    assert torch_transform(ALL_ON)(pil16).mode == "L"


def test_balance_counts_and_metadata():
    ds = _dataset()
    before = (ds.images.copy(), [dict(m) for m in ds.metas])
    seen = []
    out = balance(ds, 8, ALL_ON, seed=0, progress=lambda f, msg: seen.append(f))
    assert out.class_counts() == {"A": 8, "B": 8, "C": 8}
    assert seen and seen[-1] == 1.0
    np.testing.assert_array_equal(out.images[:len(ds)], ds.images)
    new = out.metas[len(ds):]
    assert len(new) == 2 + 5 + 4
    for m, label in zip(new, out.labels[len(ds):]):
        src = m["augmented_from"]
        assert m["augmented"] is True and ds.labels[src] == label
        assert m["patient"] == ds.patients[src] and m["file"] == ds.metas[src]["file"]
    # the source without a patient id and its copies share one id in the returned dataset
    copies_of_7 = [len(ds) + k for k, m in enumerate(new) if m["augmented_from"] == 7]
    assert copies_of_7 and {out.patients[j] for j in copies_of_7} == {out.patients[7]}
    # copies are augmented, not duplicates; sources are used evenly (B: 3 items -> 5 copies)
    assert any(not np.array_equal(out.images[len(ds) + k], ds.images[m["augmented_from"]])
               for k, m in enumerate(new))
    b_sources = [m["augmented_from"] for m in new if ds.labels[m["augmented_from"]] == 1]
    assert sorted(np.bincount(b_sources)[6:9]) == [1, 2, 2]
    # the input dataset is untouched
    np.testing.assert_array_equal(ds.images, before[0])
    assert ds.metas == before[1]
    # reproducible
    again = balance(ds, 8, ALL_ON, seed=0)
    np.testing.assert_array_equal(again.images, out.images)
    assert again.metas == out.metas


def test_balance_only_uses_given_indices():
    ds = _dataset()
    train = np.array([0, 2, 3, 7, 9, 10])  # A: 0, 2, 3; B: 7 (no patient id); C: 9, 10
    out = balance(ds, 5, AugmentConfig(), seed=3, indices=train)
    assert out.class_counts() == {"A": 5, "B": 5, "C": 5}
    assert len(out) == len(train) + 2 + 4 + 3
    np.testing.assert_array_equal(out.images[:len(train)], ds.images[train])
    assert {m["augmented_from"] for m in out.metas[len(train):]} <= set(train.tolist())
    assert not any(m.get("augmented") for m in out.metas[:len(train)])
    # item 7 sits at position 3 of the result; it and its copies still share one patient
    copies = [j for j, m in enumerate(out.metas) if m.get("augmented_from") == 7]
    assert len(copies) == 4 and {out.patients[j] for j in copies} == {out.patients[3]}


def test_balance_leaves_full_classes_alone():
    ds = _dataset()
    out = balance(ds, 3, ALL_ON)
    assert len(out) == len(ds) and not any(m.get("augmented") for m in out.metas)
    with pytest.raises(UserError):
        balance(ds, 0, ALL_ON)
    with pytest.raises(UserError):
        balance(ds, 5, ALL_ON, indices=np.array([0, 99]))


def test_torch_transform_tensor_batch():
    x = torch.from_numpy(np.stack([_image(24, s) for s in range(4)])[:, None]).float() / 127.5 - 1
    state = random.getstate()
    y = torch_transform(ALL_ON)(x)
    assert random.getstate() == state
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1 and not torch.equal(x, y)
    # the same config gives the same sequence; identity config gives the input back
    assert torch.equal(torch_transform(ALL_ON)(x), y)
    assert torch.allclose(torch_transform(ALL_OFF)(x[0]), x[0], atol=1e-6)

