"""How often a classifier's out-of-distribution check flags what it should and what it should not.

Real frontal chest X-rays (a folder, by source; by default only patients the model never trained
or validated on) should pass; a CT and an MR slice (pydicom's own test files), photos
(scikit-image's sample images, when it is installed), phantoms at the model's input size, noise
and a gradient should be flagged. Prints one table.

    python bench/ood_check.py --checkpoint checkpoints/classifier-cxr.safetensors \
        --data ../shared/data/cxr-real-v2
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.classify.model import find_checkpoint, load_classifier  # noqa: E402
from core.classify.predict import predict_file, predict_image  # noqa: E402


def _others(size: int) -> dict[str, list[np.ndarray]]:
    """Non-chest inputs by kind: float (H, W) images in [0, 1], or files (their header counts)."""
    from pydicom.data import get_testdata_file

    from core.data.imageio import read_image
    from core.data.phantom import render

    rng = np.random.default_rng(0)
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for kind, name in (("CT slice", "CT_small.dcm"), ("MR slice", "MR_small.dcm")):
        path = get_testdata_file(name)  # pydicom's own test files, shipped with it
        if path:
            out[f"{kind}, DICOM (pydicom {name})"].append(Path(path))
            out[f"{kind}, pixels only (as a PNG would be)"].append(read_image(path))
    try:
        import skimage.data as sk

        for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "horse", "moon", "text",
                     "immunohistochemistry"):
            img = np.asarray(getattr(sk, name)(), dtype=np.float32)
            img = img.mean(-1) if img.ndim == 3 else img
            out["photo (scikit-image samples)"].append(img / max(img.max(), 1))
    except ImportError:
        pass
    for label in ("COVID-19", "NORMAL", "PNEUMONIA"):
        for i in range(10):
            out["phantom, model size"].append(render(label, i, size=size, seed=20_260_101)[0] / 255.0)
    for _ in range(5):
        out["uniform noise"].append(rng.random((256, 256)).astype(np.float32))
    out["horizontal gradient"].append(np.tile(np.linspace(0, 1, 256, dtype=np.float32), (256, 1)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", help="a folder of real frontal chest X-rays (metadata.csv)")
    parser.add_argument("--split", default="unseen", help="which of its images (see evaluate)")
    args = parser.parse_args()

    model, meta = load_classifier(find_checkpoint(args.checkpoint))
    size = int(meta["model"]["size"])
    rows = []
    if args.data:
        from core.data.config import DataConfig
        from core.data.sources import load_dataset
        from core.classify.evaluate import split_indices

        ds = load_dataset(DataConfig(source=args.data, size=size))
        idx = split_indices(meta, ds, args.split, own_data=False)
        by_source: dict[str, list[bool]] = defaultdict(list)
        for i in idx:
            m = ds.metas[i]
            r = predict_file(model, meta, Path(args.data) / m["file"])
            if r["ok"]:
                by_source[str(m.get("source"))].append(bool(r["ood"]["flag"]))
        flags = [f for v in by_source.values() for f in v]
        rows.append(("real frontal X-rays, all (should pass)", len(flags), sum(flags)))
        rows += [(f"  {s}", len(v), sum(v)) for s, v in sorted(by_source.items())]
    for kind, images in _others(size).items():
        flags = [bool((predict_file(model, meta, img) if isinstance(img, Path) else
                       predict_image(model, meta, img))["ood"]["flag"]) for img in images]
        rows.append((f"{kind} (should be flagged)", len(flags), sum(flags)))
    print(f"OOD threshold {meta.get('ood', {}).get('threshold')}")
    print("| input | n | flagged |\n|---|---:|---:|")
    for name, n, k in rows:
        print(f"| {name} | {n} | {k} ({k / max(n, 1):.0%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
