"""Fault drills on real cpu-tiny jobs (issue #17), counted rather than timed:

1. kill -9 at random moments, 20 times, each followed by --resume: how many resumes succeeded,
   steps lost per kill, and SQLite's PRAGMA integrity_check of metrics.sqlite after every kill;
2. a run directory on a small tmpfs that fills up while the job runs: the job's failed status
   should name the disk, the last training state must load, and after space is freed
   --resume must finish the run.

    python bench/faults.py [--kills 20] [--steps 1000]

The tmpfs drill needs root (mount); without it, it says so and skips. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the drills: tests/faults.py

from faults import TINY, _job, _wait, integrity, kill_and_resume, saved_step  # noqa: E402
from core.runs.store import RunStore  # noqa: E402


def kill_drill(kills: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rows = kill_and_resume(Path(tmp) / "run", kills=kills, steps=steps, seed=7, timeout_s=900)
        final = integrity(Path(tmp) / "run")
    lost = [r["lost"] for r in rows]
    return {"kills": len(rows), "resumes_succeeded": sum(r["resumed"] for r in rows),
            "integrity_ok": sum(r["integrity"] == "ok" for r in rows),
            "finished": all(r["finished"] for r in rows), "final_integrity": final,
            "steps_lost_mean": statistics.mean(lost) if lost else None,
            "steps_lost_max": max(lost) if lost else None, "rows": rows}


def full_disk_drill(steps: int) -> dict:
    mount = Path(tempfile.mkdtemp(prefix="xray-tmpfs-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        mount.rmdir()
        return {"skipped": "mount -t tmpfs needs root"}
    try:
        run = mount / "run"
        log = mount.parent / f"{mount.name}.log"
        proc = _job([*TINY, "--steps", str(steps), "--run-dir", str(run)], log)
        _wait(lambda: (run / "checkpoints" / "latest_state.pt").is_file(), 600, "a first checkpoint")
        good_step = saved_step(run)
        # Fill the disk, leaving a few kB: the next checkpoint or sample cannot be written.
        filler = mount / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        proc.wait(timeout=600)
        status = RunStore(run).status()
        debris = [p.name for p in run.rglob("*.tmp")]
        state_step = saved_step(run)            # loads the whole training state
        filler.unlink()
        resume = _job(["--resume", "--run-dir", str(run)], log)
        resume.wait(timeout=900)
        after = RunStore(run).status()
        return {"exit_code": proc.returncode, "state": status.get("state"),
                "reason": status.get("reason"), "state_loads_at_step": state_step,
                "first_checkpoint_step": good_step, "tmp_files_left": debris,
                "metrics_integrity": integrity(run), "resumed_state": after.get("state"),
                "resumed_to_step": after.get("step")}
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
        shutil.rmtree(mount, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    out = {"kill_drill": kill_drill(args.kills, args.steps), "full_disk": full_disk_drill(200)}
    out["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
