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
from core.errors import CheckpointError, UserError

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


# Sources whose images are children's (Kermany et al. 2018 and its copies): "adults only" leaves
# them out. An item's own age (metadata column "age" or "patient_age") below 18, or a view
# marked pediatric, counts as a child too.
PEDIATRIC_SOURCES = ("ozanguldali/final-covid-chestxray", "*kermany*", "*Kermany*", "chest_xray*")
SHORTCUT_MIN_ITEMS = 10   # a source with fewer items joins "other" in the shortcut probe


def is_child(meta: dict) -> bool:
    """Whether an item is a child's image, by its age, its view or its source."""
    from fnmatch import fnmatchcase

    for key in ("age", "patient_age"):
        try:
            if float(meta.get(key)) < 18:
                return True
        except (TypeError, ValueError):
            pass
    if "pediatric" in str(meta.get("view") or "").lower():
        return True
    source = str(meta.get("source") or "")
    return any(fnmatchcase(source, g) for g in PEDIATRIC_SOURCES)


def shortcut_probe(features: np.ndarray, sources: list[str], folds: int = 5, seed: int = 0
                   ) -> dict | None:
    """How well the model's features tell an image's *source*: cross-validated accuracy of a
    logistic regression on standardised penultimate features, against the majority-source
    baseline. Near 1.0 with a low baseline means the model encodes the hospital as well as
    (or better than) the finding. None when fewer than two sources have enough images."""
    from collections import Counter

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = Counter(sources)
    groups = [s if counts[s] >= SHORTCUT_MIN_ITEMS else "other" for s in sources]
    counts = Counter(groups)
    keep = [i for i, g in enumerate(groups) if counts[g] >= folds]  # a tiny "other" cannot fold
    features, groups = features[keep], [groups[i] for i in keep]
    counts = Counter(groups)
    if len(counts) < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    acc = cross_val_score(probe, features, groups, cv=cv, scoring="accuracy")
    return {"accuracy": float(acc.mean()), "accuracy_std": float(acc.std()),
            "baseline": max(counts.values()) / len(groups), "n": len(groups),
            "sources": dict(sorted(counts.items()))}


def evaluate(model: torch.nn.Module, meta: dict, dataset, indices=None,
             probe: bool = True) -> dict:
    """Evaluate a classifier on `dataset` (an ImageDataset; only `indices` when given): overall
    metrics, the same for adults alone under "adults" (see is_child), per `meta["source"]` of
    the items under "by_source", and the shortcut probe (`shortcut_probe`) on the penultimate
    features under "shortcut" when the items come from two or more sources. Probabilities use
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
    adult = np.array([not is_child(dataset.metas[i]) for i in idx])
    if adult.any() and not adult.all():
        result["adults"] = scores(logits[adult], labels[adult], classes, t, roc_points=False)
    elif adult.all():
        result["adults"] = {k: result[k] for k in ("n", "accuracy", "macro_f1", "per_class",
                                                   "confusion", "covid_sensitivity")
                            if k in result}
    if any(sources):
        result["by_source"] = {}
        for s in sorted(set(sources)):
            m = np.array([x == s for x in sources])
            result["by_source"][s or "(none)"] = scores(logits[m], labels[m], classes, t,
                                                        roc_points=False)
        if probe and len(set(sources)) > 1 and hasattr(model, "features"):
            from core.classify.model import penultimate

            with torch.no_grad():
                feats = torch.cat([penultimate(model, images[i:i + 256]).float()
                                   for i in range(0, len(images), 256)]).numpy()
            result["shortcut"] = shortcut_probe(feats, sources)
    return result


def _key(meta: dict, i: int) -> str:
    """An item's patient, or its file when it names no patient (comparable across loads)."""
    return str(meta.get("patient") or f"file:{meta.get('file') or i}")


def data_config_of(meta: dict):
    """The data config a checkpoint trained on, checked field by field (it may come from
    anywhere); CheckpointError naming the bad field."""
    from core.config import checked
    from core.data.config import DataConfig

    try:
        return checked(DataConfig, meta.get("data") or {})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's data config: {exc}") from None


def unseen_indices(meta: dict, dataset) -> np.ndarray:
    """Indices of the items of `dataset` whose patient the checkpoint neither trained nor
    validated on: its test patients and every patient of a source it never loaded."""
    parts = _own_patients(meta)
    seen = parts["train"] | parts["val"]
    return np.array([i for i, m in enumerate(dataset.metas) if _key(m, i) not in seen],
                    dtype=np.int64)


def _own_patients(meta: dict) -> dict[str, set[str]]:
    """The patients of each part of the checkpoint's split. Reloads its own training data (its
    data config, filters included): a split drawn over other rows would be another split."""
    from core.data.sources import load_dataset

    own_config = data_config_of(meta)
    own_config.size = int(meta.get("model", {}).get("size", own_config.size))
    own = load_dataset(own_config)
    return {name: {_key(own.metas[i], i) for i in idx}
            for name, idx in _split_parts(meta, own).items()}


