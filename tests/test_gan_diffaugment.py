"""core/gan/diffaugment.py: each policy keeps the shape, draws per image, passes gradients, stays
in range where it should; unknown policies are refused; a GanTrainer step with DiffAugment on
logs finite statistics and the critic sees transformed images."""

import pytest
import torch

from core.gan import trainer as gtr
from core.gan.diffaugment import POLICIES, diff_augment, parse_policy
from core.errors import UserError
from core.gan.models import CriticConfig, GeneratorConfig


@pytest.mark.parametrize("policy", [(p,) for p in POLICIES] + [POLICIES])
def test_shape_gradient_and_per_image_draws(policy):
    torch.manual_seed(0)
    x = (torch.rand(8, 1, 16, 16) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, policy)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    same = diff_augment(torch.ones(8, 1, 16, 16), policy)
    assert not torch.equal(same[0], same[1])          # each image its own draw


def test_translation_and_cutout_by_their_definition():
    torch.manual_seed(0)
    ones = torch.ones(64, 1, 16, 16)
    cut = diff_augment(ones, ("cutout",))
    zeroed = (cut == 0).flatten(1).sum(1)
    assert zeroed.max() <= 64 and zeroed.float().mean() > 10   # at most an 8x8 square
    shifted = diff_augment(ones, ("translation",))
    lost = (shifted == 0).flatten(1).sum(1)
    assert lost.max() <= 16 * 16 - 14 * 14                      # at most 2 px shifted per axis


def test_parse_policy():
    assert parse_policy("color, translation") == ("color", "translation")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="unknown DiffAugment policy flip"):
        parse_policy("color,flip")
    with pytest.raises(UserError, match="unknown DiffAugment"):
        gtr.resolved(gtr.TrainConfig(diffaugment="zoom"))


def test_trainer_step_with_diffaugment(monkeypatch):
    seen = []
    real_aug = gtr.diff_augment

    def spy(x, policy):
        seen.append(policy)
        return real_aug(x, policy)

    monkeypatch.setattr(gtr, "diff_augment", spy)
    torch.manual_seed(0)
    gen = GeneratorConfig(latent_dim=8, size=16, filters=(8,))
    critic = CriticConfig(size=16, filters=(8,))
    images = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8)
    config = gtr.resolved(gtr.TrainConfig(batch_size=4, n_critic=1, diffaugment="color,cutout"))
    trainer = gtr.GanTrainer(gen, critic, config, images, torch.device("cpu"))
    for _ in range(2):
        trainer.step()
    stats = trainer.read_stats()
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert seen and all(p == ("color", "cutout") for p in seen)
    assert len(seen) == 2 * 3  # per step: real and fake for the critic, fake for the generator


def test_auto_is_on_below_the_threshold_and_a_users_choice_wins(monkeypatch):
    from core.gan import diffaugment

    assert gtr.TrainConfig().diffaugment == "auto"
    n = diffaugment.AUTO_BELOW
    assert diffaugment.choose_policy("auto", n - 1) == diffaugment.AUTO_POLICY
    assert diffaugment.choose_policy("auto", n) == ""
    for explicit, means in (("", ""), ("off", ""), ("cutout", "cutout")):
        assert diffaugment.choose_policy(explicit, n - 1) == means
        assert diffaugment.choose_policy(explicit, 10 * n) == means
    gen = GeneratorConfig(latent_dim=8, size=16, filters=(8,))
    critic = CriticConfig(size=16, filters=(8,))
    images = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8)

    def trainer(setting):
        config = gtr.TrainConfig(batch_size=4, n_critic=1, diffaugment=setting)
        return gtr.GanTrainer(gen, critic, config, images, torch.device("cpu"))

    auto = trainer("auto")           # 8 images
    assert auto.augment == parse_policy(diffaugment.AUTO_POLICY)
    assert auto.config.diffaugment == diffaugment.AUTO_POLICY
    assert trainer("off").augment == trainer("").augment == ()
    monkeypatch.setattr(diffaugment, "AUTO_BELOW", 8)
    assert trainer("auto").augment == () and trainer("auto").config.diffaugment == ""
    assert trainer("translation").augment == ("translation",)   # above it, chosen by the user
