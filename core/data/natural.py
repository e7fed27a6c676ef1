"""GAN data beyond X-rays, as in the WGAN papers' own experiments: scikit-learn's bundled digits
(offline), torchvision's MNIST, Fashion-MNIST and CIFAR-10 read from a local root (downloaded
when missing and online), and any folder of images without classes."""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from core.budget import check_fits
from core.data.config import DataConfig
from core.data.dataset import IMAGE_SUFFIXES, ImageDataset, Progress, decode_parallel, walk_files
from core.errors import ImageReadError, UserError, shown
from core.data.imageio import read_image, read_rgb, to_uint8


DIGIT_CLASSES = [str(d) for d in range(10)]
# torchvision's names, in label order.
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as core.data.imageio converts colour to gray

# spec prefix -> (torchvision class name = its folder under ROOT, display name, class names)
IDX_SETS = {"mnist": ("MNIST", "MNIST", DIGIT_CLASSES),
            "fashion-mnist": ("FashionMNIST", "Fashion-MNIST", FASHION_CLASSES)}
IDX_MAGIC = {2051: 3, 2049: 1}  # idx3 images (N, H, W), idx1 labels (N,); both uint8
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{k}" for k in range(1, 6)]


def load(spec: str, config: DataConfig, progress: Progress | None = None,
         download: bool = False) -> ImageDataset:
    """Load "digits", "mnist:ROOT", "fashion-mnist:ROOT", "cifar10:ROOT" or "folder:PATH".

    Images come back as uint8 (N, C, S, S) with S = config.size and C = config.channels
    (gray sources are repeated to 3 channels, colour ones converted to luma for 1). Labelled
    sets keep their class names and honour config.classes; a folder is one class (its name),
    with unreadable files in dataset.skipped. One class is valid here: a GAN needs no second.
    `download`: fetch a missing MNIST, Fashion-MNIST or CIFAR-10 through torchvision."""
    spec = str(spec).strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if config.channels not in (1, 3):
        raise UserError(f"channels must be 1 (grayscale) or 3 (RGB), not {config.channels}")
    if kind == "digits":
        return load_digits(config)
    if not arg.strip():
        raise UserError(f"'{spec}': give a path after the colon, e.g. {kind}:~/data")
    path = Path(arg.strip()).expanduser()
    if kind in IDX_SETS:
        return load_idx(kind, path, config, progress, name=spec, download=download)
    if kind == "cifar10":
        return load_cifar10(path, config, progress, name=spec, download=download)
    if kind == "folder":
        return load_folder(path, config, progress, name=spec)
    raise UserError(f"unknown data source '{spec}': use digits, mnist:ROOT, fashion-mnist:ROOT, "
                    f"cifar10:ROOT or folder:PATH")


# --- shared conversion -----------------------------------------------------------------------

def _resize(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """float [0, 1] (N, C, H, W) -> uint8 (N, C, size, size). Bilinear; antialiased so shrinking
    averages instead of aliasing (CIFAR 32 -> 16). Chunks bound memory for 60k images."""
    out = np.empty(images.shape[:2] + (size, size), np.uint8)
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk], dtype=np.float32))
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        out[i:i + chunk] = x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, 1|3, S, S) uint8 -> (N, channels, S, S): gray repeated for RGB models, colour -> luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1:
        return np.repeat(images, channels, axis=1)
    gray = np.tensordot(np.asarray(LUMA, np.float32), images.astype(np.float32), axes=([0], [1]))
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[:, None]


def _select(images, labels, classes: list[str], config: DataConfig, where: str):
    """Keep config.classes (case-insensitive names; empty = all), relabelled 0..K-1."""
    if not config.classes:
        return images, labels, list(classes)
    lookup = {c.lower(): k for k, c in enumerate(classes)}
    wanted = []
    for name in config.classes:
        if str(name).lower() not in lookup:
            raise UserError(f"{where} has no class '{name}'; its classes are {', '.join(classes)}")
        wanted.append(lookup[str(name).lower()])
    wanted = sorted(set(wanted))
    keep = np.isin(labels, wanted)
    remap = {old: new for new, old in enumerate(wanted)}
    new_labels = np.array([remap[int(y)] for y in labels[keep]], np.int64)
    return images[keep], new_labels, [classes[k] for k in wanted]


def _labelled(images01: np.ndarray, labels: np.ndarray, classes: list[str], config: DataConfig,
              source: str, name: str, progress: Progress | None) -> ImageDataset:
    """float [0, 1] (N, C, H, W) + labels -> ImageDataset at config.size and config.channels."""
    images01, labels, classes = _select(images01, np.asarray(labels, np.int64), classes, config, name)
    if len(images01) == 0:
        raise UserError(f"{name} holds no images")
    h, w = images01.shape[-2:]
    if progress is not None:
        progress(0.5, f"resizing {len(images01):,} images to {config.size}x{config.size}")
    images = _to_channels(_resize(images01, config.size), config.channels)
    metas = [{"file": f"{source}[{i}]", "patient": None, "source": source,
              "orig_shape": [int(h), int(w)]} for i in range(len(images))]
    if progress is not None:
        progress(1.0, f"loaded {len(images):,} images")
    return ImageDataset(images, labels, classes, metas, [], name)


