"""Tests for core/toy/step.py: the written-out critic update against autograd, and its compiled
version as the trainer uses it."""

import copy
import os
import time

import pytest
import torch
from torch._dynamo.utils import counters

from core.toy import step as toy_step
from core.gan.losses import gan_critic_loss, gradient_penalty, wgan_critic_loss
from core.toy.trainer import ToyConfig, ToyTrainer, mlp
from core.toy.step import critic_update, linear_relu_params


def autograd_reference(gen, critic, z, real, alpha, lam, loss, penalty):
    """The generic route: autograd through core.gan.losses, gradient_penalty with create_graph."""
    with torch.no_grad():
        fake = gen(z)
    scores = critic(torch.cat([real, fake]))
    real_s, fake_s = scores.chunk(2)
    value = gan_critic_loss(real_s, fake_s) if loss == "gan" else wgan_critic_loss(real_s, fake_s)
    total, pen = value, None
    if penalty:
        pen = gradient_penalty(critic, real, fake, alpha=alpha)[0]
        total = value + lam * pen
    grads = torch.autograd.grad(total, list(critic.parameters()))
    return fake, scores.detach(), total.detach(), pen, grads


@pytest.mark.parametrize("loss, penalty, dim, noise, depth", [
    ("wgan", True, 2, 2, 3), ("wgan", True, 1, 1, 1), ("gan", False, 2, 3, 2),
    ("wgan", False, 2, 2, 3), ("gan", True, 1, 2, 2)])
def test_critic_update_matches_autograd(loss, penalty, dim, noise, depth):
    torch.manual_seed(0)
    gen = mlp(noise, dim, hidden=16, depth=depth).double()
    critic = mlp(dim, 1, hidden=12, depth=depth).double()
    B = 16
    z, real, alpha = torch.randn(B, noise), torch.randn(B, dim), torch.rand(B, 1)
    z, real, alpha = z.double(), real.double(), alpha.double()
    lam = torch.tensor(3.0, dtype=torch.float64)
    expected = autograd_reference(gen, critic, z, real, alpha, lam, loss, penalty)
    with torch.no_grad():
        got = critic_update(linear_relu_params(gen), linear_relu_params(critic), z, real, alpha,
                            lam, loss, penalty)
    for a, b in zip(got[:3], expected[:3]):
        torch.testing.assert_close(a, b)
    if penalty:
        torch.testing.assert_close(got[3], expected[3].detach())
    else:
        assert got[3] is None
    assert len(got[4]) == len(expected[4])
    for a, b in zip(got[4], expected[4]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g in got[4][0::2])  # every weight matrix is pulled


def test_linear_relu_params_rejects_other_layers():
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    with pytest.raises(ValueError, match="Linear/ReLU"):
        linear_relu_params(net)
    assert len(linear_relu_params(mlp(2, 1, 8, 2))) == 6


def tiny(**kw) -> ToyTrainer:
    kw = {"hidden": 16, "depth": 2, "batch_size": 16, "pool_size": 500, **kw}
    return ToyTrainer(ToyConfig(**kw))


def steps_until(trainer: ToyTrainer, predicate, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not predicate(trainer.step_code):
        assert time.monotonic() - t0 < timeout, trainer.step_code
        trainer.critic_step()  # eager meanwhile: training never waits for the compiler
        time.sleep(0.01)


@pytest.mark.parametrize("loss", ["wgan-gp", "gan"])  # with and without the penalty
def test_trainer_switches_to_the_compiled_update_with_the_same_numbers(loss):
    # The real compiler (about 10-30 s on this CPU, once per process and variant).
    t = tiny(compile=True, loss=loss)
    t.critic_step()
    assert t.step_code == "compiling"
    steps_until(t, lambda code: code != "compiling")
    assert t.step_code == "compiled"
    # Same numbers as the eager code on the trainer's own networks and a fresh batch.
    g = torch.Generator().manual_seed(1)
    args = (linear_relu_params(t.generator), linear_relu_params(t.critic),
            torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g),
            torch.rand(16, 1, generator=g), torch.tensor(0.1), loss, loss == "wgan-gp")
    with torch.no_grad():
        got, expected = toy_step._COMPILED(*args), critic_update(*args)
    for a, b in zip(got[:4] + tuple(got[4]), expected[:4] + tuple(expected[4])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # None == None for the penalty
    eager = copy.deepcopy(t)
    eager.config.compile = False
    t.critic_step()
    eager.critic_step()
    assert (t.step_code, eager.step_code) == ("compiled", "eager")
    # New sizes reuse the same compiled code (dynamic shapes, no duck sizing): no new build,
    # and nothing compiles again in this thread, which would freeze the page for seconds.
    graphs = counters["stats"]["unique_graphs"]
    for change in ({"batch_size": 24}, {"noise_dim": 5}, {"hidden": 32}):
        t.update(**change)
        t.critic_step()
        assert t.step_code == "compiled", change
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_failed_compile_leaves_the_trainer_training_eagerly(monkeypatch):
    def no_compiler(fn, **kwargs):
        def broken(*args):
            raise OSError("no C++ compiler found")
        return broken
    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(toy_step, "_BUILDS", {})
    monkeypatch.setattr(toy_step, "_COMPILED", None)
    monkeypatch.setattr(toy_step, "_EXECUTOR", None)
    t = tiny(compile=True, loss="gan")
    steps_until(t, lambda code: code.startswith("eager ("), timeout=30)
    assert "no C++ compiler found" in t.step_code
    before = t.critic_steps
    t.run(2)
    assert t.critic_steps == before + 2 * t.config.n_critic
    assert all(torch.isfinite(p).all() for p in t.critic.parameters())


def test_prebuild_builds_for_both_auto_thread_counts_and_leaves_the_rng_alone(monkeypatch):
    built_with = []

    def fake_compile(fn, **kwargs):  # records the thread count of each build, runs eagerly
        def run(*args):
            built_with.append(torch.get_num_threads())
            return fn(*args)
        return run
    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(toy_step, "_BUILDS", {})
    monkeypatch.setattr(toy_step, "_COMPILED", None)
    monkeypatch.setattr(toy_step, "_EXECUTOR", None)
    t, twin = tiny(compile=True, threads=0), tiny()
    t.prebuild()
    assert len(toy_step._BUILDS) == (2 if (os.cpu_count() or 1) >= 2 else 1)
    for future in list(toy_step._BUILDS.values()):
        future.result(timeout=30)
    assert sorted(built_with) == sorted(n for *_, n in toy_step._BUILDS)
    t.critic_step()
    twin.critic_step()
    assert t.step_code == "compiled"
    torch.testing.assert_close(t._last["real"], twin._last["real"])  # same batches as without


def test_a_copied_trainer_updates_its_own_weights():
    # The trainer caches plain-tensor views of its Parameters for the update; a copy must
    # rebuild them, or it would compute gradients from the original's weights.
    t = tiny(loss="wgan-gp")
    t.critic_step()
    twin = copy.deepcopy(t)
    for _ in range(2):
        t.critic_step()
        twin.critic_step()
    for a, b in zip(t.critic.parameters(), twin.critic.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not any(a is b for a, b in zip(t.critic.parameters(), twin.critic.parameters()))
