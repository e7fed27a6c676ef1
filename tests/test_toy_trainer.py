"""Tests for core/toy/trainer.py: toy distributions, the toy trainer, live updates and the plotted views."""

import threading

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.gan.losses import (
    LOSS_DEFAULTS,
    LOSSES,
)
from core.toy.trainer import (
    DATASETS,
    EIGHT_GAUSSIANS_CENTERS,
    ToyConfig,
    ToyTrainer,
    dataset_dim,
    modes_covered,
    run_together,
    sample_dataset,
)

N = 4000


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matmuls gain nothing from a second thread, and on a busy 2-core machine OpenMP
    # threads waiting for each other made these tests ~10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kw) -> ToyTrainer:
    """A trainer small enough for a test: 2x16 MLPs, batch 32, a 2000-point pool."""
    kw = {"hidden": 16, "depth": 2, "batch_size": 32, "pool_size": 2000, "log_every": 1, **kw}
    return ToyTrainer(ToyConfig(**kw))


# -- distributions ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_shape_range_and_seed(name):
    x = sample_dataset(name, N, seed=0)
    dim = dataset_dim(name)
    assert x.shape == (N, dim) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, sample_dataset(name, N, seed=0))
    assert not np.array_equal(x, sample_dataset(name, N, seed=1))
    if dim == 2:  # every 2D set is scaled to about [-2, 2]^2, none collapsed
        assert np.abs(x).max() < 3.0
        assert (x.std(0) > 0.3).all() and (x.std(0) < 2.0).all()


def test_gaussian_1d_is_n21():
    x = sample_dataset("gaussian-1d", 20000)[:, 0]
    assert abs(x.mean() - 2.0) < 0.05 and abs(x.std() - 1.0) < 0.05


def test_eight_gaussians_modes():
    x = sample_dataset("8gaussians", N)
    d = np.linalg.norm(x[:, None] - EIGHT_GAUSSIANS_CENTERS[None], axis=2)  # (N, 8)
    assert d.min(1).max() < 0.1                              # every point at a centre
    share = np.bincount(d.argmin(1), minlength=8) / N
    assert share.min() > 0.09 and share.max() < 0.16          # equal weights, 1/8 each
    np.testing.assert_allclose(np.linalg.norm(x, axis=1).mean(), 2 / 1.414, atol=0.02)


def test_twentyfive_gaussians_grid():
    x = sample_dataset("25gaussians", N)
    grid = x * 2.828 / 2.0  # back to integer grid coordinates in -2..2
    assert np.abs(grid - np.round(grid)).max() < 0.2
    assert set(np.round(grid).astype(int).ravel()) == {-2, -1, 0, 1, 2}
    np.testing.assert_allclose(x.std(0), 1.0, atol=0.05)     # the "/ 2.828 # stdev" scaling


def test_shape_specific_statistics():
    x = sample_dataset("parabola", N)
    assert np.abs(x[:, 1] - (x[:, 0] ** 2 - 1)).std() < 0.07
    r = np.linalg.norm(sample_dataset("circle", N), axis=1)
    assert abs(r.mean() - 1.5) < 0.02 and r.std() < 0.07
    r = np.linalg.norm(sample_dataset("two-circles", N), axis=1)
    assert abs(np.mean(r > 1.35) - 0.5) < 0.05               # half outer (1.8), half inner (0.9)
    np.testing.assert_allclose(sample_dataset("gaussian-mixture", 20000).mean(0),
                               [-0.2, -0.31], atol=0.03)
    np.testing.assert_allclose(sample_dataset("moons", N).mean(0), [0, 0], atol=0.05)
    s = sample_dataset("s-curve", N)
    assert np.abs(s[:, 0]).max() < 1.3 and 1.7 < np.abs(s[:, 1]).max() < 2.3
    r = np.linalg.norm(sample_dataset("spiral", N), axis=1)
    assert r.min() < 0.6 and 1.6 < r.max() < 2.0


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError):
        sample_dataset("nope", 10)
    with pytest.raises(UserError):
        ToyConfig(dataset="nope")


