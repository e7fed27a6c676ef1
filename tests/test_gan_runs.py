"""core.gan.runs: a GAN run seen from outside: its presets are valid configs, its generator file
is found, its class read from the checkpoint, and its samples come back as quantised uint8
images of the size asked for, the same for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import checked
from core.data.config import DataConfig
from core.errors import CheckpointError
from conftest import saved_generator
from core.gan.models import CriticConfig, GeneratorConfig
from core.gan.runs import (PRESETS, resize_u8, run_checkpoint, run_class, sample_run, to_u8)
from core.gan.trainer import TrainConfig

SECTIONS = {"data": DataConfig, "generator": GeneratorConfig, "critic": CriticConfig,
            "train": TrainConfig}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_a_valid_config(preset):
    for key, values in PRESETS[preset].items():
        config = checked(SECTIONS[key], dict(values))   # ValueError naming a bad field
        for field, value in values.items():
            assert getattr(config, field) == (tuple(value) if isinstance(value, list) else value)


def test_cpu_tiny_is_the_small_one():
    tiny, gpu = PRESETS["cpu-tiny"], PRESETS["gpu"]
    assert tiny["data"]["size"] < gpu["data"]["size"]
    assert tiny["train"]["steps"] < gpu["train"]["steps"]


def test_run_checkpoint_finds_the_generator_file(tmp_path):
    with pytest.raises(CheckpointError, match="no generator checkpoint"):
        run_checkpoint(tmp_path)
    flat = tmp_path / "latest.safetensors"
    flat.write_bytes(b"x")
    assert run_checkpoint(tmp_path) == flat
    nested = tmp_path / "checkpoints" / "latest.safetensors"
    nested.parent.mkdir()
    nested.write_bytes(b"x")
    assert run_checkpoint(tmp_path) == nested   # a run directory's own place first
    assert run_checkpoint(flat) == flat         # a file is itself


@pytest.mark.parametrize("meta,cls", [
    ({"class": "COVID-19", "classes": ["NORMAL"]}, "COVID-19"),
    ({"data": {"classes": ["PNEUMONIA"]}}, "PNEUMONIA"),
    ({"classes": ("NORMAL",)}, "NORMAL"),
    ({"data": {"classes": ["NORMAL", "COVID-19"]}}, None),   # two classes: no one class
    ({"data": "not a dict", "classes": "COVID-19"}, None),
    ({}, None),
])
def test_run_class(meta, cls):
    assert run_class(meta) == cls


def test_to_u8_quantises_like_a_real_image():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).reshape(1, 1, 1, 5)
    out = to_u8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 1, 5)
    assert out.ravel().tolist() == [0, 0, 128, 255, 255]


def test_resize_u8():
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    assert resize_u8(images, 16) is images
    out = resize_u8(images, 8)
    assert out.shape == (3, 1, 8, 8) and out.dtype == np.uint8
    flat = np.full((1, 1, 16, 16), 77, np.uint8)
    assert np.all(resize_u8(flat, 32) == 77)   # a flat image stays flat at any size


@pytest.fixture
def tiny_run(tmp_path):
    return saved_generator(tmp_path / "gan-run", {"classes": ["COVID-19"], "loss": "wgan-gp",
                                                  "step": 2}, size=16, width=0.0625)


def test_sample_run_on_a_tiny_saved_generator(tiny_run):
    images, meta, cls = sample_run(tiny_run, 5, seed=3)
    assert images.shape == (5, 1, 16, 16) and images.dtype == np.uint8
    assert images.std() > 0   # not a blank grid
    assert meta["loss"] == "wgan-gp" and meta["step"] == 2 and cls == "COVID-19"
    again, _, _ = sample_run(tiny_run / "checkpoints" / "latest.safetensors", 5, seed=3)
    assert np.array_equal(images, again)   # same seed, same images
    other, _, _ = sample_run(tiny_run, 5, seed=4)
    assert not np.array_equal(images, other)
    big, _, _ = sample_run(tiny_run, 2, seed=3, size=32)
    assert big.shape == (2, 1, 32, 32)
    none, _, _ = sample_run(tiny_run, 0)
    assert none.shape == (0, 1, 16, 16)


def test_sample_run_of_a_run_without_a_generator(tmp_path):
    with pytest.raises(CheckpointError):
        sample_run(tmp_path, 2)
