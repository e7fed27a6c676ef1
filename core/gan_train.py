"""GAN / WGAN / WGAN-GP training as a headless, steerable job (`python -m core train-gan`).

The loop around core.gan_trainer.GanTrainer (which owns optimisers and steps; the losses are
pure functions in core.losses). It reports plain floats to the run directory at the log
interval, applies live control at every step, writes fixed-z sample grids and atomic
checkpoints, resumes exactly, and runs under torchrun."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import signal
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torchvision.utils import make_grid, save_image

from core.atomic import atomic_path
from core.budget import mapped, resident_limit
from core.checkpoint import load_training_state, save_training_state
from core.config import add_arguments as add_config_arguments
from core.config import checked, from_dict, override, to_dict
from core.data import DataConfig, load_dataset
from core.device import available, describe, pick_device
from core.errors import UserError, environment_reason
from core.gan_trainer import GanTrainer, TrainConfig, resolved
from core.losses import LIVE_RANGES, check_live
from core.models import CriticConfig, GeneratorConfig, save_generator
from core.runstore import RunStore
from core.splits import holdout_patients

STATE_FILE = "latest_state.pt"
HELDOUT_MAX = 256      # images the memorisation check holds out and scores, at most
LIVE_KEYS = ("gp_lambda", "n_critic", "lr_critic", "lr_gen", "clip")
# Fields a resumed run may change; the rest would make it a different run.
RESUMABLE_FIELDS = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                    "device", "compile", "amp", "threads")


# Named starting points; explicit flags override them. cpu-tiny: about 110 s of CPU time on one
# thread (docs/performance.md); one thread because these tiny convolutions gain little from a
# second one, and OpenMP spin-waits slowed them 5-10x whenever the CPU was shared (the app runs
# beside the job). n_critic 3 for 900 steps gave clearer lungs than 5 for 600 at the same cost.
# gpu: the report's networks at 128 px; 24 ms per step on an H100, so 20,000 steps take about
# 9.5 minutes with start-up (docs/performance.md).
PRESETS = {
    "cpu-tiny": {
        "data": {"size": 32, "phantom_per_class": 300},           # the app's default data
        "generator": {"latent_dim": 64, "width": 0.125},      # filters 32/16/8
        "critic": {"width": 0.5},                             # filters 8/16/32/64
        "train": {"batch_size": 16, "steps": 900, "n_critic": 3, "lr_critic": 2e-4, "lr_gen": 2e-4,
                  "betas": (0.5, 0.9), "log_every": 10, "sample_every": 50,
                  "checkpoint_every": 300, "n_samples": 36, "compile": "off", "threads": 1},
    },
    "gpu": {
        "data": {"size": 128},
        "generator": {},
        "critic": {},
        "train": {"batch_size": 64, "steps": 20000, "log_every": 25, "sample_every": 250,
                  "checkpoint_every": 2000},
    },
}


# ---- RNG state as plain tensors (weights_only-loadable) -------------------------------------

def rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
            "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                       "gauss": py_state[2]}}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ---- distributed ----------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False
    control_group: object = None

    @classmethod
    def from_env(cls, device_pref: str) -> "_Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        # The double backward of the penalty leaves the critic's (1, F) output weight with a
        # gradient of strides (1, 1); DDP copies it into its bucket correctly but warns each step.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
        owns = not dist.is_initialized()
        if owns:
            if use_cuda:
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if use_cuda else "gloo")
        # Control values travel on CPU tensors through gloo: no GPU sync for them.
        group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns, group)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


# ---- live control ---------------------------------------------------------------------------

_SIGNALLED = {"stop": False}


def _on_sigterm(signum, frame) -> None:   # a polite kill becomes a stop with a checkpoint
    _SIGNALLED["stop"] = True


class _LiveControl:
    """Rank 0 polls control.json each step; every rank receives the same desired values (one
    small CPU all-reduce under torchrun) and applies those that differ from its own."""

    def __init__(self, store: RunStore, trainer: GanTrainer, ctx: _Dist):
        self.store, self.trainer, self.ctx = store, trainer, ctx
        self.rank0 = ctx.rank == 0
        self.desired = trainer.live()
        self.paused = self.stop = False
        seen = store.control().get("sample_now", 0) if self.rank0 else 0
        self.sample_seen = seen if isinstance(seen, int) and not isinstance(seen, bool) else 0
        self.sample_requests = 0

    def _validate(self, changes: dict, step: int) -> None:
        for key, value in changes.items():
            try:
                if key in ("paused", "stop"):
                    if not isinstance(value, bool):
                        raise ValueError(f"{key} must be true or false")
                    setattr(self, key, value)
                elif key == "sample_now":
                    if int(value) > self.sample_seen:
                        self.sample_requests, self.sample_seen = 1, int(value)
                elif key == "gp_lambda" and not self.trainer.gp_on:
                    raise ValueError(f"lambda only applies to wgan-gp, this run is {self.trainer.loss}")
                elif key in LIVE_RANGES:   # the same ranges as the form and the flags
                    self.desired[key] = check_live(key, value)
            except (TypeError, ValueError) as exc:
                print(f"step {step}: control {key}={value!r} ignored: {exc}", flush=True)
                self.store.log_event(step, "control-rejected", {key: value, "reason": str(exc)})

    def sync(self, step: int, bad: bool = False) -> bool:
        """Poll, share and apply control; returns whether any process saw a non-finite value."""
        if self.rank0:
            changes = self.store.poll_control()
            if changes:
                self._validate(changes, step)
        self.stop = self.stop or _SIGNALLED["stop"]   # SIGTERM: stop with a checkpoint
        if self.ctx.world > 1:
            vec = torch.zeros(len(LIVE_KEYS) + 4, dtype=torch.float64)
            if self.rank0:
                vec[:len(LIVE_KEYS)] = torch.tensor([float(self.desired[k]) for k in LIVE_KEYS],
                                                    dtype=torch.float64)
                vec[-4:-1] = torch.tensor([self.paused, False, self.sample_requests], dtype=torch.float64)
            vec[-3], vec[-1] = float(self.stop), float(bad)    # any process may stop or fail
            dist.all_reduce(vec, group=self.ctx.control_group)
            values = vec.tolist()
            self.desired = {k: (int(v) if k == "n_critic" else v) for k, v in zip(LIVE_KEYS, values)}
            self.paused, self.stop, self.sample_requests = bool(values[-4]), bool(values[-3]), int(values[-2])
            bad = values[-1] > 0
        current = self.trainer.live()
        applied = {k: v for k, v in self.desired.items() if v != current[k]}
        for key, value in applied.items():
            self.trainer.set_live(key, value)
        if applied and self.rank0:
            self.store.log_event(step, "control", applied)
            self.store.heartbeat(step, force=True, live=self.trainer.live())
            print(f"step {step}: applied {applied}", flush=True)
        return bad


# ---- the loop -------------------------------------------------------------------------------

def load_images(data_config: DataConfig, gen_config: GeneratorConfig, config: TrainConfig,
                rank: int = 0, world: int = 1, download: bool = False) -> tuple[Tensor, Tensor, list]:
    """(training images, held-out images, classes) of a run, uint8 (N, C, S, S) on the CPU, in
    memory (see training_images)."""
    images, rows, held, classes = training_images(data_config, gen_config, config, rank, world,
                                                  download)
    return (images if rows is None else images[rows]), held, classes


def training_images(data_config: DataConfig, gen_config: GeneratorConfig, config: TrainConfig,
                    rank: int = 0, world: int = 1, download: bool = False
                    ) -> tuple[Tensor, Tensor | None, Tensor, list]:
    """(images, rows, held-out images, classes) of a run, uint8 (N, C, S, S) on the CPU: the
    training images are images[rows], or all of `images` when rows is None. A training set
    larger than core.budget.resident_limit() that comes memory-mapped from the decoded-data
    cache stays mapped (rows set), and the trainer reads its batches from the file; a smaller
    one is copied into memory (rows None). The held-out patients are the same on every process,
    on resume and when core.nearest reloads a finished run's images (seeded); under torchrun
    each process then trains on its own shard of the rest. `download`: the spec is the user's
    own flag (core.data.load_dataset)."""
    dataset = load_dataset(data_config, download=download)   # narrowed to data_config.classes
    with warnings.catch_warnings():   # a mapped cache entry is read-only; nothing writes to it
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(dataset.images)                   # uint8 (N, C, S, S)
    if images.shape[1] != gen_config.channels or images.shape[-1] != gen_config.size:
        raise UserError(f"the data are {tuple(images.shape[1:])} but the generator makes "
                        f"({gen_config.channels}, {gen_config.size}, {gen_config.size}) images")
    if len(images) < 2:
        raise UserError("the GAN needs at least 2 training images")
    keep, held = holdout_patients(dataset, config.holdout, config.seed, max_images=HELDOUT_MAX)
    rows, held_images = torch.from_numpy(keep), images[torch.from_numpy(held)]
    if world > 1:   # DistributedSampler-style: each rank keeps its own interleaved shard
        rows = rows[rank::world]
    if mapped(dataset.images) and len(rows) * images[0].numel() > resident_limit():
        return images, rows, held_images, dataset.classes
    return images[rows], None, held_images, dataset.classes


class _HeldOutCheck:
    """Is the critic memorising its training images? Its mean score on a fixed set of training
    images and on the held-out ones, each minus its mean score on the same fixed fakes: two
    Wasserstein estimates that agree while the critic generalises. When it memorises, the
    training images' estimate climbs away from the held-out one (the WGAN-GP paper watched
    this on a 1,000-digit MNIST subset). Measured with each sample grid, on rank 0 only."""

    def __init__(self, trainer: GanTrainer, held: Tensor, seed: int):
        g = torch.Generator().manual_seed(seed + 7)
        self.seen = trainer.training_sample(HELDOUT_MAX, g)
        self.held = held.to(trainer.device)
        self.z = torch.randn(len(self.seen), trainer.G.config.latent_dim, generator=g)

    def measure(self, trainer: GanTrainer) -> dict[str, float]:
        fake = trainer.mean_score(trainer.generate(self.z))
        seen, held = trainer.mean_score(self.seen), trainer.mean_score(self.held)
        values = {"heldout/w_train": seen - fake, "heldout/w_heldout": held - fake,
                  "heldout/gap": seen - held}
        return {k: v for k, v in values.items() if math.isfinite(v)}   # a diverged critic: no point


def _write_grid(store: RunStore, trainer: GanTrainer, fixed_z: Tensor, step: int) -> None:
    images = trainer.generate(fixed_z).cpu()                         # (n, C, S, S) in [-1, 1]
    grid = make_grid(images, nrow=math.ceil(math.sqrt(len(images))), normalize=True,
                     value_range=(-1, 1), padding=2)
    with atomic_path(store.sample_path(step)) as tmp:   # the app never reads half a PNG
        save_image(grid, tmp, format="PNG")


def _prune(store: RunStore, keep: int, after_step: int | None = None) -> None:
    """Keep the newest `keep` step snapshots; on resume, drop those past the resumed step."""
    snaps = sorted(store.checkpoints_dir.glob("step_*.safetensors"))
    if after_step is not None:
        for p in snaps:
            if int(p.stem.split("_")[1]) > after_step:
                p.unlink(missing_ok=True)
        for step, p in store.samples():
            if step > after_step:
                p.unlink(missing_ok=True)
        return
    for p in snaps[:-keep] if keep > 0 else snaps:
        p.unlink(missing_ok=True)


def _format_line(step: int, total: int, m: dict) -> str:
    parts = [f"step {step}/{total}", f"critic {m['loss/critic']:+.4f}", f"gen {m['loss/gen']:+.4f}",
             f"W {m['wgan/w_estimate']:+.4f}"]
    if "wgan/gp" in m:
        parts.append(f"gp {m['wgan/gp']:.4f}")
    parts += [f"{1000 * m['time/step_s']:.1f} ms/step", f"{m['throughput/img_s']:.0f} img/s"]
    return "  ".join(parts)


def train(store: RunStore, data_config: DataConfig, gen_config: GeneratorConfig,
          critic_config: CriticConfig, train_config: TrainConfig, resume: bool = False,
          progress: Callable[[int, int, dict], None] | None = None, download: bool = False) -> str:
    """Train into `store`'s run directory; returns the final state (finished, stopped or failed).

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 alone writes the run
    directory. `progress(step, total_steps, metrics)` is called at each log interval."""
    ctx = _Dist.from_env(train_config.device)
    rank0 = ctx.rank == 0
    if rank0:
        store.reserve_space()
    try:
        config = resolved(train_config)
        return _train(store, data_config, gen_config, critic_config, config, resume, progress, ctx,
                      download)
    except UserError as exc:
        if rank0:
            store.set_status("failed", reason=str(exc))
        raise
    except KeyboardInterrupt:
        if rank0:
            store.set_status("stopped", reason="interrupted; the last checkpoint is kept")
        raise
    except Exception as exc:
        reason = environment_reason(exc, str(store.path))   # a full disk, no permission, ...
        if reason is None:
            traceback.print_exc()
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason += " with --resume; the last good checkpoint is kept"
            print(reason, flush=True)
        if rank0:
            store.release_space()   # room for the last words on a full disk
            try:
                store.set_status("failed", reason=reason)
            except OSError:   # too full even so: job.log says it
                print("could not write status.json either", flush=True)
        return "failed"
    finally:
        store.release_space()
        store.close()
        ctx.close()


def _train(store, data_config, gen_config, critic_config, config, resume, progress, ctx,
           download: bool = False) -> str:
    rank0 = ctx.rank == 0
    if config.device == "auto" and ctx.world > 1 and torch.cuda.is_available():
        device = torch.device("cuda", ctx.local_rank)
    else:
        device = pick_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    if rank0:
        store.set_status("running", reason="loading data", step=0, total_steps=config.steps,
                         device=describe(device), loss=config.loss, world_size=ctx.world)
    images, rows, held, classes = training_images(data_config, gen_config, config, ctx.rank,
                                                  ctx.world, download=download)
    if rows is not None and device.type == "cuda" and \
            len(rows) * images[0].numel() < 0.5 * torch.cuda.mem_get_info(device)[0]:
        images, rows = images[rows], None   # the GPU keeps its own copy when it fits
    if rows is None:
        images = images.to(device)
    trainer = GanTrainer(gen_config, critic_config, config, images, device, ctx.world,
                         ctx.local_rank, rows=rows)
    check = _HeldOutCheck(trainer, held, config.seed) if rank0 and len(held) else None
    want_compile = config.compile == "on" or (config.compile == "auto" and device.type == "cuda")
    if want_compile:
        if rank0:
            store.set_status("running", reason="compiling (first step)", step=0, total_steps=config.steps)
        trainer.use_compiled()

    fixed_z = torch.randn(config.n_samples, gen_config.latent_dim,
                          generator=torch.Generator().manual_seed(config.seed))   # (n, latent) on CPU
    start = 0
    state_path = store.checkpoints_dir / STATE_FILE
    if resume:
        state = load_training_state(state_path)
        trainer.load_state_dict(state)
        start, fixed_z = int(state["step"]), state["fixed_z"]
        if rank0:
            store.truncate_after(start)
            _prune(store, config.keep_checkpoints, after_step=start)
            store.send_control(stop=False, paused=False)   # a stale stop/pause must not end it again
            store.log_event(start, "resume", {"from_step": start})
        if ctx.rank == 0:
            set_rng_state(state["rng"], device)
        else:    # only rank 0's RNG is saved; other ranks continue on a fresh, distinct stream
            seed_everything(config.seed + 1000 * ctx.rank + start)
    else:
        seed_everything(config.seed + 1000 * ctx.rank)
    configs = {"kind": "gan", "data": to_dict(data_config), "generator": to_dict(gen_config),
               "critic": to_dict(critic_config), "train": to_dict(config), "classes": classes,
               "world_size": ctx.world}
    if rank0:
        store.write_config(configs)
        # Make sure the run dir has the tables the app expects, even before the first log.
        store.log_event(start, "start", {"path": trainer.path, "device": describe(device),
                                         "resume": bool(resume), "compile_error": trainer.compile_error,
                                         "heldout_images": len(held),
                                         "training_images": trainer.n_images * ctx.world})

    control = _LiveControl(store, trainer, ctx)
    meta = {"data": to_dict(data_config), "classes": classes,
            "loss": config.loss, "run": store.name}

    def checkpoint(step: int) -> None:
        if not rank0:
            return
        ckdir = store.checkpoints_dir
        save_generator(ckdir / "latest.safetensors", trainer.G, gen_config, {**meta, "step": step})
        if step % config.checkpoint_every == 0:
            save_generator(ckdir / f"step_{step:07d}.safetensors", trainer.G, gen_config, {**meta, "step": step})
            _prune(store, config.keep_checkpoints)
        save_training_state(state_path, {"step": step, "fixed_z": fixed_z, "rng": rng_state(device),
                                         "configs": configs, **trainer.state_dict()})

    def sample(step: int) -> None:
        """The fixed-z grid and, with it, the held-out check (rank 0 only)."""
        _write_grid(store, trainer, fixed_z, step)
        if check is not None and (values := check.measure(trainer)):
            store.log_metrics(step, values)
            w = {k.split("/")[1]: v for k, v in values.items()}
            print(f"step {step}: held-out check: W on training images {w.get('w_train', math.nan):+.4f}, "
                  f"on held-out images {w.get('w_heldout', math.nan):+.4f}", flush=True)

    status = {"total_steps": config.steps, "path": trainer.path, "device": describe(device),
              "loss": config.loss, "world_size": ctx.world, "compile_error": trainer.compile_error,
              "heldout_images": len(held), "training_images": trainer.n_images * ctx.world,
              "holdout": config.holdout}
    if rank0:   # "live": the values in force, which every session's sliders show
        store.set_status("running", reason=None, step=start, live=trainer.live(), **status)
        if not resume:
            sample(0)
    if rank0:
        print(f"training {config.loss} on {describe(device)} ({trainer.path}, {ctx.world} "
              f"process(es)), {trainer.n_images} images/process ({len(held)} held out), "
              f"steps {start + 1}..{config.steps}", flush=True)

    cuda = device.type == "cuda"
    # CUDA: the non-finite flag of step k is copied to pinned memory and read once step k+1 is
    # queued, so the check never drains the GPU queue; the run still stops within one step.
    flag_host = torch.zeros((), dtype=torch.bool, pin_memory=cuda)
    flag_event = torch.cuda.Event() if cuda else None
    pending_flag = bad = False
    t_interval, steps_in_interval = time.perf_counter(), 0
    step = start

    def fail_non_finite(at: int) -> str:
        reason = (f"non-finite loss or gradient at step {at}; the last good checkpoint is kept. "
                  f"Try a lower learning rate or a different lambda.")
        print(reason, flush=True)
        if rank0:
            store.log_event(at, "failed", {"reason": reason})
            store.set_status("failed", reason=reason, step=at, **status)
        return "failed"

    def read_flag() -> bool:
        nonlocal pending_flag
        if not pending_flag:
            return False
        flag_event.synchronize()
        pending_flag = False
        return bool(flag_host)

    while step < config.steps:
        # Every process agrees on control and on a non-finite value before the next step.
        if control.sync(step + 1, bad):
            return fail_non_finite(step)
        if control.stop:
            if read_flag():
                return fail_non_finite(step)
            checkpoint(step)
            if rank0:
                store.log_event(step, "stopped", {})
                store.set_status("stopped", reason=f"stopped at step {step}", step=step, **status)
            return "stopped"
        if control.sample_requests:
            control.sample_requests = 0
            if rank0:
                sample(step)
                store.log_event(step, "sample", {})
        if control.paused:
            if rank0:
                store.set_status("paused", reason="paused by user", step=step, **status)
                store.log_event(step, "paused", {})
                print(f"step {step}: paused", flush=True)
            while control.paused and not control.stop:
                time.sleep(0.2)
                if rank0:
                    store.heartbeat(step)
                control.sync(step + 1)
            if rank0 and not control.stop:
                store.set_status("running", reason=None, step=step, **status)
                store.log_event(step, "resumed", {})
                print(f"step {step}: resumed", flush=True)
            t_interval, steps_in_interval = time.perf_counter(), 0
            continue

        trainer.step()
        step += 1
        steps_in_interval += 1
        if cuda:
            bad = read_flag()            # the previous step's flag, while this one runs
            flag_host.copy_(trainer.bad, non_blocking=True)
            flag_event.record()
            pending_flag = True
        else:
            bad = bool(trainer.bad)      # CPU/MPS: no queue to drain
        if rank0:
            store.heartbeat(step)
        if bad:
            continue                     # fails at the top of the loop, before any write

        last = step == config.steps
        if step % config.log_every == 0 or last:
            values = trainer.read_stats()      # every process: it all-reduces under torchrun
            if read_flag() or not all(math.isfinite(v) for v in values.values()):
                bad = True
                continue
            dt = (time.perf_counter() - t_interval) / max(steps_in_interval, 1)
            t_interval, steps_in_interval = time.perf_counter(), 0
            live = trainer.live()
            values.update({"time/step_s": dt,
                           "throughput/img_s": config.batch_size * live["n_critic"] * ctx.world / dt,
                           "lr/critic": live["lr_critic"], "lr/gen": live["lr_gen"],
                           "lambda": live["gp_lambda"], "n_critic": float(live["n_critic"])})
            if rank0:
                store.log_metrics(step, values)
                print(_format_line(step, config.steps, values), flush=True)
                if progress is not None:
                    progress(step, config.steps, values)
        if step % config.checkpoint_every == 0 or last:
            if read_flag():              # never checkpoint a state not known to be finite
                bad = True
                continue
            checkpoint(step)
        if rank0 and (step % config.sample_every == 0 or last):
            sample(step)

    if bad:
        return fail_non_finite(step)
    if rank0:
        store.log_event(step, "finished", {})
        store.set_status("finished", reason=None, step=step, **status)
    return "finished"


# ---- `python -m core train-gan` ---------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data source: phantom, phantom:N, a folder, a .npz, ... "
                        "(see `python -m core data-info`)")
    parser.add_argument("--size", type=int, help="image size in pixels (32..256)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named starting configuration")
    parser.add_argument("--width", type=float, help="width multiplier of both networks")
    parser.add_argument("--run-dir", required=True, help="the run directory to write (or resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    add_config_arguments(parser, TrainConfig)
    add_config_arguments(parser, DataConfig, prefix="data_")
    add_config_arguments(parser, GeneratorConfig, prefix="gen_")
    add_config_arguments(parser, CriticConfig, prefix="critic_")


def configs_from_args(args: argparse.Namespace) -> tuple[DataConfig, GeneratorConfig, CriticConfig, TrainConfig]:
    """Preset, then the flags the user gave; the networks follow the data's size and channels."""
    preset = PRESETS.get(args.preset or "", {})
    data = override(from_dict(DataConfig, preset.get("data")), args, "data_")
    gen = override(from_dict(GeneratorConfig, preset.get("generator")), args, "gen_")
    critic = override(from_dict(CriticConfig, preset.get("critic")), args, "critic_")
    train_cfg = override(from_dict(TrainConfig, preset.get("train")), args)
    if args.data:
        data = dataclasses.replace(data, source=args.data)
    if args.size:
        data = dataclasses.replace(data, size=args.size)
    if args.width:
        gen, critic = dataclasses.replace(gen, width=args.width), dataclasses.replace(critic, width=args.width)
    gen = dataclasses.replace(gen, size=data.size, channels=data.channels)
    critic = dataclasses.replace(critic, size=data.size, channels=data.channels)
    return data, gen, critic, train_cfg


