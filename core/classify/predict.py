"""Prediction for single X-ray files: class probabilities (temperature-scaled), an
out-of-distribution score (Mahalanobis distance of penultimate features to the training
classes), a Grad-CAM heatmap and overlay PNG; the `predict` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.errors import UserError
from core.classify.gradcam import gradcam, overlay

OOD_PERCENTILE = 99.0   # threshold: this percentile of held-out in-distribution distances
DISPLAY_MAX = 512       # overlay PNGs are at most this many pixels on their long side


# ---- OOD: Mahalanobis distance with class means and a shared covariance (Lee et al. 2018) on
# pooled conv activations + penultimate features (core.classify.model.ood_features) ----------------
def fit_ood(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict[str, torch.Tensor]:
    """Per-feature scale (D,), class means (K, D) and a Ledoit-Wolf regularised shared precision
    matrix (D, D) of the OOD features (N, D) of the training images (labels (N,)). Features are
    divided by their scale first, so the shrinkage treats pooled conv and dense features alike."""
    from sklearn.covariance import LedoitWolf

    f = features.double().cpu().numpy()
    # A channel (nearly) silent on every training image would get a tiny scale and turn any
    # activation into a huge distance, in-distribution ones included; floor the scale.
    std = f.std(0)
    scale = np.maximum(std, 0.1 * std.mean() + 1e-8)
    f = f / scale
    y = np.asarray(labels)
    d = f.shape[1]
    means = np.zeros((n_classes, d))
    for k in range(n_classes):
        if (y == k).any():
            means[k] = f[y == k].mean(0)
        else:  # a class missing from training: put its mean far away so it never is the nearest
            means[k] = np.inf
    centred = f - means[y]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return {"scale": torch.from_numpy(scale).float(), "means": torch.from_numpy(means).float(),
            "precision": torch.from_numpy(precision).float()}


def ood_distance(features: torch.Tensor, ood: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) Mahalanobis distance of features (N, D) to the nearest training class mean."""
    f = features.double().cpu()
    if "scale" in ood:
        f = f / ood["scale"].double()
    means, prec = ood["means"].double(), ood["precision"].double()
    finite = torch.isfinite(means).all(1)
    diff = f[:, None, :] - means[None, finite]                            # (N, K', D)
    d2 = torch.einsum("nkd,de,nke->nk", diff, prec, diff).clamp_min(0)    # (N, K')
    return d2.min(1).values.sqrt().float()


def outlier_means(features: torch.Tensor, labels, ood: dict[str, torch.Tensor]) -> torch.Tensor:
    """(M, D) means, in the fitted OOD's standardised space, of features (N, D) of known
    outliers (labels (N,) in 0..M-1): images that look X-ray-like to the model's features but
    are not chest X-rays, such as the project's own phantoms. An image nearer to one of them
    than to every training class is flagged (ood_outlier)."""
    f = features.double().cpu() / ood["scale"].double()
    y = torch.as_tensor(np.asarray(labels))
    return torch.stack([f[y == k].mean(0) for k in torch.unique(y)]).float()


