"""Show every error a user can cause as a short message on the page, never a traceback."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import UserError, environment_reason

log = logging.getLogger("xray_gan_studio.ui")


def attempt(fn: Callable[..., Any], *args, what: str = "that", **kwargs) -> Any:
    """Call `fn`; on UserError show its message, on anything else log the traceback and show a
    short message (an upload's folder on the server named as the user knows it, see public).
    Returns fn's result, or None after an error. Streamlit's own control flow
    (st.rerun, st.stop, st.switch_page) derives from BaseException and passes through."""
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        st.error(public(str(exc)), icon=":material/error:")
    except Exception as exc:  # the page must survive any failure of core code
        reason = environment_reason(exc)   # a full disk, no permission, memory run out
        if reason is not None:
            st.error(f"Could not finish {what}: {reason}.", icon=":material/error:")
        else:   # a bug: its text means nothing to the user and may leak paths; the log has it
            log.exception("failed: %s", what)
            st.error(f"Something went wrong while {what}. The details are in the server log.",
                     icon=":material/error:")
    return None


def public(text: str) -> str:
    """`text` with each path of an upload on the server (runs/uploads/zip-.../...) put in the
    user's words ("the uploaded ZIP 'mydata'", ui.state.source_label): where the server keeps
    an upload is internal, and a clinician should not read it."""
    from core.runs.store import runs_root

    uploads = runs_root() / "uploads"
    roots = sorted({str(uploads), str(uploads.resolve())}, key=len, reverse=True)
    # Up to a quote, comma, semicolon, colon, bracket or line end; spaces included, as a folder
    # name may hold one ("my data"): the words after the path are dropped again in _existing.
    pattern = "(?:" + "|".join(map(re.escape, roots)) + r")(?:/[^/'\"`,;:()\n]+)*"
    return re.sub(pattern, lambda m: _existing(m.group(0)), text)


def _existing(match: str) -> str:
    """The label of the longest path that exists in `match` ("/.../COVID-19 has one class" ->
    the label of ".../COVID-19", then " has one class"), or of its part before the first space."""
    words = match.split(" ")
    for n in range(len(words), 0, -1):
        path = " ".join(words[:n])
        bare = path.rstrip(".")   # the full stop of a sentence
        if Path(bare).exists():
            return " ".join([_upload_label(Path(bare)) + path[len(bare):], *words[n:]])
    return " ".join([_upload_label(Path(words[0])), *words[1:]])


def _upload_label(path: Path) -> str:
    """source_label for an upload's data folder; "'set/metadata.csv' in the uploaded ZIP" for a
    file deeper inside it; the path itself outside the uploads."""
    from core.runs.store import runs_root
    from ui.state import source_label   # ui.state imports this module

    try:
        inside = path.resolve().relative_to((runs_root() / "uploads").resolve())
    except (ValueError, OSError):
        return str(path)
    if not inside.parts:
        return "the uploads"
    if len(inside.parts) <= 2:
        return source_label(str(path))
    kind = "the uploaded ZIP" if inside.parts[0].startswith("zip-") else "your uploaded images"
    return f"'{'/'.join(inside.parts[1:])}' in {kind}"
