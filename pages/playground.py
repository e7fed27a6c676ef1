"""Playground: watch GAN, WGAN and WGAN-GP learn toy 1D and 2D distributions, with the critic's
landscape live. A thin page over core.toy.trainer.ToyTrainer; its figures come from ui/toy_plots.py."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np
import streamlit as st

from core.errors import UserError
from core.gan.losses import LOSSES
from core.toy.trainer import DATASETS, ToyConfig, ToyTrainer, modes_covered, run_together
from ui import state
from ui.toy_plots import N_POINTS, refresh_figures, shared_bounds

LOSS_NAMES = {"gan": "GAN", "wgan": "WGAN (clip)", "wgan-gp": "WGAN-GP"}
# The live panel's period follows its measured cost. With a fixed 0.4 s period and 20 iterations
# per refresh, one refresh took 0.8-1.5 s on the loaded 2-core machine, so the timer kept a run
# always pending, the browser (0.6-1.5 CPU-s to draw one refresh of 4 figures) was busy 80-95%
# of the time, and a click on Pause reached the page 2-10 s late. Now training stops at a time
# budget and the period is twice the server's time per refresh (budget + building and sending
# the figures, a running mean), which leaves about half of it to the browser and to clicks.
TRAIN_BUDGET_S = 0.25    # most wall time one refresh spends training, both trainers together
REFRESH_S = (0.5, 2.0)   # the period's bounds while playing
# Both trainers start at lr 1e-3, 5-20x the papers' values, so the toy learns in seconds;
# switching the loss type restores that paper's optimizer settings.
START_LR = 1e-3
# The critic update is compiled in the background and used once built (core.toy.step: WGAN-GP
# 1.4-1.7x, GAN and WGAN 1.1-1.2x the critic steps per second, docs/performance.md).
# XRAY_TOY_COMPILE=0 keeps the eager code (the tests do, so page tests do not start the
# compiler).
COMPILE = os.environ.get("XRAY_TOY_COMPILE", "1") != "0"
# Shown on a line of its own under each panel's header: in the header, the long "compiling"
# wrapped one panel's header to two lines and set the two panels at different heights.
STEP_CODE = {"eager": "eager critic step", "compiling": "compiling a faster critic step…",
             "compiled": "compiled critic step"}

# ---------------------------------------------------------------------------------------------
# Page: session state, controls, live panel.

SLOTS = ("a", "b")
SHARED = ("dataset", "hidden", "depth", "noise_dim", "batch_size", "seed")
PER_SLOT = ("loss", "lr_critic", "lr_gen", "n_critic", "gp_lambda", "clip")
LR_OPTIONS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3]
LAMBDA_OPTIONS = [0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
CLIP_OPTIONS = [0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
BATCH_OPTIONS = [16, 32, 64, 128, 256, 512, 1024]


def _key(field: str, slot: str | None = None) -> str:
    return f"toy_{slot}_{field}" if slot else f"toy_{field}"


def _sync_widgets(slot: str) -> None:
    """Copy a trainer's config into its widgets (after a loss switch changed its defaults)."""
    cfg = st.session_state.toy_trainers[slot].config
    for field in PER_SLOT:
        st.session_state[_key(field, slot)] = getattr(cfg, field)


def _init_state() -> None:
    ss = st.session_state
    if "toy_trainers" in ss:
        return
    # Same data and seed for both; the second starts as the plain GAN for contrast.
    start = dict(lr_critic=START_LR, lr_gen=START_LR, compile=COMPILE)
    ss.toy_trainers = {"a": ToyTrainer(ToyConfig(loss="wgan-gp", **start)),
                       "b": ToyTrainer(ToyConfig(loss="gan", **start))}
    for trainer in ss.toy_trainers.values():
        trainer.prebuild()  # compiles in the background while the user reads the page
    # Streamlit's fast reruns start a new script thread before the old one reaches a yield
    # point, so two threads can hold the trainers at once: every access goes through this lock.
    ss.toy_lock = threading.RLock()
    ss.toy_playing, ss.toy_notes, ss.toy_error = False, [], None
    ss.toy_draw_s = 0.1  # running mean of one redraw's wall time (build + send the figures)


