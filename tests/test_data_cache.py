"""The decoded-data cache (core/data/cache.py) behind folder sources: a second load reads the
cache instead of decoding; a changed file invalidates it; least recently used entries go over
the cap; a corrupt or truncated entry is rebuilt; two writers leave one good entry; a cancelled
load leaves nothing."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest
from PIL import Image

import core.data.sources as data
from core.data import cache as datacache
from core.budget import mapped as _mapped
from core.data.config import DataConfig
from core.data.sources import describe, load_dataset


def _folder(root, n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def _no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache holds these images")
    monkeypatch.setattr(data, "_decode_all", refuse)


def test_a_second_load_reads_the_cache_not_the_files(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    first = load_dataset(DataConfig(source=str(root), size=32))
    assert first.cache.startswith("decoded now and cached")
    _no_decoding(monkeypatch)
    second = load_dataset(DataConfig(source=str(root), size=32))
    assert second.cache.startswith("read from the cache")
    assert _mapped(second.images)           # read from the file, not a copy in memory
    np.testing.assert_array_equal(first.images, second.images)
    assert first.patients == second.patients and first.classes == second.classes
    assert "read from the cache" in data.format_description(describe(second))


def test_a_changed_file_or_size_is_a_new_entry(tmp_path):
    root = _folder(tmp_path / "d")
    load_dataset(DataConfig(source=str(root), size=32))
    img = root / "NORMAL" / "0.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(img)
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = load_dataset(DataConfig(source=str(root), size=32))
    assert again.cache.startswith("decoded now")
    assert again.images[again.metas.index(next(m for m in again.metas if m["file"] == "NORMAL/0.png"))].max() == 0
    assert load_dataset(DataConfig(source=str(root), size=16)).cache.startswith("decoded now")
    assert len(datacache.entries()) == 3


def test_least_recently_used_entries_go_over_the_cap(tmp_path, monkeypatch):
    a, b = _folder(tmp_path / "a", seed=1), _folder(tmp_path / "b", seed=2)
    load_dataset(DataConfig(source=str(a), size=32))
    entry_a = datacache.entries()[-1][0]
    time.sleep(0.01)
    load_dataset(DataConfig(source=str(b), size=32))
    entry_b = datacache.entries()[-1][0]
    time.sleep(0.01)
    load_dataset(DataConfig(source=str(a), size=32))        # a is now the most recently used
    assert [e[0] for e in datacache.entries()] == [entry_b, entry_a]
    total = sum(used for _, used, _ in datacache.entries())
    monkeypatch.setenv("XRAY_CACHE_MAX_BYTES", str(total - 1))
    assert datacache.evict(datacache.max_bytes()) == [entry_b]
    assert [e[0] for e in datacache.entries()] == [entry_a]


@pytest.mark.parametrize("damage", ["truncate", "flip", "items"])
def test_a_corrupt_entry_is_rebuilt_never_trusted(tmp_path, damage):
    root = _folder(tmp_path / "d")
    good = np.array(load_dataset(DataConfig(source=str(root), size=32)).images)   # not the mapping
    entry = datacache.entries()[0][0]
    images = entry / "images.npy"
    if damage == "truncate":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(images.read_bytes())
        raw[-7] ^= 0xFF
        images.write_bytes(bytes(raw))
    else:
        (entry / "items.json").write_text("{not json")
    again = load_dataset(DataConfig(source=str(root), size=32))
    assert again.cache.startswith("decoded now and cached")
    np.testing.assert_array_equal(good, again.images)
    assert datacache.load(entry.name) is not None             # rebuilt whole


def _write(key, seed):
    images = [np.full((8, 8), seed, np.uint8) for _ in range(200)]
    datacache.store(key, images, ["NORMAL"] * 200, [{"i": i} for i in range(200)], [])


def test_two_writers_leave_one_good_entry(tmp_path):
    procs = [multiprocessing.get_context("fork").Process(target=_write, args=("k" * 32, s))
             for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    images, labels, metas, _ = datacache.load("k" * 32)
    assert len(labels) == 200 and len(set(np.unique(images))) == 1   # one writer's, whole
    assert not [p for p in datacache.cache_root().iterdir() if p.name.startswith(".tmp")]


def test_a_cancelled_load_leaves_no_entry(tmp_path):
    root = _folder(tmp_path / "d", n=150)                   # threads decode 300 images

    def cancel(fraction, message):
        if fraction > 0.3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        load_dataset(DataConfig(source=str(root), size=32), progress=cancel)
    assert datacache.entries() == []
    assert not list(datacache.cache_root().glob(".tmp*"))


def test_progress_says_count_rate_and_time_left(tmp_path):
    root = _folder(tmp_path / "d", n=150)
    said = []
    load_dataset(DataConfig(source=str(root), size=32), progress=lambda f, m: said.append(m))
    line = next(m for m in said if m.startswith("decoded 3"))
    assert " of 300 images · " in line and "/s · about " in line and line.endswith(" s left")


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_CACHE", "0")
    root = _folder(tmp_path / "d")
    assert load_dataset(DataConfig(source=str(root), size=32)).cache.startswith("decoded now (not cached")
    assert datacache.entries() == []


def test_both_trainers_read_a_large_set_from_the_mapped_cache(tmp_path, monkeypatch):
    """A training set over the resident limit stays in the cache file: the GAN draws its batches
    from the mapped rows and the classifier converts batch by batch; both train to the end."""
    import core.classify.train as ct
    import core.gan.job as gt
    from core.__main__ import main
    from core.runs.store import RunStore

    root = _folder(tmp_path / "d", n=12)
    load_dataset(DataConfig(source=str(root), size=32))          # the cache entry
    monkeypatch.setenv("XRAY_RESIDENT_BYTES", "1")
    seen = {}
    real = gt.training_images

    def spy(*args, **kwargs):
        images, rows, held, classes = real(*args, **kwargs)
        seen["gan"] = rows is not None   # set only for a mapped set over the limit
        return images, rows, held, classes
    monkeypatch.setattr(gt, "training_images", spy)
    assert main(["train-gan", "--preset", "cpu-tiny", "--data", str(root), "--size", "32",
                 "--steps", "2", "--batch-size", "4", "--holdout", "0.2",
                 "--run-dir", str(tmp_path / "gan")]) == 0
    assert seen["gan"] and RunStore(tmp_path / "gan").status()["state"] == "finished"

    made = []
    real_images = ct._Images

    def record(images, rows, device):
        made.append(rows is not None)
        return real_images(images, rows, device)
    monkeypatch.setattr(ct, "_Images", record)
    assert main(["train-classifier", "--data", str(root), "--size", "32", "--epochs", "1",
                 "--width", "0.25", "--batch-size", "4", "--val-fraction", "0.25",
                 "--test-fraction", "0.25", "--run-dir", str(tmp_path / "clf")]) == 0
    assert made and all(made)   # the training set and its OOD subset, both over the file
    assert RunStore(tmp_path / "clf").status()["state"] == "finished"
