"""Train GAN: start a GAN / WGAN / WGAN-GP run on the chosen data, pause, resume or stop it, steer
lambda, n_critic and learning rates while it runs, and watch it live (charts with markers where
each change landed, progress, the latest fixed-z samples). The run is its own process; this page
only reads and writes its run directory."""

import streamlit as st

from core import CLASSES
from core.gan import live
from core.config import field_default, field_range
from core.data.config import DataConfig
from core.gan.trainer import TrainConfig
from core.gan.losses import LOSS_DEFAULTS, LOSS_LABELS
from core.runs.store import RunStore
from ui import gan_view, jobs, nav, state
from ui.errors import attempt

state.init()
st.title("Train GAN")

SIZES = [32, 64, 128, 256]
data_cfg: DataConfig = st.session_state["data_config"]
runs = jobs.gan_runs()

# ---- a new run -----------------------------------------------------------------------------------
# Open only before the first run: opening whenever no run was active pushed a run that had
# just finished (the Home demo's) below the fold, behind a blank form. Decided once per visit:
# recomputed each run, it collapsed the form under a student typing in it when another session
# started the first run.
form_open = st.session_state.setdefault("gan_form_open", not runs)
with st.expander("New run", expanded=form_open, icon=":material/add_circle:"):
    presets = jobs.gan_presets()
    c = st.columns([2, 1, 1, 1.4])  # "Train on" shows "COVID-19" whole at 1024 px
    with c[0]:
        state.keep("gan_loss", "wgan-gp")
        loss = st.radio("Loss", list(LOSS_LABELS), format_func=LOSS_LABELS.get, horizontal=True,
                        key="gan_loss")
    with c[1]:
        state.keep("gan_preset", "cpu-tiny")
        preset = st.radio("Preset", list(presets), horizontal=True, key="gan_preset",
                          help="cpu-tiny: a small network that shows lung-like samples within "
                               "minutes on a laptop CPU; gpu: the report's networks at 128 px and up "
                               "(20,000 steps at 128 px: about 10 minutes on an H100).")
    p = presets[preset]
    with c[2]:
        state.keep(f"gan_size_{preset}", int(p.get("size", 64)))
        size = st.select_slider("Resolution", SIZES, key=f"gan_size_{preset}")
    with c[3]:
        choices = ["all classes", *CLASSES]
        state.keep("gan_class", "COVID-19")
        klass = st.selectbox("Train on", choices, key="gan_class",
                             help="A GAN for augmentation learns one class, e.g. the minority "
                                  "COVID-19 class as in the report.")
    # Defaults as the command line resolves them: the preset's values, else the loss's paper ones.
    d = {**LOSS_DEFAULTS[loss], **p}

    def default(name: str):   # the preset's, else the config's own
        return d.get(name, field_default(TrainConfig, name))

    k = f"{loss}_{preset}"  # each (loss, preset) keeps its own edits
    # The live fields for this loss (lambda for WGAN-GP, clip for WGAN) last, as core.gan.live says.
    specs = sorted(live.for_loss(loss), key=lambda spec: spec.losses != live.ALL_LOSSES)
    h = st.columns(2 + len(specs))
    with h[0]:
        state.keep(f"gan_steps_{k}", int(default("steps")))
        steps = st.number_input("Steps", *field_range(TrainConfig, "steps"), key=f"gan_steps_{k}")
    with h[1]:
        state.keep(f"gan_batch_{k}", int(default("batch_size")))
        batch = st.number_input("Batch size", *field_range(TrainConfig, "batch_size"),
                                key=f"gan_batch_{k}")
    live_values = {}
    for col, spec in zip(h[2:], specs):
        with col:
            key = f"gan_{spec.name}_{k}"
            state.keep(key, (int if spec.integer else float)(d[spec.name]))
            small = not spec.integer and spec.high <= 1
            live_values[spec.name] = st.number_input(
                spec.label, spec.form_low, spec.high, key=key,
                **({"format": "%.1e" if spec.name.startswith("lr") else "%.3f", "step": 1e-5}
                   if small else {}))
    a = st.columns([1, 1, 1, 2])  # the toggle's label needs two columns' width
    with a[0]:
        state.keep(f"gan_log_every_{k}", int(default("log_every")))
        log_every = st.number_input("Log every", *field_range(TrainConfig, "log_every"),
                                    key=f"gan_log_every_{k}",
                                    help="Steps between two points on the charts")
    with a[1]:
        state.keep(f"gan_sample_every_{k}", int(default("sample_every")))
        sample_every = st.number_input("Grid every", *field_range(TrainConfig, "sample_every"),
                                       key=f"gan_sample_every_{k}",
                                       help="Steps between two fixed-z sample grids (and "
                                            "held-out checks)")
    with a[2]:
        state.keep("gan_holdout_pct", round(field_default(TrainConfig, "holdout") * 100))
        # A slider: a typed 90 in a number box stayed on screen while the run used the last
        # valid value.
        holdout_pct = st.slider(
            "Held out (%)", *(round(v * 100) for v in field_range(TrainConfig, "holdout")),
            key="gan_holdout_pct",
            help="Patients kept out of training (at most 256 images; none when that would be "
                 "fewer than 8). With each sample grid the critic scores them against training "
                 "images: on the *Held-out check* chart, seen pulling away above unseen "
                 "means the critic memorises its training set. Small data memorise sooner: "
                 "20 phantoms per class, all classes, *Training patients only* off and 30% "
                 "trains on 40 and holds 20 out, as in docs/results.md. With fewer than 8 "
                 "images to hold out there is no check.")
    with a[3]:
        state.keep("gan_train_split", True)
        train_only = st.toggle("Training patients only", key="gan_train_split",
                               help="Train on the classifier's training patients only (the same "
                                    "patient split as Train classifier), so generated images never "
                                    "carry validation or test patients into the classifier.")
    st.caption(f"Data: **{state.data_label(data_cfg)}**, as chosen on the *Data & augmentation* "
               "page.")
    start_key, request = jobs.start_key("gan_start")
    if st.button("Start", key=start_key, type="primary", icon=":material/play_arrow:",
                 help="Starts at once when a CPU (or GPU) slot is free, else waits in the queue "
                      "and starts by itself; the live view below says where it stands."):
        overrides = jobs.gan_overrides(
            data_cfg, loss=loss, size=int(size), steps=int(steps), batch_size=int(batch),
            live=live_values, klass=None if klass == "all classes" else klass,
            log_every=int(log_every), sample_every=int(sample_every), train_split_only=train_only,
            holdout=holdout_pct / 100)
        run = attempt(jobs.start_gan, preset, overrides, f"gan-{loss}", request=request,
                      what="starting the run")
        if run is not None:
            jobs.started("gan_start")
            st.session_state["gan_run"] = run.name
            st.session_state["gan_form_open"] = False   # the new run's live view comes first
            st.rerun()

