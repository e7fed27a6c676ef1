"""The live view of a GAN run for the Train GAN page: pause/resume/stop buttons, steering sliders
that write control.json, and a fragment that re-reads the run directory twice a second (status,
progress and ETA, charts with control-change markers, the latest fixed-z grid, the log of a
failed run). Nothing here touches the training process except through RunStore."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import streamlit as st

from core.gan import live
from core.runs import store as runstore
from core.runs.queue import is_waiting
from core.gan.losses import LOSS_DEFAULTS
from core.runs.store import ACTIVE_STATES, RunStore
from ui import cache, controls, identity, jobs, plots
from ui.errors import public

PANEL_METRICS = [name for name, _ in plots.TRAINING_PANELS] + [m for m, _, _ in plots.HELDOUT_LINES] + [
    "wgan/grad_norm_std", "time/step_s", "throughput/img_s", *(s.metric for s in live.SPECS)]
MAX_POINTS = 1500  # per trace in the browser; longer histories are thinned evenly
BADGE = {"queued": "gray", "running": "green", "paused": "orange", "finished": "blue",
         "stopped": "gray", "failed": "red"}


def run_loss(store: RunStore) -> str:
    loss = store.header().loss
    return loss if loss in LOSS_DEFAULTS else "wgan-gp"


def current_values(store: RunStore) -> dict:
    """The live values in force, as the job publishes them in status.json ("live"); for a run
    from before it did, its latest logged values over its config over the paper defaults."""
    published = live.in_force(store.status())
    if published is not None:
        return published
    defaults = live.defaults(run_loss(store))
    train = store.header().section("train")
    last = store.metrics([s.metric for s in live.SPECS]).groupby("name")["value"].last()
    values = {}
    for s in live.SPECS:   # a value out of range (a run from elsewhere) shows the default
        for candidate in (last.get(s.metric), train.get(s.name)):
            try:
                values[s.name] = s.check(candidate)
                break
            except ValueError:
                continue
        else:
            values[s.name] = defaults[s.name]
    return values


def buttons(store: RunStore) -> None:
    """Pause, Resume, Stop, Sample now; for a queued run its place and Cancel instead. One
    container either way, so what follows keeps its place (no stale doubles in the browser)."""
    with st.container():
        _buttons(store)


def _buttons(store: RunStore) -> None:
    s = store.status().get("state")
    if controls.queue_notice(store, "gan_cancel"):
        return
    cols = st.columns(4)
    controls.guarded_button(store, "Pause", ":material/pause:", "gan_pause", "Pausing at the next step",
                   {"paused": True}, disabled=s != "running", where=cols[0])
    controls.guarded_button(store, "Resume", ":material/play_arrow:", "gan_resume", "Resuming",
                   {"paused": False}, disabled=s != "paused", where=cols[1])
    controls.stop_button(store, "gan_stop", "Stopping after this step; a checkpoint is kept",
                disabled=s not in ACTIVE_STATES, where=cols[2])
    cols[3].button("Sample now", key="gan_sample_now", icon=":material/photo_camera:",
                   disabled=s not in ("running", "paused"), on_click=controls.send,
                   args=(store, "A sample grid is coming"), kwargs={"sample_now": True})


# ---- steering ----------------------------------------------------------------------------------------
# Steering is an explicit act. Each slider is drawn for the value in force and keyed by it, so a
# change of that value (from any session) makes a new widget showing it, and the browser never
# has to be told to move a slider the user did not touch. Writing the new value into the old
# widget's session state, as this page once did, left the browsers of watching sessions with the
# old value, which they sent back as a "change" at their next rerun: three sessions on one run
# undid each other's steering.
def _steer(store: RunStore, field: str, key: str, drawn: float) -> None:
    value = st.session_state[key]
    spec = live.BY_NAME[field]
    now = current_values(store)[field]
    # The values this session sent on this slider: the value in force may be one of them
    # (applied before the page redrew), which is no reason to refuse the next move.
    mine = st.session_state.setdefault("_steer_sent", {}).setdefault(key, [])
    if float(now) != float(drawn) and float(now) not in mine:
        # Drawn for a value someone else has replaced since: this move may be a stale browser
        # echo, and either way the user has not seen the value it would overwrite.
        st.toast(f"{spec.label} was changed meanwhile to {now:g}; move the slider again to "
                 "change it.")
        return
    if float(value) == float(now):
        return
    checked = live.check(field, value)
    mine.append(float(checked))
    store.send_control(by=identity.owner(), **{field: checked})
    st.toast(f"Sent {spec.label} = {value:g} to the run")


def slider_options(spec: live.Spec, value: float) -> list[float]:
    """A select-slider's stops for `spec`, with the value in force among them (a value typed
    in the form that is no stop still shows, and stays reachable)."""
    return sorted(set(spec.stops) | {float(value)})


def steering(store: RunStore) -> None:
    """Sliders that change the running process (applied at its next step, marked on the charts).
    Drawn in one container, so what follows keeps its place whatever this shows."""
    with st.container():
        _steering(store)


def _steering(store: RunStore) -> None:
    active = store.is_active()
    if not store.header().started:
        st.caption("Steering appears once the job has loaded its data and started training.")
        return
    loss = run_loss(store)
    now = current_values(store)
    note = jobs.owner_note(store)
    # One element in every state, so the sliders below keep their place when the run ends.
    st.markdown("**Steering** (while a run is active: this one has ended)" if not active else
                "**Steer the running process**" if note is None else
                f"**Steer the running process** · started by {note}: your changes apply to "
                "their run, and the charts mark who made each one")
    specs = live.for_loss(loss)
    cols = st.columns(len(specs))
    for col, spec in zip(cols, specs):
        value = now[spec.name]
        key = f"steer_{spec.name}_{store.name}_{value!r}"
        common = dict(key=key, disabled=not active, on_change=_steer,
                      args=(store, spec.name, key, value), help=spec.help)
        with col:
            if not spec.stops:
                st.slider(spec.label, spec.low, spec.high, value=value, **common)
            else:
                st.select_slider(spec.label, slider_options(spec, value), value=float(value),
                                 format_func=lambda v: f"{v:g}", **common)


def steer_key(store: RunStore, field: str) -> str:
    """The widget key of `field`'s slider as drawn now (tests and links find it by this)."""
    return f"steer_{field}_{store.name}_{current_values(store)[field]!r}"


