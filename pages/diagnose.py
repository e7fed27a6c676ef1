"""Diagnose: one X-ray through a trained classifier. Upload a PNG, JPEG or DICOM (or pick a generated
X-ray or a built-in phantom), see the model's answer in plain words, a Grad-CAM overlay, the class
probabilities, and what the model was trained on and how well it did. Research and teaching only."""

import hashlib
from pathlib import Path

import streamlit as st

from core import CLASSES
from core.data import phantom
from core.checkpoint import read_meta
from core.classify.model import ARCH_NAMES
from core.runs.store import list_runs
from ui import cache, jobs, plots, state
from ui.errors import attempt, log
from ui.nav import REPO

SHIPPED_REAL = REPO / "checkpoints" / "classifier-cxr.safetensors"
SHIPPED = REPO / "checkpoints" / "classifier-phantom.safetensors"
REAL_LABEL = "Real X-rays: shipped model (licensed sources)"
PHANTOM_LABEL = "Phantoms: shipped model (phantoms only)"
MAX_UPLOAD_MB = 30
DISPLAY_MAX = 512          # images are shown at most this many pixels on their long side
EXAMPLE_SEED = 20_260_101  # not the seed of the phantom training data, so these are unseen
GENERATED_SEEDS = (11, 12, 13)  # generated examples: fixed latents, so a demo is repeatable
DISCLAIMER = "Research and teaching tool, not a medical device: do not use for diagnosis."
FLAGGED = "This image is unlike the X-rays this model learned from"


def check_upload(data: bytes, name: str) -> str | None:
    """Why an upload cannot be used before decoding it (size cap), or None."""
    if len(data) > MAX_UPLOAD_MB * 2**20:
        return f"{name} is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_MB} MB."
    return None


# ---- the model ----------------------------------------------------------------------------------
def _models() -> dict[str, str]:
    """{label: checkpoint path}: the shipped real-X-ray model first (the default), the shipped
    phantom model, then every classifier run's best checkpoint."""
    out = {}
    if SHIPPED_REAL.is_file():
        out[REAL_LABEL] = str(SHIPPED_REAL)
    if SHIPPED.is_file():
        out[PHANTOM_LABEL] = str(SHIPPED)
    for r in list_runs():
        ckpt = r.checkpoints_dir / "best.safetensors"
        if not ckpt.is_file() or jobs.run_command(r) != "train-classifier":
            continue
        try:
            meta = read_meta(ckpt)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is not offered
            log.debug("checkpoint %s not offered: %s", ckpt, exc)
            continue
        note = "" if meta.get("final") else ", still training"
        acc = meta.get("val_acc")
        out[f"{r.name} (epoch {meta.get('epoch', '?')}"
            + (f", val acc {acc:.1%}" if acc is not None else "") + note + ")"] = str(ckpt)
    return out


def _trained_on(meta: dict) -> str:
    td = meta.get("training_data") or {}
    if not td:
        return "The checkpoint does not record its training data."
    kind = "real X-rays" if td.get("real") else "**phantoms only** (procedural images, no real X-rays)"
    counts = ", ".join(f"{k} {v:,}" for k, v in (td.get("counts") or {}).items())
    extra = []
    if td.get("n_augmented"):
        extra.append(f"{td['n_augmented']:,} Augmentor copies")
    if td.get("n_synthetic"):
        extra.append(f"{td['n_synthetic']:,} GAN samples")
    m = meta.get("model") or {}
    # The folder's name, not its path on the server (and nothing for phantoms: "phantom:300" is
    # the command line's spelling, not a clinician's).
    source = str(td.get("source") or "")
    label = state.source_label(source) if source else ""   # an upload: as the user knows it
    where = f" (`{Path(source).name or source}`)" if label == source else f" ({label})"
    where = where if td.get("real") and source else ""
    acc = meta.get("val_acc")
    return (f"Trained on {kind}{where}: {counts} training images"
            + (f" (including {', '.join(extra)})" if extra else "")
            + f". Model: {ARCH_NAMES.get(m.get('arch'), m.get('arch', '?'))} at "
              f"{m.get('size', '?')}x{m.get('size', '?')} px"
            + (f"; right on {acc:.0%} of its validation images, so any one answer can be wrong."
               if acc is not None else "."))


def _shipped_card(meta: dict, path: str) -> dict:
    """The `card` in a shipped model's meta (written when it was shipped), {} for any other. Only
    a card of a file in this repository's checkpoints/ is used: a checkpoint from elsewhere could
    put links or remote images in it, or claim results it never had."""
    card = meta.get("card") if Path(path).resolve().parent == SHIPPED.resolve().parent else None
    return card if isinstance(card, dict) else {}


def _cautions(meta: dict, path: str, predicted: str) -> list[str]:
    """What the model's own card says it mostly misses, for an answer of another class: a
    NORMAL answer from a model that finds 38% of the COVID-19 films of hospitals it never saw
    does not rule COVID-19 out (an image cannot tell us which hospital it is from)."""
    out = []
    for m in _shipped_card(meta, path).get("misses") or []:
        if m["class"] != predicted and m["found"] < m["of"] / 2:
            out.append(f"**This model misses most {m['class']} films from {m['where']}**: in "
                       f"testing it found {m['found']} of {m['of']} ({m['found'] / m['of']:.1%}). "
                       f"A {predicted} answer does not rule {m['class']} out.")
    return out


