"""The Classifier page's read-only views: one run's evaluation (eval.json) and the ablation table
under the runs folder. Kept out of the page so the page stays form -> job -> render."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.studies.ablation import AblationConfig, summarise
from core.runs.store import runs_root
from ui import cache, controls, jobs, plots, state
from ui.errors import attempt

ABLATION_METRICS = {"accuracy": "accuracy", "macro_f1": "macro-F1",
                    "covid_sensitivity": "COVID-19 sensitivity"}


PERCENT = st.column_config.NumberColumn(format="%.1f%%")


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _hundred(v):
    """A rate in [0, 1] as percent points for a PERCENT column (None stays empty)."""
    return None if v is None else 100 * v


def evaluation(results: dict) -> None:
    """One run's eval.json: headline metrics, confusion matrices, per-class P/R/F1 and ROC,
    calibration before and after temperature scaling, and the by-source table, for the split
    the user picks (held-out test patients by default)."""
    st.header("Evaluation")
    splits = [k for k in ("test", "val") if k in results]
    split_names = {"test": "held-out test patients", "val": "validation patients"}
    # default= rather than a kept key: the control is not drawn while a run trains, and Streamlit
    # drops the state of widgets it did not draw.
    split = st.segmented_control("Evaluated on", splits, format_func=split_names.get,
                                 default=splits[0], key="clf_split")
    r = results[split or splits[0]]
    classes = list(r["per_class"])

    # A row that wraps, each metric as wide as its label: in five equal columns, 1024 px cut
    # "COVID-19 sensitivity" and the ECE delta short ("COVID-19 sens…", "+2.1 pts b…").
    m = st.container(horizontal=True, gap="large")
    m.metric("Accuracy", pct(r.get("accuracy")), width="content",
             help=f"Share right of the {r.get('n', 0):,} images of the {split_names[split or splits[0]]}.")
    m.metric("Macro F1", pct(r.get("macro_f1")), width="content")
    m.metric("COVID-19 sensitivity", pct(r.get("covid_sensitivity")), width="content")
    m.metric("Macro ROC AUC", "n/a" if r.get("roc_auc_macro") is None else f"{r['roc_auc_macro']:.3f}",
             width="content")
    ece, ece_t = r.get("ece"), r.get("ece_scaled")
    m.metric("ECE (scaled)", pct(ece_t), width="content",
             delta=None if ece is None or ece_t is None else f"{100 * (ece_t - ece):+.1f} pts by scaling",
             delta_color="inverse",
             help=f"Expected calibration error: {pct(ece)} before, {pct(ece_t)} after scaling the "
                  f"logits by 1/T with T = {r.get('temperature', 1.0):.3g} fitted on validation.")

    cm1, cm2 = st.columns(2)
    with cm1:
        st.plotly_chart(plots.confusion(r["confusion"], classes, False), key="clf_cm_counts")
    with cm2:
        # Short: at 1024 px the half-width chart cut "Row-normalised (recall on the diagonal)".
        st.plotly_chart(plots.confusion(r["confusion"], classes, True).update_layout(
            title="Row-normalised"), key="clf_cm_norm")
    st.caption("Rows: the true class; columns: the predicted one. Row-normalised: each row divided "
               "by its total, so the diagonal holds each class's recall.")

    st.subheader("Per class")
    # Full width: its six columns needed a horizontal scroll in half the page at 1024 px.
    # Rates in percent, as in the headline metrics above; AUC stays a fraction, as usual.
    table = pd.DataFrame([{"class": k, "precision": _hundred(v["precision"]),
                           "recall": _hundred(v["recall"]), "F1": _hundred(v["f1"]),
                           "support": v["support"], "ROC AUC": (r.get("roc_auc") or {}).get(k)}
                          for k, v in r["per_class"].items()])
    st.dataframe(table, hide_index=True, key="clf_prf",
                 column_config={**{c: PERCENT for c in ("precision", "recall", "F1")},
                                "ROC AUC": st.column_config.NumberColumn(format="%.3f")})
    t1, t2 = st.columns([1, 1])
    with t1:
        st.subheader("Calibration")
        st.dataframe(pd.DataFrame([
            {"": "before (T = 1)", "ECE": _hundred(ece), "NLL": r.get("nll")},
            {"": f"after (T = {r.get('temperature', 1.0):.3g})", "ECE": _hundred(ece_t),
             "NLL": r.get("nll_scaled")},
        ]), hide_index=True, key="clf_calib",
            column_config={"ECE": PERCENT, "NLL": st.column_config.NumberColumn(format="%.3f")})
    with t2:
        if r.get("roc_curves"):
            # The legend in the corner under the chance line, where ROC curves seldom go:
            # beside the plot it left the curves 50 px wide at 1024 px.
            st.plotly_chart(plots.roc(r["roc_curves"], r.get("roc_auc") or {}).update_layout(
                legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom",
                            bgcolor="rgba(255,255,255,0.8)")), key="clf_roc")
        else:
            st.caption("No ROC curve: each class needs positive and negative examples in this split.")

    by_source = r.get("by_source") or {}
    st.subheader("Adults, and by source")
    if by_source or r.get("adults"):
        rates = {"accuracy": "accuracy", "macro F1": "macro_f1",
                 "COVID-19 sensitivity": "covid_sensitivity", "ECE (scaled)": "ece_scaled"}
        adults = r.get("adults") or {}
        children = bool(adults) and adults.get("n", 0) < r.get("n", 0)
        named = ([("all images", r)] + ([("adults only", adults)] if children else [])
                 + list(by_source.items())) if children else list(by_source.items())
        rows = [{"source": k, "images": v["n"],
                 **{label: _hundred(v.get(field)) for label, field in rates.items()}}
                for k, v in named]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="clf_by_source",
                     column_config={label: PERCENT for label in rates})
        if children:
            st.caption("Adults only: every image but those of children (a pediatric source, or an "
                       "age under 18 in the metadata). A model can score well overall by telling "
                       "children from adults; this row shows what it does when that is no help.")
    else:
        st.caption("The data has no source column, so there is no breakdown.")
    probe = r.get("shortcut")
    if probe:
        from core.classify.evaluate import shortcut_sentence

        lift = probe["accuracy"] - probe["baseline"]
        (st.warning if lift > 0.2 else st.info)(
            shortcut_sentence(probe) + (" **The model knows where an image comes from far better "
                                        "than chance**: check that the per-source rows above do "
                                        "not rest on it." if lift > 0.2 else ""),
            icon=":material/travel_explore:")


FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def _start_form(data_cfg) -> None:
    """Start an ablation on the Data page's data: real only, + Augmentor copies, + samples of
    chosen GAN runs, at several shares of the training patients; queued like any job."""
    from core.studies.ablation import ARMS
    from core.classify.config import ClassifierTrainConfig

    with st.expander("Run an ablation", icon=":material/science:"):
        st.caption(f"On {state.data_label(data_cfg)} at {data_cfg.size} px. Each arm trains the "
                   "classifier on the same training patients (a share of them) and is scored on "
                   "the same held-out test patients; GAN runs must have been trained on the "
                   "training patients only (*Train GAN*, *Training patients only*).")
        # Two per row: three side by side cut the chips short at 1024 px.
        c = st.columns(2)
        with c[0]:
            state.keep("abl_fractions", [0.25, 1.0])
            fractions = st.multiselect("Shares of the training patients", FRACTIONS,
                                       format_func=lambda f: f"{f:.0%}", key="abl_fractions")
        with c[1]:
            state.keep("abl_arms", ["real", "augmentor"])
            arms = st.multiselect("Without a GAN", ["real", "augmentor"], key="abl_arms",
                                  format_func={"real": "real only", "augmentor": "+ Augmentor"}.get)
        gans = {n: g for n, g in jobs.gan_generators().items() if g[0] and g[2]}
        state.keep("abl_gans", [])
        st.session_state["abl_gans"] = [n for n in st.session_state["abl_gans"] if n in gans]
        if gans:
            picked = st.multiselect("+ samples of GAN runs", list(gans), key="abl_gans",
                                    format_func=lambda n: f"{n} ({gans[n][0]})",
                                    help="Single-class GAN runs; each adds the arm of its loss.")
        else:
            picked = []
            st.caption("No single-class GAN run yet for a GAN arm: train one on *Train GAN*.")
        d = st.columns(3)
        with d[0]:
            state.keep("abl_epochs", 5)
            epochs = st.number_input("Epochs (at most) per run", 1, 200, key="abl_epochs")
        with d[1]:
            state.keep("abl_seeds", 1)
            seeds = st.number_input("Seeds", 1, 5, key="abl_seeds")
        with d[2]:
            state.keep("abl_per_class", 200)
            per_class = st.number_input("Generated images per class", 1, 20000, key="abl_per_class",
                                        disabled=not picked)
        gan_arms = sorted({a for n in picked for a, loss in ARMS.items() if loss == gans[n][2]})
        all_arms = [*arms, *gan_arms]
        n_runs = len(fractions) * len(all_arms) * int(seeds)
        st.caption(f"{n_runs} classifier runs of at most {int(epochs)} epochs, one after another "
                   f"(patience {ClassifierTrainConfig().patience}).")
        start_key, request = jobs.start_key("abl_start")
        if st.button("Start the ablation", key=start_key, icon=":material/play_arrow:",
                     disabled=n_runs == 0,
                     help="Starts at once when a CPU (or GPU) slot is free, else waits in the queue."):
            train = {"epochs": int(epochs)}
            if picked:
                train["synthetic_per_class"] = int(per_class)
            abl = AblationConfig(fractions=tuple(fractions), seeds=tuple(range(int(seeds))),
                                 arms=tuple(all_arms),
                                 runs=tuple(f"{gans[n][0]}={runs_root() / n}" for n in picked))
            if attempt(_start_ablation, data_cfg, train, abl, request, what="starting the ablation"):
                jobs.started("abl_start")
                st.rerun()


def _start_ablation(data_cfg, train: dict, abl, request: str | None = None):
    """Queue an ablation built as the command line builds it (the classifier's defaults, the
    data chosen on the Data page, the form's choices); its config.json holds them all."""
    from core.studies.ablation import header
    from core.classify.train import build_configs

    configs = build_configs(None, {"data": jobs.data_overrides(data_cfg), "train": train})
    return jobs.start("ablation", [], "ablation", header=header(*configs, abl), request=request)


def _running(store, status: dict) -> None:
    """A queued or running ablation: where it is (jobs.watch redraws it in place)."""
    if not controls.queue_notice(store, f"abl_cancel_{store.name}"):
        step = int(status.get("step") or 0)
        eta = status.get("eta_s")
        st.progress(min(step, 100) / 100, text=f"Ablation `{store.name}`: {status.get('phase') or 'starting'}"
                    + (f" · about {jobs.format_duration(eta)} left" if eta else ""))


def ablation(data_cfg=None) -> None:
    """An ablation table under the runs folder (the newest, or the one chosen), as a chart and a
    summary per source, and a form to start one on `data_cfg`. It belongs to no one run, so it
    is drawn under whatever the run view shows, even when that view ends early (no runs, a live
    or failed run)."""
    st.header("Ablation")
    if data_cfg is not None:
        _start_form(data_cfg)
    for store in jobs.active_runs():
        if jobs.run_command(store) == "ablation":
            jobs.watch(store, lambda status, store=store: _running(store, status))
    found = sorted((p for p in runs_root().glob("*/ablation*") if p.suffix in (".csv", ".json")),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        st.caption("No ablation result yet: start one above (or `python -m core ablation --data "
                   "SOURCE ...`). It trains real-only, + Augmentor and + GAN samples at several "
                   "data fractions and writes its table into its run directory.")
        return
    # One table per ablation folder (the newer of its CSV and JSON), newest folder first.
    by_run = {}
    for p in found:
        by_run.setdefault(p.parent.name, p)
    path = by_run[next(iter(by_run))]
    if len(by_run) > 1:
        path = by_run[st.selectbox("Ablation run", list(by_run), key="clf_abl_run")]
    stamp, what = path.stat().st_mtime_ns, "reading the ablation"
    if path.suffix == ".csv":
        table = attempt(cache.csv_file, str(path), stamp, what=what)
    else:
        data = attempt(cache.json_file, str(path), stamp, what=what)
        rows = data.get("rows", data) if isinstance(data, dict) else data
        table = pd.DataFrame(rows) if isinstance(rows, list) else pd.json_normalize(rows)
    if table is None:
        return
    if table.empty:
        st.caption(f"`{path.parent.name}/{path.name}` has no rows yet.")
        return
    seeds = int(table["seed"].nunique()) if "seed" in table else 1
    st.caption(f"From `{path.parent.name}/{path.name}`: test split, "
               + ("one seed." if seeds == 1 else
                  f"mean over {seeds} seeds, error bars the spread between them."))
    metrics = [m for m in ABLATION_METRICS if m in table]
    if not ({"arm", "fraction"} <= set(table.columns) and metrics):  # a table from elsewhere
        st.dataframe(table, hide_index=True, key="clf_ablation")
        return
    summary = summarise(table)
    c = st.columns([2, 3])
    sources = summary["source"].unique().tolist()  # "all" first
    source = c[0].selectbox("Test images from", sources, key="clf_abl_source",
                            help="The by-source rows: on cxr-real, NORMAL and PNEUMONIA come "
                                 "mostly from children, COVID-19 from adults.")
    metric = c[1].segmented_control("Metric", metrics, format_func=ABLATION_METRICS.get,
                                    default=metrics[0], key="clf_abl_metric") or metrics[0]
    rows = summary[summary["source"] == (source or "all")]
    st.plotly_chart(plots.ablation_bars(rows, metric, ABLATION_METRICS[metric]),
                    key="clf_ablation_chart")
    # Each metric, then its spread between seeds when there is one.
    percent = ["fraction"] + [col for m in metrics for col in (m, f"{m}_sd")
                              if col in rows and rows[col].notna().any()]
    shown = rows[["fraction", "arm", "seeds", "n"] + percent[1:]].copy()
    shown[percent] *= 100
    labels = {"fraction": "training patients", "n": "test images", **ABLATION_METRICS,
              **{f"{m}_sd": f"{ABLATION_METRICS[m]} sd" for m in metrics}}
    st.dataframe(shown.rename(columns=labels), hide_index=True, key="clf_ablation",
                 column_config={labels[col]: st.column_config.NumberColumn(format="%.1f%%")
                                for col in percent})
    with st.expander("Every run and source", icon=":material/table:"):
        st.dataframe(table, hide_index=True, key="clf_ablation_rows")
