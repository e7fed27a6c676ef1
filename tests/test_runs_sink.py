"""core.runs.sink: rank 0's RunSink writes status, heartbeat, metrics, events and the job's
log line; any other rank's writes nothing at all, so every process of a torchrun job may call it."""

from __future__ import annotations

import pytest

from core.runs.sink import RunSink
from core.runs.store import RunStore


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run", create=True)
    yield s
    s.close()


def _report_everything(report: RunSink) -> None:
    report.status("running", step=1, total_steps=10)
    report.heartbeat(2, force=True)
    report.metrics(2, {"loss/critic": -1.5, "loss/gen": 0.25})
    report.event(2, "checkpoint", {"file": "latest.safetensors"})
    report.say("step 2: hello from this rank")


def _files(store: RunStore) -> list[str]:
    return sorted(str(p.relative_to(store.path)) for p in store.path.rglob("*"))


def test_rank_0_writes_status_metrics_events_and_the_log_line(store, capsys):
    _report_everything(RunSink(store))
    status = store.status()
    assert status["state"] == "running" and status["step"] == 2 and status["total_steps"] == 10
    metrics = store.metrics()
    assert sorted(metrics.name) == ["loss/critic", "loss/gen"]
    assert set(metrics.step) == {2} and sorted(metrics.value) == [-1.5, 0.25]
    events = store.events()
    assert list(events.kind) == ["checkpoint"]
    assert events.payload.iloc[0] == {"file": "latest.safetensors"}
    assert capsys.readouterr().out == "step 2: hello from this rank\n"


def test_another_rank_writes_nothing(store, capsys):
    before = _files(store)
    _report_everything(RunSink(store, rank0=False))
    assert _files(store) == before   # no status.json, no metrics database
    assert store.metrics().empty and store.events().empty
    assert not (store.path / "status.json").exists()
    assert capsys.readouterr().out == ""
