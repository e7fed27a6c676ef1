"""GAN / WGAN / WGAN-GP training as a headless, steerable job (`python -m core train-gan`).

The loop owns optimisers and steps (the losses are pure functions in core.losses). It reports
plain floats to the run directory at the log interval, applies live control at every step,
writes fixed-z sample grids and atomic checkpoints, resumes exactly, and runs under torchrun."""

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
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from torch.func import grad as func_grad
from torchvision.utils import make_grid, save_image

from core import losses
from core.checkpoint import load_into, load_training_state, save_training_state
from core.config import add_arguments as add_config_arguments
from core.config import from_dict, override, to_dict
from core.data import DataConfig, load_dataset
from core.device import describe, pick_device
from core.errors import UserError
from core.models import Critic, CriticConfig, Generator, GeneratorConfig, save_generator
from core.runstore import RunStore

STATE_FILE = "latest_state.pt"
# Everything the critic and generator steps accumulate on the device, in this order; the
# gradient-penalty entries are logged for wgan-gp only.
STAT_NAMES = ("loss/critic", "wgan/w_estimate", "wgan/gp", "wgan/grad_norm_mean",
              "wgan/grad_norm_std", "d/real_mean", "d/fake_mean", "loss/gen")
GP_STATS = ("wgan/gp", "wgan/grad_norm_mean", "wgan/grad_norm_std")
LIVE_KEYS = ("gp_lambda", "n_critic", "lr_critic", "lr_gen", "clip")
# Fields a resumed run may change; the rest would make it a different run.
RESUMABLE_FIELDS = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                    "device", "compile", "amp", "threads")


@dataclass
class TrainConfig:
    loss: str = "wgan-gp"          # gan | wgan | wgan-gp
    steps: int = 2000              # generator steps; each follows n_critic critic steps
    batch_size: int = 64           # per process
    # None means the loss's paper default (core.losses.LOSS_DEFAULTS); resolved() fills them in.
    # (Optional[...] rather than `X | None`: core.config's flag parser reads typing.Union.)
    n_critic: Optional[int] = None
    gp_lambda: Optional[float] = None
    clip: Optional[float] = None      # weight clipping bound; 0 = off
    lr_critic: Optional[float] = None
    lr_gen: Optional[float] = None
    betas: Optional[tuple[float, float]] = None
    optimizer: Optional[str] = None   # adam | rmsprop
    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 500
    keep_checkpoints: int = 3      # step_XXXXXXX snapshots kept besides latest
    n_samples: int = 64            # images in the fixed-z grid
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda | mps
    compile: str = "auto"          # auto (on for CUDA only) | on | off
    amp: str = "auto"              # auto (bf16 on CUDA only) | bf16 | off
    threads: int = 0               # CPU threads (0 = PyTorch's default); 1 suits tiny nets on a busy CPU


