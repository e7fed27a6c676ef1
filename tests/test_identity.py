"""ui.identity: a browser is one owner across reloads through its cookie; a new browser gets a
token and the cookie; a cookie that is no token of ours is not trusted."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import streamlit as st
from streamlit.testing.v1 import AppTest


def _page():
    import streamlit as st

    from ui import identity

    st.markdown(identity.owner())
    identity.remember()


def _run(monkeypatch, cookies: dict) -> AppTest:
    monkeypatch.setattr(st, "context", SimpleNamespace(cookies=cookies))
    return AppTest.from_function(_page, default_timeout=30).run()


def _cookie_scripts(at: AppTest) -> list[str]:
    return [e.proto.body for e in at.sidebar if e.type == "html" or hasattr(e.proto, "body")
            if "document.cookie" in getattr(e.proto, "body", "")]


def test_the_cookie_names_the_browser_across_sessions(monkeypatch):
    token = "tok_" + "A" * 28
    first, again = _run(monkeypatch, {"xray_browser": token}), _run(monkeypatch, {"xray_browser": token})
    owner = "browser " + hashlib.sha256(token.encode()).hexdigest()[:8]
    assert first.markdown[0].value == again.markdown[0].value == owner
    assert token not in owner and not _cookie_scripts(first)   # nothing to store: it has one


def test_a_new_browser_gets_a_token_once_and_keeps_it_in_the_session(monkeypatch):
    at = _run(monkeypatch, {})
    owner = at.markdown[0].value
    scripts = _cookie_scripts(at)
    assert len(scripts) == 1 and at.session_state["_browser_token"] in scripts[0]
    at.run()
    assert at.markdown[0].value == owner and not _cookie_scripts(at)   # set once
    other = _run(monkeypatch, {})
    assert other.markdown[0].value != owner


def test_a_cookie_that_is_no_token_is_not_trusted(monkeypatch):
    at = _run(monkeypatch, {"xray_browser": '"; alert(1); "'})
    assert "alert" not in at.session_state["_browser_token"]
    assert len(_cookie_scripts(at)) == 1


def test_who_reads_a_recorded_owner_as_this_browsers_user_would(monkeypatch):
    at = _run(monkeypatch, {"xray_browser": "tok_" + "B" * 28})
    from ui import identity

    mine = at.markdown[0].value
    monkeypatch.setattr(identity, "owner", lambda: mine)
    assert identity.who(mine) == "you"
    assert identity.who("browser 0123abcd") == "another browser (0123abcd)"
    assert identity.who(None) == identity.who("command line") == "the command line"
    assert identity.who("session 9f8e7d6c") == "another browser (9f8e7d6c)"   # a run from before
