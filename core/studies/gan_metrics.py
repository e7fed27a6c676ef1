"""GAN quality offline, on the trained classifier's penultimate features (nothing downloaded):
FID and KID through torchmetrics, relative FD against a real-vs-real baseline, k-NN precision
and recall (Kynkäänniemi et al. 2019), and a classifier two-sample test; `gan-metrics`."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.config import add_arguments as add_config_arguments
from core.config import override, save_json, to_dict
from core.errors import UserError
from core.gan.runs import resize_u8, sample_run


@dataclass
class GanMetricsConfig:
    n: int = 500                 # generated images; real images are all of the class (<= 4n)
    k: int = 3                   # neighbours for the precision/recall manifolds
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # capped at half the smaller set
    seed: int = 0


# ---- GAN runs ------------------------------------------------------------------------------
# ---- features and metrics --------------------------------------------------------------------
class _Given(nn.Module):
    """Feature 'extractor' for torchmetrics that passes precomputed features (N, D) through, so
    the classifier runs once per image for all metrics."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@torch.no_grad()
def features(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features (N, D) float64 of uint8 images (N, C, S, S)."""
    from core.classify.model import PenultimateFeatures

    extractor = PenultimateFeatures(model)
    x = torch.from_numpy(np.asarray(images))
    out = [extractor(x[i:i + batch_size].float().div(127.5).sub(1.0))
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).double() if out else torch.zeros(0, extractor.num_features).double()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FD between two feature sets (N, D), (M, D) through torchmetrics' FrechetInceptionDistance."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise UserError("FID needs at least two real and two generated images")
    fid = FrechetInceptionDistance(feature=_Given(real.shape[1]))
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return float(fid.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100,
                    subset_size: int = 1000) -> tuple[float, float]:
    """KID (mean, std over subsets) through torchmetrics' KernelInceptionDistance."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise UserError("KID needs at least two real and two generated images")
    with warnings.catch_warnings():  # "will save all extracted features in buffer"
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Given(real.shape[1]), subsets=subsets,
                                      subset_size=size)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    mean, std = kid.compute()
    return float(mean), float(std)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union
    of balls reaching each point's k-th nearest neighbour in its own set; precision is the share
    of generated points inside the real manifold, recall the share of real points inside the
    generated one."""
    def radii(x):
        d = torch.cdist(x, x)                       # (N, N), self-distance 0 is the 1st neighbour
        kk = min(k, len(x) - 1)
        return d.kthvalue(kk + 1, dim=1).values     # (N,)

    def inside(points, manifold, r):
        return (torch.cdist(points, manifold) <= r[None, :]).any(1).double().mean()

    real, fake = real.double(), fake.double()
    return float(inside(fake, real, radii(real))), float(inside(real, fake, radii(fake)))


def two_sample_test(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> float:
    """Classifier two-sample test: 5-fold held-out accuracy of a logistic regression telling real
    from generated features (balanced classes). 0.5 is indistinguishable; 1.0 is trivially told
    apart."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(real), len(fake))
    if n < 5:
        raise UserError("the two-sample test needs at least five real and five generated images")
    rng = np.random.default_rng(seed)
    r = real.numpy()[rng.permutation(len(real))[:n]]
    f = fake.numpy()[rng.permutation(len(fake))[:n]]
    x = np.concatenate([r, f])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, x, y, cv=folds, scoring="accuracy").mean())


