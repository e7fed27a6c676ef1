"""core/gan/ema.py: the warm-up of the average's decay, one update (parameters averaged, BatchNorm
buffers copied), and its state round trip."""

import math

import pytest
import torch

from core.errors import CheckpointError
from core.gan.ema import GeneratorEMA, ema_beta
from core.gan.models import Generator, GeneratorConfig


def tiny_generator(seed=0):
    torch.manual_seed(seed)
    return Generator(GeneratorConfig(latent_dim=8, size=16, filters=(16, 8)))


def test_beta_warms_up_to_the_decay():
    assert ema_beta(0.0, 0.05, 100) == 0.0                        # off
    assert ema_beta(0.999, 0.0, 1) == pytest.approx(0.999)        # no warm-up
    assert ema_beta(0.999, 0.05, 1) < 1e-5                        # step 1: the raw weights
    betas = [ema_beta(0.999, 0.05, t) for t in (1, 10, 100, 1000, 10_000, 20_000, 10 ** 6)]
    assert betas == sorted(betas)
    # StyleGAN2's rule: half-life 0.05 * 100 = 5 steps at step 100 ...
    assert betas[2] == pytest.approx(0.5 ** (1 / 5))
    # ... until it reaches the decay's own half-life (693 steps for 0.999, at step 13,863).
    assert betas[-2] == betas[-1] == pytest.approx(0.999)
    assert math.log(0.5) / math.log(0.999) == pytest.approx(692.8, abs=0.1)


def test_update_averages_parameters_and_copies_buffers():
    raw = tiny_generator()
    ema = GeneratorEMA(raw, decay=0.9, rampup=0.0)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in raw.parameters():
            p.add_(1.0)
    raw.train()(torch.randn(4, 8))                                 # moves the BatchNorm statistics
    ema.update(raw)
    names = dict(raw.named_parameters())
    for k, v in ema.module.named_parameters():
        torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * names[k].detach())
        assert not v.requires_grad
    for (k, b_ema), (_, b) in zip(ema.module.named_buffers(), raw.named_buffers()):
        assert torch.equal(b_ema, b), k
    assert not ema.module.training and ema.updates == 1


def test_state_round_trip_and_malformed_state():
    raw = tiny_generator()
    ema = GeneratorEMA(raw, 0.99, 0.05)
    with torch.no_grad():
        next(raw.parameters()).add_(1.0)
    ema.update(raw)
    other = GeneratorEMA(tiny_generator(seed=1), 0.99, 0.05)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()):
        assert torch.equal(a, b)
    for bad in ({"weights": {}, "updates": 1}, {"updates": 1}, {"weights": {}, "updates": -1}, []):
        with pytest.raises(CheckpointError):
            other.load_state_dict(bad)