# ---- the run shown --------------------------------------------------------------------------------
runs = jobs.gan_runs()
if not runs:
    if st.session_state.get("gan_run"):
        st.warning(f"**{st.session_state['gan_run']}** is no longer in the runs folder: it was "
                   "deleted (or moved) in another session.", icon=":material/delete:")
    st.info("No GAN runs yet: start one above, or press *Train the CPU demo* on Home.")
    st.stop()
store = RunStore(jobs.pick_run(runs, "gan_run").path)
# Only once it has trained: a run stopped at step 0 has just the grid of its untrained generator.
# The row's container is drawn in every state: appearing only when the run ended, it shifted
# everything below it, and for a moment the browser showed the old sliders above the new ones.
row = st.container(horizontal=True)
if store.status().get("state") in ("finished", "stopped") and any(s > 0 for s, _ in store.samples()):
    if row.button("Browse its samples", key="gan_to_samples", icon=":material/grid_view:"):
        st.switch_page(nav.path("pages/samples.py"))      # Samples shows st.session_state.gan_run
    if row.button("Train a classifier with them", key="gan_to_classifier", icon=":material/analytics:",
                  help="Opens the Classifier page with this run picked under *Synthetic samples* "
                       "for the class it was trained on."):
        klass = store.header().classes
        if len(klass) == 1:
            state.preset(f"clf_syn_{klass[0]}", store.name)
        st.session_state["clf_open_form"] = True
        st.switch_page(nav.path("pages/classifier.py"))
gan_view.buttons(store)
gan_view.steering(store)
gan_view.panel(store)
