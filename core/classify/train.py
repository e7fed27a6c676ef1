"""Classifier training (`train-classifier`): patient-level train/val(/test) split, Augmentor copies
and GAN samples added to training only, class balancing, early stopping on validation loss,
per-epoch metrics into the run store, temperature scaling and OOD statistics saved with the
best checkpoint."""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.runs import header as runheader
from core.budget import mapped, resident_limit
from core.classify.adversary import SourceAdversary
from core.classify.config import BALANCE, ClassifierTrainConfig
from core.classify.jitter import jitter
from core.classify.model import (
    BEST,
    ClassifierConfig,
    build_classifier,
    ood_features,
    save_classifier,
)
from core.classify.synthetic import synthetic_fraction, synthetic_items
from core.config import add_arguments as add_config_arguments
from core.config import from_dict, given, refuse_beside, save_json, to_dict
from core.runs.control import Control
from core.data.config import DataConfig
from core.errors import UserError, environment_reason
from core.runs.sink import RunSink
from core.runs.header import RunHeader
from core.data.splits import PatientSplit

# Named starting points; explicit flags override them (as train-gan's presets). cxr: the
# real-X-ray recipe, measured on cxr-real-v2 within 20 minutes of 2-core CPU training
# (docs/results.md, "Real X-rays, version 2").
PRESETS: dict[str, dict] = {
    "cxr": {
        "data": {"size": 64},
        "model": {"arch": "resnet", "width": 0.5, "size": 64},
        "train": {"epochs": 15, "patience": 15},
    },
}


def group_balanced_weights(labels: np.ndarray, groups: list[str]) -> np.ndarray:
    """Per-item loss weights (mean 1) that give every non-empty (group, class) cell the same
    total weight: the "reweighting by group" baseline of Idrissi et al. 2022 (Simple data
    balancing achieves competitive worst-group-accuracy), groups being (attribute, class) pairs.

    Why: with `source` as the attribute, a class that one source holds almost alone stops being
    predictable from the source. In cxr-real most adult images are COVID-19 and most children's
    are not, so class weights alone let a model answer "adult, so COVID-19"; equal cells make the
    few adult NORMAL and PNEUMONIA images weigh as much as the adult COVID-19 ones."""
    labels = np.asarray(labels)
    cells = [(g, int(y)) for g, y in zip(groups, labels)]
    count: dict[tuple[str, int], int] = {}
    for c in cells:
        count[c] = count.get(c, 0) + 1
    if not cells:
        return np.zeros(0)
    # n items over len(count) cells: each cell's items share n / len(count) of the weight.
    return np.array([len(cells) / (len(count) * count[c]) for c in cells])


class _Images:
    """Training images kept as uint8 (N, C, S, S), handed out as float batches in [-1, 1] on the
    device: in memory (on the device), or memory-mapped from the decoded-data cache with the
    training rows (a set larger than memory allows, read batch by batch). A float copy of the
    whole set, as before, took four times the memory of the images."""

    def __init__(self, images: torch.Tensor, rows: torch.Tensor | None, device):
        self.images, self.rows, self.device = images, rows, device

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.images)

    def __getitem__(self, i) -> torch.Tensor:
        if self.rows is not None:
            i = self.rows[i.cpu() if isinstance(i, torch.Tensor) else i]
        elif isinstance(i, torch.Tensor):
            i = i.to(self.images.device)
        return self.images[i].to(self.device).float().div_(127.5).sub_(1.0)

    def where(self, mask: np.ndarray) -> "_Images":
        """The images where `mask` (over this set) is true, still uint8."""
        rows = torch.from_numpy(np.flatnonzero(mask))
        if self.rows is not None:
            return _Images(self.images, self.rows[rows], self.device)
        return _Images(self.images[rows.to(self.images.device)], None, self.device)


PHANTOM_OUTLIERS = 20        # phantoms per class a real-X-ray model's OOD check learns to flag
PHANTOM_OUTLIER_SEED = 31_337  # neither the phantom training data's seed nor Diagnose's examples'


