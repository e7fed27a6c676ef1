"""The job queue: jobs from any browser session or the command line wait in the runs folder and
start as resources free up, so one student's classifier does not block the whole class.

A queued job is a run directory in state "queued" with no process yet and its command line in
RUN/queue.json. `schedule()` starts the oldest waiting jobs while slots are free: one job per GPU
on a CUDA machine, else CPU jobs up to the number of cores, each told its share of threads
(OMP_NUM_THREADS). Any process may call it (a lock file serialises them): a job calls it when it
ends, the pages on every render, `python -m core queue` when it submits. The queue lives on disk
only, so it survives a restart of the app; nothing runs in the background to keep it."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from core.atomic import file_lock
from core.config import save_json
from core.errors import UserError
from core.runs.header import RunHeader
from core.runs.store import (
    ACTIVE_STATES,
    RunStore,
    launch,
    list_runs,
    new_run_dir,
    runs_root,
)

QUEUE_FILE = "queue.json"
COMMAND_LINE = "command line"


def cores() -> int:
    """CPU cores this process may use (the affinity mask, as a container or taskset sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not Linux
        return max(1, os.cpu_count() or 1)


def gpus() -> int:
    """CUDA devices, 0 without CUDA (imports torch: called only when a job waits)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def slots() -> tuple[str, int]:
    """(resource, how many jobs at once): ("gpu", GPUs) on a CUDA machine, else ("cpu", cores);
    $XRAY_JOB_SLOTS, when set, caps the count (a machine shared with other work)."""
    n = gpus()
    resource, count = ("gpu", n) if n else ("cpu", cores())
    cap = os.environ.get("XRAY_JOB_SLOTS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        count = min(count, int(cap))
    return resource, count


def threads_per_job(resource: str, n_slots: int) -> int:
    """Each CPU job's share of the cores; a GPU job keeps two threads for its data and logging."""
    return 2 if resource == "gpu" else max(1, cores() // max(n_slots, 1))


def _lock(root: Path):
    # Two sessions (or a session and a finishing job) scheduling at once must not both take the
    # last slot; new_run_dir is also called under it, so names never race.
    return file_lock(root / ".launch.lock")


def _entry(store: RunStore) -> dict | None:
    """A run's queue.json when it is a job this queue may start: a list of strings naming one of
    the CLI's training or evaluation commands (a file from elsewhere never runs anything else),
    and a numeric submission time."""
    from core.__main__ import COMMANDS

    try:
        entry = json.loads((store.path / QUEUE_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(entry, dict):
        return None
    argv, submitted = entry.get("argv"), entry.get("submitted")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
            and argv[0] in COMMANDS and argv[0] != "queue"
            and isinstance(submitted, (int, float))):
        return None
    return entry


def is_waiting(status: dict) -> bool:
    """A queued job that has no process yet."""
    return status.get("state") == "queued" and not status.get("pid")


def waiting(root: str | Path | None = None) -> list[RunStore]:
    """Jobs waiting for a slot, oldest first (the order they start in)."""
    out = []
    for store in list_runs(root):
        entry = _entry(store)
        if entry is not None and is_waiting(store.status()):
            out.append((float(entry["submitted"]), store.name, store))
    return [s for _, _, s in sorted(out, key=lambda t: t[:2])]


def running(root: str | Path | None = None) -> list[RunStore]:
    """Jobs with a live process (starting, running or paused), newest first."""
    return [r for r in list_runs(root)
            if (s := r.status()).get("state") in ACTIVE_STATES and not is_waiting(s)]


def submit(command: str, args: list[str], kind: str, owner: str = COMMAND_LINE,
           root: str | Path | None = None, header: RunHeader | None = None) -> RunStore:
    """Queue `python -m core <command> <args> --run-dir NEW` and start it at once when a slot is
    free. Returns the new run's store (state "queued"; "owner" records who asked). With a
    `header` (the run's configs, core.runs.header), NEW/config.json holds it from the start and
    the job starts from it (`--from-config`): the dashboard builds configs, not flags."""
    root = Path(root) if root else runs_root()
    with _lock(root):
        run_dir = new_run_dir(kind, root)
        store = RunStore(run_dir, create=True)   # samples/ and checkpoints/ before the job starts
        if header is not None:
            store.write_header(header)
            args = [*args, "--from-config"]
        now = time.time()
        save_json(run_dir / QUEUE_FILE, {"argv": [command, *args, "--run-dir", str(run_dir)],
                                         "submitted": now, "owner": owner, "kind": kind})
        save_json(run_dir / "status.json", {"state": "queued", "reason": "waiting for a free slot",
                                            "owner": owner, "created": now, "heartbeat": now,
                                            "command": [command]})
        _schedule_locked(root)
    return RunStore(run_dir)


def _schedule_locked(root: Path) -> list[RunStore]:
    queue = waiting(root)
    if not queue:   # the common case, and without asking torch for GPUs
        return []
    resource, n_slots = slots()
    free = n_slots - len(running(root))
    started = []
    for store in queue[:max(free, 0)]:
        entry = _entry(store)
        threads = threads_per_job(resource, n_slots)
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "XRAY_QUEUED": "1"}
        launch(entry["argv"], store.path, env=env)
        # launch() wrote a fresh status; keep who asked and when it was queued.
        status = store._read_status()
        save_json(store.path / "status.json",
                  {**status, "owner": entry.get("owner"), "queued_at": entry.get("submitted"),
                   "threads": threads, "resource": resource})
        started.append(store)
    return started


def schedule(root: str | Path | None = None) -> list[RunStore]:
    """Start as many waiting jobs as there are free slots, oldest first; returns those started."""
    root = Path(root) if root else runs_root()
    with _lock(root):
        return _schedule_locked(root)


def cancel(store: RunStore) -> None:
    """Take a waiting job out of the queue (it becomes a stopped run that never ran); a job that
    has started is stopped through its control file instead."""
    with _lock(store.path.parent):
        status = store.status()
        if is_waiting(status):
            store.set_status("stopped", reason="cancelled while queued")
            return
    if status.get("state") in ACTIVE_STATES:
        store.send_control(stop=True)
        return
    raise UserError(f"{store.name} is {status.get('state')}, not queued or running")


def remaining_s(status: dict, now: float | None = None) -> float | None:
    """Seconds a running job still needs, from its own smoothed rate (status "eta_s"), else
    from its average rate since it started; None before it has a rate or while paused."""
    if status.get("state") != "running":
        return None
    if status.get("eta_s") is not None:
        return float(status["eta_s"])
    step, total = status.get("step") or 0, status.get("total_steps") or 0
    started = status.get("started") or status.get("created")
    now = now or time.time()
    if step <= 0 or not total or not started or now <= started:
        return None
    return max(0.0, (total - step) * (now - started) / step)


def position(store: RunStore, root: str | Path | None = None) -> dict | None:
    """Where a waiting job stands: {"position": 1-based, "ahead": jobs before it,
    "running": jobs holding the slots, "start_in_s": an estimate or None}. None when the job is
    not waiting. The estimate assumes the jobs ahead take as long as the running ones still
    need, so it is given only while no job ahead of it is itself waiting."""
    queue = waiting(root)
    names = [s.name for s in queue]
    if store.name not in names:
        return None
    k = names.index(store.name)
    active = running(root)
    _, n_slots = slots()
    left = sorted(t for r in active if (t := remaining_s(r.status())) is not None)
    start_in = None
    if k < n_slots and len(left) >= len(active):
        # the k-th slot to free up (0-based), counting slots already free as free now
        free_now = max(n_slots - len(active), 0)
        start_in = 0.0 if k < free_now else (left[k - free_now] if k - free_now < len(left) else None)
    return {"position": k + 1, "ahead": k, "running": len(active), "start_in_s": start_in}


# ---- `python -m core queue` ----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", nargs=argparse.REMAINDER,
                        help="a command and its flags (without --run-dir), e.g. train-gan --data "
                             "phantom --preset cpu-tiny; none: list the queue")
    parser.add_argument("--cancel", metavar="RUN", help="take a waiting job out of the queue")


def main(args: argparse.Namespace) -> int:
    if args.cancel:
        cancel(RunStore(runs_root() / Path(args.cancel).name))
        print(f"cancelled {Path(args.cancel).name}")
        return 0
    if args.job:
        command, rest = args.job[0], args.job[1:]
        if "--run-dir" in rest:
            raise UserError("the queue names the run directory; leave out --run-dir")
        store = submit(command, rest, command.replace("train-", ""))
        where = position(store)
        print(json.dumps({"run_dir": str(store.path),
                          "state": "started" if where is None else "queued", **(where or {})}))
        return 0
    schedule()
    for store in running():
        s = store.status()
        print(f"running  {store.name}  {s.get('state')}  owner: {s.get('owner') or COMMAND_LINE}")
    for i, store in enumerate(waiting(), 1):
        print(f"queued   {store.name}  #{i}  owner: {store.status().get('owner')}")
    return 0
