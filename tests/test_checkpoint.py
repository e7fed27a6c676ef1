"""Checkpoints: round trip, kind check, and refusal of corrupt or code-carrying files."""

import os

import pytest
import torch

from core.checkpoint import (load_into, load_model, load_training_state, read_meta, save_model,
                             save_training_state)
from core.errors import CheckpointError


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))


def test_model_round_trip_keeps_tensors_and_meta(tmp_path):
    net = _net()
    path = save_model(tmp_path / "m.safetensors", net.state_dict(), {"kind": "generator", "config": {"size": 32}})
    state, meta = load_model(path, kind="generator")
    assert meta == {"kind": "generator", "config": {"size": 32}}
    other = _net()
    load_into(other, state)
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp")), "atomic write left a temp file behind"


def test_wrong_kind_and_mismatched_weights_are_clear_errors(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _net().state_dict(), {"kind": "generator"})
    with pytest.raises(CheckpointError, match="not a 'classifier'"):
        load_model(path, kind="classifier")
    state, _ = load_model(path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_into(torch.nn.Linear(2, 2), state)


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        read_meta(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_training_state_round_trip_and_pickled_code_refused(tmp_path):
    net = _net()
    opt = torch.optim.Adam(net.parameters())
    state = {"step": 7, "optim": opt.state_dict(), "rng": torch.get_rng_state()}
    loaded = load_training_state(save_training_state(tmp_path / "s.pt", state))
    assert loaded["step"] == 7 and torch.equal(loaded["rng"], state["rng"])

    torch.save({"x": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        load_training_state(tmp_path / "evil.pt")
