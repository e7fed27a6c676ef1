"""The COVID-19 / NORMAL / PNEUMONIA classifiers: the report's three-block CNN and a small ResNet
trained from scratch (no downloaded weights), their config, penultimate features, and
code-free save/load through core/checkpoint.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

from core import CLASSES
from core.checkpoint import build_checked, load_into, load_model, save_model
from core.config import ranged, to_dict
from core.errors import CheckpointError, UserError

ARCHS = ("report-cnn", "resnet")
ARCH_NAMES = {"report-cnn": "The report's CNN (32/64/128 filters)",
              "resnet": "Small ResNet (from scratch)"}
# State-dict keys under this prefix hold the OOD statistics, not model weights (see ood_stats).
OOD_PREFIX = "ood."
# A classifier run's snapshot with the lowest validation loss, in RUN/checkpoints/: what
# evaluate, predict, Diagnose and the model cards load from a run.
BEST = "best.safetensors"


@dataclass
class ClassifierConfig:
    arch: str = "report-cnn"             # "report-cnn" (the report's CNN) or "resnet"
    size: int = ranged(16, 1024, 64)     # input (size, size); set from the data config
    channels: int = ranged(1, 3, 1)
    n_classes: int = ranged(2, 100, 3)
    dropout: float = ranged(0.0, 0.99, 0.2)   # the report's 20%
    filters: tuple[int, ...] = ranged(1, 4096, (32, 64, 128))  # report-cnn conv blocks; resnet
                                         # stage widths x2
    dense: int = ranged(1, 65536, 128)   # report-cnn hidden dense units (the penultimate layer)
    width: float = ranged(0.01, 16.0, 1.0)   # multiplies filters and dense: 0.25 for tiny tests
    batchnorm: bool = False              # report-cnn: BatchNorm after each conv (not in the report)
    equalize: bool = False               # histogram-equalise each image inside the model (see
                                         # equalize_histogram); saved with the weights, so every
                                         # caller feeds the same plain images


def _scaled(n: int, width: float) -> int:
    return max(2, int(round(n * width)))


def _check(config: ClassifierConfig) -> None:
    if config.arch not in ARCHS:
        raise UserError(f"unknown classifier architecture {config.arch!r}; choose one of "
                        f"{', '.join(ARCHS)}")
    n_pool = len(config.filters)
    if config.size < 2 ** n_pool or config.size % (2 ** n_pool):
        raise UserError(f"the classifier input size must be a multiple of {2 ** n_pool} "
                        f"(got {config.size})")
    if not 0.0 <= config.dropout < 1.0:
        raise UserError(f"dropout must be in [0, 1), not {config.dropout}")


def equalize_histogram(x: torch.Tensor) -> torch.Tensor:
    """Per-image histogram equalisation of (N, C, H, W) in [-1, 1]: each pixel becomes the share
    of its image's pixels below it (ties counted half), mapped back to [-1, 1]. Sources differ
    in exposure, windowing and processing; equalised, they differ less, and a model has less of
    the source to learn instead of the finding."""
    n = x.shape[0]
    flat = x.reshape(n, -1)                                       # (N, C*H*W)
    ordered, flat = flat.sort(dim=1).values.contiguous(), flat.contiguous()
    below = torch.searchsorted(ordered, flat)                     # (N, C*H*W) pixels < each
    upto = torch.searchsorted(ordered, flat, right=True)          # pixels <= each
    return ((below + upto).to(x.dtype) / flat.shape[1] - 1.0).reshape(x.shape)


class ReportCNN(nn.Module):
    """The report's CNN: per block conv3x3 -> ReLU -> 2x2 max-pool (32/64/128 filters), then
    flatten -> dropout -> dense -> ReLU -> dropout -> logits. Softmax is applied at inference."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        widths = [_scaled(f, config.width) for f in config.filters]
        blocks, c_in = [], config.channels
        for c_out in widths:
            norm = [nn.BatchNorm2d(c_out)] if config.batchnorm else []
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), *norm,
                                        nn.ReLU(inplace=True)))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        side = config.size // 2 ** len(widths)
        self.num_features = _scaled(config.dense, config.width)
        self.embed = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout),
                                   nn.Linear(c_in * side * side, self.num_features),
                                   nn.ReLU(inplace=True), nn.Dropout(config.dropout))
        self.head = nn.Linear(self.num_features, config.n_classes)

    @property
    def cam_layer(self) -> nn.Module:
        """The last conv block (before its pooling): Grad-CAM hooks its output."""
        return self.blocks[-1]

    @property
    def ood_layers(self) -> list[nn.Module]:
        """Conv blocks whose pooled activations join the OOD features (see ood_features)."""
        return list(self.blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, S, S) -> (N, D): the penultimate (dense) activations
        if self.config.equalize:
            x = equalize_histogram(x)
        for block in self.blocks:
            x = self.pool(block(x))
        return self.embed(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)   # (N, n_classes) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class ResNet(nn.Module):
    """A narrow ResNet-18 layout (four stages of two torchvision BasicBlocks) for 1-channel,
    small inputs: a 3x3 stem (stride 2 from 96 px up, so 64 px keeps its detail), no max-pool,
    stage widths `filters` plus twice the last (32/64/128/256 at width 1, half of ResNet-18's),
    global average pooling."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        base = [_scaled(f, config.width) for f in config.filters]
        widths = base + [2 * base[-1]]  # (32, 64, 128) -> 32, 64, 128, 256 stages
        stride = 2 if config.size >= 96 else 1
        self.stem = nn.Sequential(nn.Conv2d(config.channels, widths[0], 3, stride, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            s = 1 if i == 0 else 2
            down = None
            if s != 1 or c_in != c_out:
                down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, s, bias=False), nn.BatchNorm2d(c_out))
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, s, down), BasicBlock(c_out, c_out)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.num_features = c_in
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.n_classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.stages[-1]

    @property
    def ood_layers(self) -> list[nn.Module]:
        return [self.stem, *self.stages]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.equalize:
            x = equalize_histogram(x)
        x = self.stages(self.stem(x))            # (N, C4, S/8 or S/16, ...)
        return x.mean(dim=(2, 3))                 # (N, C4) global average pool

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """A freshly initialised classifier for `config` (checked; UserError on bad settings)."""
    _check(config)
    return ReportCNN(config) if config.arch == "report-cnn" else ResNet(config)


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features (N, D) of images (N, C, S, S) in [-1, 1]: the report CNN's dense
    layer, or the ResNet's pooled last stage. Used for FID/KID, precision-recall and OOD."""
    return model.features(x)


