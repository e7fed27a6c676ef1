"""core.data.natural: digits, MNIST / Fashion-MNIST idx files, CIFAR-10 batches and plain folders, all
from tiny local copies written here (the network is never used)."""

from __future__ import annotations

import gzip
import pickle
from urllib.error import URLError

import numpy as np
import pytest
from PIL import Image

from core.data import natural
from core.data.config import DataConfig
from core.data.sources import load_dataset
from core.errors import UserError


def cfg(**kw) -> DataConfig:
    return DataConfig(**{"size": 16, **kw})


# --- digits ----------------------------------------------------------------------------------

def test_digits_shapes_labels_range():
    from sklearn.datasets import load_digits

    ds = natural.load("digits", cfg(size=32))
    target = load_digits().target
    assert ds.images.shape == (len(target), 1, 32, 32) and ds.images.dtype == np.uint8
    assert ds.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(ds.labels, target)
    assert ds.images.min() == 0 and ds.images.max() == 255  # 0..16 spans the full range
    x, y, meta = ds[0]
    assert x.shape == (1, 32, 32) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y == target[0] and meta["orig_shape"] == [8, 8]


def test_digits_upscaling_is_bilinear_and_faithful():
    import scipy.ndimage as ndi
    from sklearn.datasets import load_digits

    ds = natural.load("digits", cfg(size=32))
    small = load_digits().images[:50] / 16.0                                  # (50, 8, 8)
    # An independent bilinear: scipy's linear zoom on pixel centres with edges replicated.
    ref = np.stack([ndi.zoom(s, 4, order=1, grid_mode=True, mode="nearest") for s in small])
    assert np.abs(ref * 255.0 - ds.images[:50, 0]).max() <= 0.51  # rounding only
    # Bilinear interpolation makes intermediate grey levels; nearest would keep only 17.
    assert len(np.unique(ds.images[:50])) > 100


def test_digits_channels_and_class_filter():
    ds = natural.load("digits", cfg(channels=3, classes=("3", "7")))
    assert ds.images.shape[1:] == (3, 16, 16)
    np.testing.assert_array_equal(ds.images[:, 0], ds.images[:, 2])  # gray repeated
    assert ds.classes == ["3", "7"] and set(ds.labels.tolist()) == {0, 1}
    with pytest.raises(UserError, match="no class '11'"):
        natural.load("digits", cfg(classes=("11",)))


def test_dispatch_through_load_dataset_keeps_one_class():
    ds = load_dataset(DataConfig(source="digits", size=16, classes=("5",)))
    assert ds.classes == ["5"] and len(ds) > 100


# --- MNIST / Fashion-MNIST -------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_idx(root, folder: str, n: int = 6, gz: bool = False, seed: int = 0):
    """ROOT/<folder>/raw/train-{images-idx3,labels-idx1}-ubyte[.gz] with n 28x28 images whose
    brightness encodes the label, so a test can check the pairing survived."""
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):
        images[i, 4:24, 4:24] = 20 + 20 * y
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for stem, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    return images, labels


def test_mnist_from_tiny_idx_files(tmp_path):
    images, labels = tiny_idx(tmp_path, "MNIST", n=7)
    ds = load_dataset(DataConfig(source=f"mnist:{tmp_path}", size=28))
    assert ds.images.shape == (7, 1, 28, 28)
    np.testing.assert_array_equal(ds.images[:, 0], images)  # same size: bytes unchanged
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.classes[:3] == ["0", "1", "2"] and ds.name == f"mnist:{tmp_path}"


def test_fashion_mnist_gz_resized_and_named(tmp_path):
    images, _ = tiny_idx(tmp_path, "FashionMNIST", n=5, gz=True)
    ds = natural.load(f"fashion-mnist:{tmp_path}", cfg(size=16, channels=3))
    assert ds.images.shape == (5, 3, 16, 16)
    assert ds.classes[1] == "Trouser" and ds.classes[9] == "Ankle boot"
    centre = ds.images[:, 0, 8, 8]
    np.testing.assert_array_equal(centre, images[:, 14, 14])  # flat square interior kept
    only = natural.load(f"fashion-mnist:{tmp_path}", cfg(classes=("trouser",)))
    assert len(only) == 1 and only.classes == ["Trouser"]


def test_corrupt_idx_is_a_user_error(tmp_path):
    tiny_idx(tmp_path, "MNIST", n=3)
    img = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-100])  # truncated
    with pytest.raises(UserError, match="truncated"):
        natural.load(f"mnist:{tmp_path}", cfg())
    img.write_bytes(b"\x00\x00\x09\x99" + bytes(20))
    with pytest.raises(UserError, match="magic number"):
        natural.load(f"mnist:{tmp_path}", cfg())


