"""GAN / WGAN / WGAN-GP training as a headless, steerable job (`python -m core train-gan`).

The loop around core.gan.trainer.GanTrainer (which owns optimisers and steps; the losses are
pure functions in core.gan.losses). It reports plain floats to the run directory at the log
interval, applies live control at every step, writes fixed-z sample grids and atomic
checkpoints, resumes exactly, and runs under torchrun."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
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

from core.gan import live
from core.runs import header as runheader
from core.atomic import atomic_path
from core.checkpoint import save_training_state
from core.config import add_arguments as add_config_arguments
from core.config import from_dict, given, override, refuse_beside, to_dict
from core.runs.control import Control, stop_on_sigterm
from core.data.config import DataConfig
from core.device import available, describe, pick_device
from core.errors import UserError, environment_reason
from core.gan.resume import checked_state, control_after_failure
from core.gan.runs import HELDOUT_MAX, PRESETS, saved_configs, training_images
from core.gan.trainer import GanTrainer, TrainConfig, resolved
from core.gan.models import CriticConfig, GeneratorConfig, check_networks, save_generator
from core.runs.sink import RunSink
from core.runs.header import RunHeader
from core.runs.store import RunStore

STATE_FILE = "latest_state.pt"
# Fields a resumed run may change; the rest would make it a different run.
RESUMABLE_FIELDS = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                    "device", "compile", "amp", "threads")


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

class _LiveControl(Control):
    """The GAN job's control: besides pause and stop, the live hyperparameters (core.gan.live) and
    sample requests. Rank 0 polls control.json each step; every rank receives the same desired
    values (one small CPU all-reduce under torchrun) and applies those that differ from its own."""

    def __init__(self, store: RunStore, trainer: GanTrainer, ctx: _Dist):
        super().__init__(store, rank0=ctx.rank == 0)
        self.trainer, self.ctx = trainer, ctx
        self.desired = trainer.live()
        seen = store.control().get("sample_now", 0) if self.rank0 else 0
        self.sample_seen = seen if isinstance(seen, int) and not isinstance(seen, bool) else 0
        self.sample_requests = 0
        self.by: dict[str, str] = {}   # who asked for each key, as control.json says

    def apply(self, key: str, value) -> None:
        if key == "by":
            if isinstance(value, dict):
                self.by = {str(k): str(v)[:80] for k, v in value.items()}
        elif key == "sample_now":
            if int(value) > self.sample_seen:
                self.sample_requests, self.sample_seen = 1, int(value)
        elif key in live.BY_NAME:   # the same ranges as the form and the flags
            spec = live.BY_NAME[key]
            if not spec.applies_to(self.trainer.loss):
                raise ValueError(f"{spec.label} only applies to {', '.join(spec.losses)}, "
                                 f"this run is {self.trainer.loss}")
            self.desired[key] = spec.check(value)

    def sync(self, step: int, bad: bool = False) -> bool:
        """Poll, share and apply control; returns whether any process saw a non-finite value."""
        self.poll(step)
        self.stop = self.should_stop   # SIGTERM: stop with a checkpoint
        names = live.NAMES
        if self.ctx.world > 1:
            vec = torch.zeros(len(names) + 4, dtype=torch.float64)
            if self.rank0:
                vec[:len(names)] = torch.tensor([float(self.desired[k]) for k in names],
                                                dtype=torch.float64)
                vec[-4:-1] = torch.tensor([self.paused, False, self.sample_requests], dtype=torch.float64)
            vec[-3], vec[-1] = float(self.stop), float(bad)    # any process may stop or fail
            dist.all_reduce(vec, group=self.ctx.control_group)
            values = vec.tolist()
            self.desired = {k: live.check(k, v) for k, v in zip(names, values)}
            self.paused, self.stop, self.sample_requests = bool(values[-4]), bool(values[-3]), int(values[-2])
            bad = values[-1] > 0
        current = self.trainer.live()
        applied = {k: v for k, v in self.desired.items() if v != current[k]}
        for key, value in applied.items():
            self.trainer.set_live(key, value)
        if applied and self.rank0:
            who = {k: self.by[k] for k in applied if k in self.by}
            self.store.log_event(step, "control", {**applied, **({"by": who} if who else {})})
            self.store.heartbeat(step, force=True, live=self.trainer.live())
            print(f"step {step}: applied {applied}", flush=True)
        return bad


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
    """The fixed-z grid of what the run samples (the weight average when there is one) and,
    with an average, the raw generator's beside it (RunStore.raw_sample_path)."""
    paths = [(store.sample_path(step), True)]
    if trainer.G_ema is not None:
        store.raw_sample_path(step).parent.mkdir(exist_ok=True)
        paths.append((store.raw_sample_path(step), False))
    for path, average in paths:
        images = trainer.generate(fixed_z, average=average).cpu()    # (n, C, S, S) in [-1, 1]
        grid = make_grid(images, nrow=math.ceil(math.sqrt(len(images))), normalize=True,
                         value_range=(-1, 1), padding=2)
        with atomic_path(path) as tmp:   # the app never reads half a PNG
            save_image(grid, tmp, format="PNG")