# --- scikit-learn digits ---------------------------------------------------------------------

def load_digits(config: DataConfig) -> ImageDataset:
    """scikit-learn's 1,797 bundled 8x8 digits (0..16), upscaled bilinearly to config.size."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    return _labelled(x, bunch.target, DIGIT_CLASSES, config, "digits", "digits", None)


# --- MNIST / Fashion-MNIST (idx files) -------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """One MNIST idx file (optionally .gz): uint8 (N, H, W) images (magic 2051) or (N,) labels
    (magic 2049). Raises UserError on anything else, naming the file. Streamed: the header's
    sizes are checked against memory before the body is read, and a gzip never inflates past
    the size its header declares (a small .gz claiming 3,000,000 images costs nothing)."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            magic = int.from_bytes(head, "big") if len(head) == 4 else -1
            if magic not in IDX_MAGIC:
                raise UserError(f"{path} is not an MNIST idx file of uint8 images or labels "
                                f"(magic number {magic}, expected 2051 or 2049)")
            nd = IDX_MAGIC[magic]
            dims = [int.from_bytes(f.read(4), "big") for _ in range(nd)]
            n_bytes = int(np.prod(dims, dtype=np.int64))
            check_fits(f"{path.name} (header: {' x '.join(map(str, dims))})", n_bytes * 5)
            body = f.read(n_bytes + 1)   # as float32 later: 5 bytes per pixel in all
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if len(body) != n_bytes:
        raise UserError(f"{path} is truncated or corrupt: header says {dims}, "
                        f"found {min(len(body), n_bytes + 1):,}{'+' if len(body) > n_bytes else ''} "
                        f"bytes of data")
    return np.frombuffer(body, np.uint8).reshape(dims)


def _find_idx(root: Path, folder: str) -> tuple[Path, Path] | None:
    """(images, labels) of the training split in torchvision's layout ROOT/<folder>/raw/, or in
    ROOT/raw or ROOT itself; uncompressed or .gz."""
    for d in (root / folder / "raw", root / "raw", root):
        found = []
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
            hits = [d / stem, d / f"{stem}.gz", d / stem.replace("-idx", ".idx")]
            found.append(next((p for p in hits if p.is_file()), None))
        if all(found):
            return found[0], found[1]
    return None


def load_idx(kind: str, root: Path, config: DataConfig, progress: Progress | None = None,
             name: str | None = None, download: bool = False) -> ImageDataset:
    """MNIST or Fashion-MNIST (kind "mnist" / "fashion-mnist") training split from `root` in
    torchvision's on-disk layout; downloaded through torchvision when absent."""
    folder, title, classes = IDX_SETS[kind]
    name = name or f"{kind}:{root}"
    files = _find_idx(root, folder)
    if files is None:
        import torchvision.datasets as tvd

        cls = getattr(tvd, folder)
        layout = (f"{root / folder / 'raw'}/train-images-idx3-ubyte(.gz) and "
                  f"train-labels-idx1-ubyte(.gz)")
        _download(lambda: cls(str(root), train=True, download=True), title, layout, download)
        files = _find_idx(root, folder)
        if files is None:
            raise UserError(f"{title} was downloaded but its files are not where expected: {layout}")
    if progress is not None:
        progress(0.1, f"reading {files[0].name}")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{files[0].name} and {files[1].name} do not match: images "
                        f"{images.shape}, labels {labels.shape}")
    if labels.size and labels.max() >= len(classes):
        raise UserError(f"{files[1]} has label {int(labels.max())}; {title} has {len(classes)} classes")
    x = (images.astype(np.float32) / 255.0)[:, None]  # (N, 1, 28, 28)
    return _labelled(x, labels, classes, config, kind, name, progress)


def _download(fetch: Callable[[], object], title: str, layout: str, allowed: bool) -> None:
    """Run torchvision's download; any failure (offline, proxy, bad checksum) -> UserError that
    says where to put the files instead. Not `allowed` (the spec came from a saved run or
    checkpoint): say where the files are missing and download nothing."""
    if not allowed:
        raise UserError(f"{title} is not on disk ({layout}). A data source read from a saved run "
                        f"or checkpoint is never downloaded; give it with --data to download it.")
    try:
        fetch()
    except Exception as exc:  # URLError, RuntimeError after all mirrors, OSError, checksum
        first = str(exc).strip().splitlines()[:3]
        raise UserError(f"{title} is not on disk and downloading it failed "
                        f"({type(exc).__name__}: {' '.join(first)}). Put the files there "
                        f"yourself, in torchvision's layout: {layout}; or run once with "
                        f"internet access.") from None