# -- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_config_takes_the_loss_defaults(loss):
    c = ToyConfig(loss=loss)
    for name in ("lr_critic", "lr_gen", "n_critic", "gp_lambda", "clip"):
        # The papers' values, except WGAN-GP's toy lambda 0.1 (the authors' gan_toy.py).
        expected = 0.1 if (loss, name) == ("wgan-gp", "gp_lambda") else LOSS_DEFAULTS[loss][name]
        assert getattr(c, name) == expected
    assert ToyConfig(loss=loss, clip=0.5).clip == 0.5


def test_config_noise_dim_follows_data_and_validates():
    assert ToyConfig(dataset="gaussian-1d").noise_dim == 1
    assert ToyConfig(dataset="moons").noise_dim == 2
    for bad in ({"loss": "lsgan"}, {"batch_size": 1}, {"n_critic": 0}, {"clip": -1.0},
                {"lr_gen": 0.0}, {"gp_lambda": -0.1}, {"noise_dim": 0}):
        with pytest.raises(UserError):
            ToyConfig(**bad)


# -- training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["8gaussians", "gaussian-1d"])
@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains_with_finite_metrics(loss, dataset):
    t = tiny(loss=loss, dataset=dataset)

    def weights():  # weights only: the critic's output bias cancels out of the W losses
        return [m.weight for m in list(t.critic) + list(t.generator)
                if isinstance(m, torch.nn.Linear)]

    before = [w.clone() for w in weights()]
    t.run(3)
    assert t.gen_steps == 3 and t.critic_steps == 3 * t.config.n_critic
    assert len(t.history) == 3
    row = t.history[-1]
    for key in ("loss/critic", "loss/gen", "wgan/w_estimate", "wgan/grad_norm_mean"):
        assert isinstance(row[key], float) and np.isfinite(row[key]), key
    assert ("wgan/gp" in row) == (loss == "wgan-gp")
    assert all(not torch.equal(a, b) for a, b in zip(before, weights()))


@pytest.mark.parametrize("loss", LOSSES)
def test_optimizer_follows_loss_defaults(loss):
    t = tiny(loss=loss)
    expected = torch.optim.RMSprop if LOSS_DEFAULTS[loss]["optimizer"] == "rmsprop" \
        else torch.optim.Adam
    for opt in (t.opt_critic, t.opt_gen):
        assert type(opt) is expected
    if expected is torch.optim.Adam:
        assert t.opt_critic.param_groups[0]["betas"] == tuple(LOSS_DEFAULTS[loss]["betas"])


def test_manual_steps_count_separately():
    t = tiny()
    t.critic_step()
    t.critic_step()
    t.generator_step()
    assert (t.critic_steps, t.gen_steps) == (2, 1)
    row = t.record()
    assert row["critic_step"] == 2 and np.isfinite(row["loss/gen"])


def test_same_seed_same_run_and_drawing_does_not_perturb_training():
    a, b = tiny(seed=3), tiny(seed=3)
    a.run(2)
    a.sample(100)
    a.critic_gradients(n=10)
    a.run(2)
    b.run(4)
    for p, q in zip(a.generator.parameters(), b.generator.parameters()):
        torch.testing.assert_close(p, q)
    assert not torch.equal(next(tiny(seed=4).critic.parameters()),
                           next(tiny(seed=3).critic.parameters()))


