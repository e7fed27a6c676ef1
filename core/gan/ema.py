"""An exponential moving average of the generator's weights (`GeneratorEMA`), sampled instead of
the raw generator, as progressive GAN, StyleGAN and BigGAN do: the raw weights chase a moving
critic and jitter from step to step; their average makes steadier, usually better images."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from core.checkpoint import load_into
from core.errors import CheckpointError


def ema_beta(decay: float, rampup: float, step: int) -> float:
    """The weight kept from the average at generator step `step` (1, 2, ...): `decay`, or less
    during the warm-up. As StyleGAN2-ADA's ema_rampup: the average's half-life (ln 0.5 / ln decay
    steps) is at most `rampup` times the steps taken so far, so an early average is not stuck
    near the random initial weights (0.999 ** 900 still leaves them 41 % of a 900-step run)."""
    if decay <= 0.0:
        return 0.0
    half_life = math.log(0.5) / math.log(decay)              # in generator steps
    if rampup > 0.0:
        half_life = min(half_life, rampup * max(step, 0))
    return 0.5 ** (1.0 / half_life) if half_life > 1e-8 else 0.0


class GeneratorEMA:
    """A frozen copy of a generator whose parameters follow the raw ones by `update`; its
    buffers (BatchNorm running statistics) are copied from the raw generator at each update, as
    StyleGAN2-ADA does: averaging running statistics of differently-weighted networks would
    describe none of them."""

    def __init__(self, generator: nn.Module, decay: float, rampup: float):
        self.decay, self.rampup = float(decay), float(rampup)
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """One generator step: average = beta * average + (1 - beta) * raw (no host sync)."""
        self.updates += 1
        beta = ema_beta(self.decay, self.rampup, self.updates)
        mine, theirs = list(self.module.parameters()), list(generator.parameters())
        torch._foreach_lerp_(mine, theirs, 1.0 - beta)   # as torch.optim.swa_utils' EMA does
        for b_ema, b in zip(self.module.buffers(), generator.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("weights"), dict) or \
                not isinstance(state.get("updates"), int) or state["updates"] < 0:
            raise CheckpointError("the generator average in the training state is malformed")
        load_into(self.module, state["weights"], "the generator average")
        self.updates = state["updates"]

    def reset(self, generator: nn.Module) -> None:
        """Start the average again at `generator`'s weights (a state saved without one)."""
        self.module.load_state_dict(generator.state_dict())
        self.updates = 0