def _seed_widgets() -> None:
    """Every run, before the widgets: their values from the trainers' configs at first, then
    the user's. state.keep writes them back each run, because Streamlit drops them when the page
    is left (the trainers stay) and the browser drops slot b's when "Compare" is off."""
    ss = st.session_state
    cfg = ss.toy_trainers["a"].config
    for field in SHARED:
        state.keep(_key(field), getattr(cfg, field))
    for slot in SLOTS:
        for field in PER_SLOT:
            state.keep(_key(field, slot), getattr(ss.toy_trainers[slot].config, field))
    for key, value in (("toy_compare", True), ("toy_speed", 20), ("toy_heatmap", True),
                       ("toy_arrows", True)):
        state.keep(key, value)


def _apply(slots: tuple[str, ...], field: str) -> None:
    """Widget callback: push one setting into the trainer(s); keep notes and errors to show."""
    ss = st.session_state
    # Every session-state access is a Streamlit yield point where a newer rerun may stop this
    # thread, so read everything first and touch the trainers with no access in between.
    value = ss[_key(field, None if field in SHARED else slots[0])]
    trainers, lock, notes = [ss.toy_trainers[s] for s in slots], ss.toy_lock, []
    try:
        with lock:
            for t in trainers:
                notes += t.update(**{field: value})
    except UserError as exc:
        ss.toy_error = str(exc)
    ss.toy_notes = ss.toy_notes + notes
    if field == "loss":
        for slot in slots:
            _sync_widgets(slot)
    if field == "dataset":  # noise_dim may follow the data's dimension
        ss[_key("noise_dim")] = trainers[0].config.noise_dim


def refresh_period(draw_s: float) -> float:
    """Seconds between live refreshes: twice one refresh's server time, within REFRESH_S."""
    return min(max(2.0 * (TRAIN_BUDGET_S + draw_s), REFRESH_S[0]), REFRESH_S[1])


def _active_slots() -> tuple[str, ...]:
    return SLOTS if st.session_state.toy_compare else SLOTS[:1]


def _step(kind: str) -> None:
    """Button callback: one critic step, one generator step, or one full iteration."""
    ss = st.session_state
    trainers, lock = [ss.toy_trainers[s] for s in _active_slots()], ss.toy_lock
    with lock:
        for t in trainers:
            with t.torch_threads():
                {"critic": t.critic_step, "gen": t.generator_step,
                 "iteration": t.iteration}[kind]()
                t.record()


def _reset() -> None:
    ss = st.session_state
    trainers, lock = list(ss.toy_trainers.values()), ss.toy_lock
    with lock:
        for t in trainers:
            t.reset()
    ss.toy_playing = False


def _set_playing(playing: bool) -> None:
    # Set, not toggled: while the live panel reruns, Streamlit has applied one button click
    # twice (seen in a real browser: Pause, then Play again within the same click).
    st.session_state.toy_playing = playing


def _options(options: list, value) -> list:
    return sorted(set(options) | {value})  # a value set elsewhere stays selectable


def sidebar_controls() -> None:
    ss = st.session_state
    with st.sidebar:
        st.subheader("Data and models")
        st.selectbox("Dataset", list(DATASETS), key=_key("dataset"),
                     format_func=lambda k: DATASETS[k][1], on_change=_apply,
                     args=(SLOTS, "dataset"))
        st.select_slider("Hidden width", _options([32, 64, 128, 256, 512], ss.toy_hidden),
                         key=_key("hidden"), on_change=_apply, args=(SLOTS, "hidden"),
                         help="Changing it rebuilds both networks.")
        st.slider("Hidden layers", 1, 5, key=_key("depth"), on_change=_apply,
                  args=(SLOTS, "depth"))
        st.slider("Noise dimension", 1, 16, key=_key("noise_dim"), on_change=_apply,
                  args=(SLOTS, "noise_dim"), help="Rebuilds only the generator's first layer.")
        st.select_slider("Batch size", _options(BATCH_OPTIONS, ss.toy_batch_size),
                         key=_key("batch_size"), on_change=_apply, args=(SLOTS, "batch_size"))
        st.number_input("Seed", 0, 2 ** 31 - 1, step=1, key=_key("seed"), on_change=_apply,
                        args=(SLOTS, "seed"), help="A new seed starts over.")
        st.subheader("Display")
        st.toggle("Compare two loss types", key="toy_compare")
        st.slider("Iterations per refresh (at most)", 1, 200, key="toy_speed",
                  help="Each iteration: n_critic critic steps + 1 generator step. A refresh "
                       f"stops training after {TRAIN_BUDGET_S:g} s, so on a slow machine it "
                       "does fewer, and Pause still answers at once.")
        st.toggle("Critic heatmap", key="toy_heatmap")
        st.toggle("Gradient arrows", key="toy_arrows")


