"""What a resumed GAN run takes from its run directory, which may come from anywhere: the
training state (checkpoints/latest_state.pt), checked like a config before anything uses it,
and, after a run that failed on a non-finite loss, which live values it goes on with."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_training_state
from core.errors import CheckpointError
from core.gan import live
from core.gan.trainer import GanTrainer, TrainConfig
from core.runs.store import RunStore

MAX_STEP = dict((f.name, f) for f in dataclasses.fields(TrainConfig))["steps"].metadata["range"][1]
REQUIRED = ("step", "fixed_z", "rng", "generator", "critic", "opt_gen", "opt_critic", "live",
            "sums", "counts")
# Settings of how an optimizer runs on this machine, not of the run: a CUDA run's fused Adam
# resumes on a CPU, and a file's capturable=True must not reach a CPU step. Replaced by this
# machine's own before loading.
_MACHINE_SETTINGS = ("foreach", "fused", "capturable", "differentiable")
# The first word of the reason a non-finite failure gives (core.gan.job._Run.fail_non_finite).
NON_FINITE = "non-finite"


def checked_state(path: str | Path, trainer: GanTrainer) -> dict:
    """The training state at `path` for `trainer`'s run: a dict with every key a resume uses;
    the networks', optimizers' and fixed latent's tensors of the shapes and types the run's
    configs give, and finite; the step, the counters and every live value inside their
    ranges; RNG states that restore. The optimizers' machine settings (fused, capturable...)
    are this machine's. CheckpointError naming the file and the first problem otherwise."""
    path = Path(path)
    # Adam keeps two moments per weight: a state much larger than that is not this run's.
    weights = sum(t.numel() * t.element_size() for m in (trainer.G, trainer.D)
                  for t in m.state_dict().values())
    if path.is_file() and path.stat().st_size > 4 * weights + 64 * 2**20:
        raise CheckpointError(f"{path} is {path.stat().st_size / 2**20:,.0f} MiB, far more than "
                              f"a training state of this run's networks; refused")
    state = load_training_state(path)
    try:
        _check(state, trainer)
    except Exception as exc:   # whatever a check meets (a tensor where a number belongs...) refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: {first}; this run cannot resume from it") from None
    return state


def _check(state, trainer: GanTrainer) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"it holds a {type(state).__name__}, not a training state")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"it lacks {', '.join(missing)}")
    _whole("step", state["step"], 0, MAX_STEP)
    _tensor("fixed_z", state["fixed_z"], (trainer.config.n_samples, trainer.G.config.latent_dim),
            torch.float32)
    _module("generator", state["generator"], trainer.G)
    _module("critic", state["critic"], trainer.D)
    _optimizer("opt_gen", state["opt_gen"], trainer.opt_g)
    _optimizer("opt_critic", state["opt_critic"], trainer.opt_d)
    values = state["live"]
    if not isinstance(values, dict) or not set(values) <= set(live.NAMES):
        raise ValueError(f"live must hold only {', '.join(live.NAMES)}")
    own = trainer.live()
    for key, value in values.items():
        try:   # the ranges of the form and of control.json
            values[key] = live.check(key, value)
        except ValueError as exc:
            raise ValueError(f"the live {exc}") from None
        spec = live.BY_NAME[key]
        if not spec.applies_to(trainer.loss) and values[key] != own[key]:
            raise ValueError(f"live {key} is {value!r:.40}, but {spec.label} does not apply to a "
                             f"{trainer.loss} run")
    _tensor("sums", state["sums"], tuple(trainer.sums.shape), torch.float32)
    counts = state["counts"]
    if not isinstance(counts, (list, tuple)) or len(counts) != 2:
        raise ValueError("counts must be two whole numbers")
    for c in counts:
        _whole("counts", c, 0, 2**53)
    _rng(state["rng"], trainer.device)