# Named starting points; explicit flags override them. cpu-tiny: about 110 s of CPU time on one
# thread (docs/performance.md); one thread because these tiny convolutions gain little from a
# second one, and OpenMP spin-waits slowed them 5-10x whenever the CPU was shared (the app runs
# beside the job). n_critic 3 for 900 steps gave clearer lungs than 5 for 600 at the same cost.
# gpu: the report's networks at 128 px.
PRESETS = {
    "cpu-tiny": {
        "data": {"size": 32, "phantom_per_class": 100},
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


def resolved(config: TrainConfig) -> TrainConfig:
    """`config` with every unset hyperparameter taken from its loss's paper defaults, checked."""
    if config.loss not in losses.LOSS_DEFAULTS:
        raise UserError(f"loss must be one of {', '.join(losses.LOSSES)}, not {config.loss!r}")
    defaults = losses.LOSS_DEFAULTS[config.loss]
    config = dataclasses.replace(config, **{k: v for k, v in defaults.items()
                                            if getattr(config, k, None) is None})
    config = dataclasses.replace(config, betas=tuple(float(b) for b in config.betas))
    checks = [(config.steps >= 1, "steps must be at least 1"),
              (config.batch_size >= 1, "batch_size must be at least 1"),
              (config.n_critic >= 1, "n_critic must be at least 1"),
              (config.gp_lambda >= 0, "gp_lambda cannot be negative"),
              (config.clip >= 0, "clip cannot be negative"),
              (config.lr_critic > 0 and config.lr_gen > 0, "learning rates must be positive"),
              (config.optimizer in ("adam", "rmsprop"), "optimizer must be adam or rmsprop"),
              (min(config.log_every, config.sample_every, config.checkpoint_every) >= 1,
               "log_every, sample_every and checkpoint_every must be at least 1"),
              (config.compile in ("auto", "on", "off"), "compile must be auto, on or off"),
              (config.amp in ("auto", "bf16", "off"), "amp must be auto, bf16 or off"),
              (config.n_samples >= 1, "n_samples must be at least 1")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return config


# ---- the critic loss, two ways --------------------------------------------------------------

def _stats(loss: Tensor, real_s: Tensor, fake_s: Tensor, gp: Tensor, norms: Tensor | None) -> Tensor:
    """The critic step's statistics as one detached (7,) vector, in STAT_NAMES order."""
    if norms is None:
        norms = torch.zeros(1, device=loss.device)
    return torch.stack([loss, losses.wasserstein_estimate(real_s, fake_s), gp, norms.mean(),
                        norms.std(correction=0), real_s.mean(), fake_s.mean()]).detach()


def _critic_objective(loss_name: str, real_s: Tensor, fake_s: Tensor, gp: Tensor, lam: Tensor) -> Tensor:
    if loss_name == "gan":
        return losses.gan_critic_loss(real_s, fake_s)
    return losses.wgan_critic_loss(real_s, fake_s) + lam * gp


def critic_loss(critic: nn.Module, real: Tensor, fake: Tensor, loss_name: str, lam: Tensor,
                alpha: Tensor | None, amp_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Eager critic loss: (loss, stats (7,)). real, fake (N, C, S, S); alpha (N, 1, 1, 1) or None.

    One critic forward over [real; fake; interpolates] (the critic has no BatchNorm, so samples
    stay independent), then autograd.grad with create_graph for the per-sample penalty."""
    n = real.shape[0]
    gp = torch.zeros((), device=real.device)
    norms = x_hat = None
    batch = [real, fake]
    if alpha is not None:
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)   # (N, C, S, S)
        batch.append(x_hat)
    with torch.autocast(real.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        scores = critic(torch.cat(batch)).float()                           # (2N or 3N,)
    real_s, fake_s = scores[:n], scores[n:2 * n]
    if x_hat is not None:
        (grads,) = torch.autograd.grad(scores[2 * n:].sum(), x_hat, create_graph=True)
        gp, norms = losses.penalty_from_grads(grads.float())
    loss = _critic_objective(loss_name, real_s, fake_s, gp, lam)
    return loss, _stats(loss, real_s, fake_s, gp, norms)


def functional_critic_loss(critic: nn.Module, loss_name: str,
                           amp_dtype: torch.dtype | None = None) -> Callable:
    """The critic loss as f(params, buffers, real, fake, alpha, lam) -> (loss, stats (7,)),
    written with torch.func so that torch.compile traces the input gradient of the penalty and
    compiles the double backward (compiling the critic and calling autograd.grad(create_graph)
    on it fails). lam is a 0-d tensor, so a live change does not recompile."""

    def scores(params, buffers, x):
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            return functional_call(critic, (params, buffers), (x,)).float()   # (N,)

    def loss_fn(params, buffers, real, fake, alpha, lam):
        n = real.shape[0]
        both = scores(params, buffers, torch.cat([real, fake]))
        real_s, fake_s = both[:n], both[n:]
        gp = torch.zeros((), device=real.device)
        norms = None
        if alpha is not None:
            x_hat = alpha * real + (1 - alpha) * fake
            # Scores are per sample, so the gradient of their sum is each sample's own gradient.
            grads = func_grad(lambda x: scores(params, buffers, x).sum())(x_hat)   # (N, C, S, S)
            gp, norms = losses.penalty_from_grads(grads.float())
        loss = _critic_objective(loss_name, real_s, fake_s, gp, lam)
        return loss, _stats(loss, real_s, fake_s, gp, norms)

    return loss_fn


def _allreduce_mean(tensors: list[Tensor], world: int) -> None:
    """Average gradients over processes in one flat all-reduce (used where DDP's own hooks are
    bypassed: the compiled functional critic loss)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


class GanTrainer:
    """Models, optimisers and live hyperparameters of one process, and `step()`: n_critic critic
    updates then one generator update. Statistics and the non-finite flag accumulate on the
    device; `read_stats` is the only place that reads them back."""

    def __init__(self, gen_config: GeneratorConfig, critic_config: CriticConfig, config: TrainConfig,
                 images: Tensor, device: torch.device, world: int = 1, local_rank: int = 0):
        self.config = config = resolved(config)
        self.device, self.world = device, world
        self.images = images                     # uint8 (N, C, S, S) on the device
        self.loss = config.loss
        self.gp_on = config.loss == "wgan-gp"
        torch.manual_seed(config.seed)           # identical initial weights on every rank
        self.G, self.D = Generator(gen_config).to(device), Critic(critic_config).to(device)
        # channels_last: oneDNN (CPU) and cuDNN run these convs without layout reorders; measured
        # 2x on the generator's forward on CPU, neutral for the critic (docs/performance.md).
        self.G.to(memory_format=torch.channels_last)
        self.D.to(memory_format=torch.channels_last)
        self.G_train, self.D_train = self.G, self.D
        if world > 1:
            ids = [local_rank] if device.type == "cuda" else None
            self.G_train = nn.parallel.DistributedDataParallel(self.G, device_ids=ids)
            self.D_train = nn.parallel.DistributedDataParallel(self.D, device_ids=ids)
        self.opt_d = self._optimizer(self.D, config.lr_critic)
        self.opt_g = self._optimizer(self.G, config.lr_gen)
        self.lam = torch.tensor(float(config.gp_lambda), device=device)   # 0-d: no recompiles
        self._lam_value = float(config.gp_lambda)   # host copy: reading lam would sync the GPU
        self.n_critic, self.clip = int(config.n_critic), float(config.clip)
        if config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda"):
            self.amp_dtype = torch.bfloat16
        else:
            self.amp_dtype = None
        self.sums = torch.zeros(len(STAT_NAMES), device=device)
        self.counts = [0, 0]                     # critic steps, generator steps since last read
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.path, self.compile_error = "eager", None
        self._use_eager()

    def _optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "rmsprop":
            return torch.optim.RMSprop(module.parameters(), lr=lr)
        return torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(self.config.betas),
                                fused=True if self.device.type == "cuda" else None)

    # ---- paths ------------------------------------------------------------------------
    def _use_eager(self) -> None:
        self.path = "eager"
        self._fake_fn, self._gen_fn, self._score_fn = self.G, self.G_train, self.D
        self._critic_fn = None

    def use_compiled(self) -> bool:
        """Switch to torch.compile (functional critic loss, compiled G and D forwards) and
        compile everything now on one batch, so an error falls back to eager before training
        starts rather than half way through a step. Weights, buffers and RNG are left as found."""
        state = {k: v.clone() for k, v in self.G.state_dict().items()}   # BN buffers move
        rng = torch.get_rng_state(), (torch.cuda.get_rng_state(self.device)
                                      if self.device.type == "cuda" else None)
        try:
            self._critic_fn = torch.compile(functional_critic_loss(self.D, self.loss, self.amp_dtype))
            self._fake_fn = torch.compile(self.G)
            self._gen_fn = torch.compile(self.G_train)
            self._score_fn = torch.compile(self.D)
            self.path = "compiled"
            self._critic_step(update=False)
            self._generator_step(update=False)
            return True
        except Exception as exc:   # any compiler error: say so and train eagerly
            self.compile_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"torch.compile failed, training eagerly instead ({self.compile_error})")
            self._use_eager()
            return False
        finally:
            self.G.load_state_dict(state)
            torch.set_rng_state(rng[0])
            if rng[1] is not None:
                torch.cuda.set_rng_state(rng[1], self.device)
            self.opt_d.zero_grad(set_to_none=True)
            self.opt_g.zero_grad(set_to_none=True)
            self.sums.zero_()
            self.counts = [0, 0]
            self.bad.zero_()

    # ---- one training step --------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None)

    def _real_batch(self) -> Tensor:
        idx = torch.randint(len(self.images), (self.config.batch_size,), device=self.device)
        return self.images[idx].float().div_(127.5).sub_(1.0)          # (B, C, S, S) in [-1, 1]

    def _check_grads(self, module: nn.Module) -> None:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            self.bad |= ~torch.isfinite(torch.nn.utils.get_total_norm(grads))

    def _critic_step(self, update: bool = True) -> None:
        n = self.config.batch_size
        real = self._real_batch()
        z = torch.randn(n, self.G.config.latent_dim, device=self.device)
        with torch.no_grad(), self._autocast():
            fake = self._fake_fn(z).float()     # detached: the critic step never reaches G
        alpha = torch.rand(n, 1, 1, 1, device=self.device) if self.gp_on else None
        if self._critic_fn is not None:
            params, buffers = dict(self.D.named_parameters()), dict(self.D.named_buffers())
            loss, stats = self._critic_fn(params, buffers, real, fake, alpha, self.lam)
        else:
            loss, stats = critic_loss(self.D_train, real, fake, self.loss, self.lam, alpha, self.amp_dtype)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1 and self._critic_fn is not None:
            _allreduce_mean([p.grad for p in self.D.parameters()], self.world)
        if not update:
            return
        self.bad |= ~torch.isfinite(loss.detach())
        self._check_grads(self.D)
        self.opt_d.step()
        if self.clip > 0:
            losses.clip_weights(self.D, self.clip)
        self.sums[:7] += stats
        self.counts[0] += 1

    def _generator_step(self, update: bool = True) -> None:
        z = torch.randn(self.config.batch_size, self.G.config.latent_dim, device=self.device)
        # The critic is only a path for the generator's gradients: no weight gradients for it,
        # and called unwrapped so DDP does not wait for critic gradients that never come.
        self.D.requires_grad_(False)
        try:
            with self._autocast():
                scores = self._score_fn(self._gen_fn(z)).float()     # (B,)
            if self.loss == "gan":
                loss = losses.gan_generator_loss(scores)
            else:
                loss = losses.wgan_generator_loss(scores)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            self.D.requires_grad_(True)
        if not update:
            return
        self.bad |= ~torch.isfinite(loss.detach())
        self._check_grads(self.G)
        self.opt_g.step()
        self.sums[7] += loss.detach()
        self.counts[1] += 1

    def step(self) -> None:
        """n_critic critic updates, then one generator update (no host-device sync)."""
        for _ in range(self.n_critic):
            self._critic_step()
        self._generator_step()

    # ---- live values, statistics, state -----------------------------------------------
    def live(self) -> dict:
        return {"gp_lambda": self._lam_value, "n_critic": self.n_critic,
                "lr_critic": float(self.opt_d.param_groups[0]["lr"]),
                "lr_gen": float(self.opt_g.param_groups[0]["lr"]), "clip": self.clip}

    def set_live(self, key: str, value) -> None:
        if key == "gp_lambda":
            self._lam_value = float(value)
            self.lam.fill_(self._lam_value)
        elif key == "n_critic":
            self.n_critic = int(value)
        elif key == "clip":
            self.clip = float(value)
        elif key in ("lr_critic", "lr_gen"):
            opt = self.opt_d if key == "lr_critic" else self.opt_g
            for group in opt.param_groups:
                group["lr"] = float(value)

    def read_stats(self) -> dict[str, float]:
        """Mean of each statistic since the last call (averaged over processes), then reset."""
        sums = self.sums.clone()
        counts = torch.tensor([max(self.counts[0], 1)] * 7 + [max(self.counts[1], 1)],
                              dtype=sums.dtype, device=sums.device)
        if self.world > 1:
            dist.all_reduce(sums)
            sums /= self.world
        values = (sums / counts).tolist()      # the one host read of the interval
        self.sums.zero_()
        self.counts = [0, 0]
        names = [n for n in STAT_NAMES if self.gp_on or n not in GP_STATS]
        return {n: v for n, v in zip(STAT_NAMES, values) if n in names}

    def state_dict(self) -> dict:
        return {"generator": self.G.state_dict(), "critic": self.D.state_dict(),
                "opt_gen": self.opt_g.state_dict(), "opt_critic": self.opt_d.state_dict(),
                "live": self.live(), "sums": self.sums.detach().cpu(), "counts": list(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        load_into(self.G, state["generator"], "the generator state")
        load_into(self.D, state["critic"], "the critic state")
        self.opt_g.load_state_dict(state["opt_gen"])
        self.opt_d.load_state_dict(state["opt_critic"])
        for key, value in state["live"].items():
            self.set_live(key, value)
        self.sums.copy_(state["sums"].to(self.device))
        self.counts = [int(c) for c in state["counts"]]

    def generate(self, z: Tensor) -> Tensor:
        """Images for fixed z, in eval mode (BatchNorm running statistics), without gradients."""
        self.G.eval()
        with torch.no_grad():
            out = self.G(z.to(self.device)).float()
        self.G.train()
        return out


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
        self.sample_seen = int(store.control().get("sample_now", 0) or 0) if self.rank0 else 0
        self.sample_requests = 0

    def _validate(self, changes: dict, step: int) -> None:
        for key, value in changes.items():
            try:
                if key in ("paused", "stop"):
                    setattr(self, key, bool(value))
                elif key == "sample_now":
                    if int(value) > self.sample_seen:
                        self.sample_requests, self.sample_seen = 1, int(value)
                elif key == "gp_lambda" and not self.trainer.gp_on:
                    raise ValueError(f"lambda only applies to wgan-gp, this run is {self.trainer.loss}")
                elif key == "n_critic":
                    if int(value) < 1 or int(value) != float(value):
                        raise ValueError("n_critic must be a whole number >= 1")
                    self.desired[key] = int(value)
                elif key in ("gp_lambda", "clip", "lr_critic", "lr_gen"):
                    value = float(value)
                    if not math.isfinite(value) or value < 0 or (key.startswith("lr") and value == 0):
                        raise ValueError(f"{key} must be a finite, positive number")
                    self.desired[key] = value
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
            print(f"step {step}: applied {applied}", flush=True)
        return bad


# ---- the loop -------------------------------------------------------------------------------

def _load_images(data_config: DataConfig, gen_config: GeneratorConfig, ctx: _Dist) -> tuple[Tensor, list]:
    dataset = load_dataset(data_config)   # narrowed to data_config.classes when set
    images = torch.from_numpy(dataset.images)                       # uint8 (N, C, S, S)
    if images.shape[1] != gen_config.channels or images.shape[-1] != gen_config.size:
        raise UserError(f"the data are {tuple(images.shape[1:])} but the generator makes "
                        f"({gen_config.channels}, {gen_config.size}, {gen_config.size}) images")
    if len(images) < 2:
        raise UserError("the GAN needs at least 2 training images")
    if ctx.world > 1:   # DistributedSampler-style: each rank keeps its own interleaved shard
        images = images[ctx.rank::ctx.world]
    return images, dataset.classes


def _write_grid(store: RunStore, trainer: GanTrainer, fixed_z: Tensor, step: int) -> None:
    images = trainer.generate(fixed_z).cpu()                         # (n, C, S, S) in [-1, 1]
    grid = make_grid(images, nrow=math.ceil(math.sqrt(len(images))), normalize=True,
                     value_range=(-1, 1), padding=2)
    path = store.sample_path(step)
    tmp = path.with_name(f".{path.name}.tmp")
    save_image(grid, tmp, format="PNG")
    tmp.replace(path)                    # the app never reads half a PNG


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
          progress: Callable[[int, int, dict], None] | None = None) -> str:
    """Train into `store`'s run directory; returns the final state (finished, stopped or failed).

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 alone writes the run
    directory. `progress(step, total_steps, metrics)` is called at each log interval."""
    ctx = _Dist.from_env(train_config.device)
    rank0 = ctx.rank == 0
    try:
        config = resolved(train_config)
        return _train(store, data_config, gen_config, critic_config, config, resume, progress, ctx)
    except UserError as exc:
        if rank0:
            store.set_status("failed", reason=str(exc))
        raise
    except KeyboardInterrupt:
        if rank0:
            store.set_status("stopped", reason="interrupted; the last checkpoint is kept")
        raise
    except Exception as exc:
        traceback.print_exc()
        if rank0:
            store.set_status("failed", reason=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        store.close()
        ctx.close()


def _train(store, data_config, gen_config, critic_config, config, resume, progress, ctx) -> str:
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
    images, classes = _load_images(data_config, gen_config, ctx)
    trainer = GanTrainer(gen_config, critic_config, config, images.to(device), device, ctx.world, ctx.local_rank)
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
                                         "resume": bool(resume), "compile_error": trainer.compile_error})

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

    status = {"total_steps": config.steps, "path": trainer.path, "device": describe(device),
              "loss": config.loss, "world_size": ctx.world, "compile_error": trainer.compile_error}
    if rank0:
        store.set_status("running", reason=None, step=start, **status)
        if not resume:
            _write_grid(store, trainer, fixed_z, 0)
    if rank0:
        print(f"training {config.loss} on {describe(device)} ({trainer.path}, {ctx.world} "
              f"process(es)), {len(images)} images/process, steps {start + 1}..{config.steps}", flush=True)

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
                _write_grid(store, trainer, fixed_z, step)
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
            _write_grid(store, trainer, fixed_z, step)

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


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.run_dir, create=not args.resume)
    if args.resume:
        saved = store.config()
        if not saved or not (store.checkpoints_dir / STATE_FILE).is_file():
            raise UserError(f"{store.path} has no checkpoint to resume from")
        changed = [f for f in dataclasses.fields(TrainConfig)
                   if getattr(args, f.name, None) is not None and f.name not in RESUMABLE_FIELDS]
        if changed:
            raise UserError(f"--resume continues the saved run; only {', '.join(RESUMABLE_FIELDS)} "
                            f"can change (not {', '.join(f.name for f in changed)})")
        data, gen = from_dict(DataConfig, saved["data"]), from_dict(GeneratorConfig, saved["generator"])
        critic = from_dict(CriticConfig, saved["critic"])
        train_cfg = override(from_dict(TrainConfig, saved["train"]), args)
    else:
        data, gen, critic, train_cfg = configs_from_args(args)
    _SIGNALLED["stop"] = False
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:   # not the main thread
        pass
    state = train(store, data, gen, critic, train_cfg, resume=args.resume)
    print(f"{state}: {store.path}", flush=True)
    return 0 if state in ("finished", "stopped") else 1