def _phantom_features(model, mc: ClassifierConfig, device) -> tuple[torch.Tensor, np.ndarray]:
    """OOD features (N, D) of phantoms at the model's input size, and their phantom class."""
    from core import CLASSES
    from core.data import phantom
    from core.data.imageio import to_uint8
    from core.data.phantom import render

    labels = [k for k in range(3) for _ in range(PHANTOM_OUTLIERS)]
    size = min(max(mc.size, phantom.MIN_SIZE), phantom.MAX_SIZE)
    images = np.stack([to_uint8(render(CLASSES[k], i % PHANTOM_OUTLIERS, size=size,
                                       seed=PHANTOM_OUTLIER_SEED)[0], mc.size)
                       for i, k in enumerate(labels)])
    x = torch.from_numpy(images).float().div_(127.5).sub_(1.0)[:, None]      # (N, 1, S, S)
    x = x.expand(-1, mc.channels, -1, -1).to(device)
    return ood_features(model, x), np.array(labels)


@dataclass
class _TrainingSet:
    """What one classifier run trains and validates on, assembled from the loaded data."""

    dataset: object                  # the loaded ImageDataset (all patients)
    parts: dict                      # split_by_patient's indices: train, val(, test)
    train_idx: np.ndarray            # the training patients' real items (train_fraction of them)
    x_train: _Images                 # real items, then Augmentor copies, then GAN samples
    y_train: torch.Tensor
    metas: list                      # per training item
    x_val: torch.Tensor
    y_val: torch.Tensor
    counts: np.ndarray               # training items per class
    real: bool                       # real X-rays (not the project's phantoms)

    @property
    def labels(self) -> np.ndarray:
        return self.y_train.cpu().numpy()


def _training_set(dataset, tc: ClassifierTrainConfig, augment_config, device,
                  progress) -> _TrainingSet:
    """The patient split, then the training set: real items, Augmentor copies, GAN samples.
    Real items alone from a mapped cache entry larger than memory allows stay in the file."""
    from core.data.augment import balance

    classes = list(dataset.classes)
    if len(classes) < 2:
        raise UserError(f"the data has one class ({classes[0]}, {len(dataset):,} images); a "
                        "classifier needs at least two")
    parts = PatientSplit.of_classifier(tc).parts(dataset)
    train_idx = parts["train"]
    if len(parts["val"]) == 0:
        raise UserError("the validation split is empty; early stopping and calibration need "
                        "one (raise val_fraction or add patients)")
    synthetic = bool(tc.synthetic_runs and tc.synthetic_per_class > 0)
    lazy = (augment_config is None and not synthetic and mapped(dataset.images)
            and len(train_idx) * dataset.images[0].size > resident_limit())
    with warnings.catch_warnings():   # a mapped cache entry is read-only; nothing writes it
        warnings.simplefilter("ignore", UserWarning)
        if lazy:
            x_train = _Images(torch.from_numpy(dataset.images), torch.from_numpy(train_idx), device)
            labels, metas = dataset.labels[train_idx], [dataset.metas[i] for i in train_idx]
        else:
            if augment_config is not None:
                counts = np.bincount(dataset.labels[train_idx], minlength=len(classes))
                per_class = tc.augment_per_class or int(counts.max())
                train_ds = balance(dataset, per_class, augment_config, seed=tc.seed,
                                   indices=train_idx, progress=progress)
            else:
                train_ds = dataset.subset(train_idx)
            if synthetic:
                for part in synthetic_items(tc.synthetic_runs, tc.synthetic_per_class,
                                             dataset.size, classes, tc.seed, progress):
                    train_ds = train_ds.concat(part)
            x_train = _Images(torch.from_numpy(train_ds.images).to(device), None, device)
            labels, metas = train_ds.labels, train_ds.metas
    return _TrainingSet(
        dataset=dataset, parts=parts, train_idx=train_idx, x_train=x_train,
        y_train=torch.from_numpy(labels).to(device), metas=metas,
        x_val=dataset.subset(parts["val"]).tensor(),
        y_val=torch.from_numpy(dataset.labels[parts["val"]]),
        counts=np.bincount(labels, minlength=len(classes)),
        real=not all(str(m.get("source", "")) == "phantom" for m in dataset.metas))


