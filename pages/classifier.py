"""Classifier: train the COVID-19 / NORMAL / PNEUMONIA classifier on the chosen data, with or
without Augmentor copies and GAN samples, watch its epoch curves live, and read its evaluation:
confusion matrix, per-class P/R/F1, ROC curves, calibration, by-source breakdown, the ablation."""

import pandas as pd
import streamlit as st

from core import CLASSES
from core.runs import store as runstore
from core.data.augment import AugmentConfig
from core.checkpoint import read_meta
from core.classify.model import ARCH_NAMES, ARCHS, BEST
from core.classify.config import ClassifierTrainConfig
from core.classify.synthetic import synthetic_fraction
from core.classify.train import PRESETS, build_configs, header
from core.config import field_range, to_dict
from core.data.config import DataConfig
from core.errors import UserError
from core.runs.store import ACTIVE_STATES, RunStore, list_runs, runs_root
from ui import cache, controls, evaluation, jobs, plots, state
from ui.errors import attempt, public

CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")
_CXR = PRESETS["cxr"]
CXR_SUMMARY = (f"{ARCH_NAMES[_CXR['model']['arch']].split(' (')[0]}, {_CXR['train']['epochs']} "
               f"epochs")
NONE = "(none)"


# ---- runs ---------------------------------------------------------------------------------------
def _classifier_runs() -> list[RunStore]:
    """train-classifier runs, newest first (launched here, or from the command line)."""
    return [r for r in list_runs() if jobs.run_command(r) == "train-classifier"]


def _start(cfg: DataConfig, arch: str, epochs: int, batch: int, lr: float, augment: bool,
           per_class: int, synthetic: dict[str, str], synthetic_n: int,
           batchnorm: bool = False, preset: str | None = None, request: str | None = None) -> RunStore:
    """Queue a classifier run built as the command line builds it (the preset, then the form's
    choices over it); its config.json holds the configs, the Augmentor settings among them."""
    data = jobs.data_overrides(cfg)
    model, train = {}, {}
    if not preset:  # else the recipe decides the model and training settings
        model = {"arch": arch, "batchnorm": batchnorm}
        train = {"epochs": epochs, "batch_size": batch, "lr": lr}
    if augment and per_class:
        train["augment_per_class"] = per_class
    if synthetic:
        train["synthetic_runs"] = tuple(f"{k}={runs_root() / run}" for k, run in synthetic.items())
        train["synthetic_per_class"] = synthetic_n
    configs = build_configs(preset, {"data": data, "model": model, "train": train})
    aug = st.session_state["augment_config"] if augment else None
    return jobs.start("train-classifier", [], f"classifier-{preset or arch}",
                      header=header(*configs, aug), request=request)


state.init()
st.title("Classifier")
data_cfg: DataConfig = st.session_state["data_config"]
aug_cfg: AugmentConfig = st.session_state["augment_config"]
runs = _classifier_runs()

