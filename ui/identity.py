"""Who is asking, until sign-in exists: this browser. A random token in a first-party cookie
names it across reloads and tabs (a Streamlit session id changes on every reload, so a run was
"another browser session's" to the student who had just started it). Runs record only a hash
of the token: status.json is readable by anyone who reads the runs folder, and the token itself
would let them act as this browser."""

from __future__ import annotations

import hashlib
import re
import secrets

import streamlit as st

COOKIE = "xray_browser"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_MAX_AGE_S = 365 * 24 * 3600


def _token() -> str:
    ss = st.session_state
    if "_browser_token" not in ss:
        try:
            cookie = st.context.cookies.get(COOKIE)
        except Exception:  # noqa: BLE001 - no request context (AppTest, a bare script run)
            cookie = None
        if isinstance(cookie, str) and _TOKEN.match(cookie):
            ss["_browser_token"] = cookie
        else:
            ss["_browser_token"] = secrets.token_urlsafe(24)
            ss["_browser_cookie_pending"] = True
    return ss["_browser_token"]


def remember() -> None:
    """Once per session, when the browser had no token yet: store this session's in the cookie
    (from the sidebar, so the page's own layout never moves)."""
    token = _token()
    if st.session_state.pop("_browser_cookie_pending", False):
        st.sidebar.html(f'<script>document.cookie = "{COOKIE}={token}; path=/; '
                        f'max-age={_MAX_AGE_S}; SameSite=Strict";</script>',
                        unsafe_allow_javascript=True)


def owner() -> str:
    """This browser as recorded with its runs and live changes: "browser 3fa2c1d0"."""
    return "browser " + hashlib.sha256(_token().encode()).hexdigest()[:8]


def who(recorded: str | None) -> str:
    """A recorded owner as this browser's user reads it: "you", "the command line", or "another
    browser (3fa2c1d0)"."""
    if not recorded or recorded == "command line":
        return "the command line"
    if recorded == owner():
        return "you"
    if recorded.startswith("browser "):
        return f"another browser ({recorded.split(' ', 1)[1]})"
    return f"another browser ({recorded.removeprefix('session ')})"   # runs from before the cookie
