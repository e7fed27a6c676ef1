"""The GAN training job: one step of each loss with finite metrics, live control, exact resume,
the non-finite guard, failures, the CLI and a 2-process DDP run on CPU (gloo). Tiny nets (8-16
filters, 16 px, batch 4) so the file runs in seconds."""

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.runs import control
from core.gan import runs as gan_runs
from core.gan import losses
from core.gan import job as gt
from core.checkpoint import load_training_state, read_meta
from core.data.config import DataConfig
from core.data.dataset import ImageDataset
from core.data.sources import select_classes
from core.errors import UserError
from core.gan.trainer import TrainConfig
from core.gan.models import CriticConfig, GeneratorConfig, load_generator
from core.runs.store import RunStore

REPO = Path(__file__).resolve().parent.parent
SIZE = 16
EXPECTED = {"loss/critic", "loss/gen", "wgan/w_estimate", "d/real_mean", "d/fake_mean",
            "time/step_s", "throughput/img_s", "live/lr_critic", "live/lr_gen", "live/gp_lambda",
            "live/n_critic", "live/clip"}
GP_NAMES = {"wgan/gp", "wgan/grad_norm_mean", "wgan/grad_norm_std"}


@pytest.fixture(autouse=True)
def _tiny_world(monkeypatch):
    # Tiny nets on a shared 2-core machine: one thread avoids OpenMP oversubscription stalls.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    dataset = ImageDataset(rng.integers(0, 256, (24, SIZE, SIZE), dtype=np.uint8),
                           np.zeros(24, dtype=int), ["NORMAL"])
    monkeypatch.setattr(gan_runs, "load_dataset", lambda config, download=False: dataset)
    monkeypatch.setitem(control._SIGNALLED, "stop", False)
    yield
    torch.set_num_threads(n)


def configs(**train):
    gen = GeneratorConfig(latent_dim=8, size=SIZE, filters=(16, 8), width=1.0)
    critic = CriticConfig(size=SIZE, filters=(8, 16, 16), width=1.0)
    base = dict(loss="wgan-gp", steps=2, batch_size=4, n_critic=2, log_every=1, sample_every=2,
                checkpoint_every=2, n_samples=4, seed=3)
    return DataConfig(size=SIZE), gen, critic, TrainConfig(**{**base, **train})


def run(path, resume=False, progress=None, **train) -> tuple[str, RunStore]:
    store = RunStore(path, create=True)
    state = gt.train(store, *configs(**train), resume=resume, progress=progress)
    return state, RunStore(path)


# ---- training runs -------------------------------------------------------------------------

def test_heldout_check_scores_unseen_images_with_each_grid(tmp_path):
    # 24 one-image patients, 40% asked: a 2-fold split holds out 12.
    state, store = run(tmp_path / "ho", steps=2, holdout=0.4)
    assert state == "finished" and store.status()["heldout_images"] == 12
    assert store.status()["training_images"] == 12 and store.status()["holdout"] == 0.4
    wide = store.metrics_wide()
    names = ["heldout/w_train", "heldout/w_heldout", "heldout/gap"]
    assert wide[names].dropna().index.tolist() == [0, 2]            # with the grids at 0 and 2
    assert wide.loc[2, names].map(math.isfinite).all()
    assert wide.loc[2, "heldout/gap"] == pytest.approx(
        wide.loc[2, "heldout/w_train"] - wide.loc[2, "heldout/w_heldout"], abs=1e-6)
    # The default 5% of 24 images is too few to score: no check, every image trains.
    assert "heldout/gap" not in run(tmp_path / "off", steps=1)[1].metric_names()


def test_heldout_images_are_kept_out_of_training(tmp_path):
    data, gen, critic, train = configs(holdout=0.4)
    images, held, _ = gan_runs.load_images(data, gen, train)
    assert (len(images), len(held)) == (12, 12)
    seen = {bytes(x.numpy()) for x in images}
    assert not seen & {bytes(x.numpy()) for x in held}


