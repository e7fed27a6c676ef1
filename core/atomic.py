"""Whole files or none: every file a job or the app writes goes to a temporary name beside its
target and is renamed over it, so a reader, a kill -9 or a full disk never leaves half a file;
and a lock file for what two processes must not do at once."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` to write; on success it replaces `path`, on
    any failure (a full disk, an exception, Ctrl-C) it is removed, so a failed write neither
    leaves debris that fills the disk further nor touches the previous file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A random name: a link planted under a predictable one cannot catch the write.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except Exception as exc:
        # Asked while the half-written file still fills the disk: removing it frees the space.
        full = None if isinstance(exc, OSError) else full_disk(path.parent)
        tmp.unlink(missing_ok=True)
        if full is not None:
            raise OSError(full.errno, full.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_PROBE_BYTES = 256 * 1024


def full_disk(folder: str | Path) -> OSError | None:
    """The error a write into `folder` meets now when the disk (or the user's quota) is full,
    else None. A writer with its own file code reports a full disk as its own error (torch.save:
    "[enforce fail at inline_container.cc] unexpected pos"; safetensors: an IoError): the
    disk itself is asked, by writing a probe file beside and removing it."""
    probe = Path(folder) / f".probe.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(probe, "wb") as f:
            f.write(bytes(_PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
    finally:
        probe.unlink(missing_ok=True)
    return None


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block; another process
    asking for it waits. The kernel drops it if the holder dies, so a kill never leaves it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