def _whole(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number between {lo:,} and {hi:,}, not {value!r:.40}")


def _tensor(name: str, value, shape: tuple, dtype: torch.dtype | None = None,
            finite: bool = True) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, not a {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(value.shape)}, not the {tuple(shape)} this run needs")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{name} is {value.dtype}, not {dtype}")
    if finite and (value.is_floating_point() or value.is_complex()) and not torch.isfinite(value).all():
        raise ValueError(f"{name} holds values that are not finite")


def _module(name: str, saved, module: torch.nn.Module) -> None:
    """Every tensor of `module`'s state_dict, of its shape and type; no other key."""
    expected = module.state_dict()
    if not isinstance(saved, dict):
        raise ValueError(f"{name} is not a set of weights")
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected), key=str)
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {str(extra[0])[:60]!r}, which it does not have"
        raise ValueError(f"{name} does not match the network its config describes: it {what}")
    for key, want in expected.items():
        _tensor(f"{name}.{key}", saved[key], tuple(want.shape), want.dtype)


def _optimizer(name: str, saved, optimizer: torch.optim.Optimizer) -> None:
    """An optimizer state for `optimizer`: the same groups and parameters, the settings this
    run's config gives (the learning rate within its live range), per-parameter tensors of the
    parameters' shapes, finite. Machine settings are replaced by this machine's."""
    fresh = optimizer.state_dict()
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) or \
            not isinstance(saved.get("state"), dict):
        raise ValueError(f"{name} is not an optimizer state")
    if len(saved["param_groups"]) != len(fresh["param_groups"]):
        raise ValueError(f"{name} has {len(saved['param_groups'])} parameter groups, not "
                         f"{len(fresh['param_groups'])}")
    shapes, offset = {}, 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    lr = live.BY_NAME["lr_critic"]   # both learning rates share one range
    for group, own in zip(saved["param_groups"], fresh["param_groups"]):
        if not isinstance(group, dict):
            raise ValueError(f"{name} has a parameter group that is not one")
        ids = group.get("params")
        if not isinstance(ids, list) or len(ids) != len(own["params"]) or \
                any(isinstance(i, bool) or not isinstance(i, int) for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"{name} does not list this run's {len(own['params'])} parameters")
        for key in list(group):
            if key in ("params", "param_names"):
                continue
            if key not in own:
                raise ValueError(f"{name} has a setting {str(key)[:40]!r} this run's optimizer lacks")
            if key in _MACHINE_SETTINGS:
                group[key] = own[key]
            elif key == "lr":
                try:
                    lr.check(group[key])
                except ValueError:
                    raise ValueError(f"{name}'s learning rate must be between {lr.low:g} and "
                                     f"{lr.high:g}, not {group[key]!r:.40}") from None
            elif isinstance(group[key], torch.Tensor) or group[key] != own[key]:
                raise ValueError(f"{name}'s {key} is {group[key]!r:.40}, this run's config gives "
                                 f"{own[key]!r:.40}")
        shapes.update({i: tuple(params[offset + k].shape) for k, i in enumerate(ids)})
        offset += len(ids)
    for pid, per_param in saved["state"].items():
        if pid not in shapes or not isinstance(per_param, dict):
            raise ValueError(f"{name} holds a state for a parameter {str(pid)[:20]!r} it does not list")
        for key, value in per_param.items():
            if key == "step":
                _tensor(f"{name} step", value, ())
                if not value.is_floating_point() or not 0 <= float(value) <= 2**53:
                    raise ValueError(f"{name} step must be a count, not {value!r:.40}")
            else:
                _tensor(f"{name}.{key}", value, shapes[pid])
                if not value.is_floating_point():
                    raise ValueError(f"{name}.{key} is {value.dtype}, not floating point")