def ood_outlier(features: torch.Tensor, ood: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) bool: nearer (Mahalanobis, shared precision) to a known-outlier mean than to any
    training class mean; all False when the statistics hold no outlier means."""
    if "outlier_means" not in ood:
        return torch.zeros(len(features), dtype=torch.bool)
    inner = ood_distance(features, ood)
    outer = ood_distance(features, {**ood, "means": ood["outlier_means"]})
    return outer < inner


def ood_threshold(distances: torch.Tensor, percentile: float = OOD_PERCENTILE) -> float:
    """The flagging threshold: `percentile` of in-distribution distances (N,)."""
    return float(np.percentile(distances.cpu().numpy(), percentile))


# ---- prediction ------------------------------------------------------------------------------
def _trained_on(meta: dict) -> dict:
    td = meta.get("training_data") or {}
    return {"source": td.get("source"), "real": td.get("real")}


def _ood_result(feats: torch.Tensor, meta: dict) -> dict:
    ood_t = meta.get("ood_tensors") or {}
    thr = (meta.get("ood") or {}).get("threshold")
    if "means" not in ood_t or "precision" not in ood_t or thr is None:
        return {"score": None, "threshold": None, "ratio": None, "flag": None,
                "note": meta.get("ood_note") or "this checkpoint has no OOD statistics"}
    score, thr = float(ood_distance(feats, ood_t)[0]), float(thr)
    outlier = bool(ood_outlier(feats, ood_t)[0])
    return {"score": score, "threshold": thr, "ratio": score / thr if thr > 0 else None,
            "flag": bool(score > thr) or outlier, "like_known_outlier": outlier}


def predict_image(model: torch.nn.Module, meta: dict, img: np.ndarray) -> dict:
    """Predict one decoded image, float (H, W) in [0, 1] (any size). Returns probabilities,
    predicted class, confidence, OOD {score, threshold, ratio, flag}, "heatmap_class" (the
    predicted class, or the next most likely one when its map is empty), "empty_maps" (classes
    whose Grad-CAM is all zero), plus non-JSON arrays "heatmap" (S, S) float in [0, 1] of
    heatmap_class, "heatmaps" {class: (S, S)} and "input" (S, S) uint8 (what the model saw).

    `model` may be a core.classify.ensemble.Ensemble (with the meta load_ensemble gives): probabilities
    are the members' mean, the heatmap the mean of their Grad-CAMs of the ensemble's class, and
    the OOD score the members' mean ratio of distance to threshold (flagged above 1)."""
    from core.classify.ensemble import Ensemble
    from core.data.imageio import to_uint8

    t0 = time.perf_counter()
    size = int(meta["model"]["size"])
    u8 = to_uint8(img, size)                                              # (S, S) uint8
    x = torch.from_numpy(u8).float().div_(127.5).sub_(1.0)[None, None]   # (1, 1, S, S) in [-1, 1]
    if int(meta["model"].get("channels", 1)) == 3:
        x = x.expand(1, 3, size, size)
    x = x.to(next(model.parameters()).device)
    t1 = time.perf_counter()
    classes = list(meta.get("classes") or [])
    members = list(zip(model.members, meta["member_metas"])) if isinstance(model, Ensemble) \
        else [(model, meta)]

    def explain(target: int) -> tuple[torch.Tensor, list]:
        """(Grad-CAM (S, S) of class `target`, averaged over the members, [(logits, OOD feats)])."""
        outs = [gradcam(m, x, target=target) for m, _ in members]
        heat = torch.stack([h[0] for _, h, _ in outs]).mean(0)
        return heat / heat.max().clamp_min(1e-12), [(lg, f) for lg, _, f in outs]

    if isinstance(model, Ensemble):
        with torch.no_grad():
            probs = model(x)[0].double().exp().tolist()
        t = 1.0
    else:
        with torch.no_grad():
            logits = model(x)
        t = float(meta.get("temperature") or 1.0)
        probs = torch.softmax(logits[0].double() / t, 0).tolist()
    k = int(np.argmax(probs))
    # Every class's map: a class whose map is empty (nothing in the image raised its score at
    # the last conv block, as happens for NORMAL) is said to be so, and the map of the next
    # most likely class is shown by default instead of an overlay that silently shows nothing.
    heatmaps, per_member = {}, None
    for j in range(len(classes)):
        heat, outs = explain(j)
        heatmaps[classes[j]] = heat.cpu().numpy()
        if j == k:
            per_member = outs
    empty = [c for c in classes if not heatmaps[c].max() > 0]
    shown = next((classes[j] for j in np.argsort(probs)[::-1] if classes[j] not in empty),
                 classes[k])
    oods = [_ood_result(feats, mm) for (_, feats), (_, mm) in zip(per_member, members)]
    if isinstance(model, Ensemble):
        ratios = [o["ratio"] for o in oods]
        ood = ({"score": None, "threshold": None, "ratio": None, "flag": None,
                "note": "a member has no OOD statistics"} if None in ratios else
               {"score": float(np.mean(ratios)), "threshold": 1.0, "ratio": float(np.mean(ratios)),
                "flag": bool(np.mean(ratios) > 1), "members_flagged": sum(o["flag"] for o in oods),
                "note": "mean over the members of distance / threshold"})
    else:
        ood = oods[0]
    t2 = time.perf_counter()
    out = {"ok": True, "predicted": classes[k], "confidence": probs[k],
           "probabilities": dict(zip(classes, probs)), "temperature": t,
           "trained_on": _trained_on(meta), "ood": ood}
    if "members" in meta:
        out["members"] = meta["members"]
    if out["trained_on"]["real"] is False:
        out["warning"] = ("this model was trained on phantom (synthetic) images only; its output "
                          "on a real X-ray means nothing")
    out["heatmaps"] = heatmaps
    out["heatmap"], out["heatmap_class"], out["empty_maps"] = heatmaps[shown], shown, empty
    out["input"] = u8
    out["timing_ms"] = {"preprocess": 1000 * (t1 - t0), "model": 1000 * (t2 - t1)}
    return out