def test_heldout_check_measures_seen_minus_unseen():
    # A "critic" that returns the mean pixel: white training images score 1, black held-out -1.
    from core.gan.trainer import GanTrainer

    _, gen, critic, train = configs()
    white = torch.full((6, 1, SIZE, SIZE), 255, dtype=torch.uint8)
    black = torch.zeros(4, 1, SIZE, SIZE, dtype=torch.uint8)
    trainer = GanTrainer(gen, critic, train, white, torch.device("cpu"))
    trainer.D = _MeanPixel()
    values = gt._HeldOutCheck(trainer, black, seed=0).measure(trainer)
    assert values["heldout/gap"] == pytest.approx(2.0)
    assert values["heldout/w_train"] - values["heldout/w_heldout"] == pytest.approx(2.0)


class _MeanPixel(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(1, 2, 3))


def test_resuming_a_run_from_before_the_check_keeps_every_image(tmp_path, monkeypatch):
    assert run(tmp_path / "old", steps=1)[0] == "finished"
    store = RunStore(tmp_path / "old")
    header = store.header()
    del header.configs["train"]["holdout"]             # as written before the check existed
    # ... and in the layout of config.json then (core.runs.header reads it).
    store.write_header_json({"kind": "gan", **header.configs, **header.info})
    seen = {}

    def fake_train(store, data, gen, critic, tc, resume, download=False, keep_control=False):
        seen["tc"] = tc
        return "finished"

    monkeypatch.setattr(gt, "train", fake_train)
    gt.main(_parse(["--run-dir", str(tmp_path / "old"), "--resume", "--steps", "2"]))
    assert seen["tc"].holdout == 0.0 and seen["tc"].steps == 2


@pytest.mark.parametrize("loss", ["gan", "wgan", "wgan-gp"])
def test_one_step_of_each_loss_logs_finite_metrics(tmp_path, loss):
    state, store = run(tmp_path / loss, loss=loss, steps=1)
    assert state == "finished"
    status = store.status()
    assert (status["state"], status["step"], status["total_steps"], status["path"]) == ("finished", 1, 1, "eager")
    metrics = store.metrics()
    names = set(metrics["name"])
    assert EXPECTED <= names
    assert (GP_NAMES <= names) == (loss == "wgan-gp")
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics["value"])
    wide = store.metrics_wide()
    assert wide.loc[1, "live/n_critic"] == 2 and wide.loc[1, "live/gp_lambda"] == (10.0 if loss == "wgan-gp" else 0.0)
    # Real values, not placeholders: BCE losses are positive; W estimate = real mean - fake mean.
    assert wide.loc[1, "loss/gen"] != 0 and wide.loc[1, "loss/critic"] != 0
    if loss == "gan":
        assert wide.loc[1, "loss/gen"] > 0 and wide.loc[1, "loss/critic"] > 0
    assert wide.loc[1, "wgan/w_estimate"] == pytest.approx(wide.loc[1, "d/real_mean"] - wide.loc[1, "d/fake_mean"], abs=1e-6)
    assert [s for s, _ in store.samples()] == [0, 1]
    # The snapshot alone rebuilds a generator that makes images of the run's size.
    gen, meta = load_generator(store.checkpoints_dir / "latest.safetensors")
    assert meta["loss"] == loss and meta["step"] == 1 and meta["classes"] == ["NORMAL"]
    assert gen(torch.randn(2, 8)).shape == (2, 1, SIZE, SIZE)


def test_wgan_clipping_bounds_the_critic(tmp_path):
    state, store = run(tmp_path / "clip", loss="wgan", clip=0.02, lr_critic=0.5, steps=1)
    assert state == "finished"
    critic = load_training_state(store.checkpoints_dir / gt.STATE_FILE)["critic"]
    biggest = max(t.abs().max().item() for t in critic.values())
    assert 0.015 < biggest <= 0.02   # clipped, and the large lr really pushed weights to the bound