# ---- the live panel ----------------------------------------------------------------------------------
def _metrics(store: RunStore, status: dict) -> pd.DataFrame:
    """All panel metrics of the run, read incrementally: each tick fetches only the newest steps
    (from the last one seen, since a step's metrics may arrive in more than one write)."""
    memo = st.session_state.get("live_metrics")
    run = (store.name, status.get("pid"))  # a resume is a new process and may rewrite history
    if not memo or memo["run"] != run:
        memo = {"run": run, "last": -1, "df": None}
    new = store.metrics(PANEL_METRICS, since_step=memo["last"] - 1)
    df = new if memo["df"] is None else pd.concat(
        [memo["df"][memo["df"]["step"] < memo["last"]], new], ignore_index=True)
    last = int(df["step"].max()) if len(df) else -1
    st.session_state["live_metrics"] = {"run": run, "last": last, "df": df}
    return df


def _wide(df: pd.DataFrame) -> pd.DataFrame:
    wide = runstore.wide(df)
    if len(wide) > MAX_POINTS:
        keep = set(range(0, len(wide), len(wide) // MAX_POINTS + 1)) | {len(wide) - 1}
        # Every held-out check too: they come only with the grids, and thinning dropped them.
        held = [m for m, _, _ in plots.HELDOUT_LINES if m in wide]
        if held:
            keep |= set(np.flatnonzero(wide[held].notna().any(axis=1).to_numpy()).tolist())
        wide = wide.iloc[sorted(keep)]
    return wide


def _eta(status: dict, wide: pd.DataFrame) -> str:
    step, total = int(status.get("step") or 0), int(status.get("total_steps") or 0)
    parts = [f"step {step:,} of {total:,}" if total else f"step {step:,}"]
    if status.get("state") != "running":   # a paused run has no rate
        return " · ".join(parts)
    if "throughput/img_s" in wide and wide["throughput/img_s"].notna().any():
        parts.append(f"{wide['throughput/img_s'].dropna().iloc[-1]:,.0f} images/s")
    if total:
        parts.append(controls.eta_text(status))
    return " · ".join(parts)


def heldout_summary(status: dict, wide: pd.DataFrame) -> str:
    """What the *Held-out check* chart shows for this run, in words and numbers."""
    held, trained = status.get("heldout_images"), status.get("training_images")
    if held is None:
        return "Held-out check: not measured, this run predates it."
    if not held:
        return ("Held-out check: off (Held out 0%)." if not status.get("holdout") else
                "Held-out check: off, too few images to hold 8 out.")
    counts = f"{trained:,} training images, {held} held out" if trained else f"{held} images held out"
    lines = [m for m, _, _ in plots.HELDOUT_LINES]     # seen, unseen: as the chart draws them
    gap = (wide[lines[0]] - wide[lines[1]]).dropna() if set(lines) <= set(wide) else pd.Series(dtype=float)
    gap = gap[gap.index > 0]                     # step 0 is the untrained critic
    text = (f"Held-out check ({counts}): the critic's W estimate on images it has seen (blue) "
            "and on unseen ones (orange). They agree while it generalises; when seen pulls away "
            "above unseen, it is memorising its training images.")
    if len(gap) >= 2:
        k = min(5, len(gap) // 2)
        first, last = ("first check", "last") if k == 1 else (f"first {k} checks", f"last {k}")
        text += (f" Seen − unseen: {gap.iloc[:k].mean():+.2f} over the {first}, "
                 f"{gap.iloc[-k:].mean():+.2f} over the {last}.")
    return text


def render(run_path: str) -> None:
    """One refresh of the live panel; panel() wraps it in st.fragment(run_every=jobs.REFRESH_S) while
    the run is active."""
    store = RunStore(run_path)
    if not store.path.is_dir():   # deleted or moved in another session: the page picks again
        st.rerun(scope="app")
    status = store.status()
    state = status.get("state", "queued")
    # Buttons, steering sliders and the run list live outside this fragment: redraw the whole
    # page when the run changes phase (started, config written, paused, ended), not every tick,
    # and before drawing anything here (what is drawn twice in one place is re-mounted).
    waiting = is_waiting(status)
    # ... and when the values in force change (a session steered), so every slider follows.
    phase = (state, store.header().started, waiting, json.dumps(status.get("live"), sort_keys=True))
    phases = st.session_state.setdefault("live_phase", {})
    seen = phases.get(store.name)
    phases[store.name] = phase
    if seen is not None and seen != phase:
        st.rerun(scope="app")
    wide = _wide(_metrics(store, status))
    total = int(status.get("total_steps") or 0)
    device = status.get("device") or ("waiting in the queue" if waiting else
                                      "starting: loading PyTorch and the data…" if state == "queued"
                                      else "device not reported yet")
    st.markdown(f":{BADGE.get(state, 'gray')}-badge[{state}] &nbsp; **{store.name}** · {device}"
                + (f" · {status['path']} path" if status.get("path") else ""))
    frac = min(int(status.get("step") or 0) / total, 1.0) if total else 0.0
    st.progress(frac, text=_eta(status, wide))
    notice = st.container()  # one element whatever it holds, so the charts keep their place
    if state == "failed":
        notice.error(f"The run failed: {public(status.get('reason') or 'no reason given')}")
        with notice.expander("End of the job's log", expanded=True):
            st.code(store.tail_log(3000) or "(empty log)", language=None)
    elif state == "running" and status.get("reason"):   # e.g. a resume after a blow-up said
        notice.info(public(str(status["reason"])), icon=":material/info:")   # which values it took
    elif state == "queued" and not waiting and status.get("age_s", 0) > 30:
        notice.warning("The job has not reported for 30 s; the end of its log:")
        notice.code(store.tail_log(2000) or "(empty log)", language=None)
    events = store.events("control")
    # The same elements in the same places on every tick (empty charts before the first metrics),
    # so the browser updates them in place.
    rows = [st.columns(4), st.columns(4)]  # three charts and, on the right, samples / caption
    for k, spec in enumerate(plots.training_panels(wide, events, me=identity.owner())):
        rows[k // 3][k % 3].vega_lite_chart(spec=spec, width="stretch")
    logged = (f"{len(wide):,} logged step{'s' * (len(wide) != 1)}" if len(wide) else
              "waiting for the first metrics" if state in ACTIVE_STATES else "no metrics logged")
    changes = f"{len(events)} live change{'s' * (len(events) != 1)}"
    # An ended run: when it last reported, not when this page was drawn.
    beat = status.get("heartbeat") if state not in ACTIVE_STATES else None
    when = (f"last report {time.strftime('%H:%M:%S', time.localtime(beat))}" if beat
            else f"updated {time.strftime('%H:%M:%S')}")
    rows[1][3].caption(f"{logged} · {changes} · {when}")
    # Full width under the charts: in the grid's column it wrapped to a dozen lines at 1024 px.
    st.caption(heldout_summary(status, wide))
    grids = store.samples()
    if grids:
        step, path = grids[-1]
        raw = dict(store.raw_samples()).get(step)
        # With a weight average the grid shows it, and the raw generator's grid of the same step
        # sits below the caption: the average is smoother; the raw one is what the critic sees.
        rows[0][3].html(cache.sample_figure(
            str(path), path.stat().st_mtime_ns,
            f"Fixed-z samples{' (weight average)' if raw else ''}, step {step:,}"))
        if raw is not None:
            rows[1][3].html(cache.sample_figure(str(raw), raw.stat().st_mtime_ns,
                                                f"Raw generator, step {step:,}"))


# An ended run's page looks again this often: was the run deleted, or resumed from elsewhere?
WATCH_S = 2.0


def _phase(store: RunStore) -> tuple | None:
    """What, when it changes, redraws the whole page: None once the run directory is gone."""
    if not store.path.is_dir():
        return None
    status = store.status()
    return status.get("state"), store.header().started, is_waiting(status)


def panel(store: RunStore) -> None:
    """The live panel, refreshed about twice a second while the run is active; an ended run's is
    drawn once and then only watched (a cheap look every WATCH_S)."""
    if store.is_active():
        @st.fragment(run_every=jobs.REFRESH_S)
        def live_panel() -> None:
            render(str(store.path))

        live_panel()
        return
    render(str(store.path))
    drawn = _phase(store)

    @st.fragment(run_every=WATCH_S)
    def watch() -> None:
        if _phase(store) != drawn:
            st.rerun(scope="app")

    watch()
