"""Toy 1D and 2D distributions and an in-process GAN / WGAN / WGAN-GP trainer for the playground.

Small MLPs, the same loss functions as the image trainer (core.gan.losses), every hyperparameter
changeable between steps, and the critic's value and gradients over the plane for plotting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sklearn.datasets
import torch
from torch import nn

from core.toy import step as toy_step
from core.device import OtherCpuLoad
from core.errors import UserError
from core.gan.losses import (
    LOSS_DEFAULTS,
    LOSSES,
    clip_weights,
    gan_generator_loss,
    penalty_from_grads,
    wasserstein_estimate,
    wgan_generator_loss,
)

# ---------------------------------------------------------------------------------------------
# Distributions: each sampler maps (n, numpy Generator) -> float32 (n, dim). The 2D sets are
# scaled to lie roughly in [-2, 2]^2 so one plot range and one set of learning rates fit all.

_EIGHT_CENTERS = 2.0 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1),
                                 (0.5 ** 0.5, 0.5 ** 0.5), (0.5 ** 0.5, -0.5 ** 0.5),
                                 (-0.5 ** 0.5, 0.5 ** 0.5), (-0.5 ** 0.5, -0.5 ** 0.5)])
# After the WGAN-GP code's division by its "stdev" 1.414: centres on a circle of radius ~1.414.
EIGHT_GAUSSIANS_CENTERS = (_EIGHT_CENTERS / 1.414).astype(np.float32)  # (8, 2)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2 ** 31 - 1))


def _gaussian_1d(n, rng):
    # The WGAN report's 1D experiment: learn N(2, 1) from uniform noise on [0, 5].
    return rng.normal(2.0, 1.0, size=(n, 1))


def _eight_gaussians(n, rng):
    # Gulrajani et al.'s gan_toy.py: centres 2 * unit directions, std 0.02, then / 1.414.
    centers = _EIGHT_CENTERS[rng.integers(8, size=n)]
    return (centers + 0.02 * rng.standard_normal((n, 2))) / 1.414


def _twentyfive_gaussians(n, rng):
    # gan_toy.py: a 5x5 grid at spacing 2, std 0.05, then / 2.828.
    grid = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), -1).reshape(-1, 2) * 2.0
    return (grid[rng.integers(25, size=n)] + 0.05 * rng.standard_normal((n, 2))) / 2.828


def _swiss_roll(n, rng):
    # gan_toy.py: sklearn's roll (noise 0.25), columns x and z, / 7.5.
    x = sklearn.datasets.make_swiss_roll(n, noise=0.25, random_state=_seed(rng))[0]
    return x[:, [0, 2]] / 7.5


def _parabola(n, rng):
    x = rng.uniform(-1.5, 1.5, size=n)
    return np.stack([x, x ** 2 - 1.0 + 0.05 * rng.standard_normal(n)], 1)


def _circle(n, rng):
    angle = rng.uniform(0, 2 * np.pi, size=n)
    radius = 1.5 + 0.05 * rng.standard_normal(n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)


def _gaussian_mixture(n, rng):
    # Three unequal, correlated Gaussians: tests weights and shapes, not only mode positions.
    means = np.array([[-1.0, -0.8], [1.0, -0.5], [0.0, 1.2]])
    covs = np.array([[[0.15, 0.10], [0.10, 0.15]], [[0.05, -0.03], [-0.03, 0.10]],
                     [[0.20, 0.0], [0.0, 0.03]]])
    comp = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    chol = np.linalg.cholesky(covs)  # (3, 2, 2)
    return means[comp] + np.einsum("nij,nj->ni", chol[comp], rng.standard_normal((n, 2)))


def _blobs(n, rng):
    # Random centres per seed, so "reset with a new seed" gives a new puzzle.
    return sklearn.datasets.make_blobs(n, centers=6, cluster_std=0.15, center_box=(-1.8, 1.8),
                                       random_state=_seed(rng))[0]


def _two_circles(n, rng):
    return 1.8 * sklearn.datasets.make_circles(n, noise=0.03, factor=0.5,
                                               random_state=_seed(rng))[0]


def _moons(n, rng):
    x = sklearn.datasets.make_moons(n, noise=0.05, random_state=_seed(rng))[0]
    return 1.2 * (x - np.array([0.5, 0.25]))  # centred on the origin


def _spiral(n, rng):
    # Two-turn Archimedean spiral, denser per unit length near the centre is avoided by sqrt.
    t = np.sqrt(rng.uniform(0.05, 1.0, size=n)) * 4 * np.pi
    r = 1.8 * t / (4 * np.pi)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1) + 0.04 * rng.standard_normal((n, 2))


def _s_curve(n, rng):
    # sklearn's 3D S-curve seen from the side (x, z): an S in [-1, 1] x [-2, 2].
    x = sklearn.datasets.make_s_curve(n, noise=0.05, random_state=_seed(rng))[0]
    return x[:, [0, 2]]


# name -> (dimension, title, sampler)
DATASETS: dict[str, tuple[int, str, Callable[[int, np.random.Generator], np.ndarray]]] = {
    "gaussian-1d": (1, "1D: N(2, 1) from uniform noise", _gaussian_1d),
    "8gaussians": (2, "8 Gaussians (WGAN-GP)", _eight_gaussians),
    "25gaussians": (2, "25 Gaussians (WGAN-GP)", _twentyfive_gaussians),
    "swissroll": (2, "Swiss roll (WGAN-GP)", _swiss_roll),
    "parabola": (2, "Parabola", _parabola),
    "circle": (2, "Circle", _circle),
    "gaussian-mixture": (2, "Mixture of Gaussians", _gaussian_mixture),
    "blobs": (2, "Random blobs", _blobs),
    "two-circles": (2, "Two circles", _two_circles),
    "moons": (2, "Moons", _moons),
    "spiral": (2, "Spiral", _spiral),
    "s-curve": (2, "S-curve", _s_curve),
}


def modes_covered(samples: np.ndarray, centers: np.ndarray = EIGHT_GAUSSIANS_CENTERS,
                  radius: float = 0.2, share: float = 0.03) -> int:
    """How many modes hold at least `share` of `samples` (N, 2) within `radius` of their centre.

    The defaults fit 8gaussians: neighbouring centres are 1.08 apart, so 0.2 separates modes
    cleanly while forgiving a generator that is close but not yet sharp."""
    d = np.linalg.norm(samples[:, None] - centers[None], axis=2)  # (N, M)
    near = d.min(1) < radius
    counts = np.bincount(d.argmin(1)[near], minlength=len(centers)) / max(len(samples), 1)
    return int((counts >= share).sum())


def dataset_dim(name: str) -> int:
    """1 or 2: the dimension of toy dataset `name`."""
    if name not in DATASETS:
        raise UserError(f"Unknown toy dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name][0]


def sample_dataset(name: str, n: int, seed: int = 0) -> np.ndarray:
    """n samples of toy dataset `name` as float32 (n, dim), reproducible for a given seed."""
    dim = dataset_dim(name)
    x = DATASETS[name][2](int(n), np.random.default_rng(seed))
    return np.asarray(x, dtype=np.float32).reshape(int(n), dim)


# ---------------------------------------------------------------------------------------------
# Config and models

# Fields that take their value from toy_defaults(loss) when left as None.
_LOSS_FIELDS = ("lr_critic", "lr_gen", "n_critic", "gp_lambda", "clip")
# Where the toy departs from the papers' image settings. lambda 0.1 is what the WGAN-GP authors'
# own toy code uses (gan_toy.py: "Smaller lambda seems to help for toy tasks specifically").
# Measured here (`python bench/toy_speed.py`, 2 seeds, lr 1e-3): with lambda 10, WGAN-GP squeezed
# 1D N(2, 1) to std 0.06 or let it drift to mean -1.1 after 600 iterations and covered 6 and 0
# of the 8 Gaussians after 400; with 0.1, std 0.95 and 0.82 and 7/8 and 8/8 modes.
TOY_OVERRIDES = {"wgan-gp": {"gp_lambda": 0.1}}


def toy_defaults(loss: str) -> dict:
    """The paper's defaults for `loss` (core.gan.losses.LOSS_DEFAULTS) with the toy's overrides."""
    return {**LOSS_DEFAULTS[loss], **TOY_OVERRIDES.get(loss, {})}


@dataclass
class ToyConfig:
    dataset: str = "8gaussians"
    loss: str = "wgan-gp"            # gan | wgan | wgan-gp
    hidden: int = 128                # width of every hidden layer (512 in the WGAN-GP code)
    depth: int = 3                   # hidden layers per MLP
    noise_dim: int | None = None     # None: 1 for 1D data, 2 for 2D (as in gan_toy.py)
    batch_size: int = 256
    lr_critic: float | None = None   # None: toy_defaults(loss) (the paper's value)
    lr_gen: float | None = None
    n_critic: int | None = None      # critic steps per generator step
    gp_lambda: float | None = None   # gradient penalty weight; applied whenever > 0
    clip: float | None = None        # weight clipping bound; applied whenever > 0
    seed: int = 0
    log_every: int = 5               # record metrics every k generator steps (.item() is costly)
    threads: int = 0                 # torch threads while training/drawing; 0 = auto (2 when
                                     # no other process keeps a core busy, else 1)
    pool_size: int = 50_000          # real samples drawn once per reset; batches index into it
    compile: bool = False            # build the critic update with torch.compile in the
                                     # background and use it once built (the playground does)

    def __post_init__(self):
        if self.loss not in LOSS_DEFAULTS:
            raise UserError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        dim = dataset_dim(self.dataset)
        if self.noise_dim is None:
            self.noise_dim = dim
        for name in _LOSS_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, toy_defaults(self.loss)[name])
        self.n_critic = int(self.n_critic)
        checks = [(self.hidden >= 1, "hidden width must be at least 1"),
                  (self.depth >= 1, "depth must be at least 1"),
                  (self.noise_dim >= 1, "noise dimension must be at least 1"),
                  (self.batch_size >= 2, "batch size must be at least 2"),
                  (self.lr_critic > 0 and self.lr_gen > 0, "learning rates must be positive"),
                  (self.n_critic >= 1, "n_critic must be at least 1"),
                  (self.gp_lambda >= 0, "lambda must be 0 or more"),
                  (self.clip >= 0, "clip value must be 0 (off) or more"),
                  (self.log_every >= 1, "log_every must be at least 1"),
                  (self.threads >= 0, "threads must be 0 (auto) or more"),
                  (self.pool_size >= 2, "pool_size must be at least 2")]
        for ok, message in checks:
            if not ok:
                raise UserError(message + ".")


def mlp(n_in: int, n_out: int, hidden: int, depth: int) -> nn.Sequential:
    """`depth` hidden ReLU layers of width `hidden` (as in gan_toy.py), linear output."""
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _make_optimizer(params, loss: str, lr: float) -> torch.optim.Optimizer:
    # The paper's optimizer for `loss`. fused / foreach: one kernel over all parameters instead
    # of a Python loop per tensor (fused Adam measured ~3x faster per step on this CPU).
    d = LOSS_DEFAULTS[loss]
    if d["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return torch.optim.Adam(params, lr=lr, betas=tuple(d["betas"]), fused=True)


# ---------------------------------------------------------------------------------------------
# Trainer

# Threads of this process inside a trainer's torch_threads() now, with their nesting depth
# (Streamlit runs each browser session in its own thread); auto threads take a second core only
# when no other thread is training.
_BUSY: dict[int, int] = {}
_BUSY_LOCK = threading.Lock()


def _others_training() -> bool:
    me = threading.get_ident()
    with _BUSY_LOCK:
        return any(depth for thread, depth in _BUSY.items() if thread != me)


class ToyTrainer:
    """Generator and critic MLPs, their optimizers, step counters and a metrics history.

    Everything runs in the caller's thread between calls, so `update()` may change any
    hyperparameter between two steps. Randomness comes from the trainer's own torch.Generator,
    so two trainers with the same seed see the same real batches and noise.
    """

    def __init__(self, config: ToyConfig | None = None):
        self.config = config or ToyConfig()
        self._cpu_load = OtherCpuLoad()
        self._auto = (-float("inf"), 1)  # (when auto last looked, the threads it chose)
        self.reset()

    # -- construction ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return dataset_dim(self.config.dataset)

    def __getstate__(self) -> dict:
        # A copy (copy.deepcopy, pickle) rebuilds the cached views of _params(): copied views
        # would not share memory with the copied Parameters.
        return {**self.__dict__, "_bound": None}

    def reset(self) -> None:
        """Fresh networks, optimizers, real-data pool and history from `config.seed`."""
        c = self.config
        self._rng = torch.Generator().manual_seed(c.seed)
        self._load_pool()
        with torch.random.fork_rng(devices=[]):  # weight init from the seed, global RNG untouched
            torch.manual_seed(c.seed)
            self.generator = mlp(c.noise_dim, self.dim, c.hidden, c.depth)
            self.critic = mlp(self.dim, 1, c.hidden, c.depth)
        self._build_optimizers()
        self.critic_steps = 0
        self.gen_steps = 0
        self.step_code = "eager"  # which critic update runs: see _compiled_update
        self._rebound()
        self.history: list[dict] = []
        self._last: dict[str, torch.Tensor] = {}
        self._viz_noise: torch.Tensor | None = None

    def _load_pool(self) -> None:
        c = self.config
        self.real_pool = torch.from_numpy(sample_dataset(c.dataset, c.pool_size, c.seed))  # (P, D)
        # Plot range: the data's 0.5-99.5% quantiles, padded; fixed per pool so frames line up.
        lo, hi = np.quantile(self.real_pool.numpy(), [0.005, 0.995], axis=0)
        pad = 0.25 * (hi - lo) + 0.1
        self.data_bounds = np.stack([lo - pad, hi + pad], 1)  # (D, 2)

    def _build_optimizers(self) -> None:
        c = self.config
        self.opt_critic = _make_optimizer(self.critic.parameters(), c.loss, c.lr_critic)
        self.opt_gen = _make_optimizer(self.generator.parameters(), c.loss, c.lr_gen)

    # -- sampling -------------------------------------------------------------------------
    def _noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator or self._rng
        if self.dim == 1:  # the WGAN report's 1D experiment: z ~ U[0, 5]
            return torch.rand(n, self.config.noise_dim, generator=g) * 5.0
        return torch.randn(n, self.config.noise_dim, generator=g)

    def _real(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.real_pool), (n,), generator=self._rng)
        return self.real_pool[idx]  # (n, D)

    # -- steps ----------------------------------------------------------------------------
    def critic_step(self) -> None:
        """One critic (discriminator) update on a fresh real batch and generated batch."""
        c, B = self.config, self.config.batch_size
        real = self._real(B)
        z = self._noise(B)
        alpha = torch.rand(B, 1, generator=self._rng)  # drawn for every loss: same RNG stream
        penalty = c.gp_lambda > 0
        critic_params, gen_views, critic_views = self._params()
        args = (gen_views, critic_views, z, real, alpha, torch.tensor(float(c.gp_lambda)),
                c.loss, penalty)
        update = toy_step.critic_update
        if c.compile:
            update = self._compiled_update(args)
        else:
            self.step_code = "eager"
        with torch.no_grad():
            fake, scores, loss, gp, grads = update(*args)
        for p, g in zip(critic_params, grads):
            p.grad = g
        self.opt_critic.step()
        if c.clip > 0:
            clip_weights(self.critic, c.clip)
        self.critic_steps += 1
        # Keep tensors, not floats: .item() happens only in record().
        real_s, fake_s = scores.chunk(2)
        self._last.update(critic=loss, real_scores=real_s, fake_scores=fake_s, real=real,
                          fake=fake)
        if gp is not None:
            self._last["gp"] = gp
        else:
            self._last.pop("gp", None)

    def _rebound(self) -> None:
        self._bound, self._variant_keys = None, {}  # the networks' tensors changed

    def _params(self) -> tuple[list, list, list]:
        """(the critic's Parameters, plain-tensor views of the generator's and the critic's),
        in toy_step.linear_relu_params order; cached until the networks are rebuilt. Views,
        because compiled code checks the type and would compile again for a Parameter."""
        if self._bound is None:
            critic = toy_step.linear_relu_params(self.critic)
            gen = [p.detach() for p in toy_step.linear_relu_params(self.generator)]
            self._bound = (critic, gen, [p.detach() for p in critic])
        return self._bound

    def _compiled_update(self, args: tuple):
        """The compiled critic update once built for this variant, else the eager one; keeps
        `step_code` ("eager", "compiling", "compiled" or why not) for the page."""
        key = self._variant_keys.get((args[6], args[7]))
        if key is None:
            key = self._variant_keys[args[6], args[7]] = toy_step.variant_key(*args[:2], *args[6:])
        try:
            # Builds for every thread count auto threads may choose, so a switch finds one.
            compiled = toy_step.compiled_critic_update(
                key, args, also_threads=() if self.config.threads else self._auto_choices())
        except RuntimeError as e:
            self.step_code = f"eager (compiling failed: {str(e)[:200]})"
            return toy_step.critic_update
        self.step_code = "compiled" if compiled is not None else "compiling"
        return compiled or toy_step.critic_update

    def prebuild(self) -> None:
        """Start building the compiled critic update for the current settings now (the page
        calls it when it creates its trainers, so the build runs while the user reads)."""
        c = self.config
        if not c.compile:
            return
        B, (_, gen, critic) = c.batch_size, self._params()
        # Shapes are what matter: zeros, and the trainer's RNG stream stays untouched.
        args = (gen, critic, torch.zeros(B, c.noise_dim), torch.zeros(B, self.dim),
                torch.zeros(B, 1), torch.tensor(float(c.gp_lambda)), c.loss, c.gp_lambda > 0)
        with self.torch_threads():
            self._compiled_update(args)

    def generator_step(self) -> None:
        """One generator update against the current critic."""
        c = self.config
        # The critic's weights get no gradient here: skips their weight-gradient matmuls.
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            fake_s = self.critic(self.generator(self._noise(c.batch_size)))  # (B, 1)
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        loss = gan_generator_loss(fake_s) if c.loss == "gan" else wgan_generator_loss(fake_s)
        self.opt_gen.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_gen.step()
        self.gen_steps += 1
        self._last["gen"] = loss.detach()

    def iteration(self) -> None:
        """n_critic critic steps, then one generator step (the WGAN papers' loop)."""
        for _ in range(self.config.n_critic):
            self.critic_step()
        self.generator_step()
        if self.gen_steps % self.config.log_every == 0:
            self.record()

    def run(self, n_iterations: int) -> None:
        """`n_iterations` full iterations; metrics recorded every `log_every` generator steps."""
        with self.torch_threads():
            for _ in range(int(n_iterations)):
                self.iteration()

    @contextlib.contextmanager
    def torch_threads(self):
        """Run the block with `threads_now()` torch threads, then restore the process-wide
        setting; run() and critic_field() use it, wrap loops of single steps in it too."""
        before, want = torch.get_num_threads(), self.threads_now()
        if want != before:
            torch.set_num_threads(want)
        me = threading.get_ident()
        with _BUSY_LOCK:
            _BUSY[me] = _BUSY.get(me, 0) + 1
        try:
            yield
        finally:
            with _BUSY_LOCK:
                _BUSY[me] -= 1
                if not _BUSY[me]:
                    del _BUSY[me]
            if want != before:
                torch.set_num_threads(before)

    AUTO_EVERY_S = 0.25  # auto threads: look at the CPU load at most this often

    @staticmethod
    def _auto_choices() -> tuple[int, ...]:
        return (1, 2) if (os.cpu_count() or 1) >= 2 else (1,)

    def threads_now(self) -> int:
        """config.threads, or with 0 (auto) 2 threads when no other thread of this process is
        training, other processes used under a third of a core since the last look, and the
        machine has 2 cores or more; else 1.

        A second thread made a WGAN-GP critic step 1.2-1.4x faster on the idle 2-core machine,
        but when another job kept the other core busy, OpenMP threads waiting for it made steps
        10-25x slower (docs/performance.md). So auto looks again every AUTO_EVERY_S (about each
        live refresh; shorter windows are too coarse for /proc/stat's 10 ms ticks) and starts
        with 1 thread until it has a first measurement."""
        if self.config.threads:
            return self.config.threads
        if _others_training():
            # Another trainer of this process is training right now (another browser session
            # on the same server: a class of students): each gets 1 thread, or their OpenMP
            # teams would fight over the cores. /proc/stat cannot see it: it is our own process.
            return 1
        now = time.monotonic()
        if now - self._auto[0] >= self.AUTO_EVERY_S:
            other = self._cpu_load.sample()
            idle = other is not None and other < 0.33
            self._auto = (now, max(self._auto_choices()) if idle else 1)
        return self._auto[1]

    # -- metrics --------------------------------------------------------------------------
    def record(self) -> dict:
        """Append one row of plain floats to `history` from the latest steps and return it."""
        row = {"gen_step": self.gen_steps, "critic_step": self.critic_steps}
        last = self._last
        if "critic" in last:
            row["loss/critic"] = last["critic"].item()
            row["wgan/w_estimate"] = wasserstein_estimate(last["real_scores"],
                                                          last["fake_scores"]).item()
            if self.config.loss == "gan":
                row["gan/d_real"] = torch.sigmoid(last["real_scores"]).mean().item()
                row["gan/d_fake"] = torch.sigmoid(last["fake_scores"]).mean().item()
            # Critic gradient norm on interpolates, the quantity WGAN-GP pushes to 1; measured
            # here for every loss type (no graph kept) so the curves compare.
            x = (0.5 * last["real"] + 0.5 * last["fake"]).requires_grad_(True)
            (grads,) = torch.autograd.grad(self.critic(x).sum(), x)
            row["wgan/grad_norm_mean"] = penalty_from_grads(grads)[1].mean().item()
            if "gp" in last:
                row["wgan/gp"] = last["gp"].item()
        if "gen" in last:
            row["loss/gen"] = last["gen"].item()
        if len(self.history) >= 4000:  # keep the whole run in view: drop every other old row
            self.history = self.history[::2]
        self.history.append(row)
        return row

    # -- live changes ---------------------------------------------------------------------
    def update(self, **changes) -> list[str]:
        """Apply any ToyConfig changes between steps; returns notes for the user.

        Learning rates go straight into the optimizers' param_groups; n_critic, lambda, clip
        and batch size apply from the next step; a new noise dimension rebuilds only the
        generator's first layer; a new loss type rebuilds the optimizers (its paper's optimizer)
        and takes its toy_defaults for any of lr/n_critic/lambda/clip not given; a new width,
        depth, seed or a dataset of another dimension starts over.
        """
        c = self.config
        fields = {f.name for f in dataclasses.fields(ToyConfig)}
        unknown = set(changes) - fields
        if unknown:
            raise UserError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        given = set(changes)
        changes = {k: v for k, v in changes.items() if getattr(c, k) != v}
        if not changes:
            return []
        new = dict(dataclasses.asdict(c), **changes)
        if "loss" in changes:
            for name in _LOSS_FIELDS:
                if name not in given:
                    new[name] = None  # -> the new loss's defaults
        if "dataset" in changes and dataset_dim(changes["dataset"]) != self.dim \
                and "noise_dim" not in changes:
            new["noise_dim"] = None  # -> the new dimension's default
        new_config = ToyConfig(**new)  # validates; raises UserError before anything changes
        old, self.config = c, new_config
        notes = []

        restart = [k for k in ("hidden", "depth", "seed", "pool_size") if k in changes]
        if "dataset" in changes and dataset_dim(new_config.dataset) != dataset_dim(old.dataset):
            restart.append("dataset")
        if restart:
            self.reset()
            return [f"Changed {', '.join(restart)}: networks rebuilt, training starts over."]

        if "dataset" in changes:
            self._load_pool()
            notes.append(f"New data ({new_config.dataset}): the networks keep their weights "
                         "and continue from where they are.")
        if "noise_dim" in changes:
            self._resize_noise(old.noise_dim, new_config.noise_dim)
            notes.append(f"Noise dimension {old.noise_dim} -> {new_config.noise_dim}: the "
                         "generator's first layer was rebuilt (other layers kept).")
        if "loss" in changes:
            self._build_optimizers()
            d = LOSS_DEFAULTS[new_config.loss]
            notes.append(f"Loss {old.loss} -> {new_config.loss}: new {d['optimizer']} "
                         "optimizers; lr, n_critic, lambda and clip reset to its defaults "
                         "unless set; the networks keep their weights.")
        else:
            for group in self.opt_critic.param_groups:
                group["lr"] = new_config.lr_critic
            for group in self.opt_gen.param_groups:
                group["lr"] = new_config.lr_gen
        return notes

    def _resize_noise(self, old_dim: int, new_dim: int) -> None:
        first = self.generator[0]
        layer = nn.Linear(new_dim, first.out_features)
        k = min(old_dim, new_dim)
        with torch.no_grad():
            layer.weight.zero_()  # new noise inputs start with no effect, then learn
            layer.weight[:, :k] = first.weight[:, :k]
            # Dropped inputs are replaced by their mean (0 for Gaussian, 2.5 for U[0, 5]).
            mean = 2.5 if self.dim == 1 else 0.0
            layer.bias.copy_(first.bias + mean * first.weight[:, k:].sum(1))
        self.generator[0] = layer
        self._rebound()
        # Fresh optimizer, carrying the moment estimates of the unchanged layers.
        old_opt = self.opt_gen
        self.opt_gen = _make_optimizer(self.generator.parameters(), self.config.loss,
                                       self.config.lr_gen)
        for p in self.generator.parameters():
            if p in old_opt.state:
                self.opt_gen.state[p] = old_opt.state[p]
        self._viz_noise = None

    # -- views ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int = 512, fixed: bool = True) -> np.ndarray:
        """n generated points (n, D). fixed=True reuses the same noise every call, so plotted
        points move smoothly between frames and drawing never perturbs the training RNG."""
        if fixed:
            if self._viz_noise is None or len(self._viz_noise) != n:
                g = torch.Generator().manual_seed(self.config.seed + 1)
                self._viz_noise = self._noise(n, g)
            z = self._viz_noise
        else:
            z = self._noise(n)
        return self.generator(z).numpy()

    def real_sample(self, n: int = 512) -> np.ndarray:
        """The first n points of the real pool (n, D): a fixed, random subset."""
        return self.real_pool[:n].numpy()

    def plot_bounds(self, generated: np.ndarray | None = None) -> np.ndarray:
        """(D, 2) [low, high] per axis: the data's range, widened to include most generated
        points but never beyond 3x the data's extent (a diverged generator stays in view).
        In 2D both axes get the same length, so an equal-aspect plot is square."""
        bounds = self.data_bounds.copy()
        if generated is not None and len(generated):
            lo, hi = np.quantile(generated, [0.02, 0.98], axis=0)
            width = bounds[:, 1] - bounds[:, 0]
            bounds[:, 0] = np.maximum(np.minimum(bounds[:, 0], lo - 0.1 * width),
                                      bounds[:, 0] - width)
            bounds[:, 1] = np.minimum(np.maximum(bounds[:, 1], hi + 0.1 * width),
                                      bounds[:, 1] + width)
        if len(bounds) == 2:
            center, half = bounds.mean(1), (bounds[:, 1] - bounds[:, 0]).max() / 2
            bounds = np.stack([center - half, center + half], 1)
        return bounds

    def _critic_view(self, x: torch.Tensor) -> torch.Tensor:
        # GAN: the discriminator's probability of "real"; WGAN: the critic's raw score.
        s = self.critic(x).squeeze(1)
        return torch.sigmoid(s) if self.config.loss == "gan" else s

    @torch.no_grad()
    def critic_field(self, grid_res: int = 64, bounds: np.ndarray | None = None):
        """(xs (R,), ys (R,), values (R, R)) of the critic over a grid (2D data); values[i, j]
        is at (xs[j], ys[i]), plotly's heatmap layout. Probability for GAN, score for WGAN."""
        if self.dim != 2:
            raise UserError("The critic field is for 2D data; use critic_curve for 1D.")
        b = self.plot_bounds() if bounds is None else np.asarray(bounds)
        xs = np.linspace(b[0, 0], b[0, 1], grid_res, dtype=np.float32)
        ys = np.linspace(b[1, 0], b[1, 1], grid_res, dtype=np.float32)
        gx, gy = np.meshgrid(xs, ys)  # (R, R) each, row = y
        pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))  # (R*R, 2)
        with self.torch_threads():
            values = self._critic_view(pts).reshape(grid_res, grid_res).numpy()
        return xs, ys, values

    @torch.no_grad()
    def critic_curve(self, n_points: int = 200, bounds: np.ndarray | None = None):
        """(xs (n,), values (n,)) of the critic along the line (1D data)."""
        if self.dim != 1:
            raise UserError("The critic curve is for 1D data; use critic_field for 2D.")
        b = self.plot_bounds() if bounds is None else np.asarray(bounds)
        xs = np.linspace(b[0, 0], b[0, 1], n_points, dtype=np.float32)
        return xs, self._critic_view(torch.from_numpy(xs)[:, None]).numpy()

    def critic_gradients(self, points: np.ndarray | None = None, n: int = 128):
        """(points (N, D), grads (N, D)): the gradient of the critic's raw score at each point,
        by default generated points; the generator moves its samples along these arrows."""
        x = torch.as_tensor(self.sample(n) if points is None else points, dtype=torch.float32)
        x = x.reshape(len(x), self.dim).clone().requires_grad_(True)
        (grads,) = torch.autograd.grad(self.critic(x).sum(), x)
        return x.detach().numpy(), grads.numpy()


def run_together(trainers: list[ToyTrainer], max_iterations: int, budget_s: float) -> int:
    """Iterate the trainers in lockstep (so compared runs stay at the same generator step) up to
    `max_iterations` times, stopping after the iteration in which `budget_s` seconds of wall time
    ran out; returns the iterations done (at least 1). The live page trains under this budget
    so that a refresh stays short whatever the speed setting and the machine's load."""
    start, done = time.perf_counter(), 0
    with contextlib.ExitStack() as stack:
        for t in trainers:
            stack.enter_context(t.torch_threads())
        while done < max_iterations:
            for t in trainers:
                t.iteration()
            done += 1
            if time.perf_counter() - start >= budget_s:
                break
    return done

