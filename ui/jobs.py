"""Launching jobs from the dashboard and the one-run-at-a-time rule; listing and deleting runs.
A job is `python -m core <command>` in its own process (core.runstore.launch); pages only read the
run directory it writes."""

from __future__ import annotations

import fcntl
import shutil
from contextlib import contextmanager
from pathlib import Path

from core.errors import UserError
from core.runstore import (
    ACTIVE_STATES,
    RunStore,
    launch,
    list_runs,
    new_run_dir,
    runs_root,
)


def run_command(store: RunStore) -> str:
    """The CLI command that made a run ("train-gan", "train-classifier", ...), or ""."""
    command = store.status().get("command") or []
    if command:  # written by launch()
        return str(command[0])
    config = store.config()  # runs started on the command line
    if config.get("command"):  # train-classifier writes its command
        return str(config["command"])
    kind = config.get("kind")  # train-gan writes its kind
    if kind:
        return {"gan": "train-gan", "classifier": "train-classifier"}.get(kind, str(kind))
    return "train-gan" if "-gan-" in store.name else ""  # pages name GAN runs ...-gan-<loss>-...


def gan_runs() -> list[RunStore]:
    """GAN training runs, newest first."""
    return [r for r in list_runs() if run_command(r) == "train-gan"]


def active_runs() -> list[RunStore]:
    return [r for r in list_runs() if r.status().get("state") in ACTIVE_STATES]


def default_run(runs: list[RunStore]) -> RunStore | None:
    """The newest active run, else the newest run (runs come newest first)."""
    for r in runs:
        if r.is_active():
            return r
    return runs[0] if runs else None


def _on_gpu() -> bool:
    from core.device import pick_device

    return pick_device().type == "cuda"


def busy(runs: list[RunStore] | None = None) -> str | None:
    """Why a new run cannot start now (for a disabled Start button's tooltip), or None; `runs`:
    the active runs when the caller has them already."""
    runs = active_runs() if runs is None else runs
    if not runs:
        return None
    return (f"A run is active ({runs[0].name}): one job at a time. Stop it on its page or wait "
            "for it to finish.")


def ensure_can_start() -> None:
    """Raise UserError when a run is already active. On CUDA one process owning the GPU keeps
    memory and speed predictable; on CPU a second run would halve both runs' speed and make the
    app sluggish, so the same rule holds there."""
    busy = active_runs()
    if not busy:
        return
    run = busy[0]
    state = run.status().get("state")
    if _on_gpu():
        raise UserError(f"A GPU run is already active ({run.name}, {state}). One GPU run at a time: "
                        "stop it on the Train GAN page or wait for it to finish.")
    raise UserError(f"A run is already active ({run.name}, {state}). On CPU the dashboard runs one "
                    "job at a time to keep this machine responsive: stop it on the Train GAN page "
                    "or wait for it to finish.")


@contextmanager
def _launch_lock():
    # Two browser sessions pressing Start together must not both pass the check.
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".launch.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start(command: str, args: list[str], kind: str) -> RunStore:
    """Launch `python -m core <command> <args> --run-dir NEW` unless a run is active; returns the
    new run's store (state "queued" until the job writes its own status)."""
    with _launch_lock():
        ensure_can_start()
        run_dir = new_run_dir(kind)   # under the launch lock: no other session races it
        launch([command, *args, "--run-dir", str(run_dir)], run_dir)
    return RunStore(run_dir)


def delete_run(store: RunStore) -> None:
    """Delete a finished, stopped or failed run directory; refuse an active one."""
    if store.is_active():
        raise UserError(f"{store.name} is still {store.status().get('state')}; stop it before "
                        "deleting it.")
    root, path = runs_root().resolve(), store.path.resolve()
    if root not in path.parents:
        raise UserError(f"{store.path} is not inside the runs folder {root}; not deleting it.")
    store.close()
    shutil.rmtree(path)


def find_run(name: str | None) -> RunStore | None:
    if not name:
        return None
    path = runs_root() / Path(name).name
    return RunStore(path) if (path / "status.json").exists() else None


def gan_presets() -> dict[str, dict]:
    """core.gan_train.PRESETS flattened for the form: {"cpu-tiny": {"size", "steps",
    "batch_size", "lr_critic", ...}, ...} (train fields, plus the data size)."""
    from core.gan_train import PRESETS

    return {name: {**p.get("train", {}), **({"size": p["data"]["size"]} if "size" in p.get("data", {}) else {})}
            for name, p in PRESETS.items()}


def gan_args(data, loss: str, size: int, preset: str, steps: int, batch_size: int, n_critic: int,
             lr_critic: float, lr_gen: float, klass: str | None = None, gp_lambda: float | None = None,
             clip: float | None = None, log_every: int | None = None,
             sample_every: int | None = None, train_split_only: bool = False,
             holdout: float | None = None) -> list[str]:
    """The `train-gan` flags for a DataConfig and the form's choices (explicit flags override
    the preset, as on the command line)."""
    args = ["--data", data.source, "--loss", loss, "--preset", preset, "--size", str(size),
            "--steps", str(steps), "--batch-size", str(batch_size), "--n-critic", str(n_critic),
            "--lr-critic", f"{lr_critic:g}", "--lr-gen", f"{lr_gen:g}", "--data-seed", str(data.seed)]
    if data.source.startswith("phantom"):
        args += ["--data-phantom-per-class", str(data.phantom_per_class)]
    if data.keep_extra_classes:
        args += ["--data-keep-extra-classes", "true"]
    if klass:
        args += ["--data-classes", klass]
    if gp_lambda is not None:
        args += ["--gp-lambda", f"{gp_lambda:g}"]
    if clip is not None:
        args += ["--clip", f"{clip:g}"]
    if log_every:
        args += ["--log-every", str(log_every)]
    if sample_every:
        args += ["--sample-every", str(sample_every)]
    if holdout is not None:
        args += ["--holdout", f"{holdout:g}"]
    if train_split_only:  # train-classifier's default patient split (core.data.DataConfig.split)
        args += ["--data-split", "train"]
    return args