# ---- a new run ----------------------------------------------------------------------------------
# Open only before the first run (see pages/train_gan.py), or from Train GAN's "Train a
# classifier with them" until that classifier starts (Streamlit applies a changed `expanded`).
with st.expander("Train a classifier", expanded=not runs or st.session_state.get("clf_open_form", False),
                 icon=":material/add_circle:"):
    st.markdown(f"**Data:** {state.data_label(data_cfg)} at {data_cfg.size}x{data_cfg.size} px, "
                "as chosen on the *Data & augmentation* page. Training, validation and test are "
                "split by patient; augmented and generated images go to training only.")
    bar = st.empty()
    ds = attempt(cache.dataset, data_cfg, lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg),
                 what="loading the data")
    bar.empty()
    if ds is not None:
        counts = ds.class_counts()
        st.caption("Images per class: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
                   + f" · {len(set(ds.patients)):,} patients")
    one_class = ds is not None and len(ds.classes) < 2
    if one_class:   # the Data page loads one class for a GAN; a classifier tells classes apart
        st.error(f"This data has one class ({ds.classes[0]}): a classifier needs at least two. "
                 "Choose data with two or more classes on *Data & augmentation*.",
                 icon=":material/block:")
    state.keep("clf_recipe", False)
    recipe = st.toggle(f"Real-X-ray recipe ({CXR_SUMMARY})", key="clf_recipe",
                       help="The `cxr` preset of `train-classifier`, the strongest setting "
                            "measured on real chest X-rays within 20 minutes of 2-core CPU "
                            "training (docs/results.md). It sets the model and training "
                            "settings below.")
    c = st.columns([2, 1, 1])
    with c[0]:
        state.keep("clf_arch", "report-cnn")
        arch = st.radio("Architecture", ARCHS, format_func=ARCH_NAMES.get, key="clf_arch",
                        horizontal=True, disabled=recipe)
    with c[1]:
        # 20, as on the command line: on the default data 15 stopped while validation accuracy
        # was still rising (79.1% test at 15, 89.1% at 20; docs/results.md).
        state.keep("clf_epochs", ClassifierTrainConfig().epochs)
        epochs = st.number_input("Epochs (at most)", *field_range(ClassifierTrainConfig, "epochs"),
                                 key="clf_epochs", disabled=recipe,
                                 help="Early stopping ends the run when the validation loss has "
                                      f"not improved for {ClassifierTrainConfig().patience} "
                                      "epochs.")
    with c[2]:
        state.keep("clf_batch", ClassifierTrainConfig().batch_size)
        batch = st.number_input("Batch size", *field_range(ClassifierTrainConfig, "batch_size"),
                                key="clf_batch", disabled=recipe)

    a = st.columns([1, 2])
    with a[0]:
        state.keep("clf_augment", False)
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

    gans = jobs.gan_generators()
    synthetic: dict[str, str] = {}
    st.markdown("**Synthetic samples** from a trained GAN, per class (training set only)")
    if not gans:
        st.caption("No GAN run with a generator yet; train one on *Train GAN*.")
        synthetic_n = 0
    else:
        g = st.columns(len(CLASSES) + 1)
        for i, klass in enumerate(CLASSES):
            # Runs trained on this class first; runs that do not say which class are offered too.
            fits = ([n for n, (k, _, _) in gans.items() if k == klass]
                    + [n for n, (k, _, _) in gans.items() if k is None])
            with g[i]:
                key = f"clf_syn_{klass}"
                state.keep(key, NONE)  # kept when the user comes back from another page
                if st.session_state[key] not in fits:  # that run was deleted meanwhile
                    st.session_state[key] = NONE
                pick = st.selectbox(f"GAN run for {klass}", [NONE, *fits], key=key)
            if pick != NONE:
                synthetic[klass] = pick
        with g[-1]:
            state.keep("clf_syn_n", 100)
            synthetic_n = st.number_input("Generated images per class", 1, 20000,
                                          key="clf_syn_n", disabled=not synthetic)
        resized = sorted({f"{gans[run][1]} px" for run in synthetic.values()
                          if gans[run][1] and gans[run][1] != data_cfg.size})
        if resized:
            st.caption(f"Generated at {' and '.join(resized)}, resized to the data's "
                       f"{data_cfg.size} px for training: smaller generators' samples come out "
                       "blurrier than the real images.")

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
        state.keep("clf_lr", ClassifierTrainConfig().lr)
        lr = st.number_input("Learning rate (Adam)", *field_range(ClassifierTrainConfig, "lr"),
                             format="%.1e", step=1e-4,
                             key="clf_lr", disabled=recipe)
        state.keep("clf_batchnorm", False)
        batchnorm = st.toggle(
            "BatchNorm after each conv", key="clf_batchnorm", disabled=arch != "report-cnn" or recipe,
            help="Not in the report's CNN (so off by default); the ResNet always has it. On "
                 "300 phantoms per class (the default data) at 64 px, 20 epochs: 94% test "
                 "accuracy with it (one seed), 89-92% without (two seeds).")
    start_key, request = jobs.start_key("clf_start")
    if st.button("Start training", key=start_key, type="primary", icon=":material/play_arrow:",
                 disabled=ds is None or one_class or bool(leaks),
                 help="Starts at once when a CPU (or GPU) slot is free, else waits in the queue."):
        run = attempt(_start, data_cfg, arch, int(epochs), int(batch), float(lr), augment, target,
                      synthetic, int(synthetic_n), batchnorm and arch == "report-cnn",
                      preset="cxr" if recipe else None, request=request,
                      what="starting the classifier run")
        if run is not None:
            jobs.started("clf_start")
            st.session_state.pop("clf_open_form", None)
            st.session_state["clf_run"] = run.name
            st.session_state.pop("clf_run_pick", None)
            st.rerun()