def _prune(store: RunStore, keep: int, after_step: int | None = None) -> None:
    """Keep the newest `keep` step snapshots; on resume, drop those past the resumed step."""
    snaps = [p for _, p in store.snapshots()]   # only names that are steps
    if after_step is not None:
        for step, p in store.snapshots():
            if step > after_step:
                p.unlink(missing_ok=True)
        for step, p in store.samples() + store.raw_samples():
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
          progress: Callable[[int, int, dict], None] | None = None, download: bool = False,
          keep_control: bool = False) -> str:
    """Train into `store`'s run directory; returns the final state (finished, stopped or failed).

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 alone writes the run
    directory. `progress(step, total_steps, metrics)` is called at each log interval.
    `keep_control`: a resume after a non-finite failure re-applies control.json's values in
    force at the failure (core.gan.resume.control_after_failure)."""
    ctx = _Dist.from_env(train_config.device)
    rank0 = ctx.rank == 0
    report = RunSink(store, rank0)
    if rank0:
        store.reserve_space()
    try:
        config = resolved(train_config)
        check_networks(gen_config, critic_config)   # before any data is loaded or weight made
        return _train(store, data_config, gen_config, critic_config, config, resume, progress, ctx,
                      download, keep_control)
    except UserError as exc:
        report.status("failed", reason=str(exc))
        raise
    except KeyboardInterrupt:
        report.status("stopped", reason="interrupted; the last checkpoint is kept")
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


def _device(config: TrainConfig, ctx: _Dist) -> torch.device:
    if config.device == "auto" and ctx.world > 1 and torch.cuda.is_available():
        device = torch.device("cuda", ctx.local_rank)
    else:
        device = pick_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    return device


