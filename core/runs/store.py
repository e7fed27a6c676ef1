"""The run directory: the whole contract between a headless job and the app that watches it.

A job writes config, status (with a heartbeat), metrics and events (SQLite in WAL mode, so the app
reads while the job writes), samples and checkpoints; the app writes control.json to steer it.
Also `launch`, which starts a job as its own process.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from core.runs import header as runheader
from core.config import save_json
from core.errors import UserError
from core.paths import REPO_ROOT, runs_root
from core.runs.header import RunHeader

# Runs written before the live hyperparameters were logged under "live/" (core.gan.live) used
# these names; they are read under the new ones. Frozen history: new fields never get one.
LEGACY_METRICS = {"lambda": "live/gp_lambda", "n_critic": "live/n_critic",
                  "lr/critic": "live/lr_critic", "lr/gen": "live/lr_gen"}
ACTIVE_STATES = ("queued", "running", "paused")
QUEUE_FILE = "queue.json"   # a queued job's command line (core.runs.queue)
STATES = ACTIVE_STATES + ("finished", "stopped", "failed")
HEARTBEAT_EVERY_S = 1.0
# Ballast a job writes when it starts and frees when the disk fills, so that its last words (a
# failed status naming the disk) still fit: on a full disk even a 1 kB status.json cannot be
# written, and the app could only say the job "ended without saying why".
RESERVE_BYTES = 256 * 1024
RESERVE_FILE = ".space-reserve"
ETA_MIN_SAMPLES = 3    # rate samples (heartbeats that moved the step) before an ETA is published
ETA_SMOOTHING = 0.3    # weight of the newest seconds-per-step sample in the moving average

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, t REAL);
CREATE INDEX IF NOT EXISTS metrics_name_step ON metrics (name, step);
CREATE TABLE IF NOT EXISTS events (step INTEGER, t REAL, kind TEXT, payload TEXT);
"""


def new_run_name(kind: str, existing: list[str], now: float | None = None) -> str:
    """A run directory name a person can read and tell apart: when it started and which run of
    its kind it is, e.g. "261122-2341-gan-wgan-gp-3" (the third WGAN-GP run in the folder,
    started 22 Nov 2026 at 23:41); `existing`: the names already in the runs folder."""
    # Identical runs used to differ only by a random hex suffix and the seconds of a 15-digit
    # stamp. Year first, so names still sort by start time (list_runs sorts by name, newest
    # first), after the older "20261122-234105-..." names too. Only names of this form count:
    # an old name's hex suffix may be all digits ("...-8618").
    pattern = re.compile(rf"\d{{6}}-\d{{4}}-{re.escape(kind)}-(\d+)")
    n = 1 + max((int(m[1]) for name in existing if (m := pattern.fullmatch(name))), default=0)
    return f"{time.strftime('%y%m%d-%H%M', time.localtime(now))}-{kind}-{n}"


def new_run_dir(kind: str, root: str | Path | None = None) -> Path:
    """A fresh run directory named by new_run_name, such as runs/261122-1305-wgan-gp-3."""
    root = Path(root) if root else runs_root()
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(20):   # another process may take the same number between listing and mkdir
        path = root / new_run_name(kind, [p.name for p in root.iterdir()])
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not make a new run directory in {root}")


def _read_object(path: Path) -> dict:
    """A JSON object from `path`, or {} for a missing, unreadable, non-UTF-8, non-JSON or
    non-object file: a run directory may come from anywhere, and its readers must not crash."""
    try:
        if path.stat().st_size > 16 * 2**20:   # ours are a few kB; a huge one is not ours
            return {}
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):   # not UTF-8, not JSON, nested past the parser
        return {}
    return data if isinstance(data, dict) else {}


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def wide(long: pd.DataFrame) -> pd.DataFrame:
    """Metrics as RunStore.metrics gives them (step, name, value, t) -> one row per step, one
    column per name (a step logged twice keeps its last value)."""
    if long.empty:
        return pd.DataFrame()
    return long.pivot_table(index="step", columns="name", values="value", aggfunc="last")