def slot_controls(slot: str) -> None:
    ss = st.session_state

    def k(field: str) -> str:
        return _key(field, slot)

    def args(field: str) -> tuple:
        return ((slot,), field)

    with st.expander("Hyperparameters", expanded=False):
        st.selectbox("Loss", list(LOSSES), key=k("loss"), format_func=LOSS_NAMES.get,
                     on_change=_apply, args=args("loss"),
                     help="Switching takes that paper's optimizer and defaults.")
        c1, c2 = st.columns(2)
        c1.select_slider("Critic lr", _options(LR_OPTIONS, ss[k("lr_critic")]),
                         key=k("lr_critic"), on_change=_apply, args=args("lr_critic"))
        c2.select_slider("Generator lr", _options(LR_OPTIONS, ss[k("lr_gen")]),
                         key=k("lr_gen"), on_change=_apply, args=args("lr_gen"))
        st.slider("n_critic", 1, 20, key=k("n_critic"), on_change=_apply,
                  args=args("n_critic"))
        c1, c2 = st.columns(2)
        c1.select_slider("Gradient penalty λ", _options(LAMBDA_OPTIONS, ss[k("gp_lambda")]),
                         key=k("gp_lambda"), on_change=_apply, args=args("gp_lambda"),
                         help="Applied whenever > 0, whatever the loss. WGAN-GP starts at "
                              "0.1, the value of the authors' own toy code; try their image "
                              "value 10 on the 1D Gaussian and watch it shrink to a spike.")
        c2.select_slider("Weight clip c", _options(CLIP_OPTIONS, ss[k("clip")]),
                         key=k("clip"), on_change=_apply, args=args("clip"),
                         help="Critic weights clamped to [-c, c] after each step; 0 = off.")


def trainer_view(slot: str, n_metric_cols: int, bounds=None) -> Callable[[], None]:
    """Everything slot's panel shows, computed now; the returned function only emits it.
    Both panels are computed before either emits, so a refresh replaces the old panels within
    milliseconds: drawing slot b's figures while slot a's new elements were already out left
    the browser showing a half-new layout, slot b's charts missing, for the whole build."""
    ss = st.session_state
    t = ss.toy_trainers[slot]
    c = t.config
    code = STEP_CODE.get(t.step_code, "eager critic step (could not compile)")
    header = f"**{LOSS_NAMES[c.loss]}** · step {t.gen_steps} · critic steps {t.critic_steps}"
    tooltip = None if t.step_code in STEP_CODE else t.step_code
    last = t.history[-1] if t.history else {}
    if last and not all(np.isfinite(v) for v in last.values()):
        def diverged() -> None:
            st.markdown(header)
            st.caption(code, help=tooltip)
            st.warning("Training diverged (NaN or inf). Lower the learning rates, then Reset.")
        return diverged
    metrics = []
    if last:
        # Significant digits, not three decimals: a clipped WGAN critic starts with scores of
        # order 1e-4, and "0.000" for hundreds of steps looked stuck.
        metrics = [("W estimate", f"{last.get('wgan/w_estimate', float('nan')):.3g}"),
                   ("‖∇D‖ mean", f"{last.get('wgan/grad_norm_mean', float('nan')):.2f}"),
                   ("critic loss", f"{last.get('loss/critic', float('nan')):.3f}")]
        if c.dataset == "8gaussians":
            metrics.append(("modes covered", f"{modes_covered(t.sample(N_POINTS))}/8"))
    main, curves = refresh_figures([t], ss.toy_heatmap, ss.toy_arrows, bounds=bounds)

    def emit() -> None:
        st.markdown(header)
        st.caption(code, help=tooltip)
        if metrics:
            cols = st.columns(n_metric_cols)
            for i, (label, value) in enumerate(metrics):
                cols[i % n_metric_cols].metric(label, value)
        st.plotly_chart(main, key=f"toy_fig_{slot}_main", config={"displayModeBar": False})
        st.plotly_chart(curves, key=f"toy_fig_{slot}_curves",
                        config={"displayModeBar": False})
    return emit


