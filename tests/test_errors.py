"""core.errors: the one line a failure of the machine (full disk, quota, permission, memory, a
damaged database) is reported as, and None for a bug, which keeps its traceback."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from core.errors import CheckpointError, ImageReadError, UserError, environment_reason


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_names_the_folder_and_says_what_to_do(code):
    exc = OSError(code, "No space left on device", "/runs/x/status.json")
    line = environment_reason(exc, where="/runs/x")
    assert line.startswith("the disk holding /runs/x is full (No space left on device)")
    assert "free some space and resume" in line
    assert "the output" in environment_reason(exc)   # no folder given


def test_a_full_sqlite_database_is_a_full_disk():
    line = environment_reason(sqlite3.OperationalError("database or disk is full"), "/runs/x")
    assert "the disk holding /runs/x is full" in line


def test_a_missing_permission_names_the_file():
    exc = PermissionError(errno.EACCES, "Permission denied", "/runs/x/metrics.sqlite")
    assert environment_reason(exc) == "cannot read or write /runs/x/metrics.sqlite: Permission denied"
    assert environment_reason(OSError(errno.EIO, "Input/output error")) == \
        "cannot read or write: Input/output error"


def test_memory_run_out():
    assert environment_reason(MemoryError()).startswith("out of memory")


def test_a_damaged_database():
    line = environment_reason(sqlite3.DatabaseError("file is not a database"))
    assert line == "a database file is damaged or unreadable (file is not a database)"


@pytest.mark.parametrize("exc", [ValueError("bad"), KeyError("k"), RuntimeError("bug"),
                                 OSError("no errno, no strerror")])
def test_a_bug_is_not_explained_away(exc):
    assert environment_reason(exc) is None


def test_every_user_error_kind_is_a_user_error():
    assert issubclass(ImageReadError, UserError) and issubclass(CheckpointError, UserError)