def _checkpoint_meta(data_config, tc: ClassifierTrainConfig, augment_config,
                     ts: _TrainingSet) -> dict:
    """What a classifier checkpoint says about its training, besides its model config."""
    classes = ts.dataset.classes
    return {
        "classes": list(classes),
        "data": to_dict(data_config),
        "train": to_dict(tc),
        "augment": to_dict(augment_config) if augment_config else None,
        "split": asdict(PatientSplit.of_classifier(tc)),   # read back by PatientSplit.of_meta
        "training_data": {"source": data_config.source, "real": ts.real,
                          "counts": {c: int(n) for c, n in zip(classes, ts.counts)},
                          "n_train_real": int(len(ts.train_idx)),
                          "n_augmented": sum(bool(m.get("augmented")) for m in ts.metas),
                          "n_synthetic": sum(bool(m.get("synthetic")) for m in ts.metas),
                          "n_val": int(len(ts.parts["val"])),
                          "n_test": int(len(ts.parts.get("test", [])))},
        "temperature": 1.0,
    }


def _item_weights(tc: ClassifierTrainConfig, ts: _TrainingSet, device) -> torch.Tensor | None:
    """Per-item loss weights (None: plain mean); a batch's loss is sum(w * loss) / sum(w),
    which for class weights is what F.cross_entropy(weight=...) computes."""
    labels = ts.labels
    if tc.group_weights:
        groups = [str(m.get(tc.group_weights, "")) for m in ts.metas]
        if not any(groups):
            raise UserError(f"no training image has a {tc.group_weights!r} in its metadata; "
                            f"group weights need a metadata column such as source")
        weight = group_balanced_weights(labels, groups)
    elif tc.balance == "weights":
        class_weight = len(labels) / (len(ts.counts) * np.maximum(ts.counts, 1))
        weight = class_weight[labels]
    else:
        return None
    return torch.tensor(weight, dtype=torch.float32, device=device)


