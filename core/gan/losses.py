"""Pure loss functions of the three GAN families, shared by the image trainer and the toy playground.

Each takes critic/discriminator outputs (N,) or (N, 1) and returns a 0-d tensor; the training loop
owns optimizers and steps. Defaults follow each paper (see LOSS_DEFAULTS).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from core.gan import live

# Paper defaults per loss: Goodfellow et al. with DCGAN's Adam; Arjovsky et al. (WGAN, weight
# clipping, RMSProp); Gulrajani et al. (WGAN-GP, Adam, betas (0, 0.9)). The live fields' defaults
# (lambda, n_critic, learning rates, clip) are defined with their ranges in core.gan.live.
LOSS_DEFAULTS = {
    "gan": {"optimizer": "adam", "betas": (0.5, 0.999), **live.defaults("gan")},
    "wgan": {"optimizer": "rmsprop", "betas": (0.0, 0.0), **live.defaults("wgan")},
    "wgan-gp": {"optimizer": "adam", "betas": (0.0, 0.9), **live.defaults("wgan-gp")},
}
LOSSES = tuple(LOSS_DEFAULTS)
# How a page names each loss (radio buttons, headers, the sample browser).
LOSS_LABELS = {"wgan-gp": "WGAN-GP", "wgan": "WGAN (weight clipping)", "gan": "GAN"}


def gan_critic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator BCE-with-logits: real -> 1, fake -> 0 (numerically stable, no sigmoid layer)."""
    real_logits, fake_logits = real_logits.reshape(-1), fake_logits.reshape(-1)
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def gan_generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss, -log D(G(z)): strong gradients early in training."""
    fake_logits = fake_logits.reshape(-1)
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Critic minimises E[D(fake)] - E[D(real)], i.e. maximises the Wasserstein estimate."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:
    return -fake_scores.mean()


def wasserstein_estimate(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[D(real)] - E[D(fake)]: the critic's estimate of W(P_r, P_g) (up to the Lipschitz constant)."""
    return real_scores.mean() - fake_scores.mean()


def interpolate(real: Tensor, fake: Tensor, alpha: Tensor | None = None) -> Tensor:
    """Random points on straight lines between real and fake samples, one alpha per sample.

    alpha is shaped (N, 1, ..., 1) so it broadcasts over any sample shape (2D points or
    (C, H, W) images of any channel count) and is drawn on the samples' device."""
    if alpha is None:
        alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device,
                           dtype=real.dtype)
    return (alpha * real + (1 - alpha) * fake).detach()


def penalty_from_grads(grads: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """(mean (||g||_2 - 1)^2, per-sample norms (N,)) from per-sample gradients (N, ...).

    The norm is per sample (flatten(1)), never over the whole batch; eps inside the sqrt keeps
    the gradient of the norm finite where g = 0 (NaN otherwise)."""
    norms = torch.sqrt(grads.flatten(1).pow(2).sum(dim=1) + eps)
    return ((norms - 1.0) ** 2).mean(), norms


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     alpha: Tensor | None = None, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """WGAN-GP two-sided penalty on random interpolates (Gulrajani et al. 2017, eq. 3).

    Returns (penalty, grad_norms (N,)); multiply by lambda in the caller so lambda can change
    live. `create_graph=True` so the penalty itself is differentiated into the critic's weights."""
    x = interpolate(real, fake, alpha).requires_grad_(True)
    scores = critic(x)
    (grads,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return penalty_from_grads(grads, eps)


@torch.no_grad()
def clip_weights(critic: torch.nn.Module, c: float) -> None:
    """WGAN's crude Lipschitz constraint: clamp every critic parameter to [-c, c] after each step."""
    for p in critic.parameters():
        p.clamp_(-c, c)
