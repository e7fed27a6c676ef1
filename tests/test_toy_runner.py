"""Tests for core/toy/runner.py: the playground's training thread plays, pauses, stops by itself
when nobody looks, and stops with a message when training fails."""

import threading
import time

import pytest
import torch

from core.toy.runner import ToyRunner
from core.toy.trainer import ToyConfig, ToyTrainer


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(loss: str) -> ToyTrainer:
    return ToyTrainer(ToyConfig(loss=loss, hidden=16, depth=2, batch_size=16, pool_size=500,
                                threads=1))


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_plays_in_its_own_thread_in_lockstep_until_paused():
    a, b = tiny("wgan-gp"), tiny("gan")
    runner = ToyRunner(threading.RLock())
    runner.play([a, b], rate=1000)
    wait_for(lambda: a.gen_steps >= 3)          # nobody calls anything: the thread trains
    runner.pause(wait=True)
    assert not runner.running and not runner.playing
    with runner.lock:
        assert a.gen_steps == b.gen_steps        # lockstep, chunk by chunk
    steps = a.gen_steps
    time.sleep(0.2)
    assert a.gen_steps == steps                  # paused means paused
    runner.play([a], rate=1000)                  # plays again, now one trainer
    wait_for(lambda: a.gen_steps > steps)
    runner.pause(wait=True)
    assert b.gen_steps == steps


def test_the_page_reads_and_changes_the_trainers_between_chunks():
    a = tiny("wgan-gp")
    runner = ToyRunner(threading.RLock())
    runner.play([a], rate=1000)
    wait_for(lambda: a.gen_steps >= 1)
    with runner.lock:                            # what the page's callbacks and refreshes do
        before = a.gen_steps
        a.update(lr_critic=1e-4, n_critic=2)
        time.sleep(0.1)
        assert a.gen_steps == before             # no step while the lock is held
    wait_for(lambda: a.gen_steps > before)
    runner.pause(wait=True)
    assert a.opt_critic.param_groups[0]["lr"] == 1e-4


def test_stops_by_itself_when_the_page_stops_looking():
    a = tiny("gan")
    runner = ToyRunner(threading.RLock(), lease_s=0.3)
    runner.play([a], rate=1000)
    wait_for(lambda: not runner.running)         # no touch() for 0.3 s: a closed tab
    assert not runner.playing and runner.error is None


def test_a_training_error_stops_it_with_the_message(monkeypatch):
    a = tiny("gan")

    def broken():
        raise RuntimeError("out of memory")
    monkeypatch.setattr(a, "iteration", broken)
    runner = ToyRunner(threading.RLock())
    runner.play([a], rate=1000)
    wait_for(lambda: not runner.running)
    assert not runner.playing and "out of memory" in runner.error


def test_share_is_checked():
    with pytest.raises(ValueError):
        ToyRunner(threading.RLock(), share=0)


def test_copies_what_the_page_shows_under_the_lock_after_a_chunk():
    a, b = tiny("wgan-gp"), tiny("gan")
    runner = ToyRunner(threading.RLock(), copy_every=0.0)
    seen = []

    def copy(trainers):
        seen.append(runner.lock._is_owned())  # the training thread holds the lock
        return [t.gen_steps for t in trainers]
    runner.play([a, b], rate=1000, copy=copy, key="k")
    wait_for(lambda: runner.latest is not None and runner.latest[1][0] >= 2)
    runner.pause(wait=True)
    key, steps = runner.latest
    assert key == "k" and steps[0] == steps[1] and all(seen)
    runner.play([a], rate=1000)                  # a new thread: no copy from before the pause
    assert runner.latest is None
    runner.pause(wait=True)