def test_live_control_is_applied_and_recorded(tmp_path):
    store_path = tmp_path / "live"

    def steer(step, total, metrics):
        if step == 1:
            RunStore(store_path).send_control(gp_lambda=3.0, n_critic=1, lr_gen=5e-4, sample_now=True)

    state, store = run(store_path, steps=3, sample_every=10, progress=steer)
    assert state == "finished"
    wide = store.metrics_wide()
    assert wide.loc[1, "live/gp_lambda"] == 10.0 and wide.loc[1, "live/n_critic"] == 2
    assert wide.loc[2, "live/gp_lambda"] == 3.0 and wide.loc[2, "live/n_critic"] == 1
    assert wide.loc[2, "live/lr_gen"] == 5e-4
    events = store.events("control")
    assert len(events) == 1 and events.iloc[0]["step"] == 2
    assert events.iloc[0]["payload"] == {"gp_lambda": 3.0, "n_critic": 1, "lr_gen": 5e-4, "by": {
        "gp_lambda": "command line", "n_critic": "command line", "lr_gen": "command line"}}
    assert len(store.events("sample")) == 1 and 1 in [s for s, _ in store.samples()]
    # The values in force are published for every reader (the sliders of every session).
    live = store.status()["live"]
    assert live["gp_lambda"] == 3.0 and live["n_critic"] == 1 and live["lr_gen"] == 5e-4


def test_invalid_control_is_rejected_not_fatal(tmp_path):
    store_path = tmp_path / "bad-control"
    state, store = run(store_path, steps=2,
                       progress=lambda s, t, m: s == 1 and RunStore(store_path).send_control(n_critic=0))
    assert state == "finished"
    assert len(store.events("control-rejected")) == 1 and len(store.events("control")) == 0


def test_pause_resume_and_stop_from_control(tmp_path):
    path = tmp_path / "stop"
    seen = []

    def later():
        seen.append(RunStore(path).status()["state"])     # while paused
        RunStore(path).send_control(paused=False)
        threading.Timer(0.5, lambda: RunStore(path).send_control(stop=True)).start()

    def pause_at_1(step, total, metrics):
        if step == 1:
            RunStore(path).send_control(paused=True)
            threading.Timer(0.6, later).start()

    state, store = run(path, steps=2000, progress=pause_at_1)
    assert seen == ["paused"]
    assert state == "stopped" and store.status()["state"] == "stopped"
    paused, resumed = store.events("paused"), store.events("resumed")
    assert list(paused["step"]) == [1] and list(resumed["step"]) == [1]
    stopped_at = load_training_state(store.checkpoints_dir / gt.STATE_FILE)["step"]
    assert stopped_at > 1 and store.status()["step"] == stopped_at   # it ran again after resuming


def test_sigterm_stops_with_a_checkpoint(tmp_path):
    def signal_at_1(step, total, metrics):
        if step == 1:
            control._on_sigterm(15, None)

    state, store = run(tmp_path / "term", steps=5, progress=signal_at_1)
    assert state == "stopped"
    assert load_training_state(store.checkpoints_dir / gt.STATE_FILE)["step"] == 1


@pytest.mark.parametrize("holdout", [0.05, 0.4])   # off (too few images), on: the same split
def test_resume_continues_exactly(tmp_path, holdout):
    straight_state, straight = run(tmp_path / "straight", steps=4, holdout=holdout)
    assert straight_state == "finished"
    assert run(tmp_path / "split", steps=2, holdout=holdout)[0] == "finished"
    # Metrics logged past the checkpoint (a crash after step 2) must be dropped on resume.
    RunStore(tmp_path / "split").log_metrics(3, {"loss/critic": 123.0})
    RunStore(tmp_path / "split").send_control(stop=True)     # a stale stop must not end the resume
    state, split = run(tmp_path / "split", resume=True, steps=4, holdout=holdout)
    assert state == "finished" and split.status()["step"] == 4
    a, b = straight.metrics_wide(), split.metrics_wide()
    assert list(a.index) == list(b.index) == ([1, 2, 3, 4] if holdout < 0.1 else [0, 1, 2, 3, 4])
    names = [n for n in a.columns if not n.startswith(("time/", "throughput/"))]
    np.testing.assert_allclose(a.loc[4, names].to_numpy(float), b.loc[4, names].to_numpy(float), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.loc[3, names].to_numpy(float), b.loc[3, names].to_numpy(float), rtol=1e-5, atol=1e-6)
    # The fixed-z progression continues: the same images at step 4.
    assert straight.sample_path(4).read_bytes() == split.sample_path(4).read_bytes()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    assert run(tmp_path / "nan", steps=2, checkpoint_every=1)[0] == "finished"
    store = RunStore(tmp_path / "nan")
    before = (store.checkpoints_dir / "latest.safetensors").read_bytes()
    monkeypatch.setattr(losses, "wgan_generator_loss", lambda scores: scores.mean() * float("nan"))
    state, store = run(tmp_path / "nan", resume=True, steps=5, checkpoint_every=1)
    assert state == "failed"
    status = store.status()
    assert status["state"] == "failed" and "non-finite" in status["reason"]
    assert load_training_state(store.checkpoints_dir / gt.STATE_FILE)["step"] == 2
    assert (store.checkpoints_dir / "latest.safetensors").read_bytes() == before
    assert read_meta(store.checkpoints_dir / "latest.safetensors")["step"] == 2
    assert store.metrics()["step"].max() == 2      # nothing logged from the bad step