# ---- the run shown ------------------------------------------------------------------------------
def _done() -> None:
    """End the page early, with the ablation still drawn."""
    evaluation.ablation(data_cfg)
    st.stop()


runs = _classifier_runs()
if not runs:
    st.info("No classifier runs yet: train one above. Its epoch curves and evaluation appear here.")
    _done()
store = jobs.pick_run(runs, "clf_run")


def _wide(status: dict) -> pd.DataFrame:
    long = cache.run_metrics(str(store.path), CURVES, cache.run_stamp(status))
    return runstore.wide(long)


def _live(status: dict) -> None:
    """Progress and curves of an active run (jobs.watch redraws it in place)."""
    s = status.get("state")
    epoch, total = int(status.get("step") or 0), int(status.get("total_steps") or 0)
    phase = status.get("phase") or ("starting" if s == "queued" else s)
    frac = min(epoch / total, 1.0) if total else 0.0
    st.progress(frac, text=f"{s}: {phase}" + (f" · epoch {epoch} of {total}" if total else "")
                + (f" · {controls.eta_text(status)}" if s == "running" and phase == "training" else ""))
    wide = _wide(status)
    if wide.empty:
        st.caption("Waiting for the first epoch to finish...")
    else:
        st.plotly_chart(plots.epoch_curves(wide), key="clf_live_chart")


status = store.status()
s = status.get("state")
if s in ACTIVE_STATES:
    if not controls.queue_notice(store, "clf_cancel"):
        st.info(f"**{store.name}** is still training. The evaluation appears here when it "
                "finishes.", icon=":material/hourglass_top:")
        controls.stop_button(store, "clf_stop", "Asked the run to stop; it saves its best model first.")
    jobs.watch(store, _live)
    _done()

if s == "failed":
    st.error(f"This run failed: {public(status.get('reason') or 'no reason given')}",
             icon=":material/error:")
    tail = store.tail_log(3000)
    if tail:
        st.caption("Last lines of its log (job.log):")
        st.code(tail, language=None)
    _done()

reason = status.get("reason") or s
best = status.get("best_epoch")
# The reason often starts with the state ("finished 3 epochs"): say it once.
said = reason if reason.startswith(s) else f"{s}: {reason}"
st.success(f"**{store.name}** {said}" + (f" · best epoch {best}" if best else ""),
           icon=":material/check_circle:")
wide = _wide(status)
if not wide.empty:
    st.plotly_chart(plots.epoch_curves(wide), key="clf_curves")

# What the model was trained on (from its checkpoint, so a CLI run shows it too).
ckpt = store.checkpoints_dir / BEST
meta = attempt(read_meta, ckpt, what="reading the checkpoint") if ckpt.exists() else None
if meta and meta.get("training_data"):
    td = meta["training_data"]
    kind = "real X-rays" if td.get("real") else "no real X-rays"
    st.caption(f"Trained on **{state.source_label(td.get('source'))}** ({kind}): "
               + ", ".join(f"{k} {v:,}" for k, v in (td.get("counts") or {}).items())
               + f" training images ({td.get('n_augmented', 0):,} Augmentor copies, "
               f"{td.get('n_synthetic', 0):,} GAN samples); {td.get('n_val', 0):,} validation, "
               f"{td.get('n_test', 0):,} test images.")

# ---- evaluation -----------------------------------------------------------------------------------
if not store.stamp("eval.json"):
    st.warning("This run has no evaluation (eval.json): it stopped before its first epoch ended.")
    _done()
results = attempt(cache.json_file, str(store.evaluation_path), store.stamp("eval.json"),
                  what="reading eval.json")
if not results:
    _done()
evaluation.evaluation(results)
evaluation.ablation(data_cfg)