def test_offline_download_failure_is_a_clear_user_error(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tv_mnist
    import torchvision.datasets.utils as tv_utils

    calls = []

    def offline(url, *args, **kwargs):  # what urllib raises without a network
        calls.append(url)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(UserError) as err:
        natural.load(f"mnist:{tmp_path / 'none'}", cfg(), download=True)
    msg = str(err.value)
    assert calls and "downloading it failed" in msg
    assert str(tmp_path / "none" / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    calls.clear()
    with pytest.raises(UserError, match="cifar-10-batches-py/data_batch_1"):
        natural.load(f"cifar10:{tmp_path / 'none'}", cfg(), download=True)
    assert calls and "cifar-10-python.tar.gz" in calls[0]


def test_a_spec_from_a_file_never_downloads(tmp_path, monkeypatch):
    """Without the user's own flag (download=False, the default: a spec read from a checkpoint
    or a run) nothing is fetched and nothing is written where the spec points."""
    import torchvision.datasets.mnist as tv_mnist
    import torchvision.datasets.utils as tv_utils

    calls = []
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", lambda *a, **k: calls.append(a))
    for spec in (f"mnist:{tmp_path / 'm'}", f"fashion-mnist:{tmp_path / 'f'}",
                 f"cifar10:{tmp_path / 'c'}"):
        with pytest.raises(UserError, match="never downloaded"):
            natural.load(spec, cfg())
    assert calls == [] and list(tmp_path.iterdir()) == []


# --- CIFAR-10 --------------------------------------------------------------------------------

def tiny_cifar(root, n: int = 4):
    """ROOT/cifar-10-batches-py/data_batch_1 (+ batches.meta) as Python 3 pickles with bytes keys,
    like the real files: image i is one solid colour."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)[:n]
    data = np.repeat(colours[:, :, None], 32 * 32, axis=2).reshape(n, 3072)  # R plane, G, B
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [0, 1, 2, 9][:n],
             b"data": data, b"filenames": [b"x.png"] * n}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in natural.CIFAR_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def test_cifar10_from_a_tiny_local_batch(tmp_path):
    tiny_cifar(tmp_path)
    rgb = natural.load(f"cifar10:{tmp_path}", cfg(size=32, channels=3))
    assert rgb.images.shape == (4, 3, 32, 32)
    assert rgb.images[0, :, 5, 5].tolist() == [255, 0, 0]      # red stays red
    assert rgb.images[2, :, 5, 5].tolist() == [0, 0, 255]
    np.testing.assert_array_equal(rgb.labels, [0, 1, 2, 9])
    assert rgb.classes[9] == "truck"
    gray = natural.load(f"cifar10:{tmp_path}", cfg(size=16, channels=1))
    assert gray.images.shape == (4, 1, 16, 16)
    assert gray.images[:, 0, 8, 8].tolist() == [76, 150, 29, 255]  # ITU-R 601 luma


def test_cifar10_refuses_a_pickle_that_runs_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="refusing"):
        natural.load(f"cifar10:{tmp_path}", cfg())
    assert not marker.exists()


# --- a folder of images ----------------------------------------------------------------------

def make_folder(root):
    folder = root / "cats"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "red.png")
    Image.new("L", (20, 20), 128).save(folder / "sub" / "gray.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"junk")
    return folder


def test_folder_rgb_gray_and_broken_files(tmp_path):
    folder = make_folder(tmp_path)
    rgb = natural.load(f"folder:{folder}", cfg(channels=3))
    assert rgb.images.shape == (2, 3, 16, 16) and rgb.classes == ["cats"]
    assert rgb.labels.tolist() == [0, 0]
    files = [m["file"] for m in rgb.metas]
    assert files == ["red.png", "sub/gray.jpg"]
    assert rgb.images[0, :, 8, 8].tolist() == [200, 10, 10]
    assert rgb.images[1, :, 8, 8].tolist() == [128, 128, 128]  # gray repeated
    reasons = dict(rgb.skipped)
    assert set(reasons) == {"broken.png", "empty.jpg", "other files"}
    assert "zero-byte" in reasons["empty.jpg"] and "1 files" in reasons["other files"]
    gray = load_dataset(DataConfig(source=f"folder:{folder}", size=16, channels=1))
    assert gray.images.shape == (2, 1, 16, 16)
    assert gray.images[0, 0, 8, 8] == round(0.299 * 200 + 0.587 * 10 + 0.114 * 10)


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        natural.load(f"folder:{tmp_path / 'missing'}", cfg())
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"nope")
    with pytest.raises(UserError, match="no readable images.*a.png"):
        natural.load(f"folder:{tmp_path / 'junk'}", cfg())
    with pytest.raises(UserError, match="give a path"):
        natural.load("folder:", cfg())