def _fit(model, ts: _TrainingSet, tc: ClassifierTrainConfig, meta: dict, store, report: RunSink,
         control: Control, progress, device) -> tuple[dict, int, str | None]:
    """The epochs: train, validate, checkpoint the best (lowest validation loss) and the latest,
    stop early or when asked. Returns (best, last epoch, why it stopped early or None)."""
    from core.classify.evaluate import predict_logits

    item_weight = _item_weights(tc, ts, device)
    params = list(model.parameters())
    adversary = None
    if tc.source_adversary > 0:
        adversary = SourceAdversary(model.num_features, len(ts.counts),
                                     [str(m.get("source", "")) for m in ts.metas],
                                     tc.source_adversary, device)
        params += list(adversary.parameters())
    opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = -(-len(ts.y_train) // tc.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, tc.epochs * steps_per_epoch) \
        if tc.lr_schedule == "cosine" else None
    shuffle = torch.Generator().manual_seed(tc.seed)
    ckpt_dir = store.checkpoints_dir
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    best = {"loss": float("inf"), "epoch": 0, "state": None}
    stale, stop_reason, epoch = 0, None, 0
    x_train, y_train = ts.x_train, ts.y_train
    report.status("running", step=0, total_steps=tc.epochs, phase="training",
                  n_train=int(len(y_train)), n_val=int(len(ts.y_val)))
    for epoch in range(1, tc.epochs + 1):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(y_train), generator=shuffle).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for b in range(0, len(perm), tc.batch_size):
            control.sync(epoch)
            control.wait_while_paused(epoch - 1, report)
            if control.should_stop:
                stop_reason = "stopped by the user"
                break
            i = perm[b:b + tc.batch_size]
            features = model.features(jitter(x_train[i], tc, shuffle))
            logits = model.classify(features)
            if item_weight is None:
                loss = F.cross_entropy(logits, y_train[i])
            else:
                w = item_weight[i]
                loss = (F.cross_entropy(logits, y_train[i], reduction="none") * w).sum() / w.sum()
            if adversary is not None:
                loss = loss + adversary.loss(features, y_train[i], i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.detach() * len(i)
            correct += (logits.argmax(1) == y_train[i]).sum()
            report.heartbeat(epoch - 1)
        if stop_reason:
            break
        val_logits = predict_logits(model, ts.x_val)
        val_loss = float(F.cross_entropy(val_logits, ts.y_val))
        val_acc = float((val_logits.argmax(1) == ts.y_val).float().mean())
        report.metrics(epoch, {"train/loss": float(loss_sum) / len(y_train),
                               "train/acc": float(correct) / len(y_train),
                               "val/loss": val_loss, "val/acc": val_acc,
                               "time/epoch_s": time.time() - t0})
        snapshot = {**meta, "epoch": epoch, "val_loss": val_loss, "val_acc": val_acc, "final": False}
        if val_loss < best["loss"]:
            best = {"loss": val_loss, "epoch": epoch, "acc": val_acc,
                    "state": copy.deepcopy(model.state_dict())}
            stale = 0
            save_classifier(ckpt_dir / BEST, model, snapshot)
        else:
            stale += 1
        save_classifier(ckpt_dir / "latest.safetensors", model, snapshot)
        report.heartbeat(epoch, force=True)
        if progress:
            progress(epoch / tc.epochs, f"epoch {epoch}/{tc.epochs}: val loss {val_loss:.3f}, "
                                        f"val acc {val_acc:.1%}")
        if stale >= tc.patience and epoch < tc.epochs:   # at the last epoch it simply finished
            stop_reason = f"early stopping: no lower validation loss for {tc.patience} epochs"
            break
    return best, epoch, stop_reason


def _calibrate(model, ts: _TrainingSet, mc: ClassifierConfig, meta: dict, best: dict,
               device, path) -> float:
    """The best model's temperature (on the validation patients) and OOD statistics (on the
    real training images, no GAN samples; threshold from the validation distances), saved with
    it to `path`. Returns the temperature."""
    from core.classify.evaluate import fit_temperature, predict_logits
    from core.classify.predict import (
        OOD_PERCENTILE,
        fit_ood,
        ood_distance,
        ood_outlier,
        ood_threshold,
        outlier_means,
    )

    model.load_state_dict(best["state"])
    temperature = fit_temperature(predict_logits(model, ts.x_val), ts.y_val)
    keep = np.array([not m.get("synthetic") for m in ts.metas])
    ood = fit_ood(ood_features(model, ts.x_train.where(keep)), ts.labels[keep], len(ts.counts))
    if ts.real:  # the project's own phantoms look X-ray-like to a real-trained model's features
        ood["outlier_means"] = outlier_means(*_phantom_features(model, mc, device), ood)
    val_feats = ood_features(model, ts.x_val.to(device))
    val_dist = ood_distance(val_feats, ood)
    meta.update(temperature=temperature, epoch=best["epoch"], val_loss=best["loss"],
                val_acc=best["acc"], final=True,
                ood={"method": "mahalanobis", "percentile": OOD_PERCENTILE,
                     "threshold": ood_threshold(val_dist), "fitted_on": "train",
                     "threshold_on": "val", "known_outliers": ["phantom"] if ts.real else [],
                     "val_like_outlier": int(ood_outlier(val_feats, ood).sum()),
                     "val_distance_median": float(val_dist.median())})
    save_classifier(path, model, meta, ood=ood)
    return temperature


def train_classifier(store, data_config, model_config: ClassifierConfig,
                     train_config: ClassifierTrainConfig, augment_config=None,
                     progress: Callable[[float, str], None] | None = None,
                     dataset=None, download: bool = True) -> dict:
    """Train into the run directory of `store` (a RunStore); returns a summary dict.

    Writes config.json, status (+ heartbeat), per-epoch "train/loss", "train/acc", "val/loss",
    "val/acc" metrics, RUN/checkpoints/best.safetensors (lowest validation loss, with the fitted
    temperature and OOD statistics in its meta) and latest.safetensors, and RUN/eval.json (val
    and test metrics of the best model). Honours control.json "stop" and "paused". `dataset`
    may pass an already loaded ImageDataset for `data_config` (the ablation loads once).
    """
    from core.data.augment import AugmentConfig
    from core.data.sources import load_dataset
    from core.device import describe, pick_device
    from core.classify.evaluate import evaluate

    tc = train_config
    for spec in tc.synthetic_runs if tc.synthetic_per_class > 0 else ():
        synthetic_fraction(spec, data_config, tc)  # refuses a run that saw held-out patients
    if tc.balance not in BALANCE:
        raise UserError(f"balance must be one of {', '.join(BALANCE)}, not {tc.balance!r}")
    if tc.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"lr_schedule must be constant or cosine, not {tc.lr_schedule!r}")
    if tc.balance == "augment" and augment_config is None:
        augment_config = AugmentConfig()
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    t_start = time.time()
    report, control = RunSink(store), Control(store)
    store.write_header(header(data_config, model_config, tc, augment_config))
    store.reserve_space()
    report.status("running", step=0, total_steps=tc.epochs, device=describe(device),
                  phase="loading data")
    try:
        if dataset is None:
            # `download`: the spec is the user's --data (not one read from config.json)
            dataset = load_dataset(data_config, progress, download=download)
        ts = _training_set(dataset, tc, augment_config, device, progress)
        store.write_header(header(data_config, model_config, tc, augment_config,
                                  classes=list(dataset.classes)))
        mc = replace(model_config, size=dataset.size, channels=int(dataset.images.shape[1]),
                     n_classes=len(dataset.classes))
        meta = _checkpoint_meta(data_config, tc, augment_config, ts)
        torch.manual_seed(tc.seed)
        model = build_classifier(mc).to(device)
        best, epoch, stop_reason = _fit(model, ts, tc, meta, store, report, control, progress,
                                        device)
        if best["state"] is None:
            report.status("stopped", reason=stop_reason or "no epoch finished")
            return {"run_dir": str(store.path), "state": "stopped", "reason": stop_reason}

        report.status("running", phase="calibrating", step=epoch)
        temperature = _calibrate(model, ts, mc, meta, best, device,
                                 store.checkpoints_dir / BEST)
        cpu_model = model.cpu()
        results = {"val": evaluate(cpu_model, meta, dataset, ts.parts["val"])}
        if len(ts.parts.get("test", [])):
            results["test"] = evaluate(cpu_model, meta, dataset, ts.parts["test"])
        save_json(store.evaluation_path, results)
        final = {f"{split}/{k}": results[split][k] for split in results
                 for k in ("accuracy", "macro_f1", "ece", "ece_scaled")
                 if results[split].get(k) is not None}
        report.metrics(best["epoch"], final)
        seconds = time.time() - t_start
        reason = stop_reason or f"finished {tc.epochs} epochs"
        report.event(epoch, "finished", {"reason": reason, "best_epoch": best["epoch"]})
        report.status("stopped" if stop_reason == "stopped by the user" else "finished",
                      reason=reason, step=epoch, best_epoch=best["epoch"], seconds=seconds,
                      phase="done")
        return {"run_dir": str(store.path), "state": "finished", "reason": reason,
                "best_epoch": best["epoch"], "epochs_run": epoch, "seconds": seconds,
                "temperature": temperature, "training_data": meta["training_data"],
                "val": {k: results["val"][k] for k in ("accuracy", "macro_f1")},
                "test": {k: results["test"][k] for k in ("accuracy", "macro_f1",
                                                         "covid_sensitivity")
                         if k in results["test"]} if "test" in results else None,
                "checkpoint": str(store.checkpoints_dir / BEST)}
    except Exception as exc:
        reason = str(exc) if isinstance(exc, UserError) else \
            environment_reason(exc, str(store.path)) or f"{type(exc).__name__}: {exc}"
        store.release_space()   # room for the last words on a full disk
        try:
            report.status("failed", reason=reason)
        except OSError:   # too full even so
            pass
        raise
    finally:
        store.release_space()