def predict_file(model: torch.nn.Module, meta: dict, src, name: str | None = None) -> dict:
    """Predict one file (path, bytes or binary file object): see predict_image. A file that
    cannot be read (or any UserError) gives {"file", "ok": False, "error": message} instead of
    raising, so a batch never stops at one bad file. "image" holds the decoded (H, W) float
    image for the overlay; "notes" lists cautions about the file (core.data.imageio.read_image_notes,
    shape_notes) that the OOD score may or may not catch."""
    from core.data.imageio import RulesOut, read_image_notes

    label = name or (str(src) if isinstance(src, (str, Path)) else getattr(src, "name", None)
                     or "<bytes>")
    t0 = time.perf_counter()
    try:
        img, notes = read_image_notes(src, name)
        t1 = time.perf_counter()
        out = predict_image(model, meta, img)
    except UserError as exc:
        return {"file": label, "ok": False, "error": str(exc)}
    out["timing_ms"]["decode"] = 1000 * (t1 - t0)
    out["file"] = label
    out["image"] = img
    out["input_shape"] = list(img.shape)
    out["notes"] = notes + shape_notes(img.shape, int(meta["model"]["size"]))
    if any(isinstance(n, RulesOut) for n in notes):
        # The file itself says it is no frontal chest radiograph: flagged, whatever the features.
        out["ood"] = {**out["ood"], "flag": True, "by_file": True}
    return out


def shape_notes(shape: tuple[int, ...], size: int) -> list[str]:
    """Cautions about an image's geometry: much smaller than the model's input (enlarged, so it
    carries little detail), or far from square (the training images were square, so it is
    stretched; a chest film is at most about 1.3:1)."""
    h, w = shape[:2]
    notes = []
    if max(h, w) < size / 2:
        notes.append(f"the image is only {w}x{h} px, enlarged to {size}x{size} for the model")
    if max(h, w) > 1.6 * min(h, w):
        notes.append(f"the image is {w}x{h} px, far from square, and was stretched to "
                     f"{size}x{size}; a chest X-ray is nearly square")
    return notes


def to_json(result: dict) -> dict:
    """The JSON-ready part of a predict_file/predict_image result (arrays dropped)."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray) and k != "heatmaps"}


def overlay_png(result: dict, path: str | Path, max_side: int = DISPLAY_MAX) -> Path:
    """Write the Grad-CAM overlay of a predict_file result as an RGB PNG, on the original image
    (aspect kept, shrunk by block means to at most `max_side` px), or on the model input when
    no original is kept."""
    img = result.get("image")
    if img is None:
        img = result["input"].astype(np.float32) / 255.0
    h, w = img.shape
    f = -(-max(h, w) // max_side)  # integer shrink factor: block means are cheap at 2048 px
    if f > 1:
        hh, ww = max(f, h // f * f), max(f, w // f * f)
        img = np.pad(img, ((0, max(0, hh - h)), (0, max(0, ww - w))), mode="edge")[:hh, :ww]
        img = img.reshape(hh // f, f, ww // f, f).mean(axis=(1, 3))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1: a few % larger file, several times faster than the default on smooth images
    Image.fromarray(overlay(img, result["heatmap"])).save(path, compress_level=1)
    return path


# ---- `python -m core predict` ----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, action="append",
                        help="classifier .safetensors or its run dir; repeat it for an ensemble "
                             "(a list after one flag would swallow the files)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="PNG (8/16-bit), JPEG or DICOM")
    parser.add_argument("--heatmap-dir", help="write FILE-stem.gradcam.png overlays here")


def main(args: argparse.Namespace) -> int:
    """Prints one JSON object per file; for a file that could not be read also one line on
    stderr naming it and the problem, and exit code 2 (the others are still predicted)."""
    from core.classify.model import find_checkpoint, load_classifier
    from core.classify.ensemble import load_ensemble

    if len(args.checkpoint) > 1:
        model, meta = load_ensemble(args.checkpoint)
    else:
        model, meta = load_classifier(find_checkpoint(args.checkpoint[0]))
    failed = 0
    for i, f in enumerate(args.files):
        result = predict_file(model, meta, f)
        if result["ok"] and args.heatmap_dir:
            png = Path(args.heatmap_dir) / f"{i:03d}_{Path(f).stem}.gradcam.png"
            result["heatmap_png"] = str(overlay_png(result, png))
        failed += not result["ok"]
        print(json.dumps(to_json(result)), flush=True)
        if not result["ok"]:
            print(f"error: {result['error']}", file=sys.stderr, flush=True)
    return 2 if failed else 0