class RunStore:
    """Reads and writes one run directory. Writers: the job (config, status, metrics, events,
    samples, checkpoints) and the app (control). Every file write is atomic."""

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
            self.refuse_links()
            (self.path / "samples").mkdir(exist_ok=True)
            (self.path / "checkpoints").mkdir(exist_ok=True)
        elif not self.path.is_dir():
            raise UserError(f"run directory not found: {self.path}")
        self._db: sqlite3.Connection | None = None
        self._last_beat = 0.0
        self._rate_ref: tuple[int, float] | None = None   # (step, time) of the last rate sample
        self._sec_per_step: float | None = None
        self._rate_samples = -1   # -1: the first interval (start-up, compilation) is not a sample
        self._control_mtime = None
        self._control_seen: dict = {}

    def refuse_links(self) -> None:
        """UserError if anything in the run directory, samples/ or checkpoints/ is a symbolic
        link. A job calls this before it writes: a run directory shared by somebody else may
        hold links to files of this machine, and writes would follow them."""
        suspects = list(self.path.iterdir())
        for folder in ("samples", "checkpoints"):
            d = self.path / folder
            if d.is_dir() and not d.is_symlink():
                suspects += list(d.iterdir())
        links = [p for p in suspects if p.is_symlink()]
        if links:
            raise UserError(f"{self.path}: {links[0].relative_to(self.path)} is a symbolic link; "
                            f"a run directory may not hold links (they would carry its writes "
                            f"elsewhere). Remove {len(links)} link(s) or use another directory.")

    def reserve_space(self) -> None:
        """Write the ballast (see RESERVE_BYTES); silently nothing when even that does not fit."""
        try:
            with open(self.path / RESERVE_FILE, "wb") as f:
                f.write(bytes(RESERVE_BYTES))
        except OSError:
            (self.path / RESERVE_FILE).unlink(missing_ok=True)

    def release_space(self) -> None:
        (self.path / RESERVE_FILE).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.path / "job.log"

    # ---- config -------------------------------------------------------------------------
    def write_header(self, header: RunHeader) -> None:
        """config.json: the job's command and configs (core.runs.header's layout)."""
        self.write_header_json(header.to_json())

    def write_header_json(self, config: dict) -> None:
        """config.json as given: jobs write a header; tests write older runs' layouts."""
        save_json(self.path / "config.json", config)

    def header(self) -> RunHeader:
        """config.json read as a RunHeader, whatever layout the run wrote. Only a run without
        one (queued from the command line) is known by its launch, so only then is the status
        read too: pages call this on every refresh."""
        raw = self.header_json()
        launched = None if raw else self._read_status().get("command")
        return runheader.read(raw, launched, self.name)

    def header_json(self) -> dict:
        """config.json as written ({} when missing or unreadable); read it through header()."""
        return _read_object(self.path / "config.json")

    # ---- status and heartbeat -----------------------------------------------------------
    def set_status(self, state: str, reason: str | None = None, **fields) -> None:
        """Merge `fields` into status.json and stamp the heartbeat. The job calls this."""
        assert state in STATES, state
        status = self._read_status()
        status.update(fields, state=state, reason=reason, heartbeat=time.time(), pid=os.getpid())
        status.setdefault("created", status["heartbeat"])
        if state != "running":   # paused or ended: no rate, and none measured across the pause
            self._rate_ref = None
            status.pop("eta_s", None)
        elif self._rate_ref is None and "step" in fields:
            self._rate_ref = (int(fields["step"]), status["heartbeat"])
        save_json(self.path / "status.json", status)
        self._last_beat = time.time()

    def _update_eta(self, status: dict, step: int, now: float) -> None:
        """A smoothed seconds-per-step from the heartbeats that moved the step, and the ETA it
        gives ("eta_s" in status) once ETA_MIN_SAMPLES samples are in: the first steps (start-up,
        compilation) would otherwise promise hours."""
        ref = self._rate_ref
        if ref is None or step < ref[0] or status.get("state") != "running":
            self._rate_ref = (step, now)
            return
        if step == ref[0]:
            return
        if self._rate_samples < 0:
            self._rate_samples, self._rate_ref = 0, (step, now)
            return
        sample = (now - ref[1]) / (step - ref[0])
        first = self._rate_samples == 0
        self._sec_per_step = sample if first else \
            ETA_SMOOTHING * sample + (1 - ETA_SMOOTHING) * self._sec_per_step
        self._rate_samples += 1
        self._rate_ref = (step, now)
        total = int(status.get("total_steps") or 0)
        if total and self._rate_samples >= ETA_MIN_SAMPLES:
            status["eta_s"] = max(total - step, 0) * self._sec_per_step

    def heartbeat(self, step: int, force: bool = False, **fields) -> None:
        """Cheap to call every step: writes at most once per HEARTBEAT_EVERY_S."""
        now = time.time()
        if not force and now - self._last_beat < HEARTBEAT_EVERY_S:
            return
        status = self._read_status()
        status.update(fields, step=int(step), heartbeat=now)
        self._update_eta(status, int(step), now)
        save_json(self.path / "status.json", status)
        self._last_beat = now

    def _read_status(self) -> dict:
        return _read_object(self.path / "status.json")

    def write_status(self, status: dict) -> None:
        """Replace status.json: for the queue, which speaks for a job that has no process yet."""
        save_json(self.path / "status.json", status)

    def update_status(self, **fields) -> None:
        """Merge `fields` into status.json as it is, state and heartbeat untouched."""
        save_json(self.path / "status.json", {**self._read_status(), **fields})

    # ---- the queue's entry and the evaluation -----------------------------------------------
    def queue_entry(self) -> dict:
        """queue.json as written ({} when missing or unreadable): the command a queued job runs."""
        return _read_object(self.path / QUEUE_FILE)

    def write_queue_entry(self, entry: dict) -> None:
        save_json(self.path / QUEUE_FILE, entry)

    @property
    def evaluation_path(self) -> Path:
        """eval.json: a classifier run's evaluation on its validation and test patients."""
        return self.path / "eval.json"

    def evaluation(self) -> dict:
        return _read_object(self.evaluation_path)

    def stamp(self, name: str) -> int:
        """The modification time (ns) of the run's file `name`, 0 when it is missing: a cache
        key that changes when the file does."""
        try:
            return (self.path / name).stat().st_mtime_ns
        except OSError:
            return 0

    def status(self) -> dict:
        """status.json as the app should show it: an active run whose process is gone is
        reported as failed (killed, out of memory, machine restarted)."""
        status = self._read_status() or {"state": "queued", "reason": None}
        # Fields a reader does arithmetic on must be what they claim (the file may come from
        # anywhere): a state we know, a numeric heartbeat, a whole-number pid.
        if status.get("state") not in STATES:
            if status.get("state") is not None:
                status["reason"] = f"status.json holds an unknown state ({str(status['state'])[:40]!r})"
            status["state"] = "failed" if status.get("state") is not None else "queued"
        for key in ("heartbeat", "created", "step", "total_steps", "eta_s"):
            if key in status and (isinstance(status[key], bool) or
                                  not isinstance(status[key], (int, float))):
                status.pop(key)
        if not isinstance(status.get("pid"), int) or isinstance(status.get("pid"), bool):
            status.pop("pid", None)
        if status.get("state") in ACTIVE_STATES and status.get("pid") and not _pid_alive(status["pid"]):
            status = dict(status, state="failed",
                          reason="the training process ended without saying why (killed or crashed); "
                                 "see job.log. The last checkpoint is kept.")
        status["age_s"] = time.time() - status.get("heartbeat", time.time())
        return status

    def is_active(self) -> bool:
        return self.status().get("state") in ACTIVE_STATES

    # ---- metrics and events (SQLite, WAL) -------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            path = self.path / "metrics.sqlite"
            if path.is_symlink():
                raise UserError(f"{path} is a symbolic link; a run directory may not hold links")
            db = sqlite3.connect(path, timeout=10)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:   # "file is not a database", a damaged page
                db.close()
                raise UserError(f"{path} is not a usable metrics database ({exc}); move it "
                                f"away to start the metrics afresh") from None
            self._db = db
        return self._db

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        """Append plain floats under stable names (`loss/critic`, `wgan/w_estimate`, ...)."""
        t = time.time()
        rows = [(int(step), k, float(v), t) for k, v in values.items()]
        with self._conn() as db:
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", rows)

    def log_event(self, step: int, kind: str, payload: dict | None = None) -> None:
        """A discrete event (a live control change, a checkpoint) so plots can mark it."""
        with self._conn() as db:
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                       (int(step), time.time(), kind, json.dumps(payload or {})))

    def truncate_after(self, step: int) -> None:
        """On resume: drop metrics and events logged after the checkpoint's step, so a resumed
        run's history matches an uninterrupted one."""
        with self._conn() as db:
            db.execute("DELETE FROM metrics WHERE step > ?", (int(step),))
            db.execute("DELETE FROM events WHERE step > ?", (int(step),))

    def _read(self, sql: str, params=()) -> pd.DataFrame:
        path = self.path / "metrics.sqlite"
        if not path.exists():
            return pd.DataFrame()
        db = sqlite3.connect(path, timeout=10)
        try:
            return pd.read_sql_query(sql, db, params=params)
        except (sqlite3.Error, pd.errors.DatabaseError):
            return pd.DataFrame()  # the job has not created its tables yet
        finally:
            db.close()

    def metrics(self, names: list[str] | None = None, since_step: int = -1) -> pd.DataFrame:
        """Long table (step, name, value, t), ordered by step. The live hyperparameters of a run
        from before the "live/" prefix come under their names now (LEGACY_METRICS)."""
        sql = "SELECT step, name, value, t FROM metrics WHERE step > ?"
        params: list = [since_step]
        if names:
            wanted = set(names) | {old for old, new in LEGACY_METRICS.items() if new in names}
            sql += f" AND name IN ({','.join('?' * len(wanted))})"
            params += sorted(wanted)
        df = self._read(sql + " ORDER BY step", params)
        if df.empty:
            return pd.DataFrame(columns=["step", "name", "value", "t"])
        df["name"] = df["name"].replace(LEGACY_METRICS)
        return df

    def metrics_wide(self, names: list[str] | None = None) -> pd.DataFrame:
        """One row per step, one column per metric name."""
        return wide(self.metrics(names))

    def metric_names(self) -> list[str]:
        df = self._read("SELECT DISTINCT name FROM metrics ORDER BY name")
        return sorted({LEGACY_METRICS.get(n, n) for n in df["name"]}) if not df.empty else []

    def events(self, kind: str | None = None) -> pd.DataFrame:
        sql, params = "SELECT step, t, kind, payload FROM events", []
        if kind:
            sql, params = sql + " WHERE kind = ?", [kind]
        df = self._read(sql + " ORDER BY step, t", params)
        if df.empty:
            return pd.DataFrame(columns=["step", "t", "kind", "payload"])
        df["payload"] = df["payload"].map(_payload)
        return df

    # ---- control (app -> job) -----------------------------------------------------------
    def send_control(self, by: str = "command line", **changes) -> dict:
        """Merge changes (gp_lambda, n_critic, lr_critic, lr_gen, paused, stop, sample_now) into
        control.json; `sample_now=True` bumps a counter so repeated requests each count. `by`
        says who asked, per key ("by": {key: who}), so the job can say who made each change."""
        control = self.control()
        if changes.pop("sample_now", False):
            control["sample_now"] = _count(control.get("sample_now")) + 1
        changes = {k: v for k, v in changes.items() if v is not None}
        control.update(changes)
        who = control.get("by") if isinstance(control.get("by"), dict) else {}
        control["by"] = {**who, **{k: str(by) for k in changes}}
        control["seq"] = _count(control.get("seq")) + 1
        save_json(self.path / "control.json", control)
        return control

    def control(self) -> dict:
        return _read_object(self.path / "control.json")

    def poll_control(self) -> dict:
        """For the job, every step: {key: new value} of what changed since the last poll; a
        stat() call when nothing did."""
        try:
            st = (self.path / "control.json").stat()
        except OSError:
            return {}
        # Every write is a rename of a new file, so the inode changes even where mtime is coarse.
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._control_mtime:
            return {}
        self._control_mtime = stamp
        control = self.control()
        changed = {k: v for k, v in control.items()
                   if k != "seq" and self._control_seen.get(k) != v}
        self._control_seen = control
        return changed

    # ---- files --------------------------------------------------------------------------
    def sample_path(self, step: int) -> Path:
        return self.samples_dir / f"step_{int(step):07d}.png"

    def samples(self) -> list[tuple[int, Path]]:
        """(step, path) of the fixed-z sample grids, by step."""
        return _by_step(self.samples_dir.glob("step_*.png"))

    def snapshots(self) -> list[tuple[int, Path]]:
        """(step, path) of the step_XXXXXXX generator snapshots in checkpoints/, by step."""
        return _by_step(self.checkpoints_dir.glob("step_*.safetensors"))

    def raw_sample_path(self, step: int) -> Path:
        """The grid of the raw generator at `step`, written beside sample_path's (which then
        shows the generator's weight average) in samples/raw/; samples() does not list it."""
        return self.samples_dir / "raw" / f"step_{int(step):07d}.png"

    def raw_samples(self) -> list[tuple[int, Path]]:
        """(step, path) of the raw generator's grids, by step (none for a run without a weight
        average, or from before it)."""
        out = []
        for p in (self.samples_dir / "raw").glob("step_*.png"):
            try:
                out.append((int(p.stem.split("_")[1]), p))
            except (IndexError, ValueError):
                continue
        return sorted(out)

    def checkpoints(self) -> list[Path]:
        """Inference snapshots (*.safetensors), newest step first, `latest` first of all."""
        files = list(self.checkpoints_dir.glob("*.safetensors"))
        return sorted(files, key=lambda p: (p.stem != "latest", -p.stat().st_mtime))

    def tail_log(self, n_chars: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n_chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _count(value) -> int:
    """A counter read from control.json (which may come from anywhere): a whole number from 0
    up, else 0."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
    return value if ok else 0


def _by_step(paths) -> list[tuple[int, Path]]:
    """(step, path) of files named step_<step>.*, by step; a file of another name (a run
    directory from elsewhere may hold anything, "step_abc.png") is no step and is left out."""
    out = []
    for p in paths:
        try:
            out.append((int(p.stem.split("_")[1]), p))
        except (IndexError, ValueError):
            continue
    return sorted(out)


def _payload(text) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def list_runs(root: str | Path | None = None) -> list[RunStore]:
    """Every run directory under root, newest first."""
    root = Path(root) if root else runs_root()
    if not root.is_dir():
        return []
    runs = [RunStore(p) for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.name, reverse=True)


UPLOAD_MAX_AGE_S = 7 * 24 * 3600


def prune_uploads(root: str | Path | None = None, max_age_s: float = UPLOAD_MAX_AGE_S,
                  now: float | None = None) -> list[Path]:
    """Delete the folders under root/uploads/ (extracted ZIPs, uploaded image sets) that nothing
    has touched for max_age_s and that no run names as its data source; returns them.

    Uploads are copies of files the user still has, so an old one can go; one a run trained on
    stays, so that run can still be resumed, evaluated and reproduced."""
    import shutil

    root = Path(root) if root else runs_root()
    uploads = root / "uploads"
    if not uploads.is_dir():
        return []
    used = set()
    for run in list_runs(root):
        source = run.header().data_source
        if source:
            used.add(Path(source).expanduser().resolve())
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(p for p in uploads.iterdir() if p.is_dir() and not p.is_symlink()):
        resolved = folder.resolve()
        if any(u == resolved or resolved in u.parents for u in used):
            continue
        newest = max((q.lstat().st_mtime for q in folder.rglob("*")), default=0.0)
        if now - max(newest, folder.lstat().st_mtime) > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def launch(command: list[str], run_dir: str | Path, env: dict | None = None) -> int:
    """Start `python -m core <command...>` as its own process (own session, so closing the app or
    a browser tab does not stop it), output to RUN/job.log. Returns the pid."""
    store = RunStore(run_dir, create=True)
    log = open(store.log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "core", *command], cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})})
    log.close()
    # Queued until the job writes its own status; the pid lets the app notice a job that dies
    # before it starts.
    save_json(store.path / "status.json",
              {"state": "queued", "reason": None, "pid": proc.pid, "heartbeat": time.time(),
               "created": time.time(), "command": command})
    return proc.pid
