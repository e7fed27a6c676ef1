"""How loading scales with the size of a data set, first decode against the decoded-data cache
(core/data/cache.py), on phantom trees in NIH ChestX-ray14's layout (a Data_Entry_2017.csv beside
images_0NN/images/ folders of PNGs) that this script writes.

    python bench/data_scale.py [--counts 1000,10000,50000] [--px 256] [--size 64]

For each count: the first load (scan, decode, write the cache) and a cached load, each in a fresh
process, with its wall time and peak resident memory (also above the process's own baseline
after its imports, pandas and the image decoders included), the cache entry's size, and the cached load's time per 1,000 images. Targets
on the 2-core machine: the cached load of 50,000 images at 64 px in at most 5 s, the first load
growing linearly, peak memory under twice the cache size. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LOAD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from core.data.config import DataConfig
from core.data.sources import load_dataset
import pandas, pydicom, PIL.Image   # the libraries' own memory is the baseline, not the data's
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
ds = load_dataset(DataConfig(source=sys.argv[1], size=int(sys.argv[2])))
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "n": len(ds), "cache": ds.cache,
                  "peak_mb": peak / 1024, "above_baseline_mb": (peak - base) / 1024}))
"""


def write_tree(root: Path, n: int, px: int) -> float:
    """n PNGs in the NIH layout (1,000 per images_0NN folder is plenty to measure), made from 64
    rendered phantoms with per-image noise so every file decodes to different pixels."""
    from PIL import Image

    from core.data import phantom

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    bases = [phantom.render(("NORMAL", "PNEUMONIA")[i % 2], i, px, 0)[0] for i in range(64)]
    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"]
    for i in range(n):
        folder = root / f"images_{1 + i // 10000:03d}" / "images"
        if i % 10000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        img = bases[i % 64].copy()
        img[rng.integers(0, px, 8), :] ^= rng.integers(0, 16, (8, px), dtype=np.uint8)
        name = f"{i:08d}_000.png"
        Image.fromarray(img).save(folder / name, compress_level=1)
        rows.append(f"{name},{'No Finding' if i % 2 == 0 else 'Pneumonia'},0,{i // 3},{30 + i % 50},"
                    f"{'MF'[i % 2]},PA")
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    return time.perf_counter() - t0


def load(root: Path, size: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", LOAD, str(root), str(size), str(REPO)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,10000,50000")
    parser.add_argument("--px", type=int, default=256, help="size of the PNGs written")
    parser.add_argument("--size", type=int, default=64, help="training size they are loaded at")
    args = parser.parse_args()
    print("| images | write s | first load s | per 1,000 | cached load s | per 1,000 | cache MB |"
          " peak RSS MB (first / cached) | above baseline MB (first / cached) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for n in [int(c) for c in args.counts.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            root, runs = Path(tmp) / "nih", Path(tmp) / "runs"
            written = write_tree(root, n, args.px)
            env = {**os.environ, "XRAY_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1"}
            first = load(root, args.size, env)
            cached = load(root, args.size, env)
            assert cached["cache"].startswith("read from the cache"), cached
            cache_mb = sum(p.stat().st_size for p in (runs / "cache").rglob("*") if p.is_file()) / 2**20
            print(f"| {first['n']:,} | {written:.0f} | {first['seconds']:.1f} | "
                  f"{1000 * first['seconds'] / n:.2f} | {cached['seconds']:.2f} | "
                  f"{1000 * cached['seconds'] / n:.3f} | {cache_mb:.0f} | "
                  f"{first['peak_mb']:.0f} / {cached['peak_mb']:.0f} | "
                  f"{first['above_baseline_mb']:.0f} / {cached['above_baseline_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
