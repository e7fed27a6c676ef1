"""GAN vs WGAN vs WGAN-GP on one data set with the same seed, networks and step budget
(`python -m core compare`): wall time, throughput and quality (relative FD, KID, precision/recall)
on the features of a small CNN trained for that data, one table and a side-by-side sample image."""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn
from torchvision.utils import make_grid

from core.gan import losses
from core.atomic import atomic_path
from core.config import save_json, to_dict
from core.data.config import DataConfig
from core.data.dataset import ImageDataset
from core.data.sources import load_dataset
from core.errors import CheckpointError, UserError
from core.gan.models import CriticConfig, GeneratorConfig

Progress = Callable[[float, str], None]
# Hyperparameters each loss's paper sets differently (core.gan.losses.LOSS_DEFAULTS).
LOSS_FIELDS = ("n_critic", "gp_lambda", "clip", "lr_critic", "lr_gen", "betas", "optimizer")
N_SHOW = 36   # images per panel of compare.png (6 x 6)


@dataclass
class CompareConfig:
    losses: tuple[str, ...] = ("gan", "wgan", "wgan-gp")
    n_eval: int = 2000            # real images (at most) for the metrics; as many generated
    feature_epochs: int = 8       # the feature CNN: epochs, width multiplier, training images
    feature_width: float = 0.5
    feature_max_images: int = 10000
    kid_subsets: int = 50
    seed: int = 0


# ---- the features model ---------------------------------------------------------------------

def feature_size(size: int) -> int:
    """The feature CNN's input size: the data's, rounded up to a multiple of 8 (three poolings)."""
    return max(16, 8 * math.ceil(size / 8))


