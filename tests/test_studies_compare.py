"""core.studies.compare: the feature CNN, and a whole GAN / WGAN / WGAN-GP comparison on digits with tiny
networks and two steps each (seconds on a CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from core.studies import compare as cmp
from core.data.config import DataConfig
from core.data.dataset import ImageDataset
from core.errors import UserError
from core.gan.trainer import TrainConfig
from core.gan.models import CriticConfig, GeneratorConfig


def tiny_configs(size: int = 16):
    data = DataConfig(source="digits", size=size)
    gen = GeneratorConfig(size=size, latent_dim=16, width=0.125)
    critic = CriticConfig(size=size, width=0.25)
    train = TrainConfig(steps=2, batch_size=4, log_every=1, sample_every=2, checkpoint_every=2,
                        n_samples=4, compile="off", device="cpu", seed=3)
    return data, gen, critic, train


def tiny_compare_config(**kw) -> cmp.CompareConfig:
    return cmp.CompareConfig(**{"n_eval": 40, "feature_epochs": 1, "feature_max_images": 300,
                                "kid_subsets": 5, **kw})


def test_feature_size_is_a_multiple_of_eight():
    assert [cmp.feature_size(s) for s in (8, 16, 28, 32, 33)] == [16, 16, 32, 32, 40]


def test_feature_net_learns_digit_labels():
    from core.data.natural import load

    ds = load("digits", DataConfig(size=16))
    config = cmp.CompareConfig(feature_epochs=3, feature_max_images=800)
    model, info = cmp.train_feature_net(ds, config, "cpu")
    assert info["task"] == "classes" and info["n_classes"] == 10 and info["size"] == 16
    # Three epochs on 640 digits is far above the 10% chance level (0.69 measured).
    assert info["val_accuracy"] > 0.5 > info["chance"]
    assert not model.training


def test_feature_net_on_one_class_uses_rotations():
    rng = np.random.default_rng(0)
    images = np.zeros((40, 1, 12, 12), np.uint8)
    images[:, :, 2:6, 2:9] = rng.integers(150, 255, (40, 1, 4, 7))     # an asymmetric bar
    ds = ImageDataset(images, np.zeros(40), ["bars"])
    model, info = cmp.train_feature_net(ds, cmp.CompareConfig(feature_epochs=1), "cpu")
    assert info["task"] == "rotation" and info["n_classes"] == 4 and info["size"] == 16
    assert model.head.out_features == 4


def test_unknown_loss_is_a_user_error(tmp_path):
    data, gen, critic, train = tiny_configs()
    with pytest.raises(UserError, match="unknown loss"):
        cmp.compare(tmp_path, data, gen, critic, train, cmp.CompareConfig(losses=("gan", "lsgan")))


def test_compare_writes_one_table_with_finite_numbers(tmp_path):
    data, gen, critic, train = tiny_configs()
    seen = []
    result = cmp.compare(tmp_path, data, gen, critic, train, tiny_compare_config(),
                         progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert [r["loss"] for r in saved["rows"]] == ["gan", "wgan", "wgan-gp"]
    for row in saved["rows"]:
        assert row["state"] == "finished" and row["steps"] == 2
        for key in ("wall_s", "train_s", "images_per_s", "relative_fd", "fd_fake_vs_real_a",
                    "kid", "precision", "recall", "c2st_accuracy"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (row["loss"], key)
        assert row["relative_fd"] > 0 and row["n_real"] == 40 and row["n_fake"] == 40
        assert (tmp_path / row["loss"] / "samples" / "step_0000002.png").is_file()
    # Paper settings per loss with one shared seed and budget.
    by = {r["loss"]: r for r in saved["rows"]}
    assert (by["gan"]["n_critic"], by["wgan"]["n_critic"], by["wgan-gp"]["n_critic"]) == (1, 5, 5)
    assert by["wgan"]["critic_steps"] == 10 and by["wgan"]["clip"] == 0.01
    assert saved["train"]["seed"] == 3 and result["features"]["task"] == "classes"
    assert math.isfinite(saved["kid_real_b_vs_real_a"])
    table = (tmp_path / "compare.md").read_text()
    assert table.count("| finished |") == 3 and "relative FD" in table
    with Image.open(tmp_path / "compare.png") as im:
        assert im.width > 4 * 6 * 16  # four panels (real + three losses) of 6 x 6 images
    assert (tmp_path / "features.safetensors").is_file()


def test_cli_runs_one_loss(tmp_path, capsys):
    from core.__main__ import main

    rc = main(["compare", "--data", "digits", "--losses", "gan", "--steps", "1", "--size", "16",
               "--run-dir", str(tmp_path), "--preset", "cpu-tiny", "--batch-size", "4",
               "--device", "cpu", "--n-eval", "30", "--feature-epochs", "1", "--seed", "1"])
    assert rc == 0
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["loss"] for r in rows] == ["gan"]
    # --hparams paper (the default) replaces the preset's learning rate by the GAN paper's.
    assert rows[0]["lr_critic"] == 2e-4 and rows[0]["optimizer"] == "adam"
    assert "| gan | finished | 1 |" in capsys.readouterr().out
    # Every digit trains, as for the table in docs/results.md: the held-out check is opt-in here.
    assert json.loads((tmp_path / "gan" / "status.json").read_text())["heldout_images"] == 0


def test_table_shows_a_failed_run_as_na():
    result = {"features": {"dim": 8, "task": "classes", "n_train": 10, "epochs": 1, "seconds": 0.1,
                           "val_accuracy": 0.9, "chance": 0.1},
              "data": {"source": "digits", "size": 16}, "generator": {"channels": 1},
              "train": {"seed": 0}, "n_real": 10,
              "rows": [{"loss": "wgan", "state": "failed", "steps": 0, "critic_steps": 0,
                        "wall_s": 1.0, "batch_size": 4, "optimizer": "rmsprop", "lr_critic": 5e-5,
                        "lr_gen": 5e-5, "n_critic": 5, "clip": 0.01, "gp_lambda": 0.0}]}
    table = cmp.format_table(result)
    assert "| wgan | failed | 0 | 0 | 1.0 | n/a |" in table