def _card(meta: dict, path: str) -> None:
    """What the model is, what it learned from and how well it did on patients it never saw
    (_shipped_card; the training data a run's checkpoint records otherwise)."""
    card = _shipped_card(meta, path)
    with st.container(border=True):
        st.markdown("**About this model**")
        st.markdown(str(card.get("summary") or _trained_on(meta)))
        for line in card.get("results") or []:
            st.markdown(f"- {line}")
        if card.get("limits"):
            st.caption(str(card["limits"]))
        if card.get("file"):
            st.caption(f"Model card: `checkpoints/{card['file']}` in the repository.")


# ---- what to predict ----------------------------------------------------------------------------
def _pick(what: str, model_label: str | None = None) -> None:
    """An input was chosen; an example also picks the model it belongs to (phantoms go to the
    phantom model, generated X-rays to the real-X-ray model), when that model is offered."""
    st.session_state["diagnose_input"] = what
    if model_label and model_label in st.session_state.get("diagnose_models", ()):
        st.session_state["diagnose_model"] = model_label


state.init()
st.title("Diagnose one X-ray")
st.warning(DISCLAIMER, icon=":material/warning:")

models = _models()
if not models:
    st.info("No model is available yet: the shipped models (`checkpoints/`) are not in this copy, "
            "and no classifier run has a checkpoint. Train one on the **Classifier** page, then "
            "come back and pick it here.", icon=":material/info:")
    st.stop()
labels = list(models)
st.session_state["diagnose_models"] = labels
if st.session_state.get("diagnose_model") not in labels:
    st.session_state["diagnose_model"] = labels[0]

# Inputs on the left, the result on the right: at 1440x900 the result is in view without
# scrolling (below the inputs it started under the fold).
inputs, result_col = st.columns([1, 2], gap="large")
with inputs:
    choice = st.selectbox("Model", labels, key="diagnose_model")
    ckpt = models[choice]
    mtime = Path(ckpt).stat().st_mtime_ns
    loaded = attempt(cache.classifier_model, ckpt, mtime, what="loading the model")
    if loaded is None:
        st.stop()
    _, meta = loaded
    upload = st.file_uploader(f"Upload an X-ray: PNG (8 or 16-bit), JPEG or DICOM, up to "
                              f"{MAX_UPLOAD_MB} MB, a frontal chest view. It is read in memory "
                              "and not stored.", type=["png", "jpg", "jpeg", "dcm", "dicom"],
                              max_upload_size=MAX_UPLOAD_MB, key="diagnose_upload",
                              on_change=_pick, args=("upload",))
    generated = cache.shipped_generator_path()
    if generated is not None:
        st.markdown("**Or a generated X-ray**: made by the shipped generator (synthetic, not a "
                    "patient)")
        row = st.container(horizontal=True, gap="small")
        for i, seed in enumerate(GENERATED_SEEDS, 1):
            row.button(f"Synthetic {i}", key=f"diagnose_generated_{i}", on_click=_pick,
                       args=(f"generated:{seed}", REAL_LABEL), icon=":material/auto_awesome:",
                       help="A COVID-19-like X-ray generated by the shipped WGAN-GP generator")
    st.markdown("**Or a phantom**: a procedural radiograph of each class, for the phantom model")
    row = st.container(horizontal=True, gap="small")
    for label in CLASSES:
        # The class alone: "PNEUMONIA phantom" was cut at 1024 px, and the line above says phantom.
        row.button(label, key=f"diagnose_example_{label}", on_click=_pick,
                   help=f"A synthetic phantom radiograph drawn as {label}",
                   args=(f"example:{label}", PHANTOM_LABEL), icon=":material/science:")
    if not (meta.get("ood") or {}).get("threshold"):
        st.caption("This checkpoint has no out-of-distribution statistics (a run still training), "
                   "so unusual images are not flagged.")

pick = st.session_state.get("diagnose_input")
if pick is None and upload is not None:
    pick = "upload"
if pick == "upload" and upload is not None:
    data, name = upload.getvalue(), upload.name
    source = f"uploaded file {name}"
elif pick and pick.startswith("example:"):
    label = pick.split(":", 1)[1]
    # Rendered at the model's input size, as its training phantoms were: rendered larger and
    # shrunk, a phantom is smoother than any the model saw, and the shipped model's OOD check
    # flagged 25 of 90 such 256 px phantoms (1 of 90 at 64 px; docs/results.md).
    size = min(max(int(meta["model"]["size"]), phantom.MIN_SIZE), phantom.MAX_SIZE)
    data, name = cache.phantom_example_png(label, size, EXAMPLE_SEED), f"phantom-{label}.png"
    source = f"synthetic phantom, drawn as {label}"