def _split_parts(meta: dict, dataset) -> dict[str, np.ndarray]:
    import dataclasses

    from core.data.splits import PatientSplit

    s = meta.get("split") or {}
    if not s:
        raise UserError("this checkpoint records no data split; use --split all")
    # Every training patient, as before the ablation's fractions: "train" is what it may have seen.
    try:
        split = PatientSplit.of_meta(s)
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's split: {exc}") from None
    return dataclasses.replace(split, train_fraction=1.0).parts(dataset)


def split_indices(meta: dict, dataset, split: str, own_data: bool = True) -> np.ndarray:
    """The item indices of `split` ("train", "val", "test", "all" or "unseen": see
    unseen_indices) of `dataset`, reproducing the patient-level split recorded in the checkpoint
    meta (seed and fractions). `own_data` false: `dataset` is not the rows the checkpoint
    trained on (another folder, or its folder without its filter), so a part is the items whose
    patient is in that part of the checkpoint's own split."""
    if split == "all":
        return np.arange(len(dataset))
    if split == "unseen":
        return unseen_indices(meta, dataset)
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split {split!r}; choose train, val, test or all")
    parts = _split_parts(meta, dataset) if own_data else _own_patients(meta)
    if split not in parts:   # a checkpoint trained with no test patients
        raise UserError(f"this checkpoint's split has no {split} part; choose "
                        f"{', '.join(parts)} or all")
    if own_data:
        return np.asarray(parts[split], dtype=np.int64)
    return np.array([i for i, m in enumerate(dataset.metas) if _key(m, i) in parts[split]],
                    dtype=np.int64)


def format_table(result: dict) -> str:
    """A short markdown table: overall, adults alone and per source (n, accuracy, macro-F1,
    COVID-19 recall), then the shortcut probe's line."""
    rows = [("all", result)]
    if result.get("adults"):
        rows.append(("adults only", result["adults"]))
    rows += list((result.get("by_source") or {}).items())
    lines = ["| source | n | accuracy | macro-F1 | COVID-19 sensitivity |", "|---|---:|---:|---:|---:|"]

    def fmt(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    for name, r in rows:
        lines.append(f"| {name} | {r['n']} | {fmt(r['accuracy'])} | {fmt(r['macro_f1'])} | "
                     f"{fmt(r.get('covid_sensitivity'))} |")
    probe = result.get("shortcut")
    if probe:
        lines += ["", shortcut_sentence(probe)]
    return "\n".join(lines)


def shortcut_sentence(probe: dict) -> str:
    """One line on the shortcut probe, for the CLI and the Classifier page."""
    return (f"Shortcut probe: the model's features tell an image's source with "
            f"{probe['accuracy']:.1%} accuracy (5-fold logistic regression, {probe['n']} images, "
            f"{len(probe['sources'])} sources; always guessing the largest source: "
            f"{probe['baseline']:.1%}).")


# ---- `python -m core evaluate` ------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, nargs="+", action="extend",
                        help="classifier .safetensors or its run dir; several: evaluate their "
                             "ensemble (mean of the calibrated probabilities)")
    parser.add_argument("--data", help="data source (default: the one the model was trained on)")
    parser.add_argument("--json", help="write the full result here")
    parser.add_argument("--split", default="auto",
                        choices=("auto", "train", "val", "test", "all", "unseen"),
                        help="auto: the held-out test patients when the data is the training "
                             "source (val when there is no test split), else all images; "
                             "unseen: every image whose patient the model neither trained nor "
                             "validated on (its test patients plus sources it never loaded)")


def main(args: argparse.Namespace) -> int:
    from core.classify.model import find_checkpoint, load_classifier
    from core.data.config import DataConfig
    from core.data.sources import load_dataset
    from core.classify.ensemble import load_ensemble

    if len(args.checkpoint) > 1:
        model, meta = load_ensemble(args.checkpoint)
        path = meta["members"]
    else:
        path = find_checkpoint(args.checkpoint[0])
        model, meta = load_classifier(path)
    data_config = data_config_of(meta)
    same_source = args.data is None or args.data == data_config.source
    if args.data:  # another folder: all of it, not the training run's filter
        data_config = DataConfig(source=args.data, keep_extra_classes=data_config.keep_extra_classes)
    data_config.size = int(meta["model"]["size"])
    dataset = load_dataset(data_config, download=bool(args.data))   # never from the checkpoint's spec
    split = args.split
    if split == "auto":
        test = (meta.get("split") or {}).get("test_fraction", 0)
        split = ("test" if test else "val") if same_source else "all"
    idx = split_indices(meta, dataset, split, own_data=not args.data)
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
