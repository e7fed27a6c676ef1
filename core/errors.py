"""Errors a user can cause (bad path, bad file, bad setting): shown as a message, never a traceback."""

import codecs


class UserError(Exception):
    """A problem the user can fix; its message is written for a person, not a developer. It
    may name any path: its text is made printable (see `shown`) wherever it is shown."""

    def __str__(self) -> str:
        return shown(super().__str__())


class ImageReadError(UserError):
    """An image file that cannot be read (corrupt, truncated, not an image, too large, bad DICOM)."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, of the wrong kind, or unsafe to load."""


SHOWN = "xray-shown"   # the codec error handler below, for streams: errors=SHOWN


def _show_undecodable(exc: UnicodeError):
    """Codec error handler: a surrogate-escaped byte (os.fsdecode's \\udce9 for a Latin-1 byte)
    as the text `\\xe9`, any other lone surrogate as `\\ud800`."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
                   for c in bad), exc.end


codecs.register_error(SHOWN, _show_undecodable)


def shown(name) -> str:
    """`name` (a path, a file or class name, a message naming them) as text that prints on a
    UTF-8 terminal, logs, and goes into JSON or a page: a byte of a name that is not UTF-8 (a
    Latin-1 folder name from an older ZIP, which Python holds as a lone surrogate) becomes
    `\\xe9`. The one way to show a name from the file system (the CLI's streams use the same
    handler, core.__main__); anything else passes unchanged."""
    text = str(name)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", SHOWN).decode("utf-8")


def environment_reason(exc: BaseException, where: str | None = None) -> str | None:
    """One line for a failure of the machine rather than of the code: a full disk, a missing
    permission, memory run out, a damaged database. None for anything else (a bug keeps its
    traceback). `where`: the folder being written, named in a full-disk message."""
    import errno
    import sqlite3

    # PyTorch's allocators refuse with their own errors: a RuntimeError on the CPU ("can't
    # allocate memory"), torch.OutOfMemoryError on a GPU.
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or \
            (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)):
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