def _rng(rng, device: torch.device) -> None:
    """RNG states in core.gan.job.rng_state's layout that restore: each applied to a scratch
    generator of its kind, so nothing global changes here."""
    if not isinstance(rng, dict) or not {"torch", "numpy", "python"} <= set(rng):
        raise ValueError("rng must hold the torch, numpy and python generator states")
    want = torch.get_rng_state()
    _tensor("rng.torch", rng["torch"], tuple(want.shape), want.dtype)
    cuda = rng.get("cuda")
    if cuda is not None:
        if not isinstance(cuda, torch.Tensor) or cuda.dtype != torch.uint8 or cuda.dim() != 1:
            raise ValueError("rng.cuda must be a byte tensor")
        if device.type == "cuda":
            own = torch.cuda.get_rng_state(device)
            _tensor("rng.cuda", cuda, tuple(own.shape), own.dtype)
    n, p = rng["numpy"], rng["python"]
    if not isinstance(n, dict) or not isinstance(p, dict):
        raise ValueError("rng.numpy and rng.python must each be a generator state")
    _tensor("rng.numpy.keys", n.get("keys"), (624,), torch.int64)
    _tensor("rng.python.state", p.get("state"), (625,), torch.int64)
    _whole("rng.numpy.pos", n.get("pos"), 0, 624)
    _whole("rng.numpy.has_gauss", n.get("has_gauss"), 0, 1)
    _whole("rng.python.version", p.get("version"), 3, 3)
    for key, value in (("rng.numpy.cached", n.get("cached")), ("rng.python.gauss", p.get("gauss"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError(f"{key} must be a finite number")
    keys = n["keys"]
    if int(keys.min()) < 0 or int(keys.max()) >= 2**32:
        raise ValueError("rng.numpy.keys must be 32-bit words")
    try:
        torch.Generator().set_state(rng["torch"])
        np.random.RandomState().set_state(("MT19937", keys.numpy().astype(np.uint32), n["pos"],
                                           n["has_gauss"], float(n["cached"] or 0.0)))
        random.Random().setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise ValueError(f"its RNG state does not restore ({str(exc).splitlines()[0][:80]})") from None


# ---- live values after a non-finite failure -------------------------------------------------

def failure_in_force(store: RunStore, after_step: int) -> dict | None:
    """The live values in force when the run last failed on a non-finite loss after
    `after_step` (the checkpoint a resume goes back to): {} when that failure did not record
    them (a run from before it did), None when it did not fail so."""
    events = store.events("failed")
    for step, payload in zip(events["step"], events["payload"]):
        if int(step) > after_step and str(payload.get("reason", "")).startswith(NON_FINITE):
            values = payload.get("live")
            return values if isinstance(values, dict) else {}
    return None


def control_after_failure(store: RunStore, start: int, at_checkpoint: dict,
                          keep: bool) -> str | None:
    """After a run that failed on a non-finite loss, the live values control.json holds that
    were in force when it failed are what blew it up: unless `keep` (--keep-control), they are
    set back in control.json to those in force at the checkpoint of step `start`, so the job
    does not re-apply them. Values written to control.json since the failure are the user's
    new choice, and stay. Returns the line saying what was done (for the log, the status and
    a "control-reset" event), or None when there was nothing to decide."""
    failed = failure_in_force(store, start)
    if failed is None:
        return None
    control = store.control()
    suspect = {}
    for key in live.NAMES:
        if key not in control or key not in at_checkpoint:
            continue
        try:
            value = live.check(key, control[key])
        except ValueError:
            continue   # the job rejects it anyway, with a control-rejected event
        if value != at_checkpoint[key] and (not failed or failed.get(key) == control[key]):
            suspect[key] = value
    if not suspect:
        return None
    given = ", ".join(f"{k}={v:g}" for k, v in suspect.items())
    if keep:
        return (f"re-applying {given} from control.json (in force when the run failed on a "
                f"non-finite loss), as --keep-control asks")
    store.send_control(**{k: at_checkpoint[k] for k in suspect})
    back = ", ".join(f"{k}={at_checkpoint[k]:g}" for k in suspect)
    return (f"resuming with the values in force at the step {start} checkpoint ({back}), not "
            f"{given}, in force when the run failed on a non-finite loss; resume with "
            f"--keep-control to re-apply them")