# --- CIFAR-10 (pickled batches) --------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles; unpickling an arbitrary file runs code, so only the numpy
    array reconstruction that the real batches use is allowed (dicts, lists, bytes are native)."""

    # Protocol 2 pickles carry raw bytes through _codecs.encode; protocol 5 uses _frombuffer.
    ALLOWED: ClassVar[set[tuple[str, str]]] = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except Exception as exc:
        raise UserError(f"cannot read CIFAR-10 batch {path} ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise UserError(f"{path} is not a CIFAR-10 batch (a pickled dict)")
    # Python 2 pickles come back with str keys under latin1, Python 3 ones with bytes keys.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def load_cifar10(root: Path, config: DataConfig, progress: Progress | None = None,
                 name: str | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-10's training batches (ROOT/cifar-10-batches-py/data_batch_1..5; those present are
    used) as RGB, or gray with config.channels=1; downloaded through torchvision when absent.

    Read here rather than by torchvision.datasets.CIFAR10, which demands all six batches with
    their MD5s and unpickles them without restriction."""
    name = name or f"cifar10:{root}"
    folder = root / CIFAR_FOLDER if (root / CIFAR_FOLDER).is_dir() else root
    batches = [folder / b for b in CIFAR_TRAIN if (folder / b).is_file()]
    if not batches:
        import torchvision.datasets.utils as tvu
        from torchvision.datasets import CIFAR10

        folder = root / CIFAR_FOLDER
        layout = f"{folder}/data_batch_1 ... data_batch_5 (+ batches.meta), as in cifar-10-python.tar.gz"
        _download(lambda: tvu.download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename,
                                                           md5=CIFAR10.tgz_md5), "CIFAR-10", layout,
                  download)
        batches = [folder / b for b in CIFAR_TRAIN if (folder / b).is_file()]
        if not batches:
            raise UserError(f"CIFAR-10 was downloaded but its batches are not where expected: {layout}")
    data, labels = [], []
    for k, path in enumerate(batches):
        if progress is not None:
            progress(0.1 + 0.3 * k / len(batches), f"reading {path.name}")
        entry = _read_batch(path)
        x = np.asarray(entry.get("data"))
        y = entry.get("labels", entry.get("fine_labels"))
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y is None \
                or len(y) != len(x):
            raise UserError(f"{path} is not a CIFAR-10 batch: expected 'data' uint8 (N, 3072) and "
                            f"N 'labels', found data {x.dtype} {x.shape}")
        data.append(x.reshape(-1, 3, 32, 32))  # rows are R plane, G plane, B plane
        labels.append(np.asarray(y, np.int64))
    classes = CIFAR_CLASSES
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        names = _read_batch(meta_path).get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    y = np.concatenate(labels)
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise UserError(f"CIFAR-10 labels out of range 0..{len(classes) - 1} in {folder}")
    x = np.concatenate(data).astype(np.float32) / 255.0  # (N, 3, 32, 32)
    return _labelled(x, y, classes, config, "cifar10", name, progress)


# --- a folder of images without classes -------------------------------------------------------

def load_folder(path: Path, config: DataConfig, progress: Progress | None = None,
                name: str | None = None) -> ImageDataset:
    """Every image under `path` (recursive, hidden files ignored) as one class named after the
    folder: gray with config.channels=1, RGB (gray files repeated) with 3. Unreadable files go to
    dataset.skipped with the reason; other file types are counted there once."""
    name = shown(name or f"folder:{path}")
    if not path.is_dir():
        raise UserError(f"folder '{path}' not found" if not path.exists() else f"'{path}' is a file, not a folder")
    files, others = [], 0
    for p in walk_files(path):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            others += 1
    reader = read_rgb if config.channels == 3 else read_image

    def one(p: Path):
        rel = shown(p.relative_to(path))
        try:
            img = reader(p, name=rel)  # (H, W) or (H, W, 3) float32 in [0, 1]
        except ImageReadError as exc:
            return None, (rel, getattr(exc, "reason", str(exc)))
        arr = to_uint8(img, config.size)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, S, S)
        return (arr, {"file": rel, "patient": None, "source": "folder",
                      "orig_shape": [int(img.shape[0]), int(img.shape[1])]}), None

    results, skipped = decode_parallel(files, one, progress)
    images, metas = [r[0] for r in results], [r[1] for r in results]
    if others:
        skipped.append(("other files", f"{others} files that are not images were ignored"))
    if not images:
        detail = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise UserError(f"no readable images in folder '{path}'{detail}")
    label = shown(path.resolve().name or "images")
    return ImageDataset(np.stack(images), np.zeros(len(images), np.int64), [label], metas,
                        skipped, name)
