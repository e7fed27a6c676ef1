"""Loss functions: the per-sample gradient penalty pinned against a linear critic, finite at zero
gradient, and the GAN/WGAN losses' signs."""

import math

import pytest
import torch

from conftest import LinearCritic
from core.gan import losses


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 4), (2,)])
def test_gradient_penalty_matches_linear_critic(shape):
    critic = LinearCritic(shape, scale=0.5)
    real, fake = torch.randn(6, *shape), torch.randn(6, *shape)
    penalty, norms = losses.gradient_penalty(critic, real, fake)
    expected_norm = 0.5 * math.sqrt(math.prod(shape))
    assert norms.shape == (6,)
    torch.testing.assert_close(norms, torch.full((6,), expected_norm))
    torch.testing.assert_close(penalty, torch.tensor((expected_norm - 1) ** 2))
    # create_graph: the penalty must reach the critic's weights (d/dw of (||w||-1)^2).
    (grad_w,) = torch.autograd.grad(penalty, critic.w)
    torch.testing.assert_close(grad_w, 2 * (expected_norm - 1) * critic.w.detach() / expected_norm)


def test_penalty_is_per_sample_not_batch_norm():
    # Per-sample norms 0 and 3 give ((0-1)^2 + (3-1)^2) / 2 = 2.5; the classic bug, one norm over
    # the whole batch, would give (3-1)^2 = 4.
    grads = torch.stack([torch.zeros(4), torch.tensor([3.0, 0, 0, 0])])
    penalty, norms = losses.penalty_from_grads(grads)
    torch.testing.assert_close(penalty, torch.tensor(2.5), atol=1e-5, rtol=0)


def test_interpolate_alpha_is_per_sample_for_any_channel_count():
    real, fake = torch.ones(5, 3, 2, 2), torch.zeros(5, 3, 2, 2)
    mixed = losses.interpolate(real, fake)
    # One alpha per sample: every pixel and channel of a sample shares the same value.
    per_sample = mixed.flatten(1)
    assert torch.all(per_sample.max(1).values == per_sample.min(1).values)
    assert per_sample[:, 0].unique().numel() == 5


def test_zero_gradient_stays_finite():
    grads = torch.zeros(3, 4, requires_grad=True)
    penalty, _ = losses.penalty_from_grads(grads)
    penalty.backward()
    assert torch.isfinite(grads.grad).all()


def test_loss_signs():
    real, fake = torch.tensor([2.0, 2.0]), torch.tensor([-1.0, -1.0])
    assert losses.wasserstein_estimate(real, fake).item() == 3.0
    assert losses.wgan_critic_loss(real, fake).item() == -3.0
    assert losses.wgan_generator_loss(fake).item() == 1.0
    # A confident, correct discriminator has a small loss; the fooled generator a large one.
    assert losses.gan_critic_loss(torch.full((4,), 8.0), torch.full((4,), -8.0)) < 0.01
    assert losses.gan_generator_loss(torch.full((4,), -8.0)) > 7.0


def test_clip_weights_bounds_every_parameter():
    net = torch.nn.Linear(4, 4)
    losses.clip_weights(net, 0.01)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())
