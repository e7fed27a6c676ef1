"""The hyperparameters a running GAN job takes from control.json: defined once, here.

`LiveParams` is the one definition. Each field carries its range, its per-loss paper default,
the losses it applies to, its `control` flag, its labels and its slider stops. Everything else
is generated from it: the Train GAN form and the steering sliders (ui), the `control` command's
flags, the checks of every value a form, a flag, a file or a live change sets, the metric the
job logs ("live/<name>"), and the values in force that the job publishes in status.json
("live"). To add one: a field here, and how `GanTrainer` applies it (core/gan/trainer.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

ALL_LOSSES = ("gan", "wgan", "wgan-gp")
PREFIX = "live/"   # the logged metrics: live/gp_lambda, live/n_critic, ...
# A slider's stops span its field's whole range, so whatever a form accepts the slider can set
# back (with lambda's stops ending at 100, a run started at 1000 could never return there).
LR_STOPS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2,
            5e-2, 0.1, 0.2, 0.5, 1.0)


def _param(lo: float, hi: float, defaults: dict[str, float], *, label: str, title: str,
           flag: str, marker: str, losses=ALL_LOSSES, stops=(), form_low=None,
           help: str = ""):
    """A live field: range [lo, hi], default per loss (`defaults`), `label` on a form and a
    slider (one line at 1024 px), `title` on a chart, the `control` command's `flag`, the short
    `marker` on the charts' change rules, the `losses` it applies to, and slider `stops` (none:
    every whole number; else spanning the range).
    `form_low` raises the lower bound of a new run's form (a clip of 0 is no WGAN)."""
    return dataclasses.field(default=defaults["wgan-gp"], metadata=dict(
        range=(lo, hi), defaults=defaults, label=label, title=title, flag=flag,
        marker=marker, losses=tuple(losses), stops=tuple(stops),
        form_low=lo if form_low is None else form_low, help=help))


@dataclass(frozen=True)
class LiveParams:
    """The values in force in one GAN job (each loss's paper defaults: Goodfellow et al. with
    DCGAN's Adam; Arjovsky et al.'s clip 0.01 and RMSProp 5e-5; Gulrajani et al.'s lambda 10,
    Adam 1e-4). An n_critic of 1e9 would stall a job for hours per step: hence the ranges."""

    gp_lambda: float = _param(
        0.0, 1000.0, {"gan": 0.0, "wgan": 0.0, "wgan-gp": 10.0}, label="lambda (GP)",
        title="Gradient penalty lambda", flag="--gp-lambda", marker="λ",
        losses=("wgan-gp",), stops=(0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0),
        help="gradient-penalty weight")
    clip: float = _param(
        0.0, 1.0, {"gan": 0.0, "wgan": 0.01, "wgan-gp": 0.0}, label="clip c",
        title="Weight-clipping bound", flag="--clip", marker="clip",
        losses=("wgan",), stops=(1e-4, 5e-4, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        form_low=1e-4,
        help="WGAN weight-clipping bound")
    n_critic: int = _param(
        1, 20, {"gan": 1, "wgan": 5, "wgan-gp": 5}, label="n_critic",
        title="Critic steps per generator step", flag="--n-critic",
        marker="n_critic", help="critic steps per generator step")
    lr_critic: float = _param(
        1e-6, 1.0, {"gan": 2e-4, "wgan": 5e-5, "wgan-gp": 1e-4}, label="lr critic",
        title="Critic learning rate", flag="--lr-critic", marker="lr C",
        stops=LR_STOPS, help="critic learning rate")
    lr_gen: float = _param(
        1e-6, 1.0, {"gan": 2e-4, "wgan": 5e-5, "wgan-gp": 1e-4}, label="lr generator",
        title="Generator learning rate", flag="--lr-gen", marker="lr G",
        stops=LR_STOPS, help="generator learning rate")

    @classmethod
    def for_loss(cls, loss: str) -> "LiveParams":
        return cls(**defaults(loss))


@dataclass(frozen=True)
class Spec:
    """One live field's definition, read from LiveParams' field metadata."""

    name: str
    integer: bool
    low: float
    high: float
    defaults: dict
    label: str
    title: str
    flag: str
    marker: str
    losses: tuple
    stops: tuple
    form_low: float
    help: str

    @property
    def metric(self) -> str:
        return PREFIX + self.name

    def applies_to(self, loss: str) -> bool:
        return loss in self.losses

    def check(self, value) -> float | int:
        """`value` as the job holds it (whole for an integer field), or ValueError saying the
        range."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be a number, not {value!r:.40}") from None
        if isinstance(value, bool) or not math.isfinite(number) or \
                not self.low <= number <= self.high or (self.integer and not number.is_integer()):
            raise ValueError(f"{self.name} must be {'a whole number ' if self.integer else ''}"
                             f"between {self.low:g} and {self.high:g}, not {value!r:.40}")
        return int(number) if self.integer else number


SPECS: tuple[Spec, ...] = tuple(
    Spec(name=f.name, integer=f.type in (int, "int"), low=f.metadata["range"][0],
         high=f.metadata["range"][1], **{k: f.metadata[k] for k in (
             "defaults", "label", "title", "flag", "marker", "losses", "stops",
             "form_low", "help")})
    for f in dataclasses.fields(LiveParams))
BY_NAME: dict[str, Spec] = {s.name: s for s in SPECS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
RANGES: dict[str, tuple] = {s.name: (s.low, s.high) for s in SPECS}


def check(name: str, value) -> float | int:
    """`value` for live field `name`, checked (ValueError saying the range)."""
    return BY_NAME[name].check(value)


def defaults(loss: str) -> dict:
    """Each live field's paper default for `loss`."""
    return {s.name: s.defaults[loss] for s in SPECS}


def for_loss(loss: str) -> list[Spec]:
    """The fields a form or a slider row shows for `loss` (lambda for WGAN-GP, clip for WGAN)."""
    return [s for s in SPECS if s.applies_to(loss)]


def metrics(values: dict) -> dict[str, float]:
    """The metrics a job logs for the values in force."""
    return {BY_NAME[k].metric: float(v) for k, v in values.items() if k in BY_NAME}


def in_force(status: dict) -> dict | None:
    """The values in force as the job publishes them in status.json, checked; None when the
    status has none (a run from before it published them, or an odd file)."""
    live = status.get("live") if isinstance(status, dict) else None
    if not isinstance(live, dict) or not set(NAMES) <= set(live):
        return None
    try:
        return {k: check(k, live[k]) for k in NAMES}
    except ValueError:
        return None


def add_flags(parser) -> None:
    """The `control` command's flags, one per field, named as train-gan's (--gp-lambda,
    --n-critic, ...); --lambda, its first name, still works in scripts that use it."""
    for s in SPECS:
        old = ("--lambda",) if s.name == "gp_lambda" else ()
        parser.add_argument(s.flag, *old, dest=s.name, type=int if s.integer else float, help=s.help)
