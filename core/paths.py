"""Where the project's files live on disk: the repository, and the runs folder that every job,
cache and upload writes under ($XRAY_RUNS_DIR, else runs/ in the repository)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def runs_root() -> Path:
    """Where run directories live: $XRAY_RUNS_DIR, else runs/ beside core/."""
    return Path(os.environ.get("XRAY_RUNS_DIR") or REPO_ROOT / "runs")
