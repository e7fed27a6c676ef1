"""Classifier: train the COVID-19 / NORMAL / PNEUMONIA classifier on the chosen data, with or
without Augmentor copies and GAN samples, watch its epoch curves live, and read its evaluation:
confusion matrix, per-class P/R/F1, ROC curves, calibration, by-source breakdown, the ablation."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from core import CLASSES
from core.ablation import summarise
from core.augment import AugmentConfig
from core.checkpoint import read_meta
from core.classifier import ARCHS
from core.classifier_train import ClassifierTrainConfig, synthetic_fraction
from core.config import to_dict
from core.data import DataConfig
from core.errors import UserError
from core.runstore import RunStore, list_runs, runs_root
from ui import cache, jobs, plots, state
from ui.errors import attempt, log

ARCH_NAMES = {"report-cnn": "The report's CNN (32/64/128 filters)", "resnet": "Small ResNet (from scratch)"}
CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")
NONE = "(none)"
ABLATION_METRICS = {"accuracy": "accuracy", "macro_f1": "macro-F1",
                    "covid_sensitivity": "COVID-19 sensitivity"}


# ---- runs ---------------------------------------------------------------------------------------
def _classifier_runs() -> list[RunStore]:
    """train-classifier runs, newest first (launched here, or from the command line)."""
    return [r for r in list_runs() if jobs.run_command(r) == "train-classifier"]


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _augment_file(aug: AugmentConfig) -> Path:
    """Write the augmentation config where the job can read it (content-addressed, so the same
    settings reuse one file)."""
    text = json.dumps(to_dict(aug), sort_keys=True, indent=1)
    path = runs_root() / "configs" / f"augment-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    return path


def _gan_choices() -> dict[str, str | None]:
    """{GAN run name: the class it was trained on (or None)} of runs that have a generator."""
    from core.gan_metrics import run_checkpoint, run_class

    out = {}
    for r in jobs.gan_runs():
        try:
            out[r.name] = run_class(read_meta(run_checkpoint(r.path)))
        except Exception as exc:  # noqa: BLE001 - a run without a readable generator is not offered
            log.debug("GAN run %s not offered: %s", r.name, exc)
            continue
    return out


def _train_args(cfg: DataConfig, arch: str, epochs: int, batch: int, lr: float, augment: bool,
                per_class: int, synthetic: dict[str, str], synthetic_n: int) -> list[str]:
    args = ["--data", cfg.source, "--size", str(cfg.size), "--data-channels", str(cfg.channels),
            "--data-phantom-per-class", str(cfg.phantom_per_class),
            "--data-keep-extra-classes", str(cfg.keep_extra_classes).lower(),
            "--data-seed", str(cfg.seed), "--arch", arch, "--epochs", str(epochs),
            "--batch-size", str(batch), "--lr", str(lr)]
    if augment:
        args += ["--augment", str(_augment_file(st.session_state["augment_config"]))]
        if per_class:
            args += ["--augment-per-class", str(per_class)]
    for klass, run in synthetic.items():
        args += ["--synthetic", f"{klass}={runs_root() / run}"]
    if synthetic:
        args += ["--synthetic-per-class", str(synthetic_n)]
    return args


state.init()
st.title("Classifier")
data_cfg: DataConfig = st.session_state["data_config"]
aug_cfg: AugmentConfig = st.session_state["augment_config"]
runs = _classifier_runs()
active = [r for r in runs if r.is_active()]

# ---- a new run ----------------------------------------------------------------------------------
with st.expander("Train a classifier", expanded=not active, icon=":material/add_circle:"):
    where = (f"{data_cfg.source}, {data_cfg.phantom_per_class} per class"
             if data_cfg.source == "phantom" else data_cfg.source)
    st.markdown(f"**Data:** {where} at {data_cfg.size}x{data_cfg.size} px, as chosen on the "
                "*Data & augmentation* page. Training, validation and test are split by patient; "
                "augmented and generated images go to training only.")
    bar = st.empty()
    ds = attempt(cache.dataset, data_cfg, lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg),
                 what="loading the data")
    bar.empty()
    if ds is not None:
        counts = ds.class_counts()
        st.caption("Images per class: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
                   + f" · {len(set(ds.patients)):,} patients")
    c = st.columns([2, 1, 1])
    with c[0]:
        state.seed("clf_arch", "report-cnn")
        arch = st.radio("Architecture", ARCHS, format_func=ARCH_NAMES.get, key="clf_arch",
                        horizontal=True)
    with c[1]:
        state.seed("clf_epochs", 15)
        epochs = st.number_input("Epochs (at most)", 1, 500, key="clf_epochs",
                                 help="Early stopping ends the run when the validation loss has "
                                      "not improved for 5 epochs.")
    with c[2]:
        state.seed("clf_batch", 32)
        batch = st.number_input("Batch size", 1, 1024, key="clf_batch")

    a = st.columns([1, 2])
    with a[0]:
        state.seed("clf_augment", False)
        augment = st.toggle("Augmentor copies", key="clf_augment",
                            help="Grow each training class with the augmentation set on the Data "
                                 "page (probabilities and magnitudes there).")
    with a[1]:
        ops = [k[:-2] for k, v in to_dict(aug_cfg).items() if k.endswith("_p") and v > 0]
        target = int(st.session_state.get("balance_per_class") or 0)
        if augment:
            st.caption(f"Operations: {', '.join(ops) or 'none (all probabilities are 0)'} · each "
                       f"class grows to {target:,} images" if target else
                       f"Operations: {', '.join(ops) or 'none'} · each class grows to the largest "
                       "class (set a target under *Balance classes* on the Data page)")

    gans = _gan_choices()
    synthetic: dict[str, str] = {}
    st.markdown("**Synthetic samples** from a trained GAN, per class (training set only)")
    if not gans:
        st.caption("No GAN run with a generator yet; train one on *Train GAN*.")
        synthetic_n = 0
    else:
        g = st.columns(len(CLASSES) + 1)
        for i, klass in enumerate(CLASSES):
            # Runs trained on this class first; runs that do not say which class are offered too.
            fits = [n for n, k in gans.items() if k == klass] + [n for n, k in gans.items() if k is None]
            with g[i]:
                pick = st.selectbox(f"GAN run for {klass}", [NONE, *fits], key=f"clf_syn_{klass}")
            if pick != NONE:
                synthetic[klass] = pick
        with g[-1]:
            state.seed("clf_syn_n", 100)
            synthetic_n = st.number_input("Generated images per class", 1, 20000,
                                          key="clf_syn_n", disabled=not synthetic)

    # Refuse, before launching, a GAN run that saw this data's validation or test patients.
    leaks = []
    for klass, run in synthetic.items():
        try:
            synthetic_fraction(f"{klass}={runs_root() / run}", data_cfg, ClassifierTrainConfig())
        except UserError as exc:
            leaks.append(str(exc))
    for message in leaks:
        st.error(message + ". On **Train GAN** that is the *Training patients only* switch, "
                 "with the same data chosen on *Data & augmentation*.", icon=":material/block:")

    with st.popover("More settings", icon=":material/tune:"):
        state.seed("clf_lr", 1e-3)
        lr = st.number_input("Learning rate (Adam)", 1e-6, 1e-1, format="%.1e", step=1e-4,
                             key="clf_lr")
    if st.button("Start training", key="clf_start", type="primary", icon=":material/play_arrow:",
                 disabled=ds is None or bool(leaks)):
        args = _train_args(data_cfg, arch, int(epochs), int(batch), float(lr), augment, target,
                           synthetic, int(synthetic_n))
        run = attempt(jobs.start, "train-classifier", args, f"classifier-{arch}",
                      what="starting the classifier run")
        if run is not None:
            st.session_state["clf_run"] = run.name
            st.session_state.pop("clf_run_pick", None)
            st.rerun()

# ---- ablation --------------------------------------------------------------------------------------
def _ablation() -> None:
    """An ablation table under the runs folder (the newest, or the one chosen), as a chart and a
    summary per source. It belongs to no one run, so it is drawn under whatever the run view
    shows, even when that view ends early (no runs, a live or failed run)."""
    st.header("Ablation")
    found = sorted((p for p in runs_root().glob("*/ablation*") if p.suffix in (".csv", ".json")),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        st.caption("No ablation result yet. Run `python -m core ablation --data SOURCE ...`: it "
                   "trains real-only, + Augmentor and + GAN samples at several data fractions and "
                   "writes its table into its run directory.")
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


def _done() -> None:
    """End the page early, with the ablation still drawn."""
    _ablation()
    st.stop()


# ---- the run shown ------------------------------------------------------------------------------
runs = _classifier_runs()
if not runs:
    st.info("No classifier runs yet: train one above. Its epoch curves and evaluation appear here.")
    _done()
names = [r.name for r in runs]
if st.session_state.get("clf_run") not in names:
    st.session_state["clf_run"] = jobs.default_run(runs).name
if st.session_state.get("clf_run_pick") not in names:
    st.session_state["clf_run_pick"] = st.session_state["clf_run"]


def _picked():
    st.session_state["clf_run"] = st.session_state["clf_run_pick"]


st.selectbox("Run", names, key="clf_run_pick", on_change=_picked)
store = runs[names.index(st.session_state["clf_run_pick"])]


def _wide(status: dict) -> pd.DataFrame:
    long = cache.run_metrics(str(store.path), CURVES, cache.run_stamp(status))
    if long.empty:
        return pd.DataFrame()
    return long.pivot_table(index="step", columns="name", values="value", aggfunc="last")


@st.fragment(run_every=1.0)
def _live() -> None:
    """Progress and curves of an active run, redrawn every second; a full rerun once it ends,
    so the evaluation below appears."""
    status = store.status()
    s = status.get("state")
    if s not in ("queued", "running", "paused"):
        st.rerun()
    epoch, total = int(status.get("step") or 0), int(status.get("total_steps") or 0)
    phase = status.get("phase") or ("starting" if s == "queued" else s)
    frac = min(epoch / total, 1.0) if total else 0.0
    st.progress(frac, text=f"{s}: {phase} · epoch {epoch} of {total or '?'}")
    wide = _wide(status)
    if wide.empty:
        st.caption("Waiting for the first epoch to finish...")
    else:
        st.plotly_chart(plots.epoch_curves(wide), key="clf_live_chart")


status = store.status()
s = status.get("state")
if s in ("queued", "running", "paused"):
    st.info(f"**{store.name}** is still training. The evaluation appears here when it finishes.",
            icon=":material/hourglass_top:")
    if st.button("Stop", key="clf_stop", icon=":material/stop:"):
        attempt(store.send_control, stop=True, what="stopping the run")
        st.toast("Asked the run to stop; it saves its best model first.")
    _live()
    _done()

if s == "failed":
    st.error(f"This run failed: {status.get('reason') or 'no reason given'}", icon=":material/error:")
    tail = store.tail_log(3000)
    if tail:
        st.caption("Last lines of its log (job.log):")
        st.code(tail, language=None)
    _done()

reason = status.get("reason") or s
best = status.get("best_epoch")
st.success(f"**{store.name}** {s}: {reason}" + (f" · best epoch {best}" if best else ""),
           icon=":material/check_circle:")
wide = _wide(status)
if not wide.empty:
    st.plotly_chart(plots.epoch_curves(wide), key="clf_curves")

# What the model was trained on (from its checkpoint, so a CLI run shows it too).
ckpt = store.checkpoints_dir / "best.safetensors"
meta = attempt(read_meta, ckpt, what="reading the checkpoint") if ckpt.exists() else None
if meta and meta.get("training_data"):
    td = meta["training_data"]
    st.caption(f"Trained on **{td.get('source')}** ({'real X-rays' if td.get('real') else 'phantoms only'}): "
               + ", ".join(f"{k} {v:,}" for k, v in (td.get("counts") or {}).items())
               + f" training images ({td.get('n_augmented', 0):,} Augmentor copies, "
               f"{td.get('n_synthetic', 0):,} GAN samples); {td.get('n_val', 0):,} validation, "
               f"{td.get('n_test', 0):,} test images.")

# ---- evaluation -----------------------------------------------------------------------------------
eval_path = store.path / "eval.json"
if not eval_path.exists():
    st.warning("This run has no evaluation (eval.json): it stopped before its first epoch ended.")
    _done()
results = attempt(cache.json_file, str(eval_path), eval_path.stat().st_mtime_ns, what="reading eval.json")
if not results:
    _done()
st.header("Evaluation")
splits = [k for k in ("test", "val") if k in results]
split_names = {"test": "held-out test patients", "val": "validation patients"}
# default= rather than a seeded key: the control is not drawn while a run trains, and Streamlit
# drops the state of widgets it did not draw.
split = st.segmented_control("Evaluated on", splits, format_func=split_names.get,
                             default=splits[0], key="clf_split")
r = results[split or splits[0]]
classes = list(r["per_class"])

m = st.columns(5)
m[0].metric("Accuracy", _pct(r.get("accuracy")), help=f"{r.get('n', 0):,} images")
m[1].metric("Macro F1", _pct(r.get("macro_f1")))
m[2].metric("COVID-19 sensitivity", _pct(r.get("covid_sensitivity")))
m[3].metric("Macro ROC AUC", "n/a" if r.get("roc_auc_macro") is None else f"{r['roc_auc_macro']:.3f}")
ece, ece_t = r.get("ece"), r.get("ece_scaled")
m[4].metric("ECE, temperature-scaled", _pct(ece_t),
            delta=None if ece is None or ece_t is None else f"{100 * (ece_t - ece):+.1f} pts",
            delta_color="inverse",
            help=f"Expected calibration error: {_pct(ece)} before, {_pct(ece_t)} after scaling the "
                 f"logits by 1/T with T = {r.get('temperature', 1.0):.3g} fitted on validation.")

cm1, cm2 = st.columns(2)
with cm1:
    st.plotly_chart(plots.confusion(r["confusion"], classes, False), key="clf_cm_counts")
with cm2:
    st.plotly_chart(plots.confusion(r["confusion"], classes, True), key="clf_cm_norm")

t1, t2 = st.columns([1, 1])
with t1:
    st.subheader("Per class")
    table = pd.DataFrame([{"class": k, "precision": v["precision"], "recall": v["recall"],
                           "F1": v["f1"], "support": v["support"],
                           "ROC AUC": (r.get("roc_auc") or {}).get(k)}
                          for k, v in r["per_class"].items()])
    st.dataframe(table, hide_index=True, key="clf_prf",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("precision", "recall", "F1", "ROC AUC")})
    st.subheader("Calibration")
    st.dataframe(pd.DataFrame([
        {"": "before (T = 1)", "ECE": ece, "NLL": r.get("nll")},
        {"": f"after (T = {r.get('temperature', 1.0):.3g})", "ECE": ece_t, "NLL": r.get("nll_scaled")},
    ]), hide_index=True, key="clf_calib",
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("ECE", "NLL")})
with t2:
    if r.get("roc_curves"):
        st.plotly_chart(plots.roc(r["roc_curves"], r.get("roc_auc") or {}), key="clf_roc")
    else:
        st.caption("No ROC curve: each class needs positive and negative examples in this split.")

by_source = r.get("by_source") or {}
st.subheader("By source")
if by_source:
    st.dataframe(pd.DataFrame([{"source": k, "images": v["n"], "accuracy": v.get("accuracy"),
                                "macro F1": v.get("macro_f1"),
                                "COVID-19 sensitivity": v.get("covid_sensitivity"),
                                "ECE (scaled)": v.get("ece_scaled")}
                               for k, v in by_source.items()]),
                 hide_index=True, key="clf_by_source",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("accuracy", "macro F1", "COVID-19 sensitivity", "ECE (scaled)")})
else:
    st.caption("The data has no source column, so there is no breakdown.")

_ablation()
