"""The run directory contract: status, metrics in SQLite, control round trip, dead-job detection."""

import json
import subprocess
import sys
import time

import pytest

from core.errors import UserError
from core.runs.store import RunStore, launch, list_runs, new_run_dir, prune_uploads


def test_metrics_events_and_status_round_trip(tmp_path):
    job = RunStore(tmp_path / "run", create=True)
    job.write_header_json({"loss": "wgan-gp"})
    job.set_status("running", step=0, total_steps=10)
    job.log_metrics(1, {"loss/critic": 1.5, "loss/gen": -0.25})
    job.log_metrics(2, {"loss/critic": 1.0})
    job.log_event(2, "control", {"gp_lambda": 5.0})

    app = RunStore(tmp_path / "run")  # a second reader, as the dashboard is
    wide = app.metrics_wide()
    assert wide.loc[1, "loss/gen"] == -0.25 and wide.loc[2, "loss/critic"] == 1.0
    assert app.metric_names() == ["loss/critic", "loss/gen"]
    assert app.events("control")["payload"].tolist() == [{"gp_lambda": 5.0}]
    assert app.status()["state"] == "running" and app.header_json() == {"loss": "wgan-gp"}

    job.truncate_after(1)
    assert app.metrics()["step"].max() == 1 and app.events().empty


def test_live_metrics_of_old_runs_read_under_their_new_names(tmp_path):
    # Runs from before the "live/" prefix logged lambda, n_critic, lr/critic and lr/gen.
    store = RunStore(tmp_path / "run", create=True)
    store.log_metrics(1, {"lambda": 10.0, "n_critic": 5.0, "lr/critic": 1e-4, "loss/gen": 0.5})
    store.log_metrics(2, {"live/gp_lambda": 3.0, "loss/gen": 0.4})
    wide = store.metrics_wide(["live/gp_lambda", "live/n_critic", "live/lr_critic"])
    assert wide["live/gp_lambda"].tolist() == [10.0, 3.0]
    assert wide.loc[1, "live/n_critic"] == 5.0 and wide.loc[1, "live/lr_critic"] == 1e-4
    assert store.metric_names() == ["live/gp_lambda", "live/lr_critic", "live/n_critic", "loss/gen"]


def test_control_reports_only_changes(tmp_path):
    job = RunStore(tmp_path / "run", create=True)
    app = RunStore(tmp_path / "run")
    assert job.poll_control() == {}
    app.send_control(gp_lambda=5.0, n_critic=3)
    assert job.poll_control() == {"gp_lambda": 5.0, "n_critic": 3,
                                  "by": {"gp_lambda": "command line", "n_critic": "command line"}}
    assert job.poll_control() == {}
    app.send_control(gp_lambda=5.0, sample_now=True)  # same lambda: only the sample request is new
    assert job.poll_control() == {"sample_now": 1}
    app.send_control(by="browser 3fa2c1d0", paused=True)
    assert job.poll_control() == {"paused": True, "by": {"gp_lambda": "command line",
                                                         "n_critic": "command line",
                                                         "paused": "browser 3fa2c1d0"}}


def test_dead_process_shows_as_failed(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (store.path / "status.json").write_text(json.dumps({"state": "running", "pid": proc.pid, "heartbeat": 0}))
    status = store.status()
    assert status["state"] == "failed" and "ended" in status["reason"]


def test_launch_runs_a_core_command_in_its_own_process(tmp_path):
    run_dir = tmp_path / "job"
    pid = launch(["control", str(run_dir), "--lambda", "3"], run_dir)
    assert pid > 0
    for _ in range(200):  # the control command writes control.json and exits
        if (run_dir / "control.json").exists():
            break
        time.sleep(0.05)
    assert RunStore(run_dir).control()["gp_lambda"] == 3.0


def test_new_run_dirs_are_numbered_per_kind(tmp_path):
    # The command line names its runs as the app does: readable, numbered within their kind.
    names = [new_run_dir(kind, tmp_path).name for kind in ("wgan-gp", "wgan-gp", "classifier")]
    assert [n.split("-", 2)[2] for n in names] == ["wgan-gp-1", "wgan-gp-2", "classifier-1"]


def test_listing_and_missing_dirs(tmp_path):
    a = new_run_dir("wgan-gp", tmp_path)
    RunStore(a, create=True).set_status("finished")
    assert [r.path for r in list_runs(tmp_path)] == [a]
    with pytest.raises(UserError, match="not found"):
        RunStore(tmp_path / "nope")


def test_prune_uploads_keeps_recent_and_used_folders(tmp_path):
    import os

    uploads = tmp_path / "uploads"
    for name in ("old", "recent", "used-by-run"):
        (uploads / name / "COVID-19").mkdir(parents=True)
        (uploads / name / "COVID-19" / "a.png").write_bytes(b"png")
    run = RunStore(tmp_path / "run-1", create=True)
    run.write_header_json({"data": {"source": str(uploads / "used-by-run")}})
    run.set_status("finished")
    now = time.time()
    for path in list((uploads / "old").rglob("*")) + list((uploads / "used-by-run").rglob("*")) \
            + [uploads / "old", uploads / "used-by-run"]:
        os.utime(path, (now - 8 * 86400, now - 8 * 86400))  # untouched for 8 days
    removed = prune_uploads(tmp_path, now=now)
    assert removed == [uploads / "old"]
    assert sorted(p.name for p in uploads.iterdir()) == ["recent", "used-by-run"]
    assert prune_uploads(tmp_path / "nowhere") == []


def test_eta_from_a_smoothed_rate_after_warm_up_and_none_while_paused(tmp_path, monkeypatch):
    """The first interval (start-up) is no sample; the ETA appears after ETA_MIN_SAMPLES and
    follows the recent rate; pausing drops it and the pause is not measured as slow steps."""
    from core.runs import store as rs

    clock = [1000.0]
    monkeypatch.setattr(rs.time, "time", lambda: clock[0])
    store = rs.RunStore(tmp_path / "run", create=True)
    store.set_status("running", step=0, total_steps=100)

    def beat(step, dt):
        clock[0] += dt
        store.heartbeat(step, force=True)
        return store.status().get("eta_s")

    assert beat(1, 60.0) is None          # start-up: 60 s for the first step, not a rate
    assert beat(2, 1.0) is None and beat(3, 1.0) is None
    assert beat(4, 1.0) == pytest.approx(96 * 1.0)
    store.set_status("paused", step=4, total_steps=100)
    assert "eta_s" not in store.status()
    clock[0] += 600                        # ten minutes paused
    store.set_status("running", step=4, total_steps=100)
    beat(4, 0.0)
    assert beat(5, 1.0) == pytest.approx(95 * 1.0)   # the pause did not count
