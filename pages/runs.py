"""Runs: every run directory with its status, config and final metrics; several runs compared on
one chart (any metric); deleting a run that is no longer active."""

import pandas as pd
import streamlit as st

from core.runstore import list_runs
from ui import cache, jobs, plots, state
from ui.errors import attempt

st.set_page_config(layout="wide")  # the table has a column per config field and metric
state.init()
st.title("Runs")

runs = list_runs()
if not runs:
    st.info("No runs yet. Start one on **Train GAN** (or press *Train the CPU demo* on Home).")
    st.stop()

statuses = {r.name: r.status() for r in runs}
summaries = {r.name: cache.run_summary(str(r.path), cache.run_stamp(statuses[r.name])) for r in runs}

# ---- table -----------------------------------------------------------------------------------------
# Config columns worth a glance, by their short name; the first key found for a name wins
# (so data.size, not critic.size). The full config is in the expander below.
KEY_CONFIG = ("loss", "source", "classes", "size", "steps", "epochs", "batch_size", "model")
rows = []
for r in runs:
    s, summ = statuses[r.name], summaries[r.name]
    row = {"run": r.name, "job": jobs.run_command(r) or "?", "state": s.get("state"),
           "step": s.get("step"), "of": s.get("total_steps"), "device": s.get("device")}
    config = sorted(summ["config"].items(), key=lambda kv: not kv[0].startswith(("data.", "train.")))
    for k, v in config:
        short = k.split(".")[-1]
        if short in KEY_CONFIG and short not in row:
            row[short] = ",".join(map(str, v)) if isinstance(v, list) else v
    for name in ("loss/critic", "loss/gen", "wgan/w_estimate", "val/accuracy"):
        if name in summ["final"]:
            row[f"final {name}"] = round(float(summ["final"][name]), 4)
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, key="runs_table")

with st.expander("Full config of one run"):
    pick = st.selectbox("Run", [r.name for r in runs], key="runs_config_pick")
    st.json(summaries[pick]["config"], expanded=False)

# ---- compare ---------------------------------------------------------------------------------------
st.header("Compare")
names = [r.name for r in runs]
if "runs_compare" in st.session_state:  # a deleted run must leave the selection
    st.session_state["runs_compare"] = [n for n in st.session_state["runs_compare"] if n in names]
state.seed("runs_compare", names[:3])
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
elif chosen:
    st.caption("The chosen runs have not logged any metrics yet.")

# ---- delete ----------------------------------------------------------------------------------------
st.header("Delete a run")
if "runs_deleted" in st.session_state:
    st.success(f"Deleted {st.session_state.pop('runs_deleted')}.")
d1, d2 = st.columns([2, 1])
with d1:
    victim = st.selectbox("Run to delete", names, key="runs_delete_pick")
with d2:
    sure = st.checkbox("Yes, delete this run permanently", key="runs_delete_confirm")
    if st.button("Delete", key="runs_delete_go", disabled=not sure, icon=":material/delete:"):
        store = runs[names.index(victim)]
        attempt(jobs.delete_run, store, what="deleting the run")
        if not store.path.exists():
            st.session_state.pop("runs_delete_confirm", None)
            st.session_state["runs_deleted"] = victim
            st.rerun()
