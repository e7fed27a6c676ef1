"""Show every error a user can cause as a short message on the page, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from core.errors import UserError, environment_reason

log = logging.getLogger("xray_gan_studio.ui")


def attempt(fn: Callable[..., Any], *args, what: str = "that", **kwargs) -> Any:
    """Call `fn`; on UserError show its message, on anything else log the traceback and show a
    short message. Returns fn's result, or None after an error. Streamlit's own control flow
    (st.rerun, st.stop, st.switch_page) derives from BaseException and passes through."""
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # the page must survive any failure of core code
        reason = environment_reason(exc)   # a full disk, no permission, memory run out
        if reason is not None:
            st.error(f"Could not finish {what}: {reason}.", icon=":material/error:")
        else:   # a bug: its text means nothing to the user and may leak paths; the log has it
            log.exception("failed: %s", what)
            st.error(f"Something went wrong while {what}. The details are in the server log.",
                     icon=":material/error:")
    return None
