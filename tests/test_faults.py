"""Faults a training job must survive (issue #17): kill -9 at random moments, a full disk, a
non-finite loss (tests/test_gan_job.py). bench/faults.py runs the kill drill 20 times and fills
a real tmpfs; here one kill and a simulated full disk keep the suite short on a busy machine."""

from __future__ import annotations

import errno
import json

import pytest

import core.checkpoint as checkpoint
from core.__main__ import main
from faults import TINY, integrity, kill_and_resume, saved_step
from core.runs.store import RunStore


def test_kill_9_then_resume_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path):
    rows = kill_and_resume(tmp_path / "run", kills=1, steps=60, seed=1, span=4)
    assert len(rows) == 1, rows
    for row in rows:
        assert row["integrity"] == "ok", row
        assert row["resumed"] and row["finished"], row
        assert row["lost"] <= 5, row          # checkpoint_every 5
    assert RunStore(tmp_path / "run").status()["state"] == "finished"
    assert integrity(tmp_path / "run") == "ok"


def test_a_full_disk_fails_clearly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_save = checkpoint.torch.save
    calls = {"n": 0}

    def full_after_first(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:   # the second training state: the disk is full half way through
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_after_first)
    rc = main(["train-gan", *TINY, "--steps", "12", "--run-dir", str(run)])
    assert rc == 1
    status = RunStore(run).status()
    assert status["state"] == "failed"
    assert "disk" in status["reason"] and str(run) in status["reason"] and "full" in status["reason"]
    assert "Traceback" not in capsys.readouterr().out
    # The last good checkpoint (step 5) is whole, and no half-written file is left behind.
    assert saved_step(run) == 5
    assert not [p.name for p in run.rglob("*.tmp")]
    monkeypatch.setattr(checkpoint.torch, "save", real_save)   # space freed
    assert main(["train-gan", "--resume", "--run-dir", str(run)]) == 0
    assert RunStore(run).status()["state"] == "finished" and saved_step(run) == 12
    assert integrity(run) == "ok"


@pytest.mark.parametrize("content", ["[1, 2]", b"\xff\xfe not utf-8"])
def test_a_run_directory_with_broken_status_files_still_reads(tmp_path, content):
    store = RunStore(tmp_path / "r", create=True)
    for name in ("status.json", "control.json", "config.json"):
        path = store.path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert store.status()["state"] == "queued" and store.control() == {} and store.header_json() == {}
    store.send_control(n_critic=3)   # the app can still steer it: the file is replaced whole
    assert json.loads((store.path / "control.json").read_text())["n_critic"] == 3


def test_a_status_from_elsewhere_with_odd_fields_reads_as_failed_or_queued(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    (store.path / "status.json").write_text(json.dumps(
        {"state": "exploding", "pid": "abc", "heartbeat": "yesterday", "step": [1]}))
    status = store.status()
    assert status["state"] == "failed" and "unknown state" in status["reason"]
    assert "step" not in status and "pid" not in status and abs(status["age_s"]) < 60
