"""Runs: every run directory with its status, config and final metrics; several runs compared on
one chart (any metric); deleting a run that is no longer active."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import CLASSES
from core.device import short_name
from core.errors import UserError, environment_reason
from core.runs.store import ACTIVE_STATES, list_runs
from ui import cache, jobs, plots, state
from ui.errors import log

st.set_page_config(layout="wide")  # room for the table and the comparison chart
state.init()
st.title("Runs")

runs = list_runs()
if not runs:
    st.info("No runs yet. Start one on **Train GAN** (or press *Train the CPU demo* on Home).")
    st.stop()

statuses = {r.name: r.status() for r in runs}
summaries = {r.name: cache.run_summary(str(r.path), cache.run_stamp(statuses[r.name])) for r in runs}

# ---- table -----------------------------------------------------------------------------------------
# A glance per run, narrow enough to fit: what it trained on and with what, how far it got, and
# its headline number. The full config and device are in the expander below. At 1280 px with
# the sidebar open the grid has 818 px, and the full device name ("NVIDIA H100 80GB HBM3
# (cuda)") and "built-in phantoms" pushed the last columns out of it: every cell is short.
JOBS = {"train-gan": "GAN", "train-classifier": "classifier"}  # short: the table must fit


def _extras(header) -> str:
    """What a classifier trained on besides the real images: "GAN" (samples), "Aug" (Augmentor
    copies) or "GAN + Aug"."""
    out = []
    if header.section("train").get("synthetic_runs"):
        out.append("GAN")
    if header.section("augment"):
        out.append("Aug")
    return " + ".join(out)


def _data(source) -> str:
    """The data source, short: "phantoms", a folder's name (its path is in the full config), an
    upload's label."""
    if not source:
        return ""
    if str(source).startswith("phantom"):
        return "phantoms"
    label = state.source_label(source)
    return Path(label).name if label == str(source) else label


def _result(final: dict) -> str:
    """The run's headline number: a GAN's last Wasserstein estimate, a classifier's test accuracy."""
    if "test/accuracy" in final:
        return f"{100 * final['test/accuracy']:.1f}%"
    if final.get("wgan/w_estimate") is not None:
        return f"W {final['wgan/w_estimate']:.3f}"
    return ""


rows = []
for r in runs:
    s, summ = statuses[r.name], summaries[r.name]
    header, final = summ["header"], summ["final"]
    classes = header.classes
    step, total = s.get("step"), s.get("total_steps")
    rows.append({
        "run": r.name,
        # Progress only while it moves, in percent: "12,345 / 20,000" took two columns' room.
        "state": (f"{s.get('state')} · {100 * (step or 0) / total:.0f}%"
                  if total and s.get("state") in ACTIVE_STATES else s.get("state")),
        "data": _data(header.data_source),
        "classes": "all" if not classes or set(classes) == set(CLASSES) else ", ".join(classes),
        "size": header.section("data").get("size"),
        # The loss names a GAN run, the architecture a classifier run: no separate job column.
        "model": header.loss or header.section("model").get("arch") or JOBS.get(header.command, ""),
        "extras": _extras(header),
        "result": _result(final),
        "device": short_name(s["device"], s.get("world_size")) if s.get("device") else ""})
st.dataframe(pd.DataFrame(rows), hide_index=True, key="runs_table", column_config={
    "run": st.column_config.TextColumn(pinned=True),
    # A width, since the grid sized this column by its header and cut "GAN + Aug" to "GAN + A".
    "extras": st.column_config.TextColumn(width=72, help="Classifier runs: images added to the "
                                          "real training images. GAN: samples of a trained GAN; "
                                          "Aug: Augmentor copies"),
    "result": st.column_config.TextColumn(help="GAN runs: the last Wasserstein estimate; "
                                          "classifier runs: accuracy on the held-out test patients"),
    "size": st.column_config.NumberColumn(format="%d px"),
    "device": st.column_config.TextColumn(help="Short: CPU ×2 is two threads, MPS an Apple GPU, "
                                          "2× H100 two processes with a GPU each. The full name "
                                          "is under *Full config of one run*")})

with st.expander("Full config of one run"):
    pick = st.selectbox("Run", [r.name for r in runs], key="runs_config_pick")
    if device := statuses[pick].get("device"):
        st.caption(f"Device: {device}")
    st.json(summaries[pick]["config"], expanded=False)

# ---- compare ---------------------------------------------------------------------------------------
st.header("Compare")
names = [r.name for r in runs]
if "runs_compare" in st.session_state:  # a deleted run must leave the selection
    st.session_state["runs_compare"] = [n for n in st.session_state["runs_compare"] if n in names]
# By default the newest runs of the newest run's kind: a classifier run has no W estimate, and
# mixing it into a GAN chart only added "Not logged by ...".
kind = jobs.run_command(runs[0])
state.keep("runs_compare", [r.name for r in runs if jobs.run_command(r) == kind][:3])
chosen = st.multiselect("Runs", names, key="runs_compare")
metric_names = sorted({m for n in chosen for m in summaries[n]["names"]})
if chosen and metric_names:
    default = "wgan/w_estimate" if "wgan/w_estimate" in metric_names else metric_names[0]
    if st.session_state.get("runs_metric") not in metric_names:
        st.session_state["runs_metric"] = default
    metric = st.selectbox("Metric", metric_names, key="runs_metric", format_func=plots.metric_label)
    series = {}
    for n in chosen:
        df = cache.run_metrics(str(runs[names.index(n)].path), (metric,), cache.run_stamp(statuses[n]))
        if len(df):
            series[n] = df
    st.plotly_chart(plots.compare_runs(series, metric), key="runs_compare_chart")
    if missing := [n for n in chosen if n not in series]:   # else they vanish without a word
        st.caption(f"Not logged by {', '.join(missing)}.")
elif chosen:
    st.caption("The chosen runs have not logged any metrics yet.")

# ---- delete ----------------------------------------------------------------------------------------
st.header("Delete a run")
if "runs_deleted" in st.session_state:
    st.success(f"Deleted {st.session_state.pop('runs_deleted')}.")


def _delete() -> None:
    """Button callback, so the confirmation box can be unticked before it is drawn again (set
    from the script after a delete, the browser kept showing it ticked)."""
    store = runs[names.index(st.session_state["runs_delete_pick"])]
    st.session_state["runs_delete_confirm"] = False
    try:
        jobs.delete_run(store)
        st.session_state["runs_deleted"] = store.name
    except UserError as exc:
        st.session_state["runs_delete_error"] = str(exc)
    except OSError as exc:  # a file in use or a permission: say so, keep the traceback in the log
        log.exception("deleting %s", store.path)
        st.session_state["runs_delete_error"] = f"Could not delete {store.name}: {environment_reason(exc)}"


d1, d2 = st.columns([2, 1])
with d1:
    st.selectbox("Run to delete", names, key="runs_delete_pick")
with d2:
    sure = st.checkbox("Yes, delete it permanently", key="runs_delete_confirm")  # whole at 1024 px
    st.button("Delete", key="runs_delete_go", disabled=not sure, icon=":material/delete:",
              on_click=_delete)
if error := st.session_state.pop("runs_delete_error", None):
    st.error(f"Could not delete the run: {error}", icon=":material/error:")
