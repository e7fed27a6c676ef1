"""Data sources -> ImageDataset: one in-memory set of images at one size, with labels, patient ids
and per-image metadata; the `data-info` command. Patient-level splits are in core/data/splits.py."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from core import CLASSES
from core.data import cache as datacache
from core.data import deid
from core.data import layouts
from core.data import natural
from core.budget import check_fits
from core.data.config import MAX_PHANTOM_PER_CLASS, DataConfig
from core.data.dataset import IMAGE_SUFFIXES, ImageDataset, Progress, decode_parallel, walk_files
from core.errors import ImageReadError, UserError, shown
from core.data.imageio import MAX_SIDE, read_image, to_uint8
from core.data.splits import PatientSplit

# A metadata table beyond these is not a data set of this tool's scale (NIH ChestX-ray14 lists
# 112,120 images in 11 MiB).
MAX_CSV_ROWS = 500_000
MAX_CSV_BYTES = 256 * 2**20


# Specs handled by core.data.natural: digits, MNIST, Fashion-MNIST, CIFAR-10, plain folders.
NATURAL_PREFIXES = ("digits", "mnist:", "fashion-mnist:", "cifar10:", "folder:")

MASK_DIRS = {"mask", "masks", "lung masks", "lung_masks"}     # Kaggle's segmentation masks
CONTAINER_DIRS = {"images", "image", "imgs", "png", "jpg"}   # Kaggle's CLASS/images/
SPLIT_DIRS = {"train", "test", "val", "valid", "validation"}  # Kermany's chest_xray/{train,...}
FRONTAL_VIEWS = {"PA", "AP", "AP SUPINE", "APS"}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name).strip().lower())


# Folder or column names -> canonical class, compared after _norm (case, '-', '_' ignored).
CLASS_ALIASES = {
    **{k: "COVID-19" for k in ("covid", "covid 19", "covid19", "sars cov 2")},
    **{k: "NORMAL" for k in ("normal", "no finding", "healthy")},
    **{k: "PNEUMONIA" for k in ("pneumonia", "viral pneumonia", "bacterial pneumonia", "bacterial",
                                "bacteria", "viral", "virus", "non covid pneumonia")},
}

# covid-chestxray-dataset `finding` words (old style "Streptococcus", new style
# "Pneumonia/Bacterial/...") that name a pneumonia, some without the word itself.
PNEUMONIA_WORDS = ("pneumonia", "bacterial", "viral", "fungal", "sars", "mers", "streptococcus",
                   "klebsiella", "legionella", "pneumocystis", "chlamydophila", "e.coli",
                   "mycoplasma", "staphylococcus", "influenza", "varicella", "herpes",
                   "aspergillosis", "nocardia", "lipoid")


def canonical_class(name: str) -> str | None:
    """COVID-19 / NORMAL / PNEUMONIA for a known alias (case-insensitive), else None."""
    return CLASS_ALIASES.get(_norm(name))


def finding_class(finding: str) -> str | None:
    """Class of a covid-chestxray-dataset `finding` ("Pneumonia/Viral/COVID-19" -> COVID-19,
    "No Finding" -> NORMAL, other pneumonias -> PNEUMONIA); None for anything else (TB, ARDS...)."""
    f = str(finding).strip().lower()
    if "covid" in f or "sars-cov-2" in f:
        return "COVID-19"
    if f in ("no finding", "normal"):
        return "NORMAL"
    if any(w in f for w in PNEUMONIA_WORDS):
        return "PNEUMONIA"
    return None


def _class_order(names) -> list[str]:
    """core.CLASSES order for those present, extra classes appended alphabetically."""
    present = set(names)
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


# --- decoding --------------------------------------------------------------------------------

def _decode_all(items: list[tuple[Path, str, dict]], size: int,
                progress: Progress | None) -> tuple[list, list, list, list]:
    """Decode (path, class, meta) items to uint8 (size, size); failures become skipped entries."""
    def one(item):
        path, label, meta = item
        try:
            img = read_image(path, name=meta["file"])  # (H, W) float32 in [0, 1]
        except ImageReadError as exc:
            return None, (meta["file"], getattr(exc, "reason", str(exc)))
        meta = {**meta, "orig_shape": [int(img.shape[0]), int(img.shape[1])]}
        if not meta.get("patient"):
            # A DICOM's header names its patient: films of one PatientID are one patient in the
            # split. Only the keyed pseudonym goes into the metadata (and so into the cache).
            meta["patient"] = deid.patient_of_file(path)
        return (to_uint8(img, size), label, meta), None

    results, skipped = decode_parallel(items, one, progress)
    images, labels, metas = (list(col) for col in zip(*results)) if results else ([], [], [])
    return images, labels, metas, skipped


def _build(images, labels, metas, skipped, config, name: str, where: str) -> ImageDataset:
    """Checks shared by every X-ray source, then the ImageDataset (N, C, S, S)."""
    if not len(images):
        detail = (f"; {len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]}"
                  if skipped else "")
        raise UserError(f"No usable images found in {where}{detail}.")
    # One class is a data set too: a GAN learns one class (train-classifier refuses it).
    classes = _class_order(labels)
    index = {c: k for k, c in enumerate(classes)}
    # A memory-mapped cache entry stays mapped; a list of decoded images is stacked once.
    arr = images if isinstance(images, np.ndarray) else np.stack(images)  # (N, S, S) uint8
    if config.channels == 3:
        arr = np.repeat(arr[:, None], 3, axis=1)  # (N, 3, S, S): gray repeated for RGB models
    return ImageDataset(arr, np.array([index[c] for c in labels]), classes, metas, skipped,
                        shown(name))


# --- directory layouts -----------------------------------------------------------------------

def _walk(root: Path) -> list[Path]:
    """Every file under root, sorted, skipping hidden files and folders (.DS_Store, __MACOSX)."""
    return walk_files(root)


def _filename_patient(stem: str) -> str | None:
    """Patient ids that Kermany's chest_xray file names carry: person123_bacteria_45 ->
    person123; IM-0115-0001 / NORMAL2-IM-1427-0001 -> IM-0115 / NORMAL2-IM-1427."""
    m = re.match(r"^(person\d+)_(?:bacteria|virus)", stem, re.I) or \
        re.match(r"^((?:NORMAL2-)?IM-\d+)-\d+", stem, re.I)
    return f"kermany:{m.group(1)}" if m else None


def _scan_class_folders(root: Path, config: DataConfig):
    """(a) CLASS/*, CLASS/images/* (Kaggle; masks ignored) and {train,test,val}/CLASS/*
    (Kermany)."""
    items, skipped = [], []
    masks, others, dropped = 0, Counter(), Counter()
    sources = layouts.radiography_sources(root)   # the COVID-19 Radiography Database's sites
    for path in _walk(root):
        rel = path.relative_to(root)
        suffix = path.suffix.lower()
        if suffix and suffix not in IMAGE_SUFFIXES:
            others[suffix] += 1
            continue
        label = None
        for part in reversed(rel.parts[:-1]):  # nearest folder that names a class
            low = _norm(part)
            if low in MASK_DIRS:
                label = "<mask>"
                break
            if low not in CONTAINER_DIRS and low not in SPLIT_DIRS:
                label = canonical_class(part) or shown(part)   # a name, not a path from here on
                break
        split = next((_norm(p) for p in rel.parts[:-1] if _norm(p) in SPLIT_DIRS), None)
        if label == "<mask>":
            masks += 1
        elif label is None:
            skipped.append((shown(rel), "not inside a class folder"))
        elif label not in CLASSES and not config.keep_extra_classes:
            dropped[label] += 1
        else:
            meta = {"file": shown(rel), "patient": _filename_patient(path.stem),
                    "source": sources.get(path.stem, "folder")}
            if split:
                meta["split"] = split
            items.append((path, label, meta))
    if masks:
        skipped.append(("masks/", f"{masks} segmentation masks ignored"))
    for label, n in sorted(dropped.items()):
        skipped.append((f"{label}/", f"extra class '{label}' left out ({n} files); "
                                     f"set keep_extra_classes to keep it"))
    if others:
        kinds = ", ".join(f"{k} ({n})" for k, n in sorted(others.items()))
        skipped.append(("other files", f"not image files: {kinds}"))
    return items, skipped


def _read_csv(path: Path):
    import pandas as pd

    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise UserError(f"{path} is {path.stat().st_size / 2**20:,.0f} MiB; a metadata table "
                            f"may hold up to {MAX_CSV_BYTES // 2**20} MiB")
        df = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=MAX_CSV_ROWS + 1)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if len(df) > MAX_CSV_ROWS:
        raise UserError(f"{path} has more than {MAX_CSV_ROWS:,} rows; split the data set")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _first_rows(df, files, skipped: list):
    """`df` without the rows whose file an earlier row already names: one file listed twice
    would count twice, and could sit on both sides of a patient split."""
    dup = files.duplicated().to_numpy()
    if dup.any():
        skipped.append(("metadata.csv", f"{int(dup.sum()):,} rows name a file listed before; "
                                        f"each file is used once"))
        return df[~dup]
    return df


def _listed_file(root: Path, rel: str, skipped: list) -> Path | None:
    """root/rel if it is a file inside root; otherwise record why not and return None."""
    if any(ord(c) < 32 for c in rel):   # a NUL byte would make every path call raise
        skipped.append((repr(rel), "listed in metadata.csv with a control character in its name"))
        return None
    path = root / rel
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):   # a link loop, a name too long
        skipped.append((rel, "listed in metadata.csv but cannot be resolved"))
        return None
    if not inside:  # a hostile '../../' row
        skipped.append((rel, "listed in metadata.csv but outside the data folder"))
    elif not path.is_file():
        skipped.append((rel, "listed in metadata.csv but missing"))
    else:
        return path
    return None


def _scan_metadata_csv(root: Path, df, config: DataConfig):
    """(c) metadata.csv (file, class, source, patient, ...) next to class folders, as in
    cxr-real and the phantom writer; every column goes into the item's metadata."""
    items, skipped, dropped = [], [], Counter()
    df = _first_rows(df, df["file"].str.strip(), skipped)
    for row in df.to_dict("records"):
        rel = row["file"].strip()
        label = canonical_class(row["class"]) or row["class"].strip()
        if label not in CLASSES and not config.keep_extra_classes:
            dropped[label] += 1
            continue
        path = _listed_file(root, rel, skipped)
        if path is None:
            continue
        meta = {k: v for k, v in row.items() if v != ""}
        meta.update(file=rel, patient=row.get("patient") or None,
                    source=row.get("source") or "metadata.csv")
        items.append((path, label, meta))
    for label, n in sorted(dropped.items()):
        skipped.append(("metadata.csv", f"class '{label}' left out ({n} rows); "
                                        f"set keep_extra_classes to keep it"))
    return items, skipped


def _scan_covid_chestxray(root: Path, df):
    """(b) ieee8023/covid-chestxray-dataset: metadata.csv + images/; frontal X-rays only,
    `finding` mapped to a class, patient from `patientid`."""
    items, skipped, left_out = [], [], Counter()
    low = {c.lower(): c for c in df.columns}
    folder = df[low["folder"]].str.strip() if "folder" in low else ""
    df = _first_rows(df, folder + "/" + df[low["filename"]].str.strip(), skipped)
    for raw in df.to_dict("records"):
        row = {k.lower(): str(v).strip() for k, v in raw.items()}
        get = lambda key: row.get(key, "")  # noqa: E731
        modality = get("modality")
        if modality and "x" not in modality.lower():  # CT volumes share the table
            left_out[f"modality {modality} is not an X-ray"] += 1
            continue
        view = get("view").upper()
        if view not in FRONTAL_VIEWS:
            left_out[f"view {view or '(none)'} is not frontal (PA, AP, AP Supine)"] += 1
            continue
        label = finding_class(get("finding"))
        if label is None:
            left_out[f"finding '{get('finding')}' is not COVID-19, normal or pneumonia"] += 1
            continue
        rel = f"{get('folder') or 'images'}/{get('filename')}"
        path = _listed_file(root, rel, skipped)
        if path is None:
            continue
        pid = get("patientid")
        items.append((path, label, {
            "file": rel, "patient": f"covid-chestxray:{pid}" if pid else None,
            "source": "covid-chestxray-dataset", "view": view, "finding": get("finding")}))
    for reason, n in sorted(left_out.items()):
        skipped.append(("metadata.csv", f"{n} rows left out: {reason}"))
    return items, skipped


def parse_where(where) -> dict[str, list[str]]:
    """{column: [glob, ...]} from DataConfig.where entries "COLUMN=GLOB"."""
    rules: dict[str, list[str]] = {}
    for entry in where or ():
        column, sep, pattern = str(entry).partition("=")
        if not sep or not column.strip():
            raise UserError(f"data filter {entry!r} must read COLUMN=PATTERN, e.g. "
                            f"'source=ozanguldali/*'")
        rules.setdefault(column.strip(), []).append(pattern.strip())
    return rules


def matches(meta: dict, rules: dict[str, list[str]]) -> bool:
    """True when `meta` passes every column's rule (any of its globs, case-sensitive)."""
    from fnmatch import fnmatchcase

    return all(any(fnmatchcase(str(meta.get(col) or ""), g) for g in globs)
               for col, globs in rules.items())


def _filter_items(items: list, skipped: list, config: DataConfig) -> list:
    rules = parse_where(config.where)
    if not rules:
        return items
    kept = [it for it in items if matches(it[2], rules)]
    if len(kept) < len(items):
        skipped.append(("metadata", f"{len(items) - len(kept)} items left out by the data "
                                    f"filter {'; '.join(config.where)}"))
    return kept


def _scan_layout(scan, table: Path, *args):
    try:
        return scan(*args)
    except (ValueError, KeyError, TypeError) as exc:   # a table of another shape or version
        raise UserError(f"{table}: {exc}") from None


def _load_directory(root: Path, config: DataConfig, progress: Progress | None) -> ImageDataset:
    """Layout by content: NIH ChestX-ray14's Data_Entry CSV, RSNA's label CSVs (core.data.layouts),
    metadata.csv with file,class (c), with finding,filename (b), else class folders (a, with
    the COVID-19 Radiography Database's sources when its metadata.xlsx files are there); a
    metadata.csv of another shape is ignored. Decoded once: later loads of the unchanged folder
    with the same settings read the decoded-data cache (core/data/cache.py)."""
    k = datacache.folder_key(root, {"size": config.size, "keep_extra": config.keep_extra_classes,
                                    "where": list(config.where),
                                    "pneumonia_findings": list(config.pneumonia_findings)})
    hit = datacache.load(k)
    if hit is not None:
        images, labels, metas, skipped = hit
        cache = f"read from the cache ({datacache.cache_root() / k})"
        if progress is not None:
            progress(1.0, f"read {len(labels):,} decoded images from the cache")
    else:
        images, labels, metas, skipped = _scan_and_decode(root, config, progress)
        kept = datacache.store(k, images, labels, metas, skipped)
        if kept and (hit := datacache.load(k, images_only=True)) is not None:
            images = hit[0]   # mapped from the entry: the decoded list is not stacked a second time
        cache = (f"decoded now and cached ({datacache.cache_root() / k})" if kept else
                 "decoded now (not cached: the cache is off, full or the disk short of room)")
    dataset = _build(images, labels, metas, skipped, config, str(root), str(root))
    dataset.cache = cache
    return dataset


def _scan_and_decode(root: Path, config: DataConfig, progress: Progress | None):
    """(images, class names, metadata, skipped) of a folder, decoded."""
    if progress is not None:
        progress(0.0, f"listing files in {root}")
    df = _read_csv(root / "metadata.csv") if (root / "metadata.csv").is_file() else None
    columns = {c.lower() for c in df.columns} if df is not None else set()
    nih = layouts.find_nih_csv(root)
    if nih is not None:
        items, skipped = _scan_layout(layouts.scan_nih, nih, root, _read_csv(nih),
                                      config.keep_extra_classes, config.pneumonia_findings)
    elif layouts.is_rsna(root):
        detail = root / layouts.RSNA_DETAIL
        items, skipped = _scan_layout(layouts.scan_rsna, root / layouts.RSNA_LABELS, root,
                                      _read_csv(root / layouts.RSNA_LABELS),
                                      _read_csv(detail) if detail.is_file() else None,
                                      config.keep_extra_classes)
    elif df is not None and {"file", "class"} <= set(df.columns):
        items, skipped = _scan_metadata_csv(root, df, config)
    elif {"finding", "filename"} <= columns:
        items, skipped = _scan_covid_chestxray(root, df)
    else:
        items, skipped = _scan_class_folders(root, config)
    items = _filter_items(items, skipped, config)
    check_fits(f"{len(items):,} images at {config.size} px", len(items) * config.size ** 2 *
               config.channels)
    images, labels, metas, bad = _decode_all(items, config.size, progress)
    return images, labels, metas, skipped + bad


# --- MedMNIST --------------------------------------------------------------------------------

# MedMNIST v3 on Zenodo (record 10519652): file name -> MD5, from medmnist/info.py.
MEDMNIST_MD5 = {
    "pneumoniamnist.npz": "28209eda62fecd6e6a2d98b1501bb15f",
    "pneumoniamnist_64.npz": "8f4eceb4ccffa70c672198ea285246c6",
    "pneumoniamnist_128.npz": "05b46931834c231683c68f40c47b2971",
    "pneumoniamnist_224.npz": "d6a3c71de1b945ea11211b03746c1fe1",
    "chestmnist.npz": "02c8a6516a18b556561a56cbdd36c4a8",
    "chestmnist_64.npz": "9de6cd0b934ebb5b7426cfba5efbae16",
    "chestmnist_128.npz": "db107e5590b27930b62dbaf558aebee3",
    "chestmnist_224.npz": "45bd33e6f06c3e8cdb481c74a89152aa",
}
CHESTMNIST_PNEUMONIA = 6  # index of "pneumonia" among ChestMNIST's 14 NIH ChestX-ray14 labels


def download_medmnist(flag: str = "pneumoniamnist", root: str | Path = "~/.medmnist",
                      size: int = 28) -> Path:
    """Download a MedMNIST npz (pneumoniamnist or chestmnist; size 28, 64, 128 or 224) from
    Zenodo into `root`, check its MD5 and return its path. Needs internet; not used offline."""
    import urllib.request

    fname = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    if fname not in MEDMNIST_MD5:
        raise UserError(f"Unknown MedMNIST file {fname}; known: {', '.join(MEDMNIST_MD5)}")
    out = Path(root).expanduser() / fname
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(fname + ".part")
    url = f"https://zenodo.org/records/10519652/files/{fname}?download=1"
    try:
        urllib.request.urlretrieve(url, tmp)
    except OSError as exc:
        raise UserError(f"Could not download {url}: {exc}") from exc
    md5 = hashlib.md5(tmp.read_bytes()).hexdigest()
    if md5 != MEDMNIST_MD5[fname]:
        tmp.unlink(missing_ok=True)
        raise UserError(f"Downloaded {fname} is corrupt (MD5 {md5}); try again.")
    tmp.replace(out)
    return out


MAX_NPZ_CLASSES = 1000   # "class-K" labels of other MedMNIST sets: at most 11 there


def _npz_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """{array name: (shape, dtype)} of an .npz, read from each .npy header without reading (or
    inflating) the data."""
    import zipfile

    fmt = np.lib.format
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                version = fmt.read_magic(f)
                read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"{info.filename}: .npy format version {version} is not supported")
                shape, _, dtype = read(f)
            out[info.filename.removesuffix(".npy")] = (shape, dtype)
    return out


def _npz_arrays(path: Path, kind: str, config: DataConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images, labels)} of a MedMNIST .npz that may come from anywhere: the images
    uint8 (N, H, W) or (N, H, W, 3), the labels whole numbers (N,) or (N, K) for the same N,
    their sizes checked against memory from the headers before any data is read, and the
    labels' values those of `kind`. UserError naming the file and the array otherwise."""
    try:
        headers = _npz_headers(path)
    except Exception as exc:   # not a ZIP, a damaged member, a bad header: all mean "refuse"
        raise UserError(f"Cannot read {path} as a MedMNIST .npz: {str(exc)[:200] or type(exc).__name__}") from None
    parts = [s for s in ("train", "val", "test") if f"{s}_images" in headers]
    if not parts:
        raise UserError(f"{path} is not a MedMNIST file: no train_images/val_images/test_images "
                        f"arrays (found {', '.join(headers) or 'nothing'}).")
    total = 0
    for split in parts:
        (xs, xt), y = headers[f"{split}_images"], headers.get(f"{split}_labels")
        if xt != np.uint8 or len(xs) not in (3, 4) or (len(xs) == 4 and xs[3] != 3) or \
                not all(1 <= n <= MAX_SIDE for n in xs[1:3]):
            raise UserError(f"{path}: {split}_images must be uint8 images (N, H, W) or (N, H, W, 3) "
                            f"of 1 to {MAX_SIDE:,} px a side, not {xt} {xs}")
        if y is None:
            raise UserError(f"{path}: {split}_images has no {split}_labels beside it")
        ys, yt = y
        if yt.kind not in "biu" or len(ys) not in (1, 2) or ys[0] != xs[0] or \
                (len(ys) == 2 and not 1 <= ys[1] <= 64):
            raise UserError(f"{path}: {split}_labels must be whole numbers (N,) or (N, K) for its "
                            f"{xs[0]:,} images, not {yt} {ys}")
        total += int(np.prod(xs)) + int(np.prod(ys)) * yt.itemsize
    n = sum(headers[f"{s}_images"][0][0] for s in parts)
    check_fits(f"{path.name} ({n:,} images)", total + n * config.size ** 2 * config.channels)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in parts}
    except Exception as exc:
        raise UserError(f"Cannot read {path} as a MedMNIST .npz: {str(exc)[:200] or type(exc).__name__}") from None
    for split, (x, y) in data.items():
        y = y.reshape(len(y), -1)
        high = 1 if kind == "pneumoniamnist" or kind == "chestmnist" or y.shape[1] > 1 \
            else MAX_NPZ_CLASSES - 1
        if y.size and (int(y.min()) < 0 or int(y.max()) > high):
            raise UserError(f"{path}: {split}_labels must lie between 0 and {high}, not "
                            f"{int(y.min())}..{int(y.max())}")
    return data


def _load_npz(path: Path, config: DataConfig, progress: Progress | None) -> ImageDataset:
    """MedMNIST npz: {train,val,test}_images (N, H, W[, 3]) uint8 and _labels.
    pneumoniamnist: 0 -> NORMAL, 1 -> PNEUMONIA. chestmnist (14 NIH labels, multi-label): no
    finding -> NORMAL, pneumonia (label 6) set -> PNEUMONIA, any other finding only -> left out
    (class OTHER_FINDING with keep_extra_classes). Other MedMNIST sets: classes "class-K".
    MedMNIST has no patient ids; the official split goes into meta["split"]."""
    if not path.is_file():
        hint = ""
        flag = path.stem.split("_")[0]
        if flag in ("pneumoniamnist", "chestmnist"):
            hint = f" Download it first with core.data.sources.download_medmnist({flag!r})."
        raise UserError(f"MedMNIST file {path} not found.{hint}")
    kind = path.stem.split("_")[0].lower()
    data = _npz_arrays(path, kind, config)
    images, labels, metas, skipped = [], [], [], []
    left_out = 0
    total = sum(len(x) for x, _ in data.values())
    done = 0
    for split, (x, y) in data.items():
        y = np.asarray(y).reshape(len(y), -1)  # (N, 1) single-label or (N, 14) multi-label
        multi = kind == "chestmnist" or y.shape[1] > 1
        for i in range(len(x)):
            if multi:
                if y[i].sum() == 0:
                    label = "NORMAL"
                elif y[i, CHESTMNIST_PNEUMONIA] == 1:
                    label = "PNEUMONIA"
                elif config.keep_extra_classes:
                    label = "OTHER_FINDING"
                else:
                    left_out += 1
                    continue
            elif kind == "pneumoniamnist":
                label = ("NORMAL", "PNEUMONIA")[int(y[i, 0])]
            else:
                label = f"class-{int(y[i, 0])}"
            img = x[i]
            if img.ndim == 3:  # (H, W, 3) colour sets -> luma
                img = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
                img = img / 255.0
            images.append(to_uint8(img, config.size))
            labels.append(label)
            metas.append({"file": f"{path.name}[{split}:{i}]", "patient": None,
                          "source": "medmnist", "split": split,
                          "orig_shape": [int(x.shape[1]), int(x.shape[2])]})
            done += 1
            if progress is not None and done % 2000 == 0:
                progress(done / total, f"converted {done:,} of {total:,} images")
    if left_out:
        skipped.append((path.name, f"{left_out} images with findings other than pneumonia left "
                                   f"out; set keep_extra_classes to keep them as OTHER_FINDING"))
    return _build(images, labels, metas, skipped, config, str(path), str(path))


# --- phantom and dispatch --------------------------------------------------------------------

def _load_phantom(per_class: int, config: DataConfig) -> ImageDataset:
    from core.data import phantom

    images, labels, metas = phantom.generate(per_class=per_class, size=config.size,
                                             seed=config.seed)
    metas = [{"source": "phantom", "file": f"phantom-{i}", **m} for i, m in enumerate(metas)]
    for m in metas:
        m["orig_shape"] = [config.size, config.size]
    names = [CLASSES[k] for k in labels]
    return _build(list(images), names, metas, [], config, f"phantom:{per_class}",
                  "the phantom source")


def load_dataset(config: DataConfig | str, progress: Progress | None = None,
                 download: bool = False) -> ImageDataset:
    """Load a data source into memory at `config.size`.

    Specs: "phantom" (config.phantom_per_class per class) or "phantom:N"; a folder (class
    folders incl. Kaggle CLASS/images + masks and Kermany {train,test,val}/CLASS; the
    covid-chestxray-dataset metadata.csv + images/; a metadata.csv with file,class,... columns
    next to class folders); a MedMNIST ".npz" path or "medmnist:PATH"; and, through
    core.data.natural, "digits", "mnist:ROOT", "fashion-mnist:ROOT", "cifar10:ROOT", "folder:PATH".
    Unreadable files are skipped into `dataset.skipped`; a missing or empty source raises
    UserError (one class is valid: a GAN needs no second; train-classifier asks for two).
    `progress(fraction, message)` reports decoding.
    `download`: fetch MNIST, Fashion-MNIST or CIFAR-10 when absent; only for a spec the user
    gave just now, never for one read from a checkpoint or a run (a file must not choose what
    to download, or where to).
    """
    if isinstance(config, str):
        config = DataConfig(source=config)
    if config.split_train_fraction != 1.0 and config.split != "train":
        raise UserError("split_train_fraction applies to the training split only "
                        "(--data-split train).")
    dataset = _load_source(config, progress, download)
    rules = parse_where(config.where)
    if rules:  # folders filter before decoding; this catches every other source
        keep = [i for i, m in enumerate(dataset.metas) if matches(m, rules)]
        if not keep:
            raise UserError(f"the data filter {'; '.join(config.where)} keeps no image of "
                            f"{config.source}")
        if len(keep) < len(dataset):
            dataset = dataset.subset(np.array(keep))
    if config.split:  # before the class filter: the split is defined on the whole source
        parts = PatientSplit.of_data(config).parts(dataset)
        if config.split not in parts:
            raise UserError(f"split must be one of {', '.join(parts)} (or empty for all), "
                            f"not {config.split!r}")
        dataset = dataset.subset(parts[config.split])
    return select_classes(dataset, config.classes) if config.classes else dataset


def select_classes(dataset: ImageDataset, classes) -> ImageDataset:
    """Only the items of `classes` (e.g. ("COVID-19",) for a GAN of the minority class), with the
    class list narrowed and labels renumbered to match."""
    wanted = [c for c in dataset.classes if c in set(classes)]
    missing = sorted(set(classes) - set(dataset.classes))
    if missing or not wanted:
        raise UserError(f"class(es) {', '.join(missing) or classes} not in this data; it has "
                        f"{', '.join(dataset.classes)}.")
    keep = np.flatnonzero(np.isin(dataset.labels, [dataset.classes.index(c) for c in wanted]))
    remap = np.array([wanted.index(c) if c in wanted else -1 for c in dataset.classes])
    return ImageDataset(dataset.images[keep], remap[dataset.labels[keep]], wanted,
                        [dataset.metas[i] for i in keep], dataset.skipped, dataset.name)


def _load_source(config: DataConfig, progress: Progress | None, download: bool) -> ImageDataset:
    spec = str(config.source).strip()
    low = spec.lower()
    if low == "phantom" or low.startswith("phantom:"):
        n = config.phantom_per_class
        if ":" in spec:
            try:
                n = int(spec.split(":", 1)[1])
            except ValueError:
                raise UserError(f"'{spec}': the number after 'phantom:' must be an "
                                f"integer") from None
        if not 1 <= n <= MAX_PHANTOM_PER_CLASS:
            raise UserError(f"'{spec}': the phantom source makes 1 to {MAX_PHANTOM_PER_CLASS:,} "
                            f"images per class, not {n:,}")
        check_fits(f"'{spec}' at {config.size} px", n * len(CLASSES) * config.size ** 2)
        return _load_phantom(n, config)
    if low == "digits" or low.startswith(NATURAL_PREFIXES):
        return natural.load(spec, config, progress, download=download)
    if low.startswith("medmnist:"):
        return _load_npz(Path(spec.split(":", 1)[1]).expanduser(), config, progress)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".npz":
        return _load_npz(path, config, progress)
    if not path.exists():
        raise UserError(f"Data source '{spec}' not found: not a folder, .npz file, or one of "
                        f"phantom, phantom:N, medmnist:PATH, digits, mnist:ROOT, "
                        f"fashion-mnist:ROOT, cifar10:ROOT, folder:PATH.")
    if not path.is_dir():
        raise UserError(f"'{spec}' is a file; give a folder of images, a MedMNIST .npz, or "
                        f"'phantom'.")
    return _load_directory(path, config, progress)


# --- summary ------------------------------------------------------------------------------

def describe(dataset: ImageDataset) -> dict:
    """JSON-ready summary: counts per class, stored and original sizes, patients, sources,
    augmented/synthetic counts, and skipped inputs with reasons."""
    metas = dataset.metas
    shapes = Counter(f"{m['orig_shape'][1]}x{m['orig_shape'][0]}"  # "WxH"
                     for m in metas if m.get("orig_shape"))
    with_patient = sum(1 for m in metas if m.get("patient"))
    reasons = Counter(r.split(" (")[0] for _, r in dataset.skipped)
    by_source: dict[str, dict[str, int]] = {}
    for m, y in zip(metas, dataset.labels):
        counts = by_source.setdefault(str(m.get("source", "")), {c: 0 for c in dataset.classes})
        counts[dataset.classes[y]] += 1
    return {
        "name": dataset.name,
        "n_images": len(dataset),
        "classes": list(dataset.classes),
        "class_counts": dataset.class_counts(),
        "image_size": dataset.size,
        "channels": int(dataset.images.shape[1]),
        "sizes_found": dict(shapes.most_common()),  # original "WxH" -> count
        "n_patients": len(set(dataset.patients)),
        "n_with_patient_id": with_patient,
        "sources": dict(Counter(str(m.get("source", "")) for m in metas).most_common()),
        "class_counts_by_source": by_source,  # the known site/age bias shows up here
        "n_augmented": sum(1 for m in metas if m.get("augmented")),
        "n_synthetic": sum(1 for m in metas if m.get("synthetic")),
        "n_skipped": len(dataset.skipped),
        "skipped_reasons": dict(reasons.most_common()),
        "skipped": [{"file": f, "reason": r} for f, r in dataset.skipped],
        "cache": getattr(dataset, "cache", None),
    }


def format_description(info: dict, max_skipped: int = 20) -> str:
    """The human-readable `data-info` text of describe()'s dict."""
    lines = [f"source:   {info['name']}",
             f"images:   {info['n_images']:,} in {len(info['classes'])} classes, stored at "
             f"{info['image_size']}x{info['image_size']}x{info['channels']}"]
    width = max(len(c) for c in info["classes"])
    for c, n in info["class_counts"].items():
        lines.append(f"  {c:<{width}}  {n:>7,}  ({100 * n / max(info['n_images'], 1):.1f}%)")
    sizes = list(info["sizes_found"].items())
    shown = ", ".join(f"{s} ({n:,})" for s, n in sizes[:8])
    if len(sizes) > 8:
        shown += f", ... {len(sizes) - 8} more"
    lines.append(f"sizes found (WxH): {shown or 'n/a'}")
    lines.append(f"patients: {info['n_patients']:,} distinct ({info['n_with_patient_id']:,} images "
                 f"carry a patient id; the others count as their own patient)")
    names = [s or "(none)" for s in info["sources"]]
    sw = max(len(n) for n in names)
    lines.append("by source:")
    lines.append(f"  {'source':<{sw}}  {'images':>7}  " + "  ".join(
        f"{c:>{max(len(c), 7)}}" for c in info["classes"]))
    for name, (src, n) in zip(names, info["sources"].items()):
        per = info["class_counts_by_source"][src]
        lines.append(f"  {name:<{sw}}  {n:>7,}  " + "  ".join(
            f"{per[c]:>{max(len(c), 7)},}" for c in info["classes"]))
    if info["n_augmented"] or info["n_synthetic"]:
        lines.append(f"augmented: {info['n_augmented']:,}, synthetic: {info['n_synthetic']:,}")
    if info.get("cache"):
        lines.append(f"cache:    {info['cache']}")
    lines.append(f"skipped:  {info['n_skipped']:,}")
    for item in info["skipped"][:max_skipped]:
        lines.append(f"  {item['file']}: {item['reason']}")
    if info["n_skipped"] > max_skipped:
        lines.append(f"  ... {info['n_skipped'] - max_skipped} more; by reason: "
                     + "; ".join(f"{r} ({n})" for r, n in info["skipped_reasons"].items()))
    return "\n".join(lines)


# --- CLI -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="phantom[:N], a folder, a MedMNIST .npz or medmnist:PATH, "
                                       "digits, mnist:ROOT, fashion-mnist:ROOT, cifar10:ROOT, "
                                       "folder:PATH")
    parser.add_argument("--size", type=int, default=None,
                        help=f"resize to SxS (default {DataConfig.size})")
    parser.add_argument("--keep-extra-classes", action="store_true",
                        help="keep classes beyond COVID-19/NORMAL/PNEUMONIA (e.g. Lung_Opacity)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the phantom source")
    parser.add_argument("--where", default="", help="keep only items whose metadata match, "
                        "COLUMN=GLOB entries separated by commas (see DataConfig.where)")
    parser.add_argument("--json", action="store_true", help="print describe()'s dict as JSON")


def main(args: argparse.Namespace) -> int:
    config = DataConfig(source=args.source, keep_extra_classes=args.keep_extra_classes,
                        where=tuple(w for w in args.where.split(",") if w.strip()))
    if args.size is not None:
        config.size = args.size
    if args.seed is not None:
        config.seed = args.seed
    shown = [-1]

    def progress(frac: float, msg: str) -> None:  # a terminal line per 10%, on stderr
        if int(frac * 10) > shown[0]:
            shown[0] = int(frac * 10)
            print(f"  {100 * frac:3.0f}%  {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    dataset = load_dataset(config, progress if sys.stderr.isatty() else None, download=True)
    info = describe(dataset)
    info["load_seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_description(info))
        print(f"loaded in {info['load_seconds']:.2f} s")
    return 0
