"""Pick the compute device: CUDA, then Apple MPS, then CPU; and how busy the CPU is."""

from __future__ import annotations

import os
import re
import time

import torch

from core.errors import UserError


def available(prefer: str) -> bool:
    """Whether `prefer` ("auto", "cpu", "cuda", "cuda:N" or "mps") names a device this machine has."""
    try:
        device = torch.device(prefer) if prefer != "auto" else None
    except (RuntimeError, TypeError, ValueError):
        return False
    if device is None or device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()
    return False


def pick_device(prefer: str = "auto") -> torch.device:
    """Return the device to train on; `prefer` may force "cpu", "cuda" or "mps". A device this
    machine lacks is one clear line, not CUDA's traceback at the first tensor."""
    if prefer != "auto":
        if not available(prefer):
            raise UserError(f"device {prefer!r} is not available on this machine; use auto or cpu")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device | None = None) -> str:
    """A short human name for the device, e.g. 'NVIDIA H100 (cuda)' or 'CPU (2 threads)'."""
    device = device or pick_device()
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    if device.type == "mps":
        return "Apple GPU (mps)"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


# Words of a GPU's name that do not tell two models apart: vendor and line, memory, form factor.
_GPU_NOISE = re.compile(r"\b(NVIDIA|GeForce|Tesla|Quadro|AMD|Radeon|Instinct|GPU|\d+GB|HBM\w*|PCIe|"
                        r"SXM\d*|NVL)\b", re.IGNORECASE)


def short_name(text: str, world: int | None = None) -> str:
    """describe()'s text, compact for a table: "NVIDIA H100 80GB HBM3 (cuda)" -> "H100",
    "NVIDIA GeForce RTX 4090 (cuda)" -> "RTX 4090", "CPU (2 threads)" -> "CPU ×2", "Apple GPU
    (mps)" -> "MPS"; "2× H100" for a run on two processes."""
    name, _, kind = str(text).partition(" (")
    if kind.rstrip(")").split()[-1:] in (["thread"], ["threads"]):
        short = f"CPU ×{kind.split()[0]}"
    elif kind.startswith("cuda"):
        # "A100-SXM4-80GB": the model is before the first dash.
        short = " ".join(_GPU_NOISE.sub(" ", name.split("-")[0]).split()[:3]) or name
    elif kind.startswith("mps"):
        short = "MPS"
    else:
        short = name
    return f"{world}× {short}" if world and int(world) > 1 else short


class OtherCpuLoad:
    """How many cores' worth of CPU other processes used between two calls of `sample()`: the
    machine's busy time (Linux /proc/stat) minus this process's own. None on the first call
    and where /proc/stat is missing."""

    def __init__(self):
        self._last: tuple[float, float, float] | None = None

    def sample(self) -> float | None:
        try:
            import resource  # POSIX only; there is no /proc/stat without it anyway

            with open("/proc/stat") as f:  # "cpu  user nice system idle iowait irq softirq ..."
                ticks = [int(v) for v in f.readline().split()[1:8]]
        except (ImportError, OSError, ValueError):
            return None
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # idle, iowait out
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now = (time.monotonic(), busy, usage.ru_utime + usage.ru_stime)
        last, self._last = self._last, now
        if last is None or now[0] <= last[0]:
            return None
        return max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])
