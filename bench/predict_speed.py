"""Single-X-ray prediction speed (target: a 2048x2048 image -> probabilities + Grad-CAM heatmap in
<= 300 ms on 2 CPU cores): decode, preprocess, forward + Grad-CAM + OOD, and the overlay PNG,
timed side by side (median of --repeat runs, wall and CPU) for 8-bit PNG, 16-bit PNG, JPEG and
DICOM inputs.

    python bench/predict_speed.py [--checkpoint CKPT] [--size 64] [--arch report-cnn] [--repeat 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from core.classify.model import (  # noqa: E402
    ClassifierConfig,
    build_classifier,
    find_checkpoint,
    load_classifier,
    ood_features,
    save_classifier,
)
from core.data.imageio import read_image  # noqa: E402
from core.data.phantom import render  # noqa: E402
from core.classify.predict import fit_ood, overlay_png, predict_image  # noqa: E402

SIDE = 2048


def _encode(img8: np.ndarray) -> dict[str, bytes]:
    """The same 2048x2048 radiograph as 8-bit PNG, 16-bit PNG, JPEG and DICOM bytes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    out = {}
    for name, arr, kw in (("png8", img8, {"format": "PNG"}),
                          ("png16", img8.astype(np.uint16) * 257, {"format": "PNG"}),
                          ("jpeg", img8, {"format": "JPEG", "quality": 92})):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, **kw)
        out[name] = buf.getvalue()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = img8.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (img8.astype("<u2") * 16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out["dicom"] = buf.getvalue()
    return out


def _model(args) -> tuple[torch.nn.Module, dict]:
    if args.checkpoint:
        return load_classifier(find_checkpoint(args.checkpoint))
    # Untrained weights time the same as trained ones; OOD statistics are fitted on random
    # images so the Mahalanobis step is timed too.
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(arch=args.arch, size=args.size)).eval()
    feats = ood_features(model, torch.rand(64, 1, args.size, args.size) * 2 - 1)
    ood = fit_ood(feats, np.arange(64) % 3, 3)
    meta = {"classes": ["COVID-19", "NORMAL", "PNEUMONIA"], "temperature": 1.0,
            "ood": {"threshold": 1.0}}
    path = Path(tempfile.mkdtemp()) / "bench.safetensors"
    save_classifier(path, model, meta, ood)
    return load_classifier(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained classifier (default: a fresh one)")
    parser.add_argument("--arch", default="report-cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    model, meta = _model(args)
    img8 = np.asarray(Image.fromarray(render("PNEUMONIA", 0, 512)[0]).resize((SIDE, SIDE),
                                                                             Image.BILINEAR))
    files = _encode(img8)
    out_png = Path(tempfile.mkdtemp()) / "overlay.png"
    print(f"model {meta['model']['arch']} at {meta['model']['size']} px, torch threads "
          f"{torch.get_num_threads()}, {args.repeat} runs each, median ms (wall / CPU)")
    print(f"{'input':7s} {'MB':>5s} {'decode':>13s} {'preprocess':>13s} {'fwd+CAM+OOD':>13s} "
          f"{'total':>13s} {'overlay PNG':>13s}")
    for name, data in files.items():
        rows = []
        for _ in range(args.repeat + 1):  # the first run warms up caches and is dropped
            w0, c0 = time.perf_counter(), time.process_time()
            img = read_image(data, name=f"bench.{name}")
            w1, c1 = time.perf_counter(), time.process_time()
            r = predict_image(model, meta, img)  # preprocess + forward/Grad-CAM/OOD inside
            w2, c2 = time.perf_counter(), time.process_time()
            r["image"] = img
            overlay_png(r, out_png)
            w3, c3 = time.perf_counter(), time.process_time()
            pre = r["timing_ms"]["preprocess"]
            rows.append(((w1 - w0) * 1e3, (c1 - c0) * 1e3, pre, r["timing_ms"]["model"],
                         (w2 - w0) * 1e3, (c2 - c0) * 1e3, (w3 - w2) * 1e3, (c3 - c2) * 1e3))
        med = [statistics.median(col) for col in zip(*rows[1:])]
        print(f"{name:7s} {len(data) / 2**20:5.1f} {med[0]:6.1f} / {med[1]:5.1f} {med[2]:13.1f} "
              f"{med[3]:13.1f} {med[4]:6.1f} / {med[5]:5.1f} {med[6]:6.1f} / {med[7]:5.1f}")
    print("total = decode + preprocess + forward/Grad-CAM/OOD (probabilities and heatmap); the "
          "overlay PNG (at most 512 px) is written after that.")


if __name__ == "__main__":
    main()