def test_training_exception_sets_failed_with_message(tmp_path, monkeypatch):
    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gt.GanTrainer, "step", boom)
    state, store = run(tmp_path / "boom")
    assert state == "failed"
    assert "disk on fire" in store.status()["reason"]


def test_user_errors_fail_the_run_and_reach_the_caller(tmp_path):
    store = RunStore(tmp_path / "mismatch", create=True)
    data, gen, critic, train = configs()
    with pytest.raises(UserError, match="generator makes"):
        gt.train(store, data, GeneratorConfig(latent_dim=8, size=32, filters=(8,)), critic, train)
    assert store.status()["state"] == "failed"


def test_compile_error_falls_back_to_eager(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="training eagerly"):
        state, store = run(tmp_path / "fallback", steps=1, compile="on")
    status = store.status()
    assert state == "finished" and status["path"] == "eager"
    assert "no compiler here" in status["compile_error"]


def test_class_filter_trains_on_the_chosen_class(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    two = ImageDataset(rng.integers(0, 256, (10, SIZE, SIZE), dtype=np.uint8),
                       np.array([0] * 4 + [1] * 6), ["COVID-19", "NORMAL"])
    # The real class filter (core.data.sources.select_classes) on a small in-memory source.
    monkeypatch.setattr(gan_runs, "load_dataset", lambda config, download=False: select_classes(two, config.classes))
    data, gen, critic, train = configs(steps=1)
    store = RunStore(tmp_path / "covid", create=True)
    seen = {}
    real_init = gt.GanTrainer.__init__

    def spy(self, gen_config, critic_config, config, images, *args, **kwargs):
        seen["n"] = len(images)
        real_init(self, gen_config, critic_config, config, images, *args, **kwargs)

    monkeypatch.setattr(gt.GanTrainer, "__init__", spy)
    covid = DataConfig(size=SIZE, classes=("COVID-19",))
    assert gt.train(store, covid, gen, critic, train) == "finished"
    assert seen["n"] == 4
    assert read_meta(store.checkpoints_dir / "latest.safetensors")["classes"] == ["COVID-19"]
    with pytest.raises(UserError, match="not in this data"):
        gt.train(store, DataConfig(size=SIZE, classes=("PNEUMONIA",)), gen, critic, train)


# ---- the generator's weight average and the DiffAugment default ------------------------------

def _tensors(path, raw=False):
    return load_generator(path, raw=raw)[0].state_dict()


def test_resume_continues_the_weight_average_exactly(tmp_path):
    # decay 0.5 without warm-up: after 3 steps the average is far from both ends.
    ema = dict(ema_decay=0.5, ema_rampup=0.0, sample_every=1)
    assert run(tmp_path / "straight", steps=3, **ema)[0] == "finished"
    assert run(tmp_path / "split", steps=2, **ema)[0] == "finished"
    RunStore(tmp_path / "split").raw_sample_path(5).write_bytes(b"")   # past the checkpoint
    state, split = run(tmp_path / "split", resume=True, steps=3, **ema)
    assert state == "finished"
    straight = RunStore(tmp_path / "straight")
    a, b = (s.checkpoints_dir / "latest.safetensors" for s in (straight, split))
    assert read_meta(a)["weights"] == "ema" and read_meta(a)["ema_decay"] == 0.5
    for raw in (False, True):
        for key, value in _tensors(a, raw).items():
            torch.testing.assert_close(_tensors(b, raw)[key], value, rtol=0, atol=0)
    trained = load_training_state(a.parent / gt.STATE_FILE)
    assert trained["generator_ema"]["updates"] == 3
    # The snapshot samples with the average, not with the raw weights.
    assert not torch.equal(_tensors(a)["fc.weight"], _tensors(a, raw=True)["fc.weight"])
    assert torch.equal(_tensors(a, raw=True)["fc.weight"], trained["generator"]["fc.weight"])
    # Grids: the average's at sample_path, the raw generator's beside it, listed apart.
    assert [s for s, _ in split.samples()] == [0, 1, 2, 3]
    assert [s for s, _ in split.raw_samples()] == [0, 1, 2, 3]
    assert straight.raw_sample_path(3).read_bytes() == split.raw_sample_path(3).read_bytes()
    assert straight.sample_path(3).read_bytes() == split.sample_path(3).read_bytes()
    assert split.sample_path(3).read_bytes() != split.raw_sample_path(3).read_bytes()


def test_a_state_without_the_average_still_resumes(tmp_path):
    assert run(tmp_path / "old", steps=1)[0] == "finished"
    store = RunStore(tmp_path / "old")
    path = store.checkpoints_dir / gt.STATE_FILE
    state = load_training_state(path)
    del state["generator_ema"]                         # as saved before the average existed
    torch.save(state, path)
    assert run(tmp_path / "old", resume=True, steps=2)[0] == "finished"
    assert load_training_state(path)["generator_ema"]["updates"] == 1   # restarted at step 1


def test_decay_zero_trains_without_an_average(tmp_path):
    state, store = run(tmp_path / "raw", steps=2, ema_decay=0.0)
    assert state == "finished" and store.raw_samples() == []
    latest = store.checkpoints_dir / "latest.safetensors"
    assert read_meta(latest)["weights"] == "raw"
    assert "generator_ema" not in load_training_state(store.checkpoints_dir / gt.STATE_FILE)
    # raw=True on a snapshot without an average: the same (raw) weights.
    assert torch.equal(_tensors(latest)["fc.weight"], _tensors(latest, raw=True)["fc.weight"])


def test_a_run_from_before_the_average_resumes_without_one(tmp_path):
    assert run(tmp_path / "old", steps=1, ema_decay=0.0, diffaugment="")[0] == "finished"
    store = RunStore(tmp_path / "old")
    header = store.header()
    for key in ("ema_decay", "ema_rampup", "diffaugment"):   # as written before they existed
        del header.configs["train"][key]
    store.write_header_json({"kind": "gan", **header.configs, **header.info})
    *_, train = gan_runs.saved_configs(RunStore(tmp_path / "old").header())
    assert train.ema_decay == 0.0 and train.diffaugment == ""


def test_diffaugment_auto_records_its_choice(tmp_path, monkeypatch):
    from core.gan import diffaugment

    state, store = run(tmp_path / "small", steps=1)     # 24 images, the default "auto"
    assert state == "finished"
    assert store.header().configs["train"]["diffaugment"] == diffaugment.AUTO_POLICY
    monkeypatch.setattr(diffaugment, "AUTO_BELOW", 24)   # 24 training images: not below it
    state, store = run(tmp_path / "large", steps=1)
    assert store.header().configs["train"]["diffaugment"] == ""


# ---- CLI and DDP ------------------------------------------------------------------------------

def _parse(argv):
    import argparse
    parser = argparse.ArgumentParser()
    gt.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_flags_override_the_preset():
    args = _parse(["--data", "phantom:5", "--preset", "cpu-tiny", "--loss", "wgan", "--steps", "7",
                   "--critic-norm", "layer", "--gen-latent-dim", "32", "--betas", "0.5,0.99",
                   "--run-dir", "x"])
    data, gen, critic, train = gt.configs_from_args(args)
    assert data.source == "phantom:5" and data.size == gen.size == critic.size == 32
    assert (train.loss, train.steps, train.batch_size, train.betas) == ("wgan", 7, 16, (0.5, 0.99))
    assert critic.norm == "layer" and gen.latent_dim == 32
    assert gen.width == gan_runs.PRESETS["cpu-tiny"]["generator"]["width"]


def test_flags_and_overrides_build_the_same_run():
    # The command line and the pages build a run through one function (build_configs).
    args = _parse(["--data", "phantom:5", "--preset", "cpu-tiny", "--loss", "wgan", "--gp-lambda",
                   "3", "--data-split", "train", "--width", "0.25", "--size", "64", "--run-dir", "x"])
    overrides = {"data": {"source": "phantom:5", "split": "train", "size": 64},
                 "generator": {"width": 0.25}, "critic": {"width": 0.25},
                 "train": {"loss": "wgan", "gp_lambda": 3.0}}
    assert gt.configs_from_args(args) == gt.build_configs("cpu-tiny", overrides)


def test_from_config_starts_the_run_its_config_json_describes(tmp_path):
    configs = gt.build_configs("cpu-tiny", {"data": {"source": "phantom:4", "size": SIZE},
                                            "train": {"steps": 1, "batch_size": 4, "holdout": 0.0,
                                                      "sample_every": 1}})
    store = RunStore(tmp_path / "run", create=True)
    store.write_header(gt.header(configs))
    assert gt.main(_parse(["--run-dir", str(store.path), "--from-config"])) == 0
    assert store.status()["state"] == "finished" and store.header().info["classes"]
    with pytest.raises(UserError, match="as it is; leave out --steps"):
        gt.main(_parse(["--run-dir", str(store.path), "--from-config", "--steps", "2"]))
    with pytest.raises(UserError, match="exclude each other"):
        gt.main(_parse(["--run-dir", str(store.path), "--from-config", "--resume"]))
    (store.path / "config.json").write_text('{"command": "train-gan", "configs": {"data": 3}}')
    with pytest.raises(UserError, match="cannot start from its config.json"):
        gt.main(_parse(["--run-dir", str(store.path), "--from-config"]))


def test_cli_resume_without_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        gt.main(_parse(["--run-dir", str(tmp_path / "missing"), "--resume"]))
    RunStore(tmp_path / "empty", create=True)
    with pytest.raises(UserError, match="no checkpoint"):
        gt.main(_parse(["--run-dir", str(tmp_path / "empty"), "--resume"]))


def _tiny_cli(run_dir):
    return ["--data", "phantom:2", "--size", "32", "--steps", "2", "--batch-size", "4",
            "--n-critic", "1", "--gen-filters", "8", "--gen-latent-dim", "8", "--critic-filters", "4,8",
            "--log-every", "1", "--sample-every", "2", "--checkpoint-every", "2", "--n-samples", "4",
            "--run-dir", str(run_dir)]


def test_ddp_two_processes_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "core", "train-gan", *_tiny_cli(tmp_path / "ddp"),
           "--data", "phantom:7", "--holdout", "0.4"]          # 21 one-image patients: 2 folds
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    store = RunStore(tmp_path / "ddp")
    status = store.status()
    assert status["state"] == "finished" and status["world_size"] == 2 and status["step"] == 2
    assert store.header().info["world_size"] == 2
    assert (store.checkpoints_dir / "latest.safetensors").is_file()
    # Rank 0 alone wrote: one row per name and step (the held-out check with the grids at 0 and 2).
    assert set(store.metrics()["step"]) == {0, 1, 2} and status["heldout_images"] == 11
    assert len(store.metrics()) == 2 * len(set(store.metrics()["name"]))


@pytest.mark.slow
def test_compiled_path_on_cpu_trains(tmp_path):
    # torch.compile on CPU (inductor + a C++ compiler) takes minutes on 2 cores, hence slow.
    state, store = run(tmp_path / "compiled", steps=2, compile="on")
    assert state == "finished"
    assert store.status()["path"] == "compiled", store.status().get("compile_error")
    assert all(math.isfinite(v) for v in store.metrics()["value"])
