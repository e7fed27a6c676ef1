"""Whole files or none: every file a job or the app writes goes to a temporary name beside its
target and is renamed over it, so a reader, a kill -9 or a full disk never leaves half a file."""

from __future__ import annotations

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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
