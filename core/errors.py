"""Errors a user can cause (bad path, bad file, bad setting): shown as a message, never a traceback."""


class UserError(Exception):
    """A problem the user can fix; its message is written for a person, not a developer."""


class ImageReadError(UserError):
    """An image file that cannot be read (corrupt, truncated, not an image, too large, bad DICOM)."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, of the wrong kind, or unsafe to load."""


def environment_reason(exc: BaseException, where: str | None = None) -> str | None:
    """One line for a failure of the machine rather than of the code: a full disk, a missing
    permission, memory run out, a damaged database. None for anything else (a bug keeps its
    traceback). `where`: the folder being written, named in a full-disk message."""
    import errno
    import sqlite3

    if isinstance(exc, MemoryError):
        return "out of memory; use fewer or smaller images, or a smaller model"
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))
    if full:
        return (f"the disk holding {where or 'the output'} is full ({exc.strerror if isinstance(exc, OSError) else exc}); "
                f"free some space and resume")
    if isinstance(exc, OSError) and exc.strerror:
        name = f" {exc.filename}" if exc.filename else ""
        return f"cannot read or write{name}: {exc.strerror}"
    if isinstance(exc, sqlite3.DatabaseError):
        return f"a database file is damaged or unreadable ({exc})"
    return None