def _rotations(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # x (N, C, S, S), k (N,) in 0..3 -> each image turned by k quarter turns
    out = x.clone()
    for q in range(1, 4):
        sel = k == q
        if sel.any():
            out[sel] = torch.rot90(x[sel], q, dims=(2, 3))
    return out


def train_feature_net(dataset: ImageDataset, config: CompareConfig,
                      device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A small CNN (core.classify.model's report CNN, narrowed) trained for this data, whose
    penultimate layer gives the quality features. It learns the data's labels; a one-class set
    (a plain folder) learns to tell which of four rotations an image was given, a self-supervised
    task that still needs shape features. Returns (model on CPU in eval mode, info with the
    held-out accuracy, which says how much to trust the features)."""
    from sklearn.model_selection import train_test_split

    from core.classify.model import ClassifierConfig, build_classifier
    from core.gan.runs import resize_u8

    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    idx = rng.permutation(len(dataset))[: config.feature_max_images]
    size = feature_size(dataset.size)
    x = torch.from_numpy(resize_u8(dataset.images[idx], size)).float().div_(127.5).sub_(1.0)
    task = "classes" if len(dataset.classes) >= 2 else "rotation"
    if task == "classes":
        y = torch.from_numpy(dataset.labels[idx])
        n_classes = len(dataset.classes)
    else:
        y = torch.from_numpy(rng.integers(0, 4, len(idx)))
        x = _rotations(x, y)
        n_classes = 4
    counts = np.bincount(y.numpy(), minlength=n_classes)
    stratify = y.numpy() if counts.min() >= 2 else None
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, random_state=config.seed,
                              stratify=stratify)
    torch.manual_seed(config.seed)
    model = build_classifier(ClassifierConfig(size=size, channels=int(x.shape[1]),
                                              n_classes=n_classes, width=config.feature_width)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(config.feature_epochs):
        model.train()
        for b in torch.randperm(len(tr), generator=gen).split(64):
            xb, yb = x[tr[b.numpy()]].to(device), y[tr[b.numpy()]].to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[va[i:i + 256]].to(device)).argmax(1).cpu()
                          for i in range(0, len(va), 256)])
    acc = float((pred == y[va]).float().mean())
    info = {"task": task, "n_classes": n_classes, "size": size, "epochs": config.feature_epochs,
            "n_train": len(tr), "n_val": len(va), "val_accuracy": acc,
            "chance": float(counts.max() / counts.sum()), "dim": int(model.num_features),
            "seconds": time.perf_counter() - t0}
    return model.cpu().eval(), info


# ---- one comparison -------------------------------------------------------------------------

def _timing(store, steps: int, batch: int, n_critic: int) -> dict:
    """Training seconds from the logged per-step times (time/step_s is the mean over each log
    interval), and real images through the critic per second."""
    df = store.metrics_wide(["time/step_s"])
    if df.empty:
        return {"train_s": None, "images_per_s": None, "gen_steps_per_s": None}
    s = df["time/step_s"].dropna()
    steps_in = np.diff(np.r_[0, s.index.to_numpy()])
    train_s = float((s.to_numpy() * steps_in).sum())
    done = int(s.index.max())
    return {"train_s": train_s, "images_per_s": done * batch * n_critic / train_s,
            "gen_steps_per_s": done / train_s}


def compare(run_dir: str | Path, data_config: DataConfig, gen_config: GeneratorConfig,
            critic_config: CriticConfig, train_config, config: CompareConfig | None = None,
            progress: Progress | None = None) -> dict:
    """Train each of config.losses into RUN_DIR/<loss>/ (core.gan.job.train, same seed, networks,
    steps and batch; fields of `train_config` left None take each loss's paper defaults), then
    measure them against the real data on a feature CNN trained here. Writes RUN_DIR/compare.json,
    compare.md, compare.png and features.safetensors; returns the compare.json dict."""
    from core.classify.model import save_classifier
    from core.device import pick_device
    from core.studies.gan_metrics import (
        GanMetricsConfig,
        feature_metrics,
        features,
        kernel_distance,
    )
    from core.gan.runs import resize_u8, sample_run
    from core.gan.job import train
    from core.gan.trainer import resolved
    from core.runs.store import RunStore

    c = config or CompareConfig()
    bad = [name for name in c.losses if name not in losses.LOSSES]
    if bad or not c.losses:
        raise UserError(f"unknown loss {', '.join(bad) or '(none)'}; choose from {', '.join(losses.LOSSES)}")
    say = progress or (lambda f, m: None)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    say(0.0, f"loading {data_config.source}")
    dataset = load_dataset(data_config, download=True)   # the user's --data
    size, channels = dataset.size, int(dataset.images.shape[1])
    gen_config = dataclasses.replace(gen_config, size=size, channels=channels)
    critic_config = dataclasses.replace(critic_config, size=size, channels=channels)

    say(0.02, "training the feature CNN")
    device = pick_device(train_config.device)
    feat_net, feat_info = train_feature_net(dataset, c, device)
    save_classifier(run_dir / "features.safetensors", feat_net,
                    {"classes": dataset.classes if feat_info["task"] == "classes"
                     else ["0", "90", "180", "270"], "task": feat_info["task"],
                     "training_data": to_dict(data_config)})
    fsize = feat_info["size"]
    rng = np.random.default_rng(c.seed)
    real = dataset.images[rng.permutation(len(dataset))[: c.n_eval]]       # uint8 (n, C, S, S)
    real_feats = features(feat_net, resize_u8(real, fsize))
    metric_config = GanMetricsConfig(n=len(real), kid_subsets=c.kid_subsets,
                                     kid_subset_size=len(real) // 2, seed=c.seed)
    # The same real halves feature_metrics draws (its own permutation with this seed), so the
    # real-vs-real KID below is the floor the losses' KIDs are measured against.
    perm = torch.from_numpy(np.random.default_rng(c.seed).permutation(len(real_feats)))
    half = len(real_feats) // 2
    kid_real, _ = kernel_distance(real_feats[perm[:half]], real_feats[perm[half:]],
                                  c.kid_subsets, metric_config.kid_subset_size)

    rows, panels = [], {"real": real[:N_SHOW]}
    for k, name in enumerate(c.losses):
        base = 0.05 + 0.9 * k / len(c.losses)
        say(base, f"training {name} ({k + 1} of {len(c.losses)})")
        tc = resolved(dataclasses.replace(train_config, loss=name))
        store = RunStore(run_dir / name, create=True)
        t0 = time.perf_counter()
        state = train(store, data_config, gen_config, critic_config, tc)
        wall = time.perf_counter() - t0
        status = RunStore(run_dir / name).status()
        step = int(status.get("step") or 0)
        row = {"loss": name, "state": state, "steps": step, "n_critic": int(tc.n_critic),
               "critic_steps": step * int(tc.n_critic), "batch_size": int(tc.batch_size),
               "optimizer": tc.optimizer, "lr_critic": tc.lr_critic, "lr_gen": tc.lr_gen,
               "gp_lambda": tc.gp_lambda, "clip": tc.clip, "wall_s": wall,
               **_timing(RunStore(run_dir / name), step, int(tc.batch_size), int(tc.n_critic))}
        last = RunStore(run_dir / name).metrics_wide(["wgan/w_estimate", "loss/critic", "loss/gen"])
        if not last.empty:
            row.update({f"final_{k.replace('/', '_')}": float(v) for k, v in last.iloc[-1].items()
                        if np.isfinite(v)})
        say(base + 0.7 / len(c.losses), f"measuring {name}")
        try:
            fake, _, _ = sample_run(run_dir / name, len(real), seed=c.seed)
        except CheckpointError:
            fake = None   # failed before its first checkpoint
        if fake is not None:
            row.update(feature_metrics(real_feats, features(feat_net, resize_u8(fake, fsize)),
                                       metric_config))
            panels[name] = fake[:N_SHOW]
        rows.append(row)

    result = {"data": to_dict(data_config), "generator": to_dict(gen_config),
              "critic": to_dict(critic_config), "train": to_dict(train_config),
              "compare": to_dict(c), "features": feat_info, "n_real": len(real),
              "kid_real_b_vs_real_a": kid_real, "rows": rows}
    save_json(run_dir / "compare.json", result)
    (run_dir / "compare.md").write_text(format_table(result))
    save_panels(run_dir / "compare.png", panels, rows)
    say(1.0, f"wrote {run_dir / 'compare.md'}")
    return result


# ---- outputs --------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def format_table(result: dict) -> str:
    """compare.json as a Markdown table plus the facts needed to read it."""
    f = result["features"]
    header = ("| loss | state | G steps | critic steps | wall s | train s | critic img/s | "
              "relative FD | FD | KID | precision | recall | C2ST acc |")
    lines = [header, "|---|---|" + "---:|" * 11]
    for r in result["rows"]:
        lines.append(
            f"| {r['loss']} | {r['state']} | {r['steps']} | {r['critic_steps']} | "
            f"{_fmt(r['wall_s'], '.1f')} | {_fmt(r.get('train_s'), '.1f')} | "
            f"{_fmt(r.get('images_per_s'), '.0f')} | {_fmt(r.get('relative_fd'), '.2f')} | "
            f"{_fmt(r.get('fd_fake_vs_real_a'), '.2f')} | {_fmt(r.get('kid'), '.3g')} | "
            f"{_fmt(r.get('precision'), '.2f')} | {_fmt(r.get('recall'), '.2f')} | "
            f"{_fmt(r.get('c2st_accuracy'), '.2f')} |")
    base = next((r.get("fd_real_b_vs_real_a") for r in result["rows"]
                 if r.get("fd_real_b_vs_real_a") is not None), None)
    hp = "; ".join(f"{r['loss']}: {r['optimizer']} lr {r['lr_critic']:g}/{r['lr_gen']:g}, "
                   f"n_critic {r['n_critic']}" + (f", clip {r['clip']:g}" if r["clip"] else "")
                   + (f", lambda {r['gp_lambda']:g}" if r["gp_lambda"] else "")
                   for r in result["rows"])
    batch = result["rows"][0]["batch_size"] if result["rows"] else "n/a"
    data = (f"Data: `{result['data']['source']}` at {result['data']['size']} px, "
            f"{result['generator']['channels']} channel(s); {result['n_real']} real images for "
            f"the metrics and as many generated per loss. Seed {result['train']['seed']}, batch "
            f"{batch}.")
    task = "the labels" if f["task"] == "classes" else "rotation prediction"
    feats = (f"Features: a {f['dim']}-d penultimate layer of a small CNN trained here on {task} "
             f"({f['n_train']} images, {f['epochs']} epochs, {f['seconds']:.1f} s; held-out "
             f"accuracy {f['val_accuracy']:.3f}, chance {f['chance']:.3f}).")
    reading = (f"Relative FD = FD(generated, real half A) / FD(real half B, real half A) with "
               f"equal set sizes; the real-vs-real FD is {_fmt(base, '.3f')}. About 1 means as "
               f"close as other real images. KID is unbiased (0 = same distribution; its scale "
               f"is the features'): real half B vs A gives "
               f"{_fmt(result.get('kid_real_b_vs_real_a'), '.3g')}. C2ST accuracy 0.5 = "
               f"indistinguishable, 1.0 = trivially told apart.")
    lines += ["", data, f"Hyperparameters: {hp}.", feats, reading]
    return "\n".join(lines) + "\n"


def _grid(images: np.ndarray, scale: int) -> Image.Image:
    x = torch.from_numpy(images).float() / 255.0                        # (n, C, S, S)
    grid = make_grid(x, nrow=math.ceil(math.sqrt(len(x))), padding=2, pad_value=1.0)
    arr = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()   # (H, W, 3)
    im = Image.fromarray(arr)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def save_panels(path: Path, panels: dict[str, np.ndarray], rows: list[dict]) -> Path:
    """Real images and each loss's samples side by side, titled with the loss and relative FD."""
    by_loss = {r["loss"]: r for r in rows}
    size = next(iter(panels.values())).shape[-1]
    scale = max(1, 240 // (6 * (size + 2)))
    tiles = [(_grid(img, scale), name) for name, img in panels.items()]
    title_h, gap = 22, 12
    width = sum(t.width for t, _ in tiles) + gap * (len(tiles) + 1)
    height = max(t.height for t, _ in tiles) + title_h + 2 * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = gap
    for tile, name in tiles:
        r = by_loss.get(name, {})
        label = name if name == "real" else f"{name}  rel FD {_fmt(r.get('relative_fd'), '.2f')}"
        draw.text((x, gap // 2), label, fill="black")
        canvas.paste(tile, (x, gap + title_h - 4))
        x += tile.width + gap
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


# ---- `python -m core compare` ---------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="digits, mnist:ROOT, fashion-mnist:ROOT, "
                        "cifar10:ROOT, folder:PATH, phantom, an X-ray folder ...")
    parser.add_argument("--losses", default="gan,wgan,wgan-gp", help="comma-separated losses")
    parser.add_argument("--steps", type=int, help="generator steps per loss")
    parser.add_argument("--run-dir", required=True, help="writes <loss>/ run dirs and compare.*")
    parser.add_argument("--size", type=int, help="image size in pixels")
    parser.add_argument("--channels", dest="data_channels", type=int, choices=(1, 3),
                        help="1 = grayscale, 3 = RGB (CIFAR-10, colour folders)")
    parser.add_argument("--seed", type=int, help="one seed for every loss")
    parser.add_argument("--preset", help="a core.gan.job preset, e.g. cpu-tiny")
    parser.add_argument("--width", type=float, help="width multiplier of both networks")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", help="auto | cpu | cuda | mps")
    parser.add_argument("--lr-critic", type=float, help="applies to every loss")
    parser.add_argument("--lr-gen", type=float, help="applies to every loss")
    parser.add_argument("--n-critic", type=int, help="applies to every loss")
    parser.add_argument("--hparams", choices=("paper", "shared"), default="paper",
                        help="paper: each loss keeps its paper's optimiser, learning rates and "
                             "n_critic; shared: the preset's values apply to all (default paper)")
    # Off by default: the table in docs/results.md trained on every image. A share such as 0.05
    # adds the memorisation check (core.gan.job._HeldOutCheck) to each loss's run.
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="share of the images held out to check each critic for memorising (default 0)")
    parser.add_argument("--n-eval", type=int, help=f"real images for the metrics (default {CompareConfig.n_eval})")
    parser.add_argument("--feature-epochs", type=int, help=f"default {CompareConfig.feature_epochs}")


def main(args: argparse.Namespace) -> int:
    from core.gan.runs import PRESETS
    from core.gan.job import configs_from_args

    if args.preset and args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose from {', '.join(sorted(PRESETS))}")
    data, gen, critic, train_cfg = configs_from_args(args)
    if args.hparams == "paper":  # drop the preset's optimiser settings, keep the user's flags
        given = {f for f in LOSS_FIELDS if getattr(args, f, None) is not None}
        train_cfg = dataclasses.replace(train_cfg, **{f: None for f in LOSS_FIELDS if f not in given})
    config = CompareConfig(losses=tuple(s.strip() for s in args.losses.split(",") if s.strip()))
    for name in ("n_eval", "feature_epochs"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.seed is not None:
        config.seed = args.seed

    def progress(frac: float, msg: str) -> None:
        print(f"[compare {100 * frac:3.0f}%] {msg}", flush=True)

    result = compare(args.run_dir, data, gen, critic, train_cfg, config, progress)
    print(format_table(result))
    states = {r["state"] for r in result["rows"]}
    return 0 if states <= {"finished"} else 1