def live_panel() -> None:
    """Trains up to `speed` iterations per refresh while playing, then redraws every view."""
    ss = st.session_state
    slots = _active_slots()
    trainers, lock, speed, playing, period = ([ss.toy_trainers[s] for s in slots], ss.toy_lock,
                                              ss.toy_speed, ss.toy_playing, ss.toy_period)
    # Side by side, four metrics in a row are cut short ("-0.…", "modes cover…"): two rows.
    n_metric_cols = 2 if len(slots) > 1 else 4
    try:
        # No session-state access (a yield point) between the trainers' runs, and the lock
        # keeps an overlapping rerun from touching them until this refresh has drawn. Training
        # stops at TRAIN_BUDGET_S: a click (Pause) reruns the page at the next yield point, so
        # this bounds how long it waits, and the lock how long the new run waits for it.
        with lock:
            if playing:
                run_together(trainers, speed, TRAIN_BUDGET_S)
            start = time.perf_counter()
            # Side by side, the two panels share their axes: one scale for both losses.
            bounds = shared_bounds([ss.toy_trainers[slot] for slot in slots])
            views = [trainer_view(slot, n_metric_cols, bounds) for slot in slots]
            for col, emit in zip(st.columns(len(slots)), views):
                with col:
                    emit()
            draw_s = time.perf_counter() - start
    except UserError as exc:
        st.error(str(exc))
        return
    ss.toy_draw_s = 0.8 * ss.toy_draw_s + 0.2 * draw_s
    # The period is registered by the full page run; a cost that drifted 1.5x from it (another
    # job started, the heatmap turned off) reruns the page to register the new one.
    if playing and period and not 1 / 1.5 < refresh_period(ss.toy_draw_s) / period < 1.5:
        st.rerun()


def main() -> None:
    st.set_page_config(layout="wide")
    state.init()  # also brings a deep link on a fresh server into the app shell
    _init_state()
    _seed_widgets()
    ss = st.session_state
    st.title("Playground")
    st.caption("GAN, WGAN and WGAN-GP on toy data, trained live on this machine's CPU. "
               "Orange: real samples; green: generated; arrows: the critic's gradient at "
               "generated points, the direction the generator moves them. Both start at "
               "learning rate 1e-3 so the toy learns in seconds; switching a loss type restores "
               "its paper's settings (WGAN-GP with λ 0.1, its authors' value for toy data).")
    sidebar_controls()
    # A row that wraps, each button as wide as its label: in fixed columns, 1024 px with the
    # sidebar open cut "Play" to "P…" and "Step iteration" to "Step iterati…".
    b = st.container(horizontal=True)
    # Material icons, not the ⏸/▶ characters: those need an emoji font the browser may lack.
    # A fixed width, so Play turning into Pause does not move the buttons beside it.
    b.button("Pause" if ss.toy_playing else "Play", key="toy_play",
             icon=":material/pause:" if ss.toy_playing else ":material/play_arrow:",
             on_click=_set_playing, args=(not ss.toy_playing,), type="primary", width=100)
    # Stepping is for a paused run: while playing, the live panel's reruns could apply a step
    # click twice (as they did Pause), and one step is invisible among hundreds per second.
    step_help = "Pause first to step." if ss.toy_playing else None
    for label, kind in [("Step critic", "critic"), ("Step generator", "gen"),
                        ("Step iteration", "iteration")]:
        b.button(label, key=f"toy_step_{kind}", on_click=_step, args=(kind,), width="content",
                 disabled=ss.toy_playing, help=step_help)
    b.button("Reset", key="toy_reset", on_click=_reset, width="content")
    for note in ss.toy_notes:
        st.toast(note)
    ss.toy_notes = []
    if ss.toy_error:
        st.error(ss.toy_error)
        ss.toy_error = None
    for col, slot in zip(st.columns(len(_active_slots())), _active_slots()):
        with col:
            slot_controls(slot)
    ss.toy_period = refresh_period(ss.toy_draw_s) if ss.toy_playing else None
    st.fragment(run_every=ss.toy_period)(live_panel)()


main()
