"""The report's GAN networks: an upsampling Generator (dense -> reshape -> (upsample, conv, BN,
LeakyReLU) blocks -> conv -> tanh) and a strided-conv Critic without BatchNorm, plus their configs
and generator checkpoints that rebuild the model from the file alone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import build_checked, checked_budget, load_into, load_model, save_model
from core.config import ranged, to_dict
from core.errors import CheckpointError, UserError

MIN_SIZE, MAX_SIZE = 16, 512
CRITIC_NORMS = ("none", "layer", "instance")


def _scaled(filters: tuple[int, ...], n: int, width: float) -> list[int]:
    """`n` channel counts: `filters` scaled by `width`, the last one repeated when n is larger."""
    if not filters:
        raise UserError("filters must list at least one channel count")
    picked = [filters[min(i, len(filters) - 1)] for i in range(n)]
    return [max(1, int(round(f * width))) for f in picked]


def _check_size(size: int, channels: int, width: float) -> None:
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise UserError(f"image size {size} is outside the supported {MIN_SIZE}..{MAX_SIZE} pixels")
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 (X-rays) or 3 (RGB), not {channels}")
    if not width > 0:
        raise UserError(f"width must be positive, not {width}")




@dataclass
class GeneratorConfig:
    latent_dim: int = ranged(1, 4096, 128)
    size: int = ranged(MIN_SIZE, MAX_SIZE, 64)   # output (size, size); 32..256 in practice
    channels: int = ranged(1, 3, 1)
    filters: tuple[int, ...] = ranged(1, 4096, (256, 128, 64, 32))  # per upsampling block, the
                                   # report's choice
    width: float = ranged(0.01, 16.0, 1.0)   # multiplies every filter count (0.125 -> 32/16/8/4)
    leaky_slope: float = ranged(0.0, 1.0, 0.2)
    base: int = ranged(1, 64, 4)   # spatial size after the dense layer


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, channels, size, size) in [-1, 1].

    Blocks double the resolution from `base` until it reaches `size`; a size that is not
    base * 2**k is generated at the next power and centre-cropped. Filter counts follow
    `config.filters` (first ones first, the last repeated when more blocks are needed)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        _check_size(config.size, config.channels, config.width)
        self.config = config
        n_blocks = max(1, math.ceil(math.log2(config.size / config.base)))
        chans = _scaled(tuple(config.filters), n_blocks, config.width)
        self.c0 = chans[0]
        self.fc = nn.Linear(config.latent_dim, self.c0 * config.base * config.base)
        blocks, c_in = [], self.c0
        for c_out in chans:
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),  # BN's shift replaces the bias
                       nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(config.leaky_slope, inplace=True)]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(c_in, config.channels, 3, padding=1)
        self.out_size = config.base * 2 ** n_blocks  # before the crop

    def forward(self, z: Tensor) -> Tensor:
        cfg = self.config
        x = self.fc(z).view(-1, self.c0, cfg.base, cfg.base)       # (N, C0, 4, 4)
        x = self.blocks(x)                                          # (N, C_last, out, out)
        x = torch.tanh(self.to_image(x))                            # (N, channels, out, out)
        if self.out_size != cfg.size:
            top = (self.out_size - cfg.size) // 2
            x = x[:, :, top:top + cfg.size, top:top + cfg.size]
        return x

    def sample(self, n: int, device: torch.device | str | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """n images from fresh z ~ N(0, I), in eval mode, without gradients."""
        device = device or next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self(z)
        self.train(was_training)
        return out


@dataclass
class CriticConfig:
    size: int = ranged(MIN_SIZE, MAX_SIZE, 64)
    channels: int = ranged(1, 3, 1)
    filters: tuple[int, ...] = ranged(1, 4096, (16, 32, 64, 128, 256))   # per stride-2 conv, the
                                   # report's choice
    width: float = ranged(0.01, 16.0, 1.0)
    norm: str = "none"             # none | layer | instance; never BatchNorm (it breaks the
    dropout: float = ranged(0.0, 0.99, 0.0)   # per-sample gradient penalty by mixing samples)
    leaky_slope: float = ranged(0.0, 1.0, 0.2)


class Critic(nn.Module):
    """images (N, channels, size, size) -> scores (N,): stride-2 4x4 convs halve the resolution
    down to 2-3 pixels, then one linear output with no sigmoid (a WGAN critic; the GAN loss
    applies BCE-with-logits to the same score)."""

    def __init__(self, config: CriticConfig):
        super().__init__()
        _check_size(config.size, config.channels, config.width)
        if config.norm not in CRITIC_NORMS:
            raise UserError(f"critic norm must be one of {', '.join(CRITIC_NORMS)}, not {config.norm!r}")
        if not 0.0 <= config.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), not {config.dropout}")
        self.config = config
        spatial, n_layers = config.size, 0
        while spatial > 3:  # 64 -> 32 -> 16 -> 8 -> 4 -> 2: five convs, as in the report
            spatial, n_layers = spatial // 2, n_layers + 1
        chans = _scaled(tuple(config.filters), n_layers, config.width)
        layers, c_in = [], config.channels
        for i, c_out in enumerate(chans):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))  # (N, c_out, s/2, s/2)
            # No norm on the first layer (raw pixels); LayerNorm = GroupNorm with one group,
            # i.e. over (C, H, W) of each sample, which keeps samples independent for the GP.
            if i > 0 and config.norm == "layer":
                layers.append(nn.GroupNorm(1, c_out))
            elif i > 0 and config.norm == "instance":
                layers.append(nn.InstanceNorm2d(c_out, affine=True))
            layers.append(nn.LeakyReLU(config.leaky_slope))
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c_in * spatial * spatial, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x).flatten(1)).squeeze(1)   # (N,)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Keys of the raw generator's tensors in a snapshot that holds its weight average too.
RAW_PREFIX = "raw/"


def save_generator(path: str | Path, generator: Generator, config: GeneratorConfig,
                   meta: dict | None = None, raw: Generator | None = None) -> Path:
    """Write an inference snapshot of `generator` (kind "generator"); `meta` should hold the data
    config and classes, loss and step so the Samples page can describe the file alone. With
    `raw`, `generator` is the weight average (meta "weights": "ema") and the raw generator's
    tensors go beside it under RAW_PREFIX, for load_generator(raw=True)."""
    state = dict(generator.state_dict())
    if raw is not None:
        state.update({RAW_PREFIX + k: v for k, v in raw.state_dict().items()})
    return save_model(path, state, {**(meta or {}), "kind": "generator", "generator": to_dict(config),
                                    "weights": "ema" if raw is not None else "raw"})


def check_networks(gen_config: GeneratorConfig, critic_config: CriticConfig) -> None:
    """UserError naming the field when a run's generator or critic config, from a form, a flag
    or a file, is outside its fields' ranges or describes a network larger than
    core.checkpoint.MAX_PARAMETERS: counted before anything is allocated, so a critic 10^9
    wide is one line, not an allocation the machine refuses half way through building it."""
    for cls, config, build, what in ((GeneratorConfig, gen_config, Generator, "generator"),
                                     (CriticConfig, critic_config, Critic, "critic")):
        checked_budget(cls, to_dict(config), build, "this run", what)


def load_generator(path: str | Path, device: torch.device | str = "cpu",
                   raw: bool = False) -> tuple[Generator, dict]:
    """(Generator in eval mode, meta) rebuilt from a snapshot written by save_generator: the
    weights it samples with (its weight average, when meta["weights"] is "ema"), or with `raw`
    the raw generator's (the same weights in a snapshot without an average)."""
    state, meta = load_model(path, kind="generator")
    name = Path(path).name
    _, generator = build_checked(GeneratorConfig, meta.get("generator"), Generator, name,
                                 "generator")
    main = {k: v for k, v in state.items() if not k.startswith(RAW_PREFIX)}
    beside = {k[len(RAW_PREFIX):]: v for k, v in state.items() if k.startswith(RAW_PREFIX)}
    if raw and meta.get("weights") == "ema" and not beside:
        raise CheckpointError(f"{name} holds a weight average without the raw generator beside it")
    load_into(generator, beside if raw and meta.get("weights") == "ema" else main, name)
    return generator.to(device).eval(), meta
