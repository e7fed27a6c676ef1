"""Dataclass config helpers: dict round trip, unknown keys ignored, CLI flags override a preset."""

import argparse
from dataclasses import dataclass, field

from core.config import add_arguments, from_dict, override, to_dict


@dataclass
class Inner:
    width: float = 1.0


@dataclass
class Outer:
    steps: int = 10
    betas: tuple[float, float] = (0.0, 0.9)
    name: str | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_round_trip_and_unknown_keys():
    cfg = Outer(steps=3, betas=(0.5, 0.999), inner=Inner(0.25))
    data = to_dict(cfg)
    assert data["betas"] == [0.5, 0.999]
    assert from_dict(Outer, {**data, "removed_field": 1}) == cfg


def test_flags_override_only_what_was_given():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Outer)
    args = parser.parse_args(["--steps", "7", "--betas", "0.5,0.99", "--flag", "true"])
    cfg = override(Outer(name="preset"), args)
    assert cfg.steps == 7 and cfg.betas == (0.5, 0.99) and cfg.flag is True
    assert cfg.name == "preset"  # not given on the command line: the preset's value stays


@dataclass
class WithOptional:
    n_critic: int | None = None
    lr: float | None = None


def test_optional_fields_parse_to_their_inner_type():
    parser = argparse.ArgumentParser()
    add_arguments(parser, WithOptional)
    args = parser.parse_args(["--n-critic", "3", "--lr", "1e-4"])
    assert override(WithOptional(), args) == WithOptional(n_critic=3, lr=1e-4)