class _NonFiniteFlag:
    """Whether the last step met a non-finite loss or gradient. On CUDA the flag of step k is
    copied to pinned memory and read once step k+1 is queued, so the check never drains the GPU
    queue and the run still stops within one step; elsewhere it is read at once."""

    def __init__(self, trainer: GanTrainer, device: torch.device):
        self.trainer, self.cuda = trainer, device.type == "cuda"
        self.host = torch.zeros((), dtype=torch.bool, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.pending = False

    def after_step(self) -> bool:
        """The flag known now: the previous step's on CUDA (while this one runs), else this one's."""
        if not self.cuda:
            return bool(self.trainer.bad)
        bad = self.read()
        self.host.copy_(self.trainer.bad, non_blocking=True)
        self.event.record()
        self.pending = True
        return bad

    def read(self) -> bool:
        """Wait for the queued flag (CUDA) and return it; False when none is queued."""
        if not self.pending:
            return False
        self.event.synchronize()
        self.pending = False
        return bool(self.host)


class _Run:
    """What one GAN process writes besides its reports: checkpoints (generator snapshots and the
    resumable training state) and, on rank 0, the fixed-z grid with its held-out check."""

    def __init__(self, store: RunStore, report: RunSink, trainer: GanTrainer, header: RunHeader,
                 config: TrainConfig, gen_config: GeneratorConfig, fixed_z: Tensor,
                 check: _HeldOutCheck | None, device: torch.device, status: dict):
        self.store, self.report, self.trainer, self.header = store, report, trainer, header
        self.config, self.gen_config, self.fixed_z, self.check = config, gen_config, fixed_z, check
        self.device, self.status = device, status
        data = header.section("data")
        self.meta = {"data": data, "classes": header.classes, "loss": config.loss, "run": store.name}

    def checkpoint(self, step: int) -> None:
        if not self.report.rank0:
            return
        ckdir, meta = self.store.checkpoints_dir, {**self.meta, "step": step}
        # The snapshot samples with the weight average, the raw generator beside it.
        ema = self.trainer.G_ema
        sampled, raw = (ema.module, self.trainer.G) if ema is not None else (self.trainer.G, None)
        if ema is not None:
            meta.update(ema_decay=ema.decay, ema_rampup=ema.rampup)
        save_generator(ckdir / "latest.safetensors", sampled, self.gen_config, meta, raw=raw)
        if step % self.config.checkpoint_every == 0:
            save_generator(ckdir / f"step_{step:07d}.safetensors", sampled, self.gen_config, meta,
                           raw=raw)
            _prune(self.store, self.config.keep_checkpoints)
        save_training_state(ckdir / STATE_FILE, {
            "step": step, "fixed_z": self.fixed_z, "rng": rng_state(self.device),
            "configs": self.header.to_json(), **self.trainer.state_dict()})

    def sample(self, step: int) -> None:
        """The fixed-z grid and, with it, the held-out check (rank 0 only)."""
        if not self.report.rank0:
            return
        _write_grid(self.store, self.trainer, self.fixed_z, step)
        if self.check is not None and (values := self.check.measure(self.trainer)):
            self.report.metrics(step, values)
            w = {k.split("/")[1]: v for k, v in values.items()}
            self.report.say(f"step {step}: held-out check: W on training images "
                            f"{w.get('w_train', math.nan):+.4f}, on held-out images "
                            f"{w.get('w_heldout', math.nan):+.4f}")

    def end(self, state: str, step: int, reason: str | None = None, **payload) -> str:
        if state == "failed":
            print(reason, flush=True)   # every process: its own job.log says why
        self.report.event(step, state, {"reason": reason, **payload} if state == "failed" else {})
        self.report.status(state, reason=reason, step=step, **self.status)
        return state

    def fail_non_finite(self, step: int) -> str:
        return self.end("failed", step, f"non-finite loss or gradient at step {step}; the last "
                                        f"good checkpoint is kept. Try a lower learning rate or "
                                        f"a different lambda.", live=self.trainer.live())


def _train(store, data_config, gen_config, critic_config, config, resume, progress, ctx,
           download: bool = False, keep_control: bool = False) -> str:
    report = RunSink(store, rank0=ctx.rank == 0)
    device = _device(config, ctx)
    report.status("running", reason="loading data", step=0, total_steps=config.steps,
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
    config = trainer.config   # diffaugment "auto" resolved for this data size: config.json says which
    check = _HeldOutCheck(trainer, held, config.seed) if report.rank0 and len(held) else None
    if config.compile == "on" or (config.compile == "auto" and device.type == "cuda"):
        report.status("running", reason="compiling (first step)", step=0, total_steps=config.steps)
        trainer.use_compiled()

    fixed_z = torch.randn(config.n_samples, gen_config.latent_dim,
                          generator=torch.Generator().manual_seed(config.seed))   # (n, latent) on CPU
    start, fixed_z, note = _start(store, report, trainer, config, ctx, device, resume, fixed_z,
                                  keep_control)
    run_header = header((data_config, gen_config, critic_config, config), classes=classes,
                        world_size=ctx.world)
    if report.rank0:
        store.write_header(run_header)
    # Make sure the run dir has the tables the app expects, even before the first log.
    report.event(start, "start", {"path": trainer.path, "device": describe(device),
                                  "resume": bool(resume), "compile_error": trainer.compile_error,
                                  "heldout_images": len(held),
                                  "training_images": trainer.n_images * ctx.world,
                                  "diffaugment": config.diffaugment or "off"})
    status = {"total_steps": config.steps, "path": trainer.path, "device": describe(device),
              "loss": config.loss, "world_size": ctx.world, "compile_error": trainer.compile_error,
              "heldout_images": len(held), "training_images": trainer.n_images * ctx.world,
              "holdout": config.holdout}
    run = _Run(store, report, trainer, run_header, config, gen_config, fixed_z, check, device, status)
    # "live": the values in force, which every session's sliders show
    report.status("running", reason=note, step=start, live=trainer.live(), **status)
    if not resume:
        run.sample(0)
    report.say(f"training {config.loss} on {describe(device)} ({trainer.path}, {ctx.world} "
               f"process(es)), {trainer.n_images} images/process ({len(held)} held out), "
               f"steps {start + 1}..{config.steps}, DiffAugment {config.diffaugment or 'off'}, "
               f"weight average {config.ema_decay or 'off'}")
    return _loop(run, _LiveControl(store, trainer, ctx), start, progress, ctx.world)


def _start(store: RunStore, report: RunSink, trainer: GanTrainer, config: TrainConfig,
           ctx: _Dist, device: torch.device, resume: bool, fixed_z: Tensor,
           keep_control: bool = False) -> tuple[int, Tensor, str | None]:
    """The first step and the grid's latents: (0, fixed_z), or a resumed run's checkpointed
    step and latents with its state and RNG restored (and the run directory cut back to it);
    and a line on the live values a resume after a non-finite failure goes on with."""
    if not resume:
        seed_everything(config.seed + 1000 * ctx.rank)
        return 0, fixed_z, None
    state = checked_state(store.checkpoints_dir / STATE_FILE, trainer)
    trainer.load_state_dict(state)
    start, note = int(state["step"]), None
    if report.rank0:
        note = control_after_failure(store, start, trainer.live(), keep_control)
        store.truncate_after(start)
        _prune(store, config.keep_checkpoints, after_step=start)
        store.send_control(stop=False, paused=False)   # a stale stop/pause must not end it again
        set_rng_state(state["rng"], device)
    else:    # only rank 0's RNG is saved; other ranks continue on a fresh, distinct stream
        seed_everything(config.seed + 1000 * ctx.rank + start)
    report.event(start, "resume", {"from_step": start})
    if note:
        report.event(start, "control-reset", {"reason": note, "keep_control": keep_control})
        report.say(f"step {start}: {note}")
    return start, state["fixed_z"], note


def _loop(run: _Run, control: _LiveControl, start: int, progress, world: int) -> str:
    """Steps from `start` to the end: control first (every process agrees on it and on a
    non-finite value before the next step), then a step, then logs, checkpoints and grids."""
    trainer, config, report = run.trainer, run.config, run.report
    flag = _NonFiniteFlag(trainer, run.device)
    bad = False
    t_interval, steps_in_interval = time.perf_counter(), 0
    step = start
    while step < config.steps:
        if control.sync(step + 1, bad):
            return run.fail_non_finite(step)
        if control.stop:
            if flag.read():
                return run.fail_non_finite(step)
            run.checkpoint(step)
            return run.end("stopped", step, f"stopped at step {step}")
        if control.sample_requests:
            control.sample_requests = 0
            run.sample(step)
            report.event(step, "sample")
        if control.wait_while_paused(step, report, **run.status):
            t_interval, steps_in_interval = time.perf_counter(), 0
            continue

        trainer.step()
        step += 1
        steps_in_interval += 1
        bad = flag.after_step()
        report.heartbeat(step)
        if bad:
            continue                     # fails at the top of the loop, before any write

        last = step == config.steps
        if step % config.log_every == 0 or last:
            values = trainer.read_stats()      # every process: it all-reduces under torchrun
            if flag.read() or not all(math.isfinite(v) for v in values.values()):
                bad = True
                continue
            dt = (time.perf_counter() - t_interval) / max(steps_in_interval, 1)
            t_interval, steps_in_interval = time.perf_counter(), 0
            in_force = trainer.live()
            values.update({"time/step_s": dt,
                           "throughput/img_s": config.batch_size * in_force["n_critic"] * world / dt,
                           **live.metrics(in_force)})
            report.metrics(step, values)
            report.say(_format_line(step, config.steps, values))
            if progress is not None and report.rank0:
                progress(step, config.steps, values)
        if step % config.checkpoint_every == 0 or last:
            if flag.read():              # never checkpoint a state not known to be finite
                bad = True
                continue
            run.checkpoint(step)
        if step % config.sample_every == 0 or last:
            run.sample(step)

    if bad:
        return run.fail_non_finite(step)
    return run.end("finished", step)


# ---- `python -m core train-gan` ---------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data source: phantom, phantom:N, a folder, a .npz, ... "
                        "(see `python -m core data-info`)")
    parser.add_argument("--size", type=int, help="image size in pixels (32..256)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named starting configuration")
    parser.add_argument("--width", type=float, help="width multiplier of both networks")
    parser.add_argument("--run-dir", required=True, help="the run directory to write (or resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--keep-control", action="store_true",
                        help="with --resume after a non-finite failure: re-apply control.json's "
                             "values in force when it failed (by default it resumes with those "
                             "in force at the last good checkpoint)")
    parser.add_argument("--from-config", action="store_true",
                        help="start from the configs already in --run-dir's config.json (how the "
                             "dashboard queues a run)")
    add_config_arguments(parser, TrainConfig)
    add_config_arguments(parser, DataConfig, prefix="data_")
    add_config_arguments(parser, GeneratorConfig, prefix="gen_")
    add_config_arguments(parser, CriticConfig, prefix="critic_")


def build_configs(preset: str | None = None, overrides: dict | None = None
                  ) -> tuple[DataConfig, GeneratorConfig, CriticConfig, TrainConfig]:
    """A GAN run's configs: the preset's values, then `overrides` ({"data": {...},
    "generator": {...}, "critic": {...}, "train": {...}}, each a config's fields); the networks
    follow the data's size and channels. The command line and the pages build runs this way."""
    p, o = PRESETS.get(preset or "", {}), overrides or {}
    data, gen, critic, train_cfg = (from_dict(cls, {**p.get(k, {}), **o.get(k, {})}) for k, cls in (
        ("data", DataConfig), ("generator", GeneratorConfig), ("critic", CriticConfig),
        ("train", TrainConfig)))
    gen = dataclasses.replace(gen, size=data.size, channels=data.channels)
    critic = dataclasses.replace(critic, size=data.size, channels=data.channels)
    return data, gen, critic, train_cfg


def configs_from_args(args: argparse.Namespace) -> tuple[DataConfig, GeneratorConfig, CriticConfig, TrainConfig]:
    """Preset, then the flags the user gave (--data, --size and --width being short for
    --data-source, --data-size and both networks' width)."""
    overrides = {"data": given(args, DataConfig, "data_"), "generator": given(args, GeneratorConfig, "gen_"),
                 "critic": given(args, CriticConfig, "critic_"), "train": given(args, TrainConfig)}
    if args.data:
        overrides["data"]["source"] = args.data
    if args.size:
        overrides["data"]["size"] = args.size
    if args.width:
        overrides["generator"]["width"] = overrides["critic"]["width"] = args.width
    return build_configs(args.preset, overrides)


def header(configs: tuple[DataConfig, GeneratorConfig, CriticConfig, TrainConfig], **info) -> RunHeader:
    """config.json of a GAN run with these configs."""
    return runheader.new("train-gan", dict(zip(("data", "generator", "critic", "train"),
                                               (to_dict(c) for c in configs))), **info)


def _saved(store: RunStore, doing: str):
    try:
        return saved_configs(store.header())
    except ValueError as exc:
        raise UserError(f"{store.path}: cannot {doing}: {exc}") from None


def main(args: argparse.Namespace) -> int:
    if args.resume and args.from_config:
        raise UserError("--resume and --from-config exclude each other: --resume continues a run, "
                        "--from-config starts one")
    if args.keep_control and not args.resume:
        raise UserError("--keep-control applies to --resume only")
    store = RunStore(args.run_dir, create=not args.resume)
    if args.resume:
        store.refuse_links()
        saved = store.header_json()
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
        data, gen, critic, train_cfg = _saved(store, "resume")
        train_cfg = override(train_cfg, args)
        if args.data:   # the data moved: the user's own flag, so it may also download
            data = dataclasses.replace(data, source=args.data)
        if args.device is None and not available(train_cfg.device):
            print(f"this run trained on {train_cfg.device}, which this machine lacks; resuming on "
                  f"the best device here", flush=True)
            train_cfg = dataclasses.replace(train_cfg, device="auto")
    elif args.from_config:
        refuse_beside(args, "--from-config", allowed=("run_dir",))
        store.refuse_links()
        data, gen, critic, train_cfg = _saved(store, "start from its config.json")
    else:
        data, gen, critic, train_cfg = configs_from_args(args)
    stop_on_sigterm()
    # A spec from the run's config.json is read from disk only; one the user gave may download.
    state = train(store, data, gen, critic, train_cfg, resume=args.resume,
                  download=bool(args.data) and not args.from_config, keep_control=args.keep_control)
    print(f"{state}: {store.path}", flush=True)
    return 0 if state in ("finished", "stopped") else 1
