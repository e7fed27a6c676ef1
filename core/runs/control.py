"""The one door from the run directory into a training loop: stop, pause, SIGTERM, and the
rest of control.json for the loop that wants it (the GAN job's live hyperparameters and sample
requests, core.gan.job). Both training loops poll it and pause through it the same way."""

from __future__ import annotations

import signal
import time

from core.runs.sink import RunSink
from core.runs.store import RunStore

PAUSE_POLL_S = 0.2   # how often a paused job looks at control.json (and beats its heart)
_SIGNALLED = {"stop": False}


def _on_sigterm(signum, frame) -> None:   # a polite kill becomes a stop with a checkpoint
    _SIGNALLED["stop"] = True


def stop_on_sigterm() -> None:
    """From now on SIGTERM asks every Control to stop (main thread only; elsewhere a no-op)."""
    _SIGNALLED["stop"] = False
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:   # not the main thread
        pass


class Control:
    """Rank 0 reads control.json (a stat() per poll when nothing changed); `paused` and `stop`
    are the user's. Subclasses take the other keys in `apply` and share them across processes
    in `sync`."""

    def __init__(self, store: RunStore, rank0: bool = True):
        self.store, self.rank0 = store, rank0
        self.paused = self.stop = False

    def poll(self, step: int) -> None:
        """Read what changed in control.json and apply it (rank 0)."""
        if not self.rank0:
            return
        for key, value in self.store.poll_control().items():
            try:
                if key in ("paused", "stop"):
                    if not isinstance(value, bool):
                        raise ValueError(f"{key} must be true or false")
                    setattr(self, key, value)
                else:
                    self.apply(key, value)
            except (TypeError, ValueError, OverflowError) as exc:   # int(Infinity) overflows
                print(f"step {step}: control {key}={value!r:.80} ignored: {exc}", flush=True)
                self.store.log_event(step, "control-rejected", {key: value, "reason": str(exc)})

    def apply(self, key: str, value) -> None:
        """A key other than paused/stop; the base ignores it (a classifier has no live values)."""

    def sync(self, step: int) -> None:
        """Poll, and agree across processes (one process: nothing to agree on)."""
        self.poll(step)

    @property
    def should_stop(self) -> bool:
        return self.stop or _SIGNALLED["stop"]

    def wait_while_paused(self, step: int, report: RunSink, **status) -> bool:
        """While the user holds the job paused: say so, keep the heartbeat, poll; then say it
        runs again. Returns whether it was paused (a loop may restart its timers)."""
        if not self.paused or self.should_stop:
            return False
        report.status("paused", reason="paused by the user", step=step, **status)
        report.event(step, "paused")
        report.say(f"step {step}: paused")
        while self.paused and not self.should_stop:
            time.sleep(PAUSE_POLL_S)
            report.heartbeat(step)
            self.sync(step + 1)
        if not self.should_stop:
            report.status("running", step=step, **status)
            report.event(step, "resumed")
            report.say(f"step {step}: resumed")
        return True
