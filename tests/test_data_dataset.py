"""core.data.dataset: the in-memory image set every source returns (layout, scaling to [-1, 1],
patients, subsets and joins) and the decoding loop that keeps input order and reports skips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from core.data.dataset import ImageDataset, decode_parallel

CLASSES = ["COVID-19", "NORMAL", "PNEUMONIA"]


def _dataset(n=6, size=8, metas=None):
    images = np.arange(n * size * size, dtype=np.int64).reshape(n, size, size) % 256
    return ImageDataset(images, np.arange(n) % 3, CLASSES, metas, name="tiny")


def test_images_are_uint8_nchw_and_items_scale_to_minus_one_one():
    ds = _dataset()
    assert ds.images.dtype == np.uint8 and ds.images.shape == (6, 1, 8, 8) and ds.size == 8
    ds.images[0, 0, 0, :3] = (0, 255, 128)
    x, label, meta = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert x[0, 0, :3].tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    assert label == 0 and meta == {}
    whole = ds.tensor()
    assert whole.shape == (6, 1, 8, 8) and torch.equal(whole[0], x)


def test_counts_and_patients():
    ds = _dataset(metas=[{"patient": "p1"}, {"patient": "p1"}, {}, {"patient": ""},
                         {"patient": 7}, {"patient": "p2"}])
    assert len(ds) == 6
    assert ds.class_counts() == {"COVID-19": 2, "NORMAL": 2, "PNEUMONIA": 2}
    # An item without a patient is its own; two of them are not one patient.
    assert ds.patients == ["p1", "p1", "item-2", "item-3", "7", "p2"]


def test_subset_and_concat_keep_images_labels_and_metas_together():
    ds = _dataset(metas=[{"file": f"{i}.png"} for i in range(6)])
    sub = ds.subset([4, 1])
    assert [m["file"] for m in sub.metas] == ["4.png", "1.png"]
    assert sub.labels.tolist() == [1, 1] and np.array_equal(sub.images[0], ds.images[4])
    both = sub.concat(ds.subset([0]))
    assert len(both) == 3 and both.labels.tolist() == [1, 1, 0]
    assert [m["file"] for m in both.metas] == ["4.png", "1.png", "0.png"]
    other = ImageDataset(ds.images[:1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="class lists differ"):
        ds.concat(other)


def test_a_read_only_mapped_cache_entry_reads_without_a_warning(tmp_path):
    np.save(tmp_path / "c.npy", np.full((2, 1, 4, 4), 255, np.uint8))
    ds = ImageDataset(np.load(tmp_path / "c.npy", mmap_mode="r"), [0, 1], CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.all(ds[1][0] == 1.0) and torch.all(ds.tensor() == 1.0)


def test_mismatched_lengths_are_refused():
    with pytest.raises(AssertionError):
        ImageDataset(np.zeros((3, 4, 4)), [0, 1], CLASSES)


@pytest.mark.parametrize("n", [5, 300])   # 300: the threaded path
def test_decode_parallel_keeps_order_and_reports_skips(n):
    def decode(i):
        return (None, (f"{i}.png", "corrupt")) if i % 7 == 3 else (i * 10, None)

    seen = []
    results, skipped = decode_parallel(list(range(n)), decode, lambda f, text: seen.append((f, text)))
    assert results == [i * 10 for i in range(n) if i % 7 != 3]
    assert skipped == [(f"{i}.png", "corrupt") for i in range(n) if i % 7 == 3]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert seen[-1][1] == f"decoded {n:,} images, {len(skipped):,} skipped"
    assert decode_parallel([], decode, None) == ([], [])