def saved_configs(saved: dict) -> tuple[DataConfig, GeneratorConfig, CriticConfig, TrainConfig]:
    """The configs a run's config.json holds, as it trained with them; checked field by field,
    since a run directory may come from somewhere else (ValueError naming the bad field)."""
    if not isinstance(saved, dict):
        raise ValueError("config.json is not a JSON object")
    parts = {}
    for key, cls in (("data", DataConfig), ("generator", GeneratorConfig), ("critic", CriticConfig),
                     ("train", TrainConfig)):
        value = saved.get(key, {} if key == "critic" else None)
        try:
            # A run saved before the held-out check trained on every image: keep it that way.
            parts[key] = checked(cls, {"holdout": 0.0, **value} if key == "train" and
                                 isinstance(value, dict) else value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'{key}' in config.json: {exc}") from None
    return parts["data"], parts["generator"], parts["critic"], parts["train"]


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.run_dir, create=not args.resume)
    if args.resume:
        store.refuse_links()
        saved = store.config()
        if (store.path / "config.json").is_file() and not saved:
            raise UserError(f"{store.path / 'config.json'} is not a readable JSON object; this "
                            f"run cannot be resumed")
        if not saved or not (store.checkpoints_dir / STATE_FILE).is_file():
            raise UserError(f"{store.path} has no checkpoint to resume from")
        changed = [f for f in dataclasses.fields(TrainConfig)
                   if getattr(args, f.name, None) is not None and f.name not in RESUMABLE_FIELDS]
        if changed:
            raise UserError(f"--resume continues the saved run; only {', '.join(RESUMABLE_FIELDS)} "
                            f"can change (not {', '.join(f.name for f in changed)})")
        try:
            data, gen, critic, train_cfg = saved_configs(saved)
        except ValueError as exc:
            raise UserError(f"{store.path}: cannot resume: {exc}") from None
        train_cfg = override(train_cfg, args)
        if args.data:   # the data moved: the user's own flag, so it may also download
            data = dataclasses.replace(data, source=args.data)
        if args.device is None and not available(train_cfg.device):
            print(f"this run trained on {train_cfg.device}, which this machine lacks; resuming on "
                  f"the best device here", flush=True)
            train_cfg = dataclasses.replace(train_cfg, device="auto")
    else:
        data, gen, critic, train_cfg = configs_from_args(args)
    _SIGNALLED["stop"] = False
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:   # not the main thread
        pass
    # A spec from the run's config.json is read from disk only; one the user gave may download.
    state = train(store, data, gen, critic, train_cfg, resume=args.resume, download=bool(args.data))
    print(f"{state}: {store.path}", flush=True)
    return 0 if state in ("finished", "stopped") else 1