# ---- `python -m core train-classifier` ----------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data source (phantom, phantom:N, a folder, ...)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="a named starting configuration (cxr: the real-X-ray recipe); "
                             "explicit flags override it")
    parser.add_argument("--run-dir", help="run directory (default: a new one under runs/)")
    parser.add_argument("--from-config", action="store_true",
                        help="start from the configs already in --run-dir's config.json (how the "
                             "dashboard queues a run)")
    parser.add_argument("--augment", metavar="CONFIG.json",
                        help="Augmentor settings (an AugmentConfig JSON file, or 'default')")
    parser.add_argument("--synthetic", action="append", default=[], metavar="[CLASS=]RUN_DIR",
                        help="add samples of a GAN run (repeatable); a plain RUN_DIR must be a "
                             "run trained on one class")
    add_config_arguments(parser, ClassifierConfig)
    add_config_arguments(parser, ClassifierTrainConfig)
    add_config_arguments(parser, DataConfig, prefix="data_")


def _augment_from_arg(value: str | None):
    from core.data.augment import AugmentConfig

    if not value:
        return None
    if value == "default":
        return AugmentConfig()
    from core.config import checked

    try:
        return checked(AugmentConfig, json.loads(Path(value).read_bytes().decode("utf-8")))
    except OSError as exc:
        raise UserError(f"cannot read the augmentation config {value}: {exc.strerror}") from None
    except ValueError as exc:   # not UTF-8, not JSON, a field of the wrong type or range
        raise UserError(f"the augmentation config {value}: {exc}") from None
    except RecursionError:
        raise UserError(f"the augmentation config {value} is nested too deeply to be a config") from None


