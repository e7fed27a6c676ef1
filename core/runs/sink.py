"""The one door from a training loop out to its run directory: status, heartbeat, metrics,
events and the job's log line. Under torchrun every process may call it; only rank 0 writes,
so a loop says what happened without asking which process it is."""

from __future__ import annotations

from core.runs.store import RunStore


class RunSink:
    """Where a training loop reports what happened; only rank 0 writes."""

    def __init__(self, store: RunStore, rank0: bool = True):
        self.store, self.rank0 = store, rank0

    def status(self, state: str, reason: str | None = None, **fields) -> None:
        if self.rank0:
            self.store.set_status(state, reason=reason, **fields)

    def heartbeat(self, step: int, force: bool = False, **fields) -> None:
        if self.rank0:
            self.store.heartbeat(step, force=force, **fields)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if self.rank0:
            self.store.log_metrics(step, values)

    def event(self, step: int, kind: str, payload: dict | None = None) -> None:
        if self.rank0:
            self.store.log_event(step, kind, payload)

    def say(self, line: str) -> None:
        """A line for job.log (the job's stdout)."""
        if self.rank0:
            print(line, flush=True)
