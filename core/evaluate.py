"""Classifier evaluation: accuracy, per-class precision/recall/F1, confusion matrix, one-vs-rest
ROC AUC (with curve points), calibration (ECE, NLL) before and after temperature scaling, all of
it again per data source; temperature fitting; the `evaluate` command."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from core.config import save_json
from core.errors import UserError

ECE_BINS = 15
ROC_POINTS = 101  # curve points kept per class for the dashboard
T_RANGE = (0.05, 20.0)  # fitted temperatures are clipped to this range


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Logits (N, K) for images (N, C, S, S) in [-1, 1], batched, model in eval mode, on CPU."""
    model.eval()
    device = device or next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.config.n_classes)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017): one
    scalar, fitted with LBFGS on log T so T stays positive. Returns 1.0 for an empty set."""
    logits = torch.as_tensor(logits, dtype=torch.float64).detach()
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    # A near-uniform model drives T towards infinity; cap it so probabilities stay informative.
    return min(max(t, T_RANGE[0]), T_RANGE[1]) if math.isfinite(t) else 1.0


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence (torchmetrics, L1): sum over equal-width confidence bins
    of (bin size / N) * |accuracy - mean confidence|; NaN for no labels."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs, labels = np.asarray(probs), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float(multiclass_calibration_error(torch.as_tensor(probs), torch.as_tensor(labels),
                                              num_classes=probs.shape[1], n_bins=n_bins, norm="l1"))


def _nll(logits: torch.Tensor, labels: np.ndarray, t: float) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(F.cross_entropy(logits.double() / t, torch.as_tensor(labels)))


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def scores(logits: torch.Tensor, labels: np.ndarray, classes: list[str],
           temperature: float = 1.0, roc_points: bool = True) -> dict:
    """All metrics for logits (N, K) and integer labels (N,) over `classes`."""
    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    probs_raw = torch.softmax(logits.double(), 1).numpy()
    probs = torch.softmax(logits.double() / temperature, 1).numpy()
    pred = probs.argmax(1) if len(labels) else np.zeros(0, np.int64)
    p, r, f1, support = precision_recall_fscore_support(labels, pred, labels=list(range(k)),
                                                        zero_division=0)
    present = support > 0  # macro averages over the classes this set has
    out = {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else None,
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "macro_recall": float(r[present].mean()) if present.any() else None,
        "confusion": confusion_matrix(labels, pred, labels=list(range(k))).tolist(),  # rows: true
        "temperature": float(temperature),
        "ece": _finite(expected_calibration_error(probs_raw, labels)),
        "ece_scaled": _finite(expected_calibration_error(probs, labels)),
        "nll": _finite(_nll(logits, labels, 1.0)),
        "nll_scaled": _finite(_nll(logits, labels, temperature)),
        "roc_auc": {},
    }
    if "COVID-19" in classes:
        out["covid_sensitivity"] = out["per_class"]["COVID-19"]["recall"] if \
            out["per_class"]["COVID-19"]["support"] else None
    curves = {}
    for i, c in enumerate(classes):
        y = labels == i
        if y.all() or not y.any():
            out["roc_auc"][c] = None  # one-vs-rest AUC needs both positives and negatives
            continue
        out["roc_auc"][c] = float(roc_auc_score(y, probs[:, i]))
        if roc_points:
            fpr, tpr, _ = roc_curve(y, probs[:, i])
            grid = np.linspace(0, 1, ROC_POINTS)  # resample so the JSON stays small
            curves[c] = {"fpr": grid.tolist(), "tpr": np.interp(grid, fpr, tpr).round(5).tolist()}
    aucs = [v for v in out["roc_auc"].values() if v is not None]
    out["roc_auc_macro"] = float(np.mean(aucs)) if aucs else None
    if roc_points:
        out["roc_curves"] = curves
    return out


def _label_map(dataset_classes: list[str], model_classes: list[str]) -> np.ndarray:
    missing = [c for c in dataset_classes if c not in model_classes]
    if missing:
        raise UserError(f"the data has classes the model does not know: {', '.join(missing)} "
                        f"(model classes: {', '.join(model_classes)})")
    return np.array([model_classes.index(c) for c in dataset_classes], dtype=np.int64)


def evaluate(model: torch.nn.Module, meta: dict, dataset, indices=None) -> dict:
    """Evaluate a classifier on `dataset` (an ImageDataset; only `indices` when given): overall
    metrics plus the same per `meta["source"]` of the items under "by_source". Probabilities use
    the checkpoint's fitted temperature (meta["temperature"]); "ece" is before, "ece_scaled"
    after scaling."""
    classes = list(meta.get("classes") or dataset.classes)
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        raise UserError("nothing to evaluate: the selected split is empty")
    labels = _label_map(dataset.classes, classes)[dataset.labels[idx]]
    images = torch.from_numpy(dataset.images[idx]).float().div_(127.5).sub_(1.0)
    size = int(meta.get("model", {}).get("size", images.shape[-1]))
    if images.shape[-1] != size:
        raise UserError(f"the model expects {size}x{size} images but the data is "
                        f"{images.shape[-1]}x{images.shape[-1]}; load the data at size {size}")
    logits = predict_logits(model, images)
    t = float(meta.get("temperature") or 1.0)
    result = scores(logits, labels, classes, t)
    sources = [str(dataset.metas[i].get("source") or "") for i in idx]
    if any(sources):
        result["by_source"] = {}
        for s in sorted(set(sources)):
            m = np.array([x == s for x in sources])
            result["by_source"][s or "(none)"] = scores(logits[m], labels[m], classes, t,
                                                        roc_points=False)
    return result


def split_indices(meta: dict, dataset, split: str) -> np.ndarray:
    """The item indices of `split` ("train", "val", "test" or "all") of `dataset`, reproducing the
    patient-level split recorded in the checkpoint meta (seed and fractions)."""
    if split == "all":
        return np.arange(len(dataset))
    from core.splits import split_by_patient

    s = meta.get("split") or {}
    if not s:
        raise UserError("this checkpoint records no data split; use --split all")
    parts = split_by_patient(dataset, s.get("val_fraction", 0.15), s.get("test_fraction", 0.0),
                             s.get("seed", 0))
    if split not in parts:
        raise UserError(f"unknown split {split!r}; choose train, val, test or all")
    return np.asarray(parts[split], dtype=np.int64)


def format_table(result: dict) -> str:
    """A short markdown table: overall and per source (n, accuracy, macro-F1, COVID-19 recall)."""
    rows = [("all", result)] + list((result.get("by_source") or {}).items())
    lines = ["| source | n | accuracy | macro-F1 | COVID-19 sensitivity |", "|---|---:|---:|---:|---:|"]

    def fmt(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    for name, r in rows:
        lines.append(f"| {name} | {r['n']} | {fmt(r['accuracy'])} | {fmt(r['macro_f1'])} | "
                     f"{fmt(r.get('covid_sensitivity'))} |")
    return "\n".join(lines)


# ---- `python -m core evaluate` ------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, nargs="+", action="extend",
                        help="classifier .safetensors or its run dir; several: evaluate their "
                             "ensemble (mean of the calibrated probabilities)")
    parser.add_argument("--data", help="data source (default: the one the model was trained on)")
    parser.add_argument("--json", help="write the full result here")
    parser.add_argument("--split", default="auto", choices=("auto", "train", "val", "test", "all"),
                        help="auto: the held-out test patients when the data is the training "
                             "source (val when there is no test split), else all images")


def main(args: argparse.Namespace) -> int:
    from core.classifier import find_checkpoint, load_classifier
    from core.config import from_dict
    from core.data import DataConfig, load_dataset
    from core.ensemble import load_ensemble

    if len(args.checkpoint) > 1:
        model, meta = load_ensemble(args.checkpoint)
        path = meta["members"]
    else:
        path = find_checkpoint(args.checkpoint[0])
        model, meta = load_classifier(path)
    data_config = from_dict(DataConfig, meta.get("data"))
    same_source = args.data is None or args.data == data_config.source
    if args.data:
        data_config.source = args.data
    data_config.size = int(meta["model"]["size"])
    dataset = load_dataset(data_config)
    split = args.split
    if split == "auto":
        test = (meta.get("split") or {}).get("test_fraction", 0)
        split = ("test" if test else "val") if same_source else "all"
    idx = split_indices(meta, dataset, split)
    result = evaluate(model, meta, dataset, idx)
    result.update(checkpoint=path if isinstance(path, list) else str(path),
                  data=data_config.source, split=split)
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        save_json(args.json, result)
    else:
        print(json.dumps({k: v for k, v in result.items() if k not in ("roc_curves", "by_source")},
                         indent=1))
    return 0