def test_run_uses_the_configured_threads_and_restores_them():
    t = tiny(threads=1)
    seen = []
    t.critic.register_forward_pre_hook(lambda m, inp: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    t.run(1)
    assert set(seen) == {1} and torch.get_num_threads() == 2
    t.update(threads=2)
    seen.clear()
    torch.set_num_threads(1)
    t.run(1)
    assert set(seen) == {2} and torch.get_num_threads() == 1


def test_auto_threads_take_a_second_core_only_when_the_machine_is_otherwise_idle(monkeypatch):
    t = tiny()  # threads=0: auto
    loads = iter([None, 0.05, 1.0, 0.2])  # first call: nothing measured yet

    class FakeLoad:
        def sample(self):
            return next(loads)

    t._cpu_load = FakeLoad()
    monkeypatch.setattr(ToyTrainer, "AUTO_EVERY_S", 0.0)  # look on every call
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert [t.threads_now() for _ in range(4)] == [1, 2, 1, 2]
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    t._cpu_load = FakeLoad()
    loads = iter([0.0])
    assert t.threads_now() == 1  # one core: nothing to gain
    # Another trainer of this process training at the same time (another browser session):
    # 1 thread, whatever the other processes do.
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    loads = iter([0.0, 0.0])
    other, inside, release = tiny(), threading.Event(), threading.Event()

    def train_elsewhere():
        with other.torch_threads():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=train_elsewhere)
    worker.start()
    inside.wait(10)
    try:
        assert t.threads_now() == 1
    finally:
        release.set()
        worker.join()
    with t.torch_threads():  # its own block (or a nested one) does not count as another
        assert t.threads_now() == 2


def test_other_cpu_load_measures_between_calls():
    from core.device import OtherCpuLoad

    load = OtherCpuLoad()
    first = load.sample()
    sum(i * i for i in range(200_000))  # our own work must not count as "other"
    second = load.sample()
    assert first is None and second is not None and second >= 0.0


def test_reset_restores_the_seeded_start():
    t, fresh = tiny(), tiny()
    t.run(2)
    assert t.history and t.gen_steps == 2
    t.reset()
    assert (t.gen_steps, t.critic_steps, t.history) == (0, 0, [])
    for p, q in zip(t.critic.parameters(), fresh.critic.parameters()):
        torch.testing.assert_close(p, q)


# -- live updates -----------------------------------------------------------------------------

def test_update_learning_rates_reach_the_optimizers():
    t = tiny()
    notes = t.update(lr_critic=1e-3, lr_gen=3e-3)
    assert notes == []  # nothing rebuilt
    assert all(g["lr"] == 1e-3 for g in t.opt_critic.param_groups)
    assert all(g["lr"] == 3e-3 for g in t.opt_gen.param_groups)
    t.run(1)


def test_update_clip_bounds_the_critic_after_a_step():
    t = tiny(loss="wgan")
    t.critic_step()
    biggest = max(p.abs().max().item() for p in t.critic.parameters())
    assert 0.005 < biggest <= 0.01  # the default c = 0.01 is active and binding
    t.update(clip=0.005)
    t.critic_step()
    assert max(p.abs().max().item() for p in t.critic.parameters()) <= 0.005


def test_update_n_critic_changes_the_iteration():
    t = tiny(loss="wgan-gp")
    t.update(n_critic=2)
    t.iteration()
    assert t.critic_steps == 2
    t.update(n_critic=7)
    t.iteration()
    assert t.critic_steps == 9


def test_update_lambda_enters_the_critic_loss():
    # Same seed, same batches and alphas: the critic losses differ by exactly lambda * penalty.
    a, b = tiny(loss="wgan-gp"), tiny(loss="wgan-gp")
    a.update(gp_lambda=100.0)
    b.update(gp_lambda=0.0)
    a.critic_step()
    b.critic_step()
    ra, rb = a.record(), b.record()
    assert "wgan/gp" not in rb and ra["wgan/gp"] > 0
    np.testing.assert_allclose(ra["loss/critic"] - rb["loss/critic"], 100.0 * ra["wgan/gp"],
                               rtol=1e-4)


def test_update_batch_size_changes_the_batches():
    t = tiny()
    t.critic_step()
    assert t._last["real"].shape[0] == t._last["fake"].shape[0] == 32
    t.update(batch_size=8)
    t.critic_step()
    assert t._last["real"].shape[0] == t._last["fake"].shape[0] == 8