def build_configs(preset: str | None = None, overrides: dict | None = None
                  ) -> tuple[DataConfig, ClassifierConfig, ClassifierTrainConfig]:
    """A classifier run's configs: the preset's values, then `overrides` ({"data": {...},
    "model": {...}, "train": {...}}); the data are loaded at the model's size (a data size
    given without a model size sets both). The command line and the pages build runs this way."""
    p, o = PRESETS.get(preset or "", {}), overrides or {}
    data_config, model_config, train_config = (
        from_dict(cls, {**p.get(k, {}), **o.get(k, {})}) for k, cls in (
            ("data", DataConfig), ("model", ClassifierConfig), ("train", ClassifierTrainConfig)))
    if "size" not in o.get("model", {}) and "size" in o.get("data", {}):
        model_config = replace(model_config, size=data_config.size)
    return replace(data_config, size=model_config.size), model_config, train_config


def configs_from_args(args: argparse.Namespace) -> tuple[DataConfig, ClassifierConfig, ClassifierTrainConfig]:
    """The run's configs: the preset's (if any), then every flag the user gave."""
    overrides = {"data": given(args, DataConfig, "data_"), "model": given(args, ClassifierConfig),
                 "train": given(args, ClassifierTrainConfig)}
    if args.data:
        overrides["data"]["source"] = args.data
    return build_configs(getattr(args, "preset", None), overrides)


def header(data_config, model_config, train_config, augment_config=None, **info) -> RunHeader:
    """config.json of a classifier run with these configs (and, from the job, what it loaded)."""
    return runheader.new("train-classifier", {
        "data": to_dict(data_config), "model": to_dict(model_config), "train": to_dict(train_config),
        "augment": to_dict(augment_config) if augment_config else None}, **info)


def saved_configs(header: RunHeader):
    """(data, model, train, augment or None) configs of a classifier run's config.json, checked
    field by field (ValueError naming the bad field)."""
    from core.data.augment import AugmentConfig
    from core.config import checked

    parts = []
    for key, cls in (("data", DataConfig), ("model", ClassifierConfig),
                     ("train", ClassifierTrainConfig), ("augment", AugmentConfig)):
        value = header.configs.get(key)
        try:
            parts.append(None if key == "augment" and value is None else checked(cls, value))
        except ValueError as exc:
            raise ValueError(f"'{key}' in config.json: {exc}") from None
    return tuple(parts)


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", flush=True)


def main(args: argparse.Namespace) -> int:
    from core.runs.store import RunStore, new_run_dir

    if args.from_config:
        refuse_beside(args, "--from-config", allowed=("run_dir",))
        if not args.run_dir:
            raise UserError("--from-config starts from --run-dir's config.json; give --run-dir")
        store = RunStore(args.run_dir)
        store.refuse_links()
        try:
            data_config, model_config, train_config, augment = saved_configs(store.header())
        except ValueError as exc:
            raise UserError(f"{store.path}: cannot start from its config.json: {exc}") from None
        summary = train_classifier(store, data_config, model_config, train_config, augment,
                                   _print_progress, download=False)
        print(json.dumps(summary, indent=1))
        return 0
    data_config, model_config, train_config = configs_from_args(args)
    if args.synthetic:
        train_config = replace(train_config,
                               synthetic_runs=tuple(train_config.synthetic_runs) + tuple(args.synthetic))
    if train_config.synthetic_runs and not train_config.synthetic_per_class:
        raise UserError("--synthetic needs --synthetic-per-class N (generated images per class)")
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir("classifier")
    store = RunStore(run_dir, create=True)
    summary = train_classifier(store, data_config, model_config, train_config,
                               _augment_from_arg(args.augment), _print_progress)
    print(json.dumps(summary, indent=1))
    return 0
