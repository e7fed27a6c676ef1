"""Buttons that act on any run from a page: Cancel while it waits in the queue, and Pause,
Resume and Stop that, for a run another browser (or the command line) started, first say whose it
is and ask; the time-left line. Nothing here touches a job except through its run directory."""

from __future__ import annotations

import streamlit as st

from core.runs.store import RunStore
from ui import identity, jobs


def send(store: RunStore, message: str, **changes) -> None:
    store.send_control(by=identity.owner(), **changes)
    st.toast(message)


def _cancel(store: RunStore) -> None:
    from core.runs.queue import cancel

    cancel(store)
    st.toast(f"{store.name} left the queue")


def queue_notice(store: RunStore, key: str) -> bool:
    """For a run waiting in the queue: where it stands and a Cancel button; True when waiting."""
    line = jobs.queue_line(store)
    if line is None:
        return False
    row = st.container(horizontal=True, vertical_alignment="center")
    row.info(line, icon=":material/schedule:")
    row.button("Cancel", key=key, icon=":material/cancel:", on_click=_cancel, args=(store,),
               help="Take it out of the queue; it never starts.")
    return True


def guarded_button(store: RunStore, label: str, icon: str, key: str, message: str,
                   changes: dict, disabled: bool = False, where=st) -> None:
    """A button that sends `changes` to the run; for a run another browser (or the command line)
    started, a popover first says whose it is and asks to confirm (Pause and Resume as Stop)."""
    note = jobs.owner_note(store)
    if note is None:
        where.button(label, key=key, icon=icon, disabled=disabled, on_click=send,
                     args=(store, message), kwargs=changes)
        return
    # A popover whether enabled or not: the same element in the same place as the run changes
    # state (a button swapped for a popover shifted what follows).
    with where.popover(label, icon=icon, disabled=disabled):
        st.markdown(f"**{store.name}** was started by {note}. {label} it anyway? Its owner may be "
                    "watching it.")
        st.button(f"{label} their run", key=key, type="primary", on_click=send,
                  args=(store, message), kwargs=changes)


def stop_button(store: RunStore, key: str, message: str, disabled: bool = False, where=st) -> None:
    guarded_button(store, "Stop", ":material/stop:", key, message, {"stop": True}, disabled, where)


def eta_text(status: dict) -> str:
    """"about 3 min left" from the job's smoothed rate (status "eta_s"), "estimating the time
    left…" until it has one."""
    eta = status.get("eta_s")
    return "estimating the time left…" if eta is None else f"about {jobs.format_duration(eta)} left"
