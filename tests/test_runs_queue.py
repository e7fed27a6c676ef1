"""core/runs/queue.py: jobs start oldest first while slots are free (CPU jobs up to the cores, each
with its share of threads; one per GPU), wait otherwise with a position and an estimate, can be
cancelled while waiting, survive a restart (the queue is the runs folder), record who asked; and
for real: a queued job starts by itself when the one before it ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from core.runs import queue as jobqueue
from core.errors import UserError
from core.runs.store import QUEUE_FILE, RunStore, runs_root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_launch(monkeypatch):
    """launch() that starts nothing: the job 'runs' as this test process (alive) until the test
    ends it by writing its final status."""
    started = []

    def launch(argv, run_dir, env=None):
        started.append((argv, env))
        RunStore(run_dir).set_status("running", pid=os.getpid(), step=0, total_steps=10,
                                     started=time.time() - 10, command=argv)
        return os.getpid()

    monkeypatch.setattr(jobqueue, "launch", launch)
    return started


def _slots(monkeypatch, resource, n, cores=2):
    monkeypatch.setattr(jobqueue, "slots", lambda: (resource, n))
    monkeypatch.setattr(jobqueue, "cores", lambda: cores)


def test_oldest_first_one_slot(fake_launch, monkeypatch):
    _slots(monkeypatch, "cpu", 1)
    a = jobqueue.submit("train-gan", ["--data", "phantom"], "gan", owner="session aaaa")
    b = jobqueue.submit("train-classifier", ["--data", "phantom"], "classifier", owner="session bbbb")
    c = jobqueue.submit("train-gan", ["--steps", "5"], "gan")
    assert [argv[-1] for argv, _ in fake_launch] == [str(a.path)]
    assert [s.name for s in jobqueue.waiting()] == [b.name, c.name]
    assert jobqueue.position(b)["position"] == 1 and jobqueue.position(c)["ahead"] == 1
    assert jobqueue.position(a) is None
    # b's estimate: a has done 0 of 10 steps, so no rate yet; after some steps, a number
    a.set_status("running", step=5, total_steps=10, started=time.time() - 50)
    assert jobqueue.position(b)["start_in_s"] == pytest.approx(50, abs=5)
    assert jobqueue.position(c)["start_in_s"] is None   # behind another waiting job
    assert a.status()["owner"] == "session aaaa" and c.status()["owner"] == "command line"
    a.set_status("finished")
    jobqueue.schedule()
    assert [argv[-1] for argv, _ in fake_launch] == [str(a.path), str(b.path)]
    argv, env = fake_launch[1]
    assert argv[:3] == ["train-classifier", "--data", "phantom"] and argv[-2] == "--run-dir"
    assert env["OMP_NUM_THREADS"] == "2"   # alone on 2 cores with one slot: both threads


def test_a_repeated_request_is_one_job(fake_launch, monkeypatch):
    """A double click, or a page rerun that repeats the first click, submits the same request
    id again: one job, whoever asks how often; another request is another job."""
    _slots(monkeypatch, "cpu", 1)
    first = jobqueue.submit("train-gan", ["--data", "phantom:8"], "gan", request="a1b2c3")
    again = jobqueue.submit("train-gan", ["--data", "phantom:8"], "gan", request="a1b2c3")
    other = jobqueue.submit("train-gan", ["--data", "phantom:8"], "gan", request="d4e5f6")
    assert again.path == first.path and other.path != first.path
    assert len(fake_launch) == 1 and len([p for p in runs_root().iterdir() if p.is_dir()]) == 2


def test_cpu_jobs_up_to_the_cores_each_its_share(fake_launch, monkeypatch):
    _slots(monkeypatch, "cpu", 2, cores=2)
    for _ in range(3):
        jobqueue.submit("train-gan", [], "gan")
    assert len(fake_launch) == 2 and len(jobqueue.waiting()) == 1
    assert {env["OMP_NUM_THREADS"] for _, env in fake_launch} == {"1"}


def test_one_job_per_gpu(fake_launch, monkeypatch):
    _slots(monkeypatch, "gpu", 1, cores=16)
    jobqueue.submit("train-gan", [], "gan")
    jobqueue.submit("train-gan", [], "gan")
    assert len(fake_launch) == 1 and len(jobqueue.waiting()) == 1
    assert fake_launch[0][1]["OMP_NUM_THREADS"] == "2"


def test_a_job_started_elsewhere_takes_a_slot(fake_launch, monkeypatch):
    _slots(monkeypatch, "cpu", 1)
    other = RunStore(runs_root() / "cli-run", create=True)   # e.g. train-gan from a terminal
    other.set_status("running", pid=os.getpid())
    queued = jobqueue.submit("train-gan", [], "gan")
    assert not fake_launch and jobqueue.position(queued)["running"] == 1
    other.set_status("failed", reason="killed")
    jobqueue.schedule()
    assert len(fake_launch) == 1


def test_cancel_while_waiting(fake_launch, monkeypatch):
    _slots(monkeypatch, "cpu", 1)
    a = jobqueue.submit("train-gan", [], "gan")
    b = jobqueue.submit("train-gan", [], "gan")
    jobqueue.cancel(b)
    assert b.status()["state"] == "stopped" and "cancelled" in b.status()["reason"]
    a.set_status("finished")
    jobqueue.schedule()
    assert len(fake_launch) == 1 and not jobqueue.waiting()
    with pytest.raises(UserError, match="not queued or running"):
        jobqueue.cancel(a)


def test_the_queue_survives_a_restart(monkeypatch):
    """Submitted with no free slot, nothing running in the background: a new process (a
    restarted app, or the CLI) sees the job waiting, in order, with its command line."""
    _slots(monkeypatch, "cpu", 0)
    a = jobqueue.submit("train-gan", ["--steps", "3"], "gan")
    out = subprocess.run([sys.executable, "-c",
                          "from core.runs import queue as jobqueue; print([s.name for s in jobqueue.waiting()])"],
                         cwd=REPO, capture_output=True, text=True, env=os.environ, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([a.name])
    entry = json.loads((a.path / QUEUE_FILE).read_text())
    assert entry["argv"][:3] == ["train-gan", "--steps", "3"]


@pytest.mark.parametrize("text", [
    b"[1, 2", b"\xff\xfe", b"[]", b'{"argv": "train-gan", "submitted": 1}',
    b'{"argv": ["rm", "-rf", "/"], "submitted": 1}',              # not a command of the CLI
    b'{"argv": ["queue", "train-gan"], "submitted": 1}',
    b'{"argv": ["train-gan", 3], "submitted": 1}',
    b'{"argv": ["train-gan"], "submitted": "yesterday"}'])
def test_a_broken_or_foreign_queue_file_is_not_a_job(fake_launch, monkeypatch, text):
    _slots(monkeypatch, "cpu", 0)
    a = jobqueue.submit("train-gan", [], "gan")
    (a.path / QUEUE_FILE).write_bytes(text)
    assert jobqueue.waiting() == []
    _slots(monkeypatch, "cpu", 1)
    assert jobqueue.schedule() == [] and not fake_launch


def test_queued_jobs_start_by_themselves():
    """Real processes, one CPU slot: the second tiny GAN job waits, then starts when the first
    ends (the first job's exit schedules it; no page is open)."""
    args = ["--data", "phantom:4", "--size", "32", "--preset", "cpu-tiny", "--steps", "2",
            "--holdout", "0", "--sample-every", "1", "--log-every", "1", "--threads", "1"]
    env = dict(os.environ)
    code = ("import sys; from core.runs import queue as jobqueue; jobqueue.slots = lambda: ('cpu', 1); "
            "jobqueue.cores = lambda: 1; "
            f"a = jobqueue.submit('train-gan', {args!r}, 'gan'); "
            f"b = jobqueue.submit('train-gan', {args!r}, 'gan'); print(a.path, b.path)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    a, b = (RunStore(p) for p in out.stdout.split())
    assert b.status()["state"] == "queued" and not b.status().get("pid")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and b.status().get("state") != "finished":
        assert b.status().get("state") != "failed", b.tail_log()
        time.sleep(0.5)
    assert a.status()["state"] == "finished" and b.status()["state"] == "finished", b.tail_log()
    assert b.status()["created"] >= a.status()["heartbeat"] - 1   # b began as a ended
