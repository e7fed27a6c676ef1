"""core.atomic: a write replaces its target whole or not at all, and a lock file keeps a second
holder waiting until the first lets go (or dies)."""

from __future__ import annotations

import fcntl
import os

import pytest

from core.atomic import atomic_path, file_lock


def test_a_finished_write_replaces_the_target_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "deep" / "status.json"   # the folder is made on the way
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert not target.exists()   # nobody sees the file before it is whole
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["status.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_debris(tmp_path):
    target = tmp_path / "status.json"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(28, "disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_the_temporary_name_cannot_be_guessed(tmp_path):
    # A predictable name could be planted as a link beforehand and catch the write.
    names = set()
    for _ in range(2):
        with atomic_path(tmp_path / "a.bin") as tmp:
            names.add(tmp.name)
            tmp.write_bytes(b"x")
    assert len(names) == 2


def _try_lock(path) -> bool:
    # Another open file description: flock conflicts with it as with another process.
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_the_lock_is_exclusive_while_held_and_free_after(tmp_path):
    lock = tmp_path / "locks" / "queue.lock"
    with file_lock(lock):
        assert lock.is_file()
        assert not _try_lock(lock)
    assert _try_lock(lock)


def test_the_lock_is_released_when_the_block_fails(tmp_path):
    lock = tmp_path / "queue.lock"
    with pytest.raises(RuntimeError):
        with file_lock(lock):
            raise RuntimeError("boom")
    assert _try_lock(lock)


def test_a_writers_own_error_on_a_full_disk_becomes_the_disk_full_error(tmp_path, monkeypatch):
    """torch.save reports a full disk as "unexpected pos"; atomic_path asks the disk (full_disk)
    and raises the plain ENOSPC, removing the half-written file. The real 3 MB disk is in
    tests/test_hostile_inputs.py (marked slow)."""
    import errno

    from core import atomic
    from core.errors import environment_reason

    target = tmp_path / "latest_state.pt"
    monkeypatch.setattr(atomic, "full_disk", lambda folder: OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError) as caught:
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 887488")
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)
    assert "full" in environment_reason(caught.value) and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(atomic, "full_disk", lambda folder: None)   # room on the disk: a bug
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic.atomic_path(target) as tmp:
            raise RuntimeError("unexpected pos")


def test_full_disk_asks_the_disk(tmp_path, monkeypatch):
    import builtins
    import errno

    from core import atomic

    assert atomic.full_disk(tmp_path) is None and list(tmp_path.iterdir()) == []
    real_open = builtins.open

    def refusing(code):
        def fake(path, *args, **kwargs):
            if ".probe." in str(path):
                raise OSError(code, os.strerror(code))
            return real_open(path, *args, **kwargs)
        return fake

    monkeypatch.setattr(builtins, "open", refusing(errno.ENOSPC))
    assert atomic.full_disk(tmp_path).errno == errno.ENOSPC
    monkeypatch.setattr(builtins, "open", refusing(errno.EACCES))
    assert atomic.full_disk(tmp_path) is None     # no permission is not a full disk
