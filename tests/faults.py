"""Fault drills on a real training job, shared by tests/test_faults.py (a few, tiny) and
bench/faults.py (the full count): kill -9 at a random moment and resume; fill the disk and
resume. Each drill reports what a user would ask: did the resume work, how many steps were
lost, is the metrics database intact."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from core.runs.store import REPO_ROOT, RunStore

TINY = ["--preset", "cpu-tiny", "--data", "phantom:4", "--batch-size", "4", "--log-every", "1",
        "--sample-every", "5", "--checkpoint-every", "5", "--n-samples", "4", "--holdout", "0"]


def _job(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "core", "train-gan", *args], cwd=REPO_ROOT,
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait(predicate, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.05)


def integrity(run: Path) -> str:
    """SQLite's own verdict on the run's metrics database ("ok" when intact)."""
    db = sqlite3.connect(run / "metrics.sqlite", timeout=30)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def last_logged_step(run: Path) -> int:
    db = sqlite3.connect(run / "metrics.sqlite", timeout=30)
    try:
        return int(db.execute("SELECT MAX(step) FROM metrics").fetchone()[0] or 0)
    except sqlite3.OperationalError:   # the job has not made its tables yet
        return 0
    finally:
        db.close()


def saved_step(run: Path) -> int:
    """The step a --resume continues from: that of the run's training state."""
    from core.checkpoint import load_training_state
    from core.gan.job import STATE_FILE

    return int(load_training_state(run / "checkpoints" / STATE_FILE)["step"])


def kill_and_resume(run: Path, kills: int, steps: int, seed: int = 0,
                    timeout_s: float = 600, span: int = 10) -> list[dict]:
    """Train `steps` tiny steps into `run`, SIGKILL the job `kills` times at random moments after
    its first checkpoint (1 to `span` steps after the last step seen), resuming each time; then
    let it finish. One dict per kill: the step it
    had reached, the step it resumed from, steps lost, the database's integrity, and whether the
    resumed job got past the kill point."""
    rng = random.Random(seed)
    log = run.parent / f"{run.name}.log"
    proc = _job([*TINY, "--steps", str(steps), "--run-dir", str(run)], log)
    out = []
    for k in range(kills):
        _wait(lambda: (run / "checkpoints" / "latest_state.pt").is_file() or proc.poll() is not None,
              timeout_s, "the first checkpoint")
        store = RunStore(run)
        start = int(store.status().get("step") or 0)
        # A random moment: 1 to `span` steps on (a checkpoint lands every 5).
        target = start + rng.randint(1, span)
        _wait(lambda: int(store.status().get("step") or 0) >= target or proc.poll() is not None,
              timeout_s, f"step {target}")
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break   # it finished first: nothing left to kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = integrity(run)
        reached = last_logged_step(run)   # log_every 1: the last step it finished
        resumed_from = saved_step(run)
        proc = _job(["--resume", "--run-dir", str(run)], log)
        _wait(lambda: last_logged_step(run) > reached or proc.poll() is not None,
              timeout_s, "the resumed job to pass the kill point")
        out.append({"kill": k + 1, "reached": reached, "resumed_from": resumed_from,
                    "lost": max(reached - resumed_from, 0), "integrity": check,
                    "resumed": last_logged_step(run) > reached or
                    (proc.poll() == 0 and last_logged_step(run) >= reached)})
    proc.wait(timeout=timeout_s)
    final = RunStore(run).status()
    for row in out:
        row["finished"] = final.get("state") == "finished"
    return out
