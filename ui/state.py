"""Session state, initialised once per browser session: the chosen data and augmentation configs
(what training uses) and the selected runs; `keep` holds each widget's value, so a page shows
the last choice after navigating away and back."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import streamlit as st

from core.data.augment import AugmentConfig
from core.data.config import DataConfig
from core.runs.store import runs_root
from ui.errors import log

DEFAULTS: dict[str, Any] = {
    # What Train GAN and Classifier use; written by the Data & augmentation page.
    "data_config": DataConfig(source="phantom", size=64),
    "augment_config": AugmentConfig(),
    "balance_per_class": 0,          # 0 = no balancing
    "gan_run": None,                 # run directory name shown on Train GAN
    "samples_run": None,             # run directory name shown on Samples
}


def _leave_legacy_pages_mode() -> None:
    # Because the pages live in a folder named pages/, a fresh server whose first request is a
    # deep link (/train_gan after a server restart) runs that file directly in Streamlit's old
    # multipage mode, without streamlit_app.py (no navigation, device or disclaimer) until someone
    # opens "/". st.navigation clears this flag; clear it here and rerun through the app shell.
    # (Renaming pages/ would avoid it; the flag is pinned by streamlit==1.67.0.)
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def init() -> None:
    """Set every default once per session; cheap and idempotent, so each page calls it too (a page
    run on its own under AppTest has no streamlit_app.py around it)."""
    _leave_legacy_pages_mode()
    _start_queued_jobs()
    if st.session_state.get("_state_ready"):
        return
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.deepcopy(value)
    st.session_state["_state_ready"] = True


def _start_queued_jobs() -> None:
    """Any page view starts queued jobs whose slot has come free (a job that was killed never
    started the next one itself); a failure here must not take the page down."""
    from core.runs.queue import schedule

    try:
        schedule()
    except Exception as exc:  # noqa: BLE001
        log.warning("could not start queued jobs: %s", exc)


def keep(key: str, value: Any) -> None:
    """Give widget `key` its starting value unless it already has one (set the widget's value
    here, never through both `value=` and session state). Call it before the widget, each run.

    Two ways Streamlit loses a widget's value, both handled by writing it back every run:
    - leaving the page drops the widget's state, so the latest value is kept aside in `_kept`
      and restored on return;
    - a run that does not draw the widget (an early st.stop, another branch) leaves the server's
      value in place but drops it in the browser, which then draws the widget at its default (a
      slider at its minimum) and sends that back on the next click. Only a value written to
      session state in this run is sent to the browser again (seen in Chromium: Data page
      sliders at 0 after Source -> ZIP -> Phantoms)."""
    kept = st.session_state.setdefault("_kept", {})
    current = st.session_state[key] if key in st.session_state else kept.get(key, value)
    kept[key] = current
    st.session_state[key] = current


def preset(key: str, value) -> None:
    """Set the value a kept widget (keep) on another page shows when that page opens (a link that
    carries a choice, e.g. a GAN run picked for the classifier)."""
    st.session_state.setdefault("_kept", {})[key] = value
    st.session_state[key] = value


def source_label(source: str) -> str:
    """A data source for a person: "built-in phantoms", "the uploaded ZIP 'mydata'", "your
    uploaded images", or the folder path the user typed (an upload's folder on the server is
    internal and not shown)."""
    source = str(source)
    if source == "phantom" or source.startswith("phantom:"):
        return "built-in phantoms"
    path = Path(source)
    try:
        inside = path.resolve().relative_to((runs_root() / "uploads").resolve())
    except (ValueError, OSError):
        return source
    kind = "the uploaded ZIP" if inside.parts[0].startswith("zip-") else "your uploaded images"
    return kind + (f" '{path.name}'" if len(inside.parts) > 1 else "")


def data_label(cfg: DataConfig) -> str:
    """source_label, with the count per class for phantoms ("built-in phantoms, 300 per class")."""
    source = cfg.source
    if source == "phantom" or source.startswith("phantom:"):
        n = source.split(":", 1)[1] if ":" in source else cfg.phantom_per_class
        return f"{source_label(source)}, {n} per class"
    return source_label(source)
