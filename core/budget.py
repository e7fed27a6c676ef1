"""How much memory a count or size read from a file or a form may claim: a share of what this
process may use (the machine's RAM, or less under a ulimit), checked before allocating."""

from __future__ import annotations

import os
import resource

from core.errors import UserError

SHARE = 0.5   # of the usable memory, for one data set or one decoded file


def usable_bytes() -> int:
    """The machine's physical memory, or this process's address-space limit when lower."""
    try:
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        phys = 8 * 2**30
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return min(phys, soft) if soft not in (resource.RLIM_INFINITY, -1) and soft > 0 else phys


def resident_limit() -> int:
    """Bytes of uint8 training images a trainer holds in memory; a larger training set that
    comes memory-mapped from the decoded-data cache is read from it batch by batch instead
    ($XRAY_RESIDENT_BYTES, default a quarter of the usable memory)."""
    try:
        return int(float(os.environ["XRAY_RESIDENT_BYTES"]))
    except (KeyError, ValueError):
        return int(usable_bytes() * 0.25)


def mapped(array) -> bool:
    """Whether a numpy array is (a view of) a memory-mapped file."""
    import mmap

    import numpy as np

    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def check_fits(what: str, n_bytes: float, share: float = SHARE) -> None:
    """UserError when `what` would take more than `share` of the usable memory."""
    limit = usable_bytes() * share
    if n_bytes > limit:
        raise UserError(f"{what} would need {n_bytes / 2**30:,.1f} GiB of memory; this machine "
                        f"allows {limit / 2**30:,.1f} GiB for it. Use fewer or smaller images.")
