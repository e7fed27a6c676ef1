"""On-the-fly jitter of a classifier's training batches: small affine moves, gamma and contrast,
blur; never flips (a mirrored chest puts the heart on the wrong side)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.classify.config import ClassifierTrainConfig


def jitter(x: torch.Tensor, tc: ClassifierTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Random small affine jitter of a training batch (N, C, S, S), one draw per image, edges
    replicated: translation up to jitter_shift * S, rotation up to jitter_rotate degrees, zoom
    up to 1 +- jitter_scale; with jitter_gamma, a random gamma and contrast first. No flips (a
    mirrored chest puts the heart on the wrong side)."""
    if not (tc.jitter_shift or tc.jitter_rotate or tc.jitter_scale or tc.jitter_gamma
            or tc.jitter_blur):
        return x
    n = len(x)
    u = torch.rand(n, 4, generator=generator).to(x.device) * 2 - 1          # (N, 4) in [-1, 1]
    if tc.jitter_gamma:  # drawn after the geometric draws, so runs without it are unchanged
        v = torch.rand(n, 2, generator=generator).to(x.device) * 2 - 1      # (N, 2)
        gamma = torch.exp(v[:, 0] * tc.jitter_gamma).view(n, 1, 1, 1)
        contrast = (1 + v[:, 1] * tc.jitter_gamma / 2).view(n, 1, 1, 1)
        x01 = ((x + 1) / 2).clamp(0, 1) ** gamma                               # (N, C, S, S)
        mean = x01.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x01 - mean) * contrast + mean).clamp(0, 1) * 2 - 1
    if tc.jitter_blur:
        x = _random_blur(x, tc.jitter_blur, generator)
    angle = u[:, 0] * math.radians(tc.jitter_rotate)
    scale = 1 + u[:, 1] * tc.jitter_scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * 2 * tc.jitter_shift], 1),
                         torch.stack([sin, cos, u[:, 3] * 2 * tc.jitter_shift], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _random_blur(x: torch.Tensor, max_sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Half of the images (N, C, S, S) blurred by a Gaussian of sigma uniform in (0, max_sigma]
    px (a 7x7 kernel per image, edges replicated); the others unchanged."""
    n, c = x.shape[:2]
    draw = torch.rand(n, 2, generator=generator).to(x.device)
    sigma = (draw[:, 0] * max_sigma).clamp_min(1e-3) * (draw[:, 1] < 0.5)              # (N,)
    r = torch.arange(-3, 4, device=x.device, dtype=x.dtype)
    k1 = torch.exp(-r[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))          # (N, 7)
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]           # (N*C, 1, 7, 7)
    out = F.conv2d(F.pad(x.reshape(1, n * c, *x.shape[2:]), (3, 3, 3, 3), mode="replicate"),
                   k2, groups=n * c)
    return out.reshape(x.shape)
