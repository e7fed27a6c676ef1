"""core.device: which devices this machine has, the one picked, a device it lacks as one clear
line, the device's name long and short, and the CPU load of other processes."""

from __future__ import annotations

import pytest
import torch

from core import device
from core.errors import UserError


def test_the_cpu_is_always_available_and_nonsense_never():
    assert device.available("cpu") and device.available("auto")
    assert not device.available("toaster") and not device.available("cuda:x")
    assert not device.available(f"cuda:{torch.cuda.device_count()}")   # one past the last GPU


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.pick_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: True)
        assert device.pick_device() == torch.device("mps")
        monkeypatch.setattr(mps, "is_available", lambda: False)
    assert device.pick_device() == torch.device("cpu")
    assert device.pick_device("cpu") == torch.device("cpu")


def test_a_device_this_machine_lacks_is_a_user_error():
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(UserError, match=rf"device '{missing}' is not available on this machine"):
        device.pick_device(missing)
    with pytest.raises(UserError):
        device.pick_device("toaster")


def test_describe_the_cpu(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert device.describe(torch.device("cpu")) == "CPU (1 thread)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert device.describe(torch.device("cpu")) == "CPU (4 threads)"
    assert device.describe(torch.device("mps")) == "Apple GPU (mps)"


@pytest.mark.parametrize("text,world,short", [
    ("NVIDIA H100 80GB HBM3 (cuda)", None, "H100"),
    ("NVIDIA GeForce RTX 4090 (cuda)", None, "RTX 4090"),
    ("NVIDIA A100-SXM4-80GB (cuda)", None, "A100"),
    ("CPU (2 threads)", None, "CPU ×2"),
    ("CPU (1 thread)", 1, "CPU ×1"),
    ("Apple GPU (mps)", None, "MPS"),
    ("NVIDIA H100 80GB HBM3 (cuda)", 2, "2× H100"),
    ("something else", None, "something else"),
])
def test_short_names_for_a_table(text, world, short):
    assert device.short_name(text, world) == short


def test_other_cpu_load_needs_two_samples():
    load = device.OtherCpuLoad()
    first = load.sample()
    second = load.sample()
    assert first is None
    try:
        open("/proc/stat").close()
    except OSError:
        assert second is None
        return
    assert second is None or second >= 0.0   # None only when the clock did not move
