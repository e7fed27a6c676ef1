"""One GAN training process's models, optimisers and live hyperparameters (`GanTrainer`), the
critic loss it steps (eager, and functional for torch.compile) and its `TrainConfig`. The job
around it (data, run directory, control, checkpoints, torchrun) is core/gan/job.py."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from torch.func import grad as func_grad

from core.gan import live
from core.gan import losses
from core.checkpoint import load_into
from core.config import checked, ranged, to_dict
from core.gan.ema import GeneratorEMA
from core.gan.diffaugment import choose_policy, diff_augment, parse_policy
from core.errors import UserError
from core.gan.models import Critic, CriticConfig, Generator, GeneratorConfig

# Everything the critic and generator steps accumulate on the device, in this order; the
# gradient-penalty entries are logged for wgan-gp only.
STAT_NAMES = ("loss/critic", "wgan/w_estimate", "wgan/gp", "wgan/grad_norm_mean",
              "wgan/grad_norm_std", "d/real_mean", "d/fake_mean", "loss/gen")
GP_STATS = ("wgan/gp", "wgan/grad_norm_mean", "wgan/grad_norm_std")


@dataclass
class TrainConfig:
    loss: str = "wgan-gp"          # gan | wgan | wgan-gp
    steps: int = ranged(1, 10_000_000, 2000)   # generator steps; each after n_critic critic steps
    batch_size: int = ranged(1, 8192, 64)       # per process
    # None means the loss's paper default (core.gan.losses.LOSS_DEFAULTS); resolved() fills them in.
    # (Optional[...] rather than `X | None`: core.config's flag parser reads typing.Union.)
    n_critic: Optional[int] = None
    gp_lambda: Optional[float] = None
    clip: Optional[float] = None      # weight clipping bound; 0 = off
    lr_critic: Optional[float] = None
    lr_gen: Optional[float] = None
    betas: Optional[tuple[float, float]] = None
    optimizer: Optional[str] = None   # adam | rmsprop
    log_every: int = ranged(1, 10_000_000, 10)
    sample_every: int = ranged(1, 10_000_000, 100)
    checkpoint_every: int = ranged(1, 10_000_000, 500)
    keep_checkpoints: int = ranged(0, 1000, 3)   # step_XXXXXXX snapshots kept besides latest
    n_samples: int = ranged(1, 1024, 64)         # images in the fixed-z grid
    # Share of the training images (whole patients, at most 256) kept out of training, to score
    # the critic on real images it never saw at every sample grid: a critic that memorises its
    # training set scores them above the held-out ones (the WGAN-GP paper's "detecting
    # overfitting", Gulrajani et al. 2017). 0 = off.
    holdout: float = ranged(0.0, 0.49, 0.05)
    # DiffAugment policies (core/gan/diffaugment.py), comma-separated, e.g. "color,translation,cutout":
    # for a few hundred training images, where the critic otherwise memorises them. "" or "off"
    # = off; "auto" = core.gan.diffaugment.AUTO_POLICY below AUTO_BELOW training images, else off.
    diffaugment: str = "auto"
    # Generator weights averaged over steps (core/gan/ema.py): the average's weight per
    # generator step (0 = no average; 0.999 as progressive GAN, a half-life of 693 steps) and its
    # warm-up (the half-life is at most this share of the steps so far, StyleGAN2's ema_rampup;
    # 0 = none). Grids, snapshots and everything sampled from a run use the average.
    ema_decay: float = ranged(0.0, 0.99999, 0.999)
    ema_rampup: float = ranged(0.0, 1.0, 0.05)
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda | mps
    compile: str = "auto"          # auto (on for CUDA only) | on | off
    amp: str = "auto"              # auto (bf16 on CUDA only) | bf16 | off
    threads: int = ranged(0, 1024, 0)   # CPU threads (0 = PyTorch's default); 1 suits tiny nets on a busy CPU


def resolved(config: TrainConfig) -> TrainConfig:
    """`config` with every unset hyperparameter taken from its loss's paper defaults, checked."""
    if config.loss not in losses.LOSS_DEFAULTS:
        raise UserError(f"loss must be one of {', '.join(losses.LOSSES)}, not {config.loss!r}")
    defaults = losses.LOSS_DEFAULTS[config.loss]
    config = dataclasses.replace(config, **{k: v for k, v in defaults.items()
                                            if getattr(config, k, None) is None})
    config = dataclasses.replace(config, betas=tuple(float(b) for b in config.betas))
    try:
        checked(TrainConfig, to_dict(config))   # types and the fields' ranges, as for a file
        for key in live.NAMES:
            live.check(key, getattr(config, key))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    checks = [(config.steps >= 1, "steps must be at least 1"),
              (config.batch_size >= 1, "batch_size must be at least 1"),
              (config.optimizer in ("adam", "rmsprop"), "optimizer must be adam or rmsprop"),
              (min(config.log_every, config.sample_every, config.checkpoint_every) >= 1,
               "log_every, sample_every and checkpoint_every must be at least 1"),
              (config.compile in ("auto", "on", "off"), "compile must be auto, on or off"),
              (config.amp in ("auto", "bf16", "off"), "amp must be auto, bf16 or off"),
              (config.n_samples >= 1, "n_samples must be at least 1"),
              (0 <= config.holdout < 0.5, "holdout must be in [0, 0.5)")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    try:
        parse_policy(choose_policy(config.diffaugment, 0))   # "auto" is checked as its policy
    except ValueError as exc:
        raise UserError(str(exc)) from None
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
                 images: Tensor, device: torch.device, world: int = 1, local_rank: int = 0,
                 rows: Tensor | None = None):
        self.config = config = resolved(config)
        self.device, self.world = device, world
        # uint8 (N, C, S, S): on the device, all training images (rows None); or on the CPU,
        # memory-mapped from the decoded-data cache, of which images[rows] train (a set larger
        # than memory allows, read batch by batch; core.gan.job.training_images).
        self.images, self.rows = images, rows
        # "auto" becomes the DiffAugment this data size calls for, so config.json says which;
        # counted over all processes, whose shards may differ by one image, so all agree.
        total = torch.tensor(self.n_images, device=device)
        if world > 1:
            dist.all_reduce(total)
        self.config = config = dataclasses.replace(
            config, diffaugment=choose_policy(config.diffaugment, int(total)))
        self.loss = config.loss
        self.gp_on = config.loss == "wgan-gp"
        torch.manual_seed(config.seed)           # identical initial weights on every rank
        self.G, self.D = Generator(gen_config).to(device), Critic(critic_config).to(device)
        # channels_last: oneDNN (CPU) and cuDNN run these convs without layout reorders; measured
        # 2x on the generator's forward on CPU, neutral for the critic (docs/performance.md).
        self.G.to(memory_format=torch.channels_last)
        self.D.to(memory_format=torch.channels_last)
        # The generator's weight average (what grids and snapshots sample); None when off.
        self.G_ema = (GeneratorEMA(self.G, config.ema_decay, config.ema_rampup)
                      if config.ema_decay > 0 else None)
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
        self.augment = parse_policy(config.diffaugment)
        self.path, self.compile_error = "eager", None
        self._graphs = False
        self._use_eager()

    def _optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "rmsprop":
            return torch.optim.RMSprop(module.parameters(), lr=lr)
        return torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(self.config.betas),
                                fused=True if self.device.type == "cuda" else None)

    # ---- paths ------------------------------------------------------------------------
    def _use_eager(self) -> None:
        self.path, self._graphs = "eager", False
        self._fake_fn, self._gen_fn, self._score_fn = self.G, self.G_train, self.D
        self._critic_fn = None

    def use_compiled(self, mode: str | None = "auto") -> bool:
        """Switch to torch.compile (functional critic loss, compiled G and D forwards) and
        compile everything now on one batch, so an error falls back to eager before training
        starts rather than half way through a step. Weights, buffers and RNG are left as found.
        `mode` is torch.compile's (None = its default); "auto" adds CUDA graphs on one GPU."""
        if mode == "auto":
            # A compiled iteration at 128 px, batch 64 launches about 1,650 kernels: on an H100
            # the CPU took 40 ms to launch 23-25 ms of GPU work. CUDA graphs replay them as one
            # launch (24-25 ms per iteration, docs/performance.md). Not under DDP, whose all-reduce runs
            # between the graphs, and not off CUDA, where the mode does nothing.
            mode = "reduce-overhead" if self.device.type == "cuda" and self.world == 1 else None
        state = {k: v.clone() for k, v in self.G.state_dict().items()}   # BN buffers move
        rng = torch.get_rng_state(), (torch.cuda.get_rng_state(self.device)
                                      if self.device.type == "cuda" else None)
        try:
            self._critic_fn = torch.compile(functional_critic_loss(self.D, self.loss, self.amp_dtype),
                                            mode=mode)
            self._fake_fn = torch.compile(self.G, mode=mode)
            self._gen_fn = torch.compile(self.G_train, mode=mode)
            self._score_fn = torch.compile(self.D, mode=mode)
            self._graphs = mode in ("reduce-overhead", "max-autotune")   # the CUDA-graph modes
            self.path = "compiled + CUDA graphs" if self._graphs else "compiled"
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

    @property
    def n_images(self) -> int:
        """Training images of this process."""
        return len(self.rows) if self.rows is not None else len(self.images)

    def _real_batch(self) -> Tensor:
        idx = torch.randint(self.n_images, (self.config.batch_size,), device=self.images.device)
        if self.rows is not None:
            idx = self.rows[idx]
        batch = self.images[idx].to(self.device, non_blocking=True)    # a no-op when on the device
        return batch.float().div_(127.5).sub_(1.0)                     # (B, C, S, S) in [-1, 1]

    def training_sample(self, n: int, generator: torch.Generator) -> Tensor:
        """At most n training images (uint8, on the device), drawn with `generator`."""
        pick = torch.randperm(self.n_images, generator=generator)[:n]
        if self.rows is not None:
            pick = self.rows[pick]
        return self.images[pick.to(self.images.device)].to(self.device)

    def _check_grads(self, module: nn.Module) -> None:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            self.bad |= ~torch.isfinite(torch.nn.utils.get_total_norm(grads))

    def _critic_step(self, update: bool = True) -> None:
        if self._graphs:   # CUDA graphs: this step's outputs may reuse the last step's memory
            torch.compiler.cudagraph_mark_step_begin()
        n = self.config.batch_size
        real = self._real_batch()
        z = torch.randn(n, self.G.config.latent_dim, device=self.device)
        with torch.no_grad(), self._autocast():
            fake = self._fake_fn(z).float()     # detached: the critic step never reaches G
        if self.augment:   # real and fake alike, each image its own draw (DiffAugment)
            real, fake = diff_augment(real, self.augment), diff_augment(fake, self.augment)
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
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()
        z = torch.randn(self.config.batch_size, self.G.config.latent_dim, device=self.device)
        # The critic is only a path for the generator's gradients: no weight gradients for it,
        # and called unwrapped so DDP does not wait for critic gradients that never come.
        self.D.requires_grad_(False)
        try:
            with self._autocast():
                fake = self._gen_fn(z)
                if self.augment:   # the generator's gradient flows back through the transforms
                    fake = diff_augment(fake, self.augment)
                scores = self._score_fn(fake).float()     # (B,)
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
        if self.G_ema is not None:
            self.G_ema.update(self.G)

    # ---- live values, statistics, state -----------------------------------------------
    # How each field of core.gan.live.LiveParams is read and applied: a new live field needs its
    # two lines here, and nothing else outside core/gan/live.py.
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
        state = {"generator": self.G.state_dict(), "critic": self.D.state_dict(),
                 "opt_gen": self.opt_g.state_dict(), "opt_critic": self.opt_d.state_dict(),
                 "live": self.live(), "sums": self.sums.detach().cpu(), "counts": list(self.counts)}
        if self.G_ema is not None:
            state["generator_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        load_into(self.G, state["generator"], "the generator state")
        load_into(self.D, state["critic"], "the critic state")
        self.opt_g.load_state_dict(state["opt_gen"])
        self.opt_d.load_state_dict(state["opt_critic"])
        for key, value in state["live"].items():
            self.set_live(key, value)
        self.sums.copy_(state["sums"].to(self.device))
        self.counts = [int(c) for c in state["counts"]]
        if self.G_ema is not None:
            if "generator_ema" in state:
                self.G_ema.load_state_dict(state["generator_ema"])
            else:   # saved before the average existed: it starts at the resumed weights
                self.G_ema.reset(self.G)

    def mean_score(self, images: Tensor, chunk: int = 128) -> float:
        """The critic's mean score over uint8 (N, C, S, S) or float [-1, 1] images, without
        gradients, in chunks (the critic has no BatchNorm, so chunking changes nothing)."""
        total = 0.0
        with torch.no_grad(), self._autocast():
            for part in images.split(chunk):
                x = part.to(self.device)
                if x.dtype == torch.uint8:
                    x = x.float().div_(127.5).sub_(1.0)
                total += float(self.D(x.contiguous(memory_format=torch.channels_last)).float().sum())
        return total / max(len(images), 1)

    def generate(self, z: Tensor, average: bool = False) -> Tensor:
        """Images for fixed z, in eval mode (BatchNorm running statistics), without gradients:
        of the raw generator (the one the critic trains against), or with `average` of its
        weight average when there is one."""
        if average and self.G_ema is not None:
            with torch.no_grad():
                return self.G_ema.module(z.to(self.device)).float()
        self.G.eval()
        with torch.no_grad():
            out = self.G(z.to(self.device)).float()
        self.G.train()
        return out
