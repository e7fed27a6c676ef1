"""The playground's training thread: trains its trainers in lockstep, a short chunk at a time under
the lock the page changes them with, and copies what the page shows after a chunk. It never
touches Streamlit, so a refresh of the page only draws the latest copy."""

from __future__ import annotations

import threading
import time

from collections.abc import Callable
from typing import Any

from core.toy.trainer import ToyTrainer, run_together


class ToyRunner:
    """Trains `play()`'s trainers in a daemon thread until `pause()`, holding `lock` for at most
    about CHUNK_S at a time (hyperparameter changes and the page's reads wait at most that long).

    It sleeps between chunks so that training takes at most `share` of the wall time (the rest
    is the page's: the server sending refreshes and, on the same cores, the browser drawing
    them), and at most `rate` iterations per second. It pauses by itself when nobody called
    `touch()` for `lease_s` seconds: the browser tab was closed or the page left. A training
    error pauses it too, with the message in `error`.

    With `copy` given, it calls copy(trainers) after a chunk, under the lock, at most every
    `copy_every` seconds, and keeps the result in `latest`: the page draws that without waiting
    for the lock (a chunk of a slow iteration on a loaded machine held it for a second)."""

    CHUNK_S = 0.05

    def __init__(self, lock: threading.RLock, share: float = 0.6, lease_s: float = 10.0,
                 copy_every: float = 0.1):
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.lock, self.share, self.lease_s, self.copy_every = lock, share, lease_s, copy_every
        self.error: str | None = None
        self.latest: tuple[Any, Any] | None = None  # (the copy's key, copy(trainers))
        self._copy: tuple[Any, Callable[[list[ToyTrainer]], Any]] | None = None
        self._cond = threading.Condition()
        self._trainers: list[ToyTrainer] = []
        self._rate = 1.0
        self._playing = False
        self._seen = time.monotonic()
        self._thread: threading.Thread | None = None

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def running(self) -> bool:
        """The thread is alive (it may still finish a chunk after pause())."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def play(self, trainers: list[ToyTrainer], rate: float,
             copy: Callable[[list[ToyTrainer]], Any] | None = None, key: Any = None) -> None:
        """Train `trainers` at most `rate` iterations per second from now on (starts the thread
        if it is not running; a running one takes the new trainers and rate at its next chunk).
        `copy` (which must not call Streamlit) fills `latest` as (key, copy(trainers))."""
        with self._cond:
            self._trainers, self._rate = list(trainers), max(float(rate), 1e-3)
            self._copy = (key, copy) if copy is not None else None
            self._playing, self._seen, self.error = True, time.monotonic(), None
            if self._thread is None:  # the loop clears it under this lock as it ends
                self.latest = None  # made before a pause: the trainers may have changed since
                self._thread = threading.Thread(target=self._loop, name="toy-runner",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pause(self, wait: bool = False) -> None:
        """Stop after the current chunk; with `wait`, return once the thread has ended."""
        with self._cond:
            self._playing = False
            self._cond.notify_all()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def touch(self) -> None:
        """The page is still showing: keep playing."""
        self._seen = time.monotonic()

    def _loop(self) -> None:
        copied = -float("inf")
        while True:
            with self._cond:
                if self._playing and time.monotonic() - self._seen > self.lease_s:
                    self._playing = False
                if not self._playing:
                    self._thread = None
                    return
                trainers, rate, copy = self._trainers, self._rate, self._copy
            start = time.perf_counter()
            try:
                with self.lock:
                    done = run_together(trainers, max(1, round(rate * self.CHUNK_S)),
                                        self.CHUNK_S)
                    if copy is not None and self._playing and \
                            time.monotonic() - copied >= self.copy_every:
                        self.latest, copied = (copy[0], copy[1](trainers)), time.monotonic()
            except Exception as exc:  # noqa: BLE001 - shown on the page; training stops
                with self._cond:
                    self.error, self._playing = f"Training stopped: {exc}", False
                    self._thread = None
                return
            busy = time.perf_counter() - start
            # Sleeping also leaves the GIL to the server's threads for that long.
            rest = max(busy * (1 - self.share) / self.share, done / rate - busy, 0.001)
            with self._cond:
                if self._playing:
                    self._cond.wait(rest)