def feature_metrics(real: torch.Tensor, fake: torch.Tensor, config: GanMetricsConfig | None = None
                    ) -> dict:
    """Every metric for real features (N, D) and generated features (M, D).

    relative_fd = FD(generated, real half A) / FD(real half B, real half A), with as many
    generated as real-B points, so both distances carry the same small-sample bias; below ~1
    means generated images are as close to the real ones as other real images are."""
    c = config or GanMetricsConfig()
    rng = np.random.default_rng(c.seed)
    perm = torch.from_numpy(rng.permutation(len(real)))
    half_a, half_b = real[perm[: len(real) // 2]], real[perm[len(real) // 2:]]
    fake_b = fake[torch.from_numpy(rng.permutation(len(fake))[: len(half_b)])]
    fd_fake = frechet_distance(half_a, fake_b)
    fd_real = frechet_distance(half_a, half_b)
    # Subsets of at most half of each set, so they differ and kid_std says something.
    kid_size = max(2, min(c.kid_subset_size, len(real) // 2, len(fake) // 2))
    kid_mean, kid_std = kernel_distance(real, fake, c.kid_subsets, kid_size)
    precision, recall = precision_recall(real, fake, c.k)
    return {
        "fid": frechet_distance(real, fake),
        "kid": kid_mean, "kid_std": kid_std,
        "fd_fake_vs_real_a": fd_fake, "fd_real_b_vs_real_a": fd_real,
        "relative_fd": fd_fake / fd_real if fd_real > 0 else None,
        "precision": precision, "recall": recall,
        "c2st_accuracy": two_sample_test(real, fake, c.seed),
        "n_real": int(len(real)), "n_fake": int(len(fake)), "feature_dim": int(real.shape[1]),
    }


def _real_class(name: str, classes: list[str], source: str, chosen: bool) -> str:
    """The class of the real data that `name` means: itself, another case of it, or its
    canonical X-ray name ("covid" -> "COVID-19"); UserError naming the classes there are."""
    from core.data.sources import canonical_class

    for c in classes:
        if c == name or c.lower() == name.lower() or c == canonical_class(name):
            return c
    what = f"--real-class {name!r}" if chosen else f"the GAN's class {name!r}"
    hint = "" if chosen else "; give --real-class to compare with one of them anyway"
    raise UserError(f"{what} is not in {source} ({', '.join(classes)}){hint}")


def gan_metrics(run: str | Path, real_source: str, classifier: str | Path,
                config: GanMetricsConfig | None = None, progress=None,
                real_where: tuple[str, ...] = (), real_split: tuple[str, ...] = (),
                real_class: str | None = None, raw: bool = False) -> dict:
    """Metrics of a GAN run against the real images of its class (all classes when the run does
    not name one), on `classifier`'s penultimate features. Both sets go through the same resize
    (real images are loaded at the generator's size, then both are resized to the classifier's).
    The real source may hold that class alone (a folder of COVID-19 X-rays). `real_class`
    compares with another class of it instead. `real_where` filters the real source
    (DataConfig.where); `real_split` keeps only those parts of its default patient split
    ("val", "test"), e.g. the patients a GAN trained with --data-split train never saw. `raw`:
    sample the raw generator rather than its weight average (core.gan.models.load_generator)."""
    from core.classify.model import find_checkpoint, load_classifier
    from core.data.config import DataConfig
    from core.data.sources import load_dataset

    c = config or GanMetricsConfig()
    model, cmeta = load_classifier(find_checkpoint(classifier))
    size = int(cmeta["model"]["size"])
    fake, gmeta, cls = sample_run(run, c.n, c.seed, raw=raw)
    gen_size = int(fake.shape[-1])
    if progress:
        progress(0.3, f"generated {len(fake)} images at {gen_size} px")
    real_config = DataConfig(source=real_source, size=gen_size, channels=int(fake.shape[1]),
                             where=tuple(real_where))
    # The user's --real; one class is fine (the class is chosen after the patient split, which
    # is defined on the whole source).
    real_ds = load_dataset(real_config, download=True)
    idx = np.arange(len(real_ds))
    if real_split:
        from core.data.splits import PatientSplit

        parts = PatientSplit.of_data(real_config).parts(real_ds)
        unknown = sorted(set(real_split) - set(parts))
        if unknown:
            raise UserError(f"unknown split {', '.join(unknown)}; choose from {', '.join(parts)}")
        idx = np.sort(np.concatenate([parts[p] for p in real_split]))
    wanted = real_class or cls
    if wanted is not None:
        wanted = _real_class(wanted, real_ds.classes, real_ds.name, chosen=bool(real_class))
        idx = idx[real_ds.labels[idx] == real_ds.classes.index(wanted)]
        if len(idx) == 0:
            raise UserError(f"no real {wanted} images are left in {real_ds.name} after "
                            f"--real-where/--real-split")
    idx = np.random.default_rng(c.seed).permutation(idx)[: 4 * c.n]
    real = resize_u8(real_ds.images[idx], size)
    fake = resize_u8(fake, size)
    if progress:
        progress(0.6, f"{len(real)} real images; extracting features")
    result = feature_metrics(features(model, real), features(model, fake), c)
    result.update(run=str(run), real=real_source, real_where=list(real_where),
                  real_split=list(real_split), classifier=str(classifier), gan_class=cls,
                  real_class=wanted, gan_weights="raw" if raw else gmeta.get("weights", "raw"),
                  gan_loss=gmeta.get("loss"), gan_step=gmeta.get("step"),
                  generator_size=gen_size, classifier_size=size, config=to_dict(c),
                  classifier_trained_on=(cmeta.get("training_data") or {}).get("source"))
    return result


# ---- `python -m core gan-metrics` ------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True, help="GAN run directory (or generator file)")
    parser.add_argument("--real", required=True, help="real data source to compare with")
    parser.add_argument("--classifier", required=True,
                        help="classifier checkpoint (or its run dir) whose features are used")
    parser.add_argument("--real-where", default="", help="keep only real images whose metadata "
                        "match, COLUMN=GLOB entries separated by commas (see DataConfig.where)")
    parser.add_argument("--real-split", default="", help="keep only these parts of the real "
                        "source's default patient split, comma-separated (e.g. val,test: the "
                        "patients a GAN trained with --data-split train never saw)")
    parser.add_argument("--real-class", default="", help="compare with this class of the real "
                        "source (default: the GAN's own class, or all when it names none)")
    parser.add_argument("--raw", action="store_true", help="sample the raw generator instead "
                        "of its weight average (runs trained with ema_decay > 0)")
    parser.add_argument("--json", help="write the result here")
    add_config_arguments(parser, GanMetricsConfig)


def _listed(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in (text or "").split(",") if w.strip())


def main(args: argparse.Namespace) -> int:
    config = override(GanMetricsConfig(), args)
    result = gan_metrics(args.run_dir, args.real, args.classifier, config,
                         real_where=_listed(args.real_where), real_split=_listed(args.real_split),
                         real_class=args.real_class.strip() or None, raw=args.raw)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        save_json(args.json, result)
    print(json.dumps(result, indent=1))
    return 0