elif pick and pick.startswith("generated:") and generated is not None:
    seed = int(pick.split(":", 1)[1])
    data, name = cache.generated_example_png(str(generated), seed), f"generated-{seed}.png"
    source = f"generated X-ray {GENERATED_SEEDS.index(seed) + 1} (synthetic)" \
        if seed in GENERATED_SEEDS else "generated X-ray (synthetic)"
else:
    with result_col:
        st.info("Upload an X-ray, or pick a generated X-ray or a phantom on the left.",
                icon=":material/arrow_back:")
        _card(meta, ckpt)
    st.stop()

with result_col:
    problem = check_upload(data, name)
    if problem:
        st.error(problem, icon=":material/error:")
        st.stop()
    with st.spinner("Predicting..."):
        result = attempt(cache.prediction, ckpt, mtime, hashlib.sha256(data).hexdigest(), data,
                         name, DISPLAY_MAX, what="predicting")
    if result is None:
        st.stop()
    if not result.get("ok"):
        st.error(f"This file cannot be used: {result.get('error')}", icon=":material/error:")
        st.stop()

    # ---- the answer, in plain words ----------------------------------------------------------
    ood = result.get("ood") or {}
    flagged = bool(ood.get("flag"))
    notes = result.get("notes") or []
    h, w = result["input_shape"]
    caption = f"{source} · {w}x{h} px"
    if flagged:
        # Only the flag and why: no class in headline type, no heatmap "for COVID-19" and no bars
        # (a photo shown at "COVID-19 94.6%" misleads, whatever the caption says).
        why = ("the file itself says it is no frontal chest X-ray (below)" if ood.get("by_file")
               else "it looks more like the built-in phantoms than like any patient's film"
               if ood.get("like_known_outlier") else
               "it is far from every class the model learned (the distance is under *Details*)")
        st.warning(f"**{FLAGGED}.** The model gives no answer for it: {why}. It may be another "
                   "kind of image (a photo, a CT, another body part, a side view) or a film "
                   "unlike those it was trained on.", icon=":material/report:")
    else:
        with st.container(border=True):   # the answer and what it cannot rule out, together
            st.metric("Predicted", result["predicted"],
                      help="The most likely of the model's classes; the bars show all of them.")
            for line in _cautions(meta, ckpt, result["predicted"]):
                st.warning(line, icon=":material/warning:")
    if notes:  # what the file itself says (DICOM header, colour, size), whatever the OOD score
        st.warning("**About this file:**\n" + "".join(f"\n- {n[0].upper()}{n[1:]}." for n in notes),
                   icon=":material/info:")

    left, right = st.columns([1, 1])
    with left:
        if flagged:
            st.image(result["display"], caption=caption)
        else:
            state.keep("diagnose_gradcam", True)
            show_cam = st.toggle("Grad-CAM", key="diagnose_gradcam",
                                 help="Where the model looked for a class (red: most).")
            empty = result.get("empty_maps") or []
            if show_cam:
                overlays = result["overlays"]
                options = [c for c in overlays if c not in empty] or list(overlays)
                # A select box, not buttons: three class names did not fit beside the chart at
                # 1024 px.
                cam_class = st.selectbox("Heatmap for", options,
                                         index=options.index(result["heatmap_class"])
                                         if result["heatmap_class"] in options else 0,
                                         key=f"diagnose_cam_{hashlib.sha256(data).hexdigest()[:8]}")
                st.image(overlays[cam_class], caption=f"{caption} · Grad-CAM for {cam_class}")
                if result["predicted"] in empty:
                    st.caption(f"The heatmap for {result['predicted']} is empty: nothing in this "
                               "image raised that score at the model's last layer, so there is "
                               f"no region to show. Shown instead: {result['heatmap_class']}, "
                               "the next most likely class.")
            else:
                st.image(result["display"], caption=caption)
    with right:
        if not flagged:
            st.plotly_chart(plots.probabilities(result["probabilities"], result["predicted"]),
                            key="diagnose_probs")
    _card(meta, ckpt)
    with st.expander("Details: distance to the training data, temperature", icon=":material/tune:"):
        if ood.get("by_file"):
            st.markdown("Flagged by the file itself: its header or its colours say it is no "
                        "frontal chest radiograph (see *About this file*).")
        if ood.get("score") is not None:
            st.markdown(f"Out-of-distribution distance **{ood['score']:.1f}** (Mahalanobis, to the "
                        f"nearest class of the training images); images above **"
                        f"{ood['threshold']:.1f}** are flagged (the "
                        f"{(meta.get('ood') or {}).get('percentile', 99):g}th percentile of the "
                        "held-out images' distances).")
        elif ood.get("note"):
            st.markdown(f"Out-of-distribution check: {ood['note']}.")
        if not flagged:
            st.markdown(f"Probabilities are temperature-scaled (T = "
                        f"{result.get('temperature', 1.0):.3g}, fitted on the validation images). "
                        f"The model saw the image at {meta['model']['size']}x"
                        f"{meta['model']['size']} px.")
        st.caption(_trained_on(meta))
