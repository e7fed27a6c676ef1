"""core.gan.live: the one definition of the live hyperparameters, and what is generated from it."""

import argparse
import dataclasses

import pytest

from core.gan import live
from core.config import checked
from core.gan.trainer import TrainConfig
from core.gan.losses import LOSS_DEFAULTS


def test_every_live_field_is_a_train_config_field_with_paper_defaults():
    fields = set(TrainConfig.__dataclass_fields__)
    for spec in live.SPECS:
        assert spec.name in fields
        for loss, default in spec.defaults.items():
            assert LOSS_DEFAULTS[loss][spec.name] == default
            spec.check(default)
    assert LOSS_DEFAULTS["wgan-gp"]["gp_lambda"] == 10 and LOSS_DEFAULTS["wgan-gp"]["n_critic"] == 5


def test_checks_say_the_range_and_keep_n_critic_whole():
    assert live.check("n_critic", 3.0) == 3 and isinstance(live.check("n_critic", 3.0), int)
    for bad in (1e9, 2.5, float("nan"), True, "x", None):
        with pytest.raises(ValueError, match="n_critic"):
            live.check("n_critic", bad)
    with pytest.raises(ValueError, match="between 0 and 1000"):
        live.check("gp_lambda", -1)
    # The dataclass validates through core.config.checked, as every config read from a file.
    assert checked(live.LiveParams, {"n_critic": 2}).n_critic == 2
    with pytest.raises(ValueError, match="n_critic"):
        checked(live.LiveParams, {"n_critic": 21})


def test_loss_specific_fields_and_control_flags():
    assert [s.name for s in live.for_loss("wgan-gp")] == ["gp_lambda", "n_critic", "lr_critic", "lr_gen"]
    assert [s.name for s in live.for_loss("wgan")] == ["clip", "n_critic", "lr_critic", "lr_gen"]
    assert [s.name for s in live.for_loss("gan")] == ["n_critic", "lr_critic", "lr_gen"]
    parser = argparse.ArgumentParser()
    live.add_flags(parser)
    args = parser.parse_args(["--gp-lambda", "5", "--n-critic", "2"])
    assert (args.gp_lambda, args.n_critic, args.lr_gen) == (5.0, 2, None)
    # The flag train-gan has for the same field; the first name still works.
    assert {s.flag for s in live.SPECS} <= {f"--{f.name.replace('_', '-')}" for f in
                                            dataclasses.fields(TrainConfig)}
    assert parser.parse_args(["--lambda", "7"]).gp_lambda == 7.0


def test_in_force_reads_the_published_values_only_when_whole_and_valid():
    values = live.defaults("wgan-gp")
    assert live.in_force({"live": values}) == values
    assert live.in_force({"live": {**values, "n_critic": 1e9}}) is None
    assert live.in_force({"live": {"gp_lambda": 1.0}}) is None
    assert live.in_force({"live": [1, 2]}) is None and live.in_force([]) is None
    assert live.metrics({"gp_lambda": 3, "other": 1}) == {"live/gp_lambda": 3.0}