@pytest.mark.parametrize("new_dim", [5, 1])
def test_update_noise_dim_rebuilds_only_the_first_layer(new_dim):
    t = tiny()
    t.run(1)
    kept = [p.clone() for p in t.generator[2:].parameters()]
    notes = t.update(noise_dim=new_dim)
    assert notes and "first layer" in notes[0]
    assert t.generator[0].in_features == new_dim
    for p, q in zip(kept, t.generator[2:].parameters()):
        torch.testing.assert_close(p, q)
    assert t.sample(10).shape == (10, 2)
    t.run(1)  # the optimizer knows the new layer's parameters
    assert t.gen_steps == 2


def test_growing_noise_dim_keeps_the_generator_function():
    t = tiny()
    z = torch.randn(16, 2)
    with torch.no_grad():
        before = t.generator(z)
        t.update(noise_dim=4)  # new inputs start with zero weights
        after = t.generator(torch.cat([z, torch.randn(16, 2)], 1))
    torch.testing.assert_close(before, after)


def test_update_loss_switch_takes_the_new_defaults_and_keeps_weights():
    t = tiny(loss="wgan-gp")
    w = t.critic[0].weight.clone()
    t.update(lr_gen=2e-4)
    notes = t.update(loss="wgan", lr_gen=2e-4)  # given explicitly: kept, though unchanged
    assert notes
    c = t.config
    assert (c.clip, c.gp_lambda, c.lr_critic, c.lr_gen) == (0.01, 0.0, 5e-5, 2e-4)
    assert isinstance(t.opt_critic, torch.optim.RMSprop)
    assert t.opt_gen.param_groups[0]["lr"] == 2e-4
    torch.testing.assert_close(t.critic[0].weight, w)


def test_update_dataset_same_dim_keeps_weights_other_dim_restarts():
    t = tiny()
    t.run(1)
    w = t.generator[0].weight.clone()
    t.update(dataset="moons")
    torch.testing.assert_close(t.generator[0].weight, w)
    assert t.gen_steps == 1 and abs(t.real_pool.mean().item()) < 0.2
    t.update(dataset="gaussian-1d")
    assert t.gen_steps == 0 and t.config.noise_dim == 1 and t.sample(5).shape == (5, 1)


def test_update_rejects_bad_changes_and_keeps_the_config():
    t = tiny()
    before = t.config
    with pytest.raises(UserError):
        t.update(batch_size=0)
    with pytest.raises(UserError):
        t.update(momentum=0.9)
    assert t.config == before


# -- views ------------------------------------------------------------------------------------

def test_critic_field_matches_the_critic():
    t = tiny(loss="wgan")
    xs, ys, values = t.critic_field(grid_res=17)
    assert xs.shape == (17,) and ys.shape == (17,) and values.shape == (17, 17)
    with torch.no_grad():
        v = t.critic(torch.tensor([[xs[3], ys[11]]])).item()
    np.testing.assert_allclose(values[11, 3], v, rtol=1e-5, atol=1e-6)
    g = tiny(loss="gan").critic_field(grid_res=8)[2]
    assert (g > 0).all() and (g < 1).all()  # GAN: the discriminator's probability
    with pytest.raises(UserError):
        tiny(dataset="gaussian-1d").critic_field()


def test_critic_curve_for_1d():
    t = tiny(dataset="gaussian-1d")
    xs, values = t.critic_curve(50)
    assert xs.shape == values.shape == (50,)
    assert xs.min() < 0 and xs.max() > 4  # around N(2, 1)


def test_critic_gradients_match_finite_differences():
    t = tiny(loss="wgan-gp")
    pts = np.array([[0.3, -0.2], [1.0, 0.5]], dtype=np.float32)
    p, g = t.critic_gradients(pts)
    assert p.shape == g.shape == (2, 2)
    eps = 1e-2
    with torch.no_grad():
        for i in range(2):
            for j in range(2):
                d = np.zeros(2, np.float32)
                d[j] = eps
                hi = t.critic(torch.from_numpy(pts[i:i + 1] + d)).item()
                lo = t.critic(torch.from_numpy(pts[i:i + 1] - d)).item()
                np.testing.assert_allclose(g[i, j], (hi - lo) / (2 * eps), rtol=0.02, atol=1e-4)


