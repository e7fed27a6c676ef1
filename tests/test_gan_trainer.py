"""Tests for core/gan/trainer.py: the critic losses (eager and functional) against a linear
critic whose gradient norm is known exactly, one alpha per sample, and the paper defaults that
resolved() fills in."""

import math

import pytest
import torch
from conftest import LinearCritic

from core.gan import trainer as gtr
from core.errors import UserError
from core.gan.models import CriticConfig, GeneratorConfig

SIZE = 16


# ---- critic losses -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("which", ["eager", "functional"])
def test_critic_loss_penalty_matches_linear_critic(channels, which):
    shape = (channels, 4, 4)
    critic = LinearCritic(shape, scale=0.3)
    real, fake = torch.randn(5, *shape), torch.randn(5, *shape)
    alpha, lam = torch.rand(5, 1, 1, 1), torch.tensor(10.0)
    if which == "eager":
        loss, stats = gtr.critic_loss(critic, real, fake, "wgan-gp", lam, alpha)
    else:
        params = dict(critic.named_parameters())
        loss, stats = gtr.functional_critic_loss(critic, "wgan-gp")(params, {}, real, fake, alpha, lam)
    norm = 0.3 * math.sqrt(math.prod(shape))
    wgan = (fake.flatten(1) @ critic.w - real.flatten(1) @ critic.w).mean()
    torch.testing.assert_close(stats[2], torch.tensor((norm - 1) ** 2))   # wgan/gp
    torch.testing.assert_close(stats[3], torch.tensor(norm))              # grad norm mean
    assert abs(stats[4].item()) < 1e-4                                     # same norm for all
    torch.testing.assert_close(loss, wgan + 10 * (norm - 1) ** 2)
    # The penalty reaches the weights: d/dw of lam * (||w|| - 1)^2 plus the Wasserstein part.
    loss.backward()
    expected = (fake - real).flatten(1).mean(0) + 10 * 2 * (norm - 1) * critic.w.detach() / norm
    torch.testing.assert_close(critic.w.grad, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_training_draws_one_alpha_per_sample(channels, monkeypatch):
    seen = []

    def spy(critic, real, fake, loss_name, lam, alpha, amp_dtype=None):
        seen.append(alpha.shape)
        return real.sum() * 0 + critic(real).mean(), torch.zeros(7)

    monkeypatch.setattr(gtr, "critic_loss", spy)
    gen = GeneratorConfig(latent_dim=8, size=SIZE, channels=channels, filters=(8,))
    critic = CriticConfig(size=SIZE, channels=channels, filters=(8,))
    images = torch.zeros(6, channels, SIZE, SIZE, dtype=torch.uint8)
    trainer = gtr.GanTrainer(gen, critic, gtr.TrainConfig(batch_size=4), images, torch.device("cpu"))
    trainer._critic_step()
    assert seen == [torch.Size([4, 1, 1, 1])]


def test_eager_and_functional_critic_losses_agree():
    torch.manual_seed(0)
    from core.gan.models import Critic
    critic = Critic(CriticConfig(size=SIZE, filters=(8, 16), norm="layer"))
    real, fake, alpha, lam = torch.randn(4, 1, SIZE, SIZE), torch.randn(4, 1, SIZE, SIZE), torch.rand(4, 1, 1, 1), torch.tensor(5.0)
    loss_a, stats_a = gtr.critic_loss(critic, real, fake, "wgan-gp", lam, alpha)
    grads_a = torch.autograd.grad(loss_a, list(critic.parameters()))
    params, buffers = dict(critic.named_parameters()), dict(critic.named_buffers())
    loss_b, stats_b = gtr.functional_critic_loss(critic, "wgan-gp")(params, buffers, real, fake, alpha, lam)
    grads_b = torch.autograd.grad(loss_b, list(critic.parameters()))
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(stats_a, stats_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_resolved_fills_paper_defaults_and_keeps_user_values():
    cfg = gtr.resolved(gtr.TrainConfig(loss="wgan", lr_gen=1e-3))
    assert (cfg.optimizer, cfg.lr_critic, cfg.clip, cfg.n_critic) == ("rmsprop", 5e-5, 0.01, 5)
    assert cfg.lr_gen == 1e-3
    gp = gtr.resolved(gtr.TrainConfig(loss="wgan-gp"))
    assert (gp.gp_lambda, gp.betas, gp.n_critic) == (10.0, (0.0, 0.9), 5)
    with pytest.raises(UserError):
        gtr.resolved(gtr.TrainConfig(loss="lsgan"))
    with pytest.raises(UserError):
        gtr.resolved(gtr.TrainConfig(n_critic=0))
