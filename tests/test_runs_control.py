"""core.runs.control: what a training loop learns from control.json (stop, pause, other keys),
that SIGTERM becomes a stop, how a paused loop waits and resumes, and that a value it cannot
take is logged as a control-rejected event instead of crashing or being silently dropped."""

from __future__ import annotations

import os
import signal

import pytest

from core.runs import control as control_mod
from core.runs.control import Control, stop_on_sigterm
from core.runs.sink import RunSink
from core.runs.store import RunStore


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run", create=True)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_sigterm_left(monkeypatch):
    # A test that signals must not leave a stop for the next one, nor its handler installed.
    monkeypatch.setitem(control_mod._SIGNALLED, "stop", False)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _sender(store: RunStore) -> RunStore:
    return RunStore(store.path)   # the app's own handle on the run directory


def test_stop_and_pause_come_from_control_json(store):
    control = Control(store)
    control.poll(1)
    assert not control.paused and not control.should_stop
    _sender(store).send_control(paused=True)
    control.poll(2)
    assert control.paused and not control.should_stop
    _sender(store).send_control(stop=True)
    control.sync(3)
    assert control.should_stop


def test_only_rank_0_reads_control_json(store):
    control = Control(store, rank0=False)
    _sender(store).send_control(stop=True, paused=True)
    control.poll(1)
    assert not control.stop and not control.paused


def test_sigterm_asks_the_loop_to_stop(store):
    control = Control(store)
    stop_on_sigterm()
    assert not control.should_stop
    os.kill(os.getpid(), signal.SIGTERM)
    assert control.should_stop and not control.stop   # the signal's, not the user's


def test_a_value_that_is_not_a_bool_is_rejected_and_logged(store, capsys):
    control = Control(store)
    _sender(store).send_control(paused="yes")
    control.poll(7)
    assert not control.paused
    events = store.events("control-rejected")
    assert len(events) == 1 and int(events.step.iloc[0]) == 7
    payload = events.payload.iloc[0]
    assert payload["paused"] == "yes" and "true or false" in payload["reason"]
    assert "control paused='yes' ignored" in capsys.readouterr().out


def test_a_key_the_subclass_refuses_is_rejected_and_the_rest_applied(store):
    class Live(Control):
        def apply(self, key, value):
            if key == "lr":
                if not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError("lr must be positive")
                self.lr = value

    control = Live(store)
    _sender(store).send_control(lr=-1.0, stop=True)
    control.poll(3)
    assert control.should_stop and not hasattr(control, "lr")
    assert store.events("control-rejected").payload.iloc[0]["reason"] == "lr must be positive"
    _sender(store).send_control(lr=0.5)
    control.poll(4)
    assert control.lr == 0.5 and len(store.events("control-rejected")) == 1


class _Bounded(Control):
    """A Control that gives up waiting (stops itself) after many polls, so a loop that never
    resumes fails its test instead of hanging it."""

    def sync(self, step):
        self.polls = getattr(self, "polls", 0) + 1
        if self.polls > 500:
            self.stop = True
        super().sync(step)


class _ResumeOnHeartbeat(RunSink):
    """A RunSink that, at the paused loop's `resume_after`-th heartbeat, has the user send
    `then` (so the wait ends without a second thread or a clock)."""

    def __init__(self, store, resume_after=2, then=None):
        super().__init__(store)
        self.beats, self.resume_after = 0, resume_after
        self.then = then or {"paused": False}

    def heartbeat(self, step, force=False, **fields):
        super().heartbeat(step, force=force, **fields)
        self.beats += 1
        if self.beats == self.resume_after:
            _sender(self.store).send_control(**self.then)


def test_a_running_loop_does_not_wait(store):
    control, report = Control(store), _ResumeOnHeartbeat(store)
    assert control.wait_while_paused(5, report) is False
    assert store.events().empty and not (store.path / "status.json").exists()


def test_a_paused_loop_says_so_beats_its_heart_and_resumes(store, monkeypatch, capsys):
    monkeypatch.setattr(control_mod, "PAUSE_POLL_S", 0.01)
    report = _ResumeOnHeartbeat(store, resume_after=3)
    store.set_status("running", step=9, total_steps=100)
    control = _Bounded(store)
    _sender(store).send_control(paused=True)
    control.poll(9)
    assert control.wait_while_paused(9, report, total_steps=100) is True
    assert report.beats == 3 and not control.paused and not control.should_stop
    assert list(store.events().kind) == ["paused", "resumed"]
    status = store.status()
    assert status["state"] == "running" and status["step"] == 9
    out = capsys.readouterr().out
    assert "step 9: paused" in out and "step 9: resumed" in out


def test_a_stop_while_paused_ends_the_wait_without_resuming(store, monkeypatch):
    monkeypatch.setattr(control_mod, "PAUSE_POLL_S", 0.01)
    report = _ResumeOnHeartbeat(store, resume_after=1, then={"stop": True})
    control = _Bounded(store)
    _sender(store).send_control(paused=True)
    control.poll(4)
    assert control.wait_while_paused(4, report) is True
    assert control.should_stop
    assert list(store.events().kind) == ["paused"]
    assert store.status()["state"] == "paused"
