"""Generator and Critic: output shapes at 32-128 px and any width, no BatchNorm in the critic,
per-sample critic scores, and a generator checkpoint that rebuilds the model from the file alone."""

import pytest
import torch
from torch import nn

from core.errors import CheckpointError, UserError
from core.gan.models import (Critic, CriticConfig, Generator, GeneratorConfig, count_parameters,
                         load_generator, save_generator)
from core.checkpoint import save_model


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny nets on a shared 2-core machine: one thread avoids OpenMP oversubscription stalls.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_critic_shapes(size, channels):
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(latent_dim=16, size=size, channels=channels, width=1 / 16))
    critic = Critic(CriticConfig(size=size, channels=channels, width=0.5))
    images = gen(torch.randn(2, 16))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1          # tanh output
    assert critic(images).shape == (2,)


def test_generator_follows_the_report_layout():
    gen = Generator(GeneratorConfig(size=64))
    convs = [m for m in gen.blocks if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [256, 128, 64, 32]   # 4 -> 8 -> 16 -> 32 -> 64
    assert sum(isinstance(m, nn.BatchNorm2d) for m in gen.blocks) == 4
    assert sum(isinstance(m, nn.Upsample) for m in gen.blocks) == 4
    # More blocks for larger images: the last filter count repeats.
    big = Generator(GeneratorConfig(size=256, width=0.125))
    assert [c.out_channels for c in big.blocks if isinstance(c, nn.Conv2d)] == [32, 16, 8, 4, 4, 4]


def test_non_power_of_two_size_is_cropped():
    gen = Generator(GeneratorConfig(latent_dim=8, size=48, width=1 / 16))
    assert gen(torch.randn(3, 8)).shape == (3, 1, 48, 48)
    assert Critic(CriticConfig(size=48, width=0.25))(torch.randn(3, 1, 48, 48)).shape == (3,)


def test_width_scales_the_networks():
    small, full = GeneratorConfig(width=0.25), GeneratorConfig(width=1.0)
    # Conv weights shrink with width squared, the dense layer with width.
    assert count_parameters(Generator(small)) < count_parameters(Generator(full)) / 6
    assert count_parameters(Critic(CriticConfig(width=0.25))) < count_parameters(Critic(CriticConfig()))


@pytest.mark.parametrize("norm", ["none", "layer", "instance"])
def test_critic_has_no_batchnorm_and_scores_each_sample_alone(norm):
    torch.manual_seed(0)
    critic = Critic(CriticConfig(size=32, width=0.5, norm=norm))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    assert not isinstance(list(critic.modules())[-1], nn.Sigmoid)
    x = torch.randn(4, 1, 32, 32)
    alone = torch.stack([critic(x[i:i + 1])[0] for i in range(4)])
    # Per-sample scores are what the per-sample gradient penalty assumes.
    torch.testing.assert_close(critic(x), alone, atol=1e-5, rtol=1e-5)


def test_critic_dropout_is_optional():
    assert not any(isinstance(m, nn.Dropout) for m in Critic(CriticConfig(size=32)).modules())
    assert any(isinstance(m, nn.Dropout) for m in Critic(CriticConfig(size=32, dropout=0.3)).modules())


@pytest.mark.parametrize("bad", [dict(size=8), dict(channels=2), dict(width=0)])
def test_bad_configs_are_user_errors(bad):
    with pytest.raises(UserError):
        Generator(GeneratorConfig(**bad))
    with pytest.raises(UserError):
        Critic(CriticConfig(**bad))
    with pytest.raises(UserError):
        Critic(CriticConfig(norm="batch"))


def test_generator_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    config = GeneratorConfig(latent_dim=8, size=32, width=1 / 16)
    gen = Generator(config)
    gen(torch.randn(8, 8))            # one train-mode pass so BatchNorm running stats are not default
    path = save_generator(tmp_path / "g.safetensors", gen, config,
                          {"loss": "wgan-gp", "step": 7, "classes": ["COVID-19"]})
    loaded, meta = load_generator(path)
    assert meta["kind"] == "generator" and meta["step"] == 7 and meta["classes"] == ["COVID-19"]
    assert loaded.config == config and not loaded.training
    z = torch.randn(4, 8)
    torch.testing.assert_close(loaded(z), gen.eval()(z))


def test_load_generator_refuses_other_kinds(tmp_path):
    path = save_model(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {"kind": "classifier"})
    with pytest.raises(CheckpointError, match="classifier"):
        load_generator(path)
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / "missing.safetensors")