def test_sample_is_fixed_noise_and_bounds_contain_the_data():
    t = tiny()
    np.testing.assert_array_equal(t.sample(64), t.sample(64))
    assert t.sample(64, fixed=False).shape == (64, 2)
    b = t.plot_bounds(np.full((10, 2), 100.0))  # a diverged generator stays framed
    real = t.real_pool.numpy()
    assert (b[:, 0] < real.min(0)).all() and (b[:, 1] > real.max(0)).all()
    assert (b[:, 1] < 20).all()
    np.testing.assert_allclose(b[0, 1] - b[0, 0], b[1, 1] - b[1, 0])  # square in 2D


# -- proof: WGAN-GP covers the 8 Gaussians ------------------------------------------------------

def test_modes_covered_counts_correctly():
    real = sample_dataset("8gaussians", 2000)
    assert modes_covered(real) == 8
    one_mode = real[np.linalg.norm(real - EIGHT_GAUSSIANS_CENTERS[0], axis=1) < 0.5]
    assert modes_covered(one_mode) == 1
    assert modes_covered(np.zeros((100, 2), np.float32)) == 0


def test_wgan_gp_covers_the_eight_gaussians():
    # ~10 s of one CPU core: the playground's 3x128 MLPs at batch 64 with gan_toy.py's toy
    # lambda 0.1; a fast toy learning rate, then a live decay to let the modes sharpen
    # (8/8 for seeds 0-7 in bench/toy_speed.py's sweep).
    t = ToyTrainer(ToyConfig(dataset="8gaussians", loss="wgan-gp", lr_critic=1e-3,
                             lr_gen=1e-3, gp_lambda=0.1, batch_size=64, seed=0))
    t.run(300)
    t.update(lr_critic=1e-4, lr_gen=1e-4)
    t.run(100)
    assert modes_covered(t.sample(2000, fixed=False)) >= 7


def test_wgan_gp_learns_the_1d_gaussian_with_the_toy_lambda():
    # The WGAN report's 1D task, at the playground's start settings (lr 1e-3, the toy's default
    # lambda 0.1). With the image default lambda 10 it fails: the generator shrinks to a spike
    # or drifts off (bench/toy_speed.py prints both lambdas).
    t = ToyTrainer(ToyConfig(dataset="gaussian-1d", loss="wgan-gp", lr_critic=1e-3,
                             lr_gen=1e-3, hidden=64, batch_size=128, seed=0))
    assert t.config.gp_lambda == 0.1
    t.run(300)
    x = t.sample(4000, fixed=False)[:, 0]
    assert abs(x.mean() - 2.0) < 0.3 and 0.7 < x.std() < 1.3


def test_run_together_keeps_lockstep_within_the_time_budget():
    a = ToyTrainer(ToyConfig(loss="wgan-gp", hidden=16, batch_size=8))
    b = ToyTrainer(ToyConfig(loss="gan", hidden=16, batch_size=8))
    assert run_together([a, b], 50, budget_s=0.0) == 1  # at least one iteration, then stop
    assert (a.gen_steps, b.gen_steps) == (1, 1) and a.critic_steps == 5
    assert run_together([a, b], 3, budget_s=60.0) == 3  # the budget never ran out
    assert a.gen_steps == b.gen_steps == 4


@pytest.mark.parametrize("dataset", ["8gaussians", "gaussian-1d"])
def test_side_by_side_panels_share_their_axes(dataset):
    """Compared losses on one scale: both panels' axes are the union of their ranges."""
    from ui.toy_plots import refresh_figures

    a, b = tiny(dataset=dataset, loss="wgan-gp"), tiny(dataset=dataset, loss="wgan")
    with torch.no_grad():   # b's generator far off to one side: its range is the wider one
        b.generator[-1].bias.add_(3.0)
    figs = refresh_figures([a, b])
    ranges = [tuple(f.layout.xaxis.range) for f in figs[::2]]
    assert ranges[0] == ranges[1]
    if a.dim == 2:
        assert tuple(figs[0].layout.yaxis.range) == tuple(figs[2].layout.yaxis.range)
