"""The decoded-data cache: a folder source's images at one training size, decoded once and kept
as uint8 .npy under runs/cache/<key>/ with their labels, metadata and skipped files, so a later
run, page or classifier reads them memory-mapped instead of decoding the folder again.

The key covers every file's path, size and modification time, its class and metadata (from the
folder names or the label tables) and the decode settings: a changed, added or removed file is a
new key. An entry is written to a temporary folder and renamed into place under a lock, so two
jobs never write one entry at once and a cancelled or failed write leaves nothing behind; its
manifest, written last, holds the image file's size and SHA-256, checked on every read: a
truncated or corrupt entry is deleted and decoded again, never trusted. The least recently used
entries go when the cache outgrows its cap ($XRAY_CACHE_MAX_BYTES, default 8 GiB); $XRAY_CACHE=0
turns it off."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np

from core.atomic import file_lock
from core.paths import runs_root

VERSION = 2                     # of the decoder and this layout: a change is a new key
DEFAULT_MAX_BYTES = 8 * 2**30
_CHUNK = 8 * 2**20


def enabled() -> bool:
    return os.environ.get("XRAY_CACHE", "1") != "0"


def cache_root() -> Path:
    return runs_root() / "cache"


def max_bytes() -> int:
    try:
        return int(float(os.environ.get("XRAY_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BYTES


def folder_key(root: Path, settings: dict) -> str:
    """The entry's name for folder `root`: a hash of the settings that decide what is loaded
    and how (size, class options, filters) and of every file under the folder, images and label
    tables alike, by relative path, size and modification time: an added, removed or changed
    file is a new key. One stat per file and no parsing, so a cached load of 50,000 images
    starts in a fraction of a second."""
    h = hashlib.sha256(json.dumps({"version": VERSION, "root": str(Path(root).resolve()),
                                   **settings}, sort_keys=True, default=str).encode())
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                st = e.stat()
                # fsencode: a name that is not UTF-8 (a Latin-1 byte) hashes as its bytes
                h.update(os.fsencode(e.path) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                continue
    return h.hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _locked(root: Path, name: str):
    return file_lock(root / f".lock-{name}")


def status(k: str) -> dict | None:
    """The manifest of entry `k` when it is complete, else None (no check of its bytes)."""
    try:
        manifest = json.loads((cache_root() / k / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def load(k: str, images_only: bool = False) -> tuple[np.ndarray, list, list, list] | None:
    """(images memory-mapped (N, S, S) uint8, class names, metadata, skipped) of entry `k`, or
    None when it is absent; an entry whose bytes do not match its manifest is deleted.
    `images_only`: the lists come back empty (a caller that has them already)."""
    if not enabled():
        return None
    entry = cache_root() / k
    manifest = status(k)
    if manifest is None:
        return None
    images = entry / "images.npy"
    try:
        ok = images.stat().st_size == manifest["bytes"] and _sha256(images) == manifest["sha256"]
        if ok:
            array = np.load(images, mmap_mode="r")
            meta = {"labels": [], "metas": [], "skipped": []} if images_only else \
                json.loads((entry / "items.json").read_text())
            ok = images_only or array.shape[0] == len(meta["labels"]) == len(meta["metas"])
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:   # truncated, corrupt or half-deleted: never trusted, decoded again
        with _locked(cache_root(), k):
            shutil.rmtree(entry, ignore_errors=True)
        return None
    os.utime(entry / "manifest.json")   # least recently used = oldest manifest time
    return array, meta["labels"], meta["metas"], [tuple(s) for s in meta["skipped"]]


def store(k: str, images, labels: list, metas: list, skipped: list) -> bool:
    """Write entry `k` (images: a sequence of (S, S) uint8 arrays, or one (N, S, S) array);
    False when the cache is off, the entry exists, or the disk has no room for it (the data
    are still used, just not kept). Then evicts the least recently used entries over the cap."""
    if not enabled() or not len(images):
        return False
    root = cache_root()
    n, size = len(images), int(images[0].shape[-1])
    need = n * size * size
    if need > max_bytes():
        return False
    with _locked(root, k):
        if status(k) is not None:
            return False            # another job wrote it meanwhile
        if shutil.disk_usage(root).free < 1.2 * need + 64 * 2**20:
            return False
        tmp = root / f".tmp-{k}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            # Written row by row through a plain file: no second copy of the whole set, and no
            # written mapping, whose dirty pages would count in this process's memory.
            with open(tmp / "images.npy", "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "|u1", "fortran_order": False, "shape": (n, size, size)})
                for img in images:
                    f.write(np.ascontiguousarray(img, dtype=np.uint8).tobytes())
            with open(tmp / "items.json", "w") as f:   # streamed: no second copy as one string
                json.dump({"labels": list(labels), "metas": list(metas),
                           "skipped": [list(s) for s in skipped]}, f, default=str)
            manifest = {"version": VERSION, "n": n, "size": size, "bytes": (tmp / "images.npy").stat().st_size,
                        "sha256": _sha256(tmp / "images.npy"), "written": time.time()}
            (tmp / "manifest.json").write_text(json.dumps(manifest))
            tmp.rename(root / k)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    evict(max_bytes())
    return True


def entries() -> list[tuple[Path, int, float]]:
    """(folder, bytes, last used) of every complete entry, least recently used first."""
    root = cache_root()
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = d / "manifest.json"
        if d.is_dir() and not d.name.startswith(".") and m.is_file():
            used = sum(p.stat().st_size for p in d.iterdir() if p.is_file())
            out.append((d, used, m.stat().st_mtime))
    return sorted(out, key=lambda e: e[2])


def evict(limit: int) -> list[Path]:
    """Delete the least recently used entries until the cache holds at most `limit` bytes."""
    found = entries()
    total = sum(b for _, b, _ in found)
    removed = []
    for d, used, _ in found:
        if total <= limit:
            break
        with _locked(cache_root(), d.name):
            shutil.rmtree(d, ignore_errors=True)
        total -= used
        removed.append(d)
    return removed