class OODCapture:
    """Context manager that records, during any forward pass of `model`, the OOD features:
    the spatial mean of every `ood_layers` output (low-level statistics tell a photo or noise
    from an X-ray) followed by the penultimate features. Use `.features()` -> (N, D_ood)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.pooled: list[torch.Tensor] = []
        self.penultimate: torch.Tensor | None = None
        self.hooks = []

    def __enter__(self) -> "OODCapture":
        def pool(_m, _i, out):
            self.pooled.append(out.detach().float().mean(dim=(2, 3)))   # (N, C_layer)

        def head_input(_m, inputs):
            self.penultimate = inputs[0].detach().float()                # (N, D)

        self.hooks = [m.register_forward_hook(pool) for m in self.model.ood_layers]
        self.hooks.append(self.model.head.register_forward_pre_hook(head_input))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.hooks:
            h.remove()

    def features(self) -> torch.Tensor:
        return torch.cat(self.pooled + [self.penultimate], dim=1)


@torch.no_grad()
def ood_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """OOD features (N, D_ood) of images (N, C, S, S) in [-1, 1], batched, in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with OODCapture(model) as cap:
            model(x[i:i + batch_size])
        out.append(cap.features().cpu())
    return torch.cat(out)


class PenultimateFeatures(nn.Module):
    """Wraps a classifier as a feature extractor, e.g. for torchmetrics' FID/KID `feature=`
    argument: float images (N, C, S, S) in [-1, 1] -> float32 (N, D); frozen, eval mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        self.num_features = int(model.num_features)  # torchmetrics reads this instead of a dummy pass

    def train(self, mode: bool = True):  # torchmetrics may call .train(); stay in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return penultimate(self.model, x.float()).float()


def save_classifier(path: str | Path, model: nn.Module, meta: dict,
                    ood: dict[str, torch.Tensor] | None = None) -> Path:
    """Save weights (+ OOD tensors under "ood.*") with `meta`; kind and model config are filled
    in so the file alone rebuilds the model."""
    meta = {**meta, "kind": "classifier", "model": to_dict(model.config)}
    meta.setdefault("classes", list(CLASSES[:model.config.n_classes]))
    state = dict(model.state_dict())
    for k, v in (ood or {}).items():
        state[OOD_PREFIX + k] = v
    return save_model(path, state, meta)


def _check_meta(meta: dict, config: ClassifierConfig, name: str) -> None:
    """The fields prediction reads, as a file from elsewhere may garble them."""
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and len(classes) == config.n_classes
                                    and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{name}: 'classes' must list {config.n_classes} class names")
    t = meta.get("temperature", 1.0)
    if t is not None and not (isinstance(t, (int, float)) and not isinstance(t, bool)
                              and math.isfinite(t) and 0 < t <= 1000):
        raise CheckpointError(f"{name}: 'temperature' must be a positive number, not {t!r:.40}")
    td = meta.get("training_data")
    if td is not None and not _training_data_ok(td):
        raise CheckpointError(f"{name}: 'training_data' must be an object with a text source, "
                              f"real true or false, and whole, non-negative counts")
    ood = meta.get("ood")
    if ood is not None and not isinstance(ood, dict):
        raise CheckpointError(f"{name}: 'ood' must be an object")
    thr = (ood or {}).get("threshold")
    if thr is not None and not (isinstance(thr, (int, float)) and not isinstance(thr, bool)
                                and math.isfinite(thr) and thr > 0):
        raise CheckpointError(f"{name}: 'ood.threshold' must be a positive number, not {thr!r:.40}")


def _training_data_ok(td) -> bool:
    """What the pages and predict read from meta["training_data"], of the types they use."""
    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    counts = td.get("counts") if isinstance(td, dict) else None
    return isinstance(td, dict) and isinstance(td.get("source"), (str, type(None))) and \
        isinstance(td.get("real"), (bool, type(None))) and \
        (counts is None or (isinstance(counts, dict) and all(count(v) for v in counts.values()))) and \
        all(count(v) for k, v in td.items() if k.startswith("n_"))


def _check_ood(model: nn.Module, ood: dict[str, torch.Tensor], name: str) -> None:
    """OOD statistics of the shapes this model's features have: scale (D,), means (K, D),
    precision (D, D), outlier_means (M, D)."""
    if not ood:
        return
    d = int(ood_features(model, torch.zeros(1, model.config.channels, model.config.size,
                                            model.config.size)).shape[1])
    want = {"scale": (d,), "means": (model.config.n_classes, d), "precision": (d, d)}
    for key, shape in want.items():
        if key in ood and tuple(ood[key].shape) != shape:
            raise CheckpointError(f"{name}: OOD statistics '{key}' have shape "
                                  f"{tuple(ood[key].shape)}, the model needs {shape}")
    if "outlier_means" in ood and (ood["outlier_means"].ndim != 2
                                   or ood["outlier_means"].shape[1] != d):
        raise CheckpointError(f"{name}: OOD statistics 'outlier_means' do not fit the model")


def _unusable_ood(ood: dict[str, torch.Tensor]) -> str | None:
    """Why OOD statistics of the right shapes cannot score an image (None when they can): a
    distance needs the class means (a class missing from training is +inf: at least one must
    be finite) and the precision, every value a number; a scale must be positive, outlier
    means finite and at least one."""
    if not ood:
        return None
    missing = [k for k in ("means", "precision") if k not in ood]
    if missing:
        return f"they lack {' and '.join(missing)}"
    if any(not v.is_floating_point() for v in ood.values()):
        return "they are not floating-point numbers"
    means = ood["means"]
    if torch.isnan(means).any() or not torch.isfinite(means).all(1).any():
        return "no class mean is a finite number"
    if not torch.isfinite(ood["precision"]).all():
        return "the precision holds values that are not finite"
    if "scale" in ood and not (torch.isfinite(ood["scale"]).all() and (ood["scale"] > 0).all()):
        return "the scale is not positive and finite"
    if "outlier_means" in ood and (len(ood["outlier_means"]) == 0 or
                                   not torch.isfinite(ood["outlier_means"]).all()):
        return "the outlier means are empty or not finite"
    return None


def load_classifier(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict]:
    """(model in eval mode, meta) from a classifier snapshot. The OOD tensors, when saved, are in
    meta["ood_tensors"] (name -> tensor); statistics that cannot score an image are left out,
    and meta["ood_note"] says why. Raises CheckpointError for a wrong or broken file."""
    state, meta = load_model(path, kind="classifier")
    name = Path(path).name
    config, model = build_checked(ClassifierConfig, meta.get("model"), build_classifier, name,
                                  "classifier")
    _check_meta(meta, config, name)
    ood = {k[len(OOD_PREFIX):]: v for k, v in state.items() if k.startswith(OOD_PREFIX)}
    weights = {k: v for k, v in state.items() if not k.startswith(OOD_PREFIX)}
    load_into(model, weights, name)
    _check_ood(model.eval(), ood, name)
    why = _unusable_ood(ood)
    if why is not None:   # the model still predicts; only the OOD flag goes, and says why
        ood = {}
        meta = dict(meta, ood_note=f"the OOD statistics in {name} are unusable ({why}); no OOD "
                                   f"flag is given")
    meta = dict(meta, ood_tensors=ood)
    return model.to(device).eval(), meta


def find_checkpoint(path: str | Path) -> Path:
    """A classifier file from a file path or a run directory (its checkpoints/best, else latest)."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, "latest.safetensors"):
            for cand in (path / "checkpoints" / name, path / name):
                if cand.is_file():
                    return cand
        raise CheckpointError(f"no classifier checkpoint in {path} (looked for checkpoints/best "
                              f"and latest .safetensors)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path
