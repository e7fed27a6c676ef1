"""Diagnose: one X-ray through a trained classifier. Upload a PNG, JPEG or DICOM (or pick a built-in
phantom), see the class probabilities, a Grad-CAM overlay, the out-of-distribution warning, and
what the model was trained on. Research and teaching only."""

import hashlib
from pathlib import Path

import streamlit as st

from core import CLASSES, phantom
from core.checkpoint import read_meta
from core.classifier import ARCH_NAMES
from core.runstore import list_runs
from ui import cache, jobs, plots, state
from ui.errors import attempt, log
from ui.nav import REPO

SHIPPED = REPO / "checkpoints" / "classifier-phantom.safetensors"
MAX_UPLOAD_MB = 30
DISPLAY_MAX = 512          # images are shown at most this many pixels on their long side
EXAMPLE_SEED = 20_260_101  # not the seed of the phantom training data, so these are unseen
DISCLAIMER = "Research and teaching tool, not a medical device: do not use for diagnosis."


def check_upload(data: bytes, name: str) -> str | None:
    """Why an upload cannot be used before decoding it (size cap), or None."""
    if len(data) > MAX_UPLOAD_MB * 2**20:
        return f"{name} is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_MB} MB."
    return None


# ---- the model ----------------------------------------------------------------------------------
def _models() -> dict[str, str]:
    """{label: checkpoint path} of the shipped model and every classifier run's best checkpoint."""
    out = {}
    if SHIPPED.is_file():
        out["Shipped model (trained on phantoms only)"] = str(SHIPPED)
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
    where = f" (`{Path(source).name or source}`)" if td.get("real") and source else ""
    acc = meta.get("val_acc")
    return (f"Trained on {kind}{where}: {counts} training images"
            + (f" (including {', '.join(extra)})" if extra else "")
            + f". Model: {ARCH_NAMES.get(m.get('arch'), m.get('arch', '?'))} at "
              f"{m.get('size', '?')}x{m.get('size', '?')} px"
            + (f"; right on {acc:.0%} of its validation images, so any one answer can be wrong."
               if acc is not None else "."))


state.init()
st.title("Diagnose one X-ray")
st.warning(DISCLAIMER, icon=":material/warning:")

models = _models()
if not models:
    st.info("No model is available yet: the shipped phantom model "
            f"(`checkpoints/{SHIPPED.name}`) is not in this copy, and no classifier run has a "
            "checkpoint. Train one on the **Classifier** page, then come back and pick it here.",
            icon=":material/info:")
    st.stop()
labels = list(models)
if st.session_state.get("diagnose_model") not in labels:
    st.session_state["diagnose_model"] = labels[0]
choice = st.selectbox("Model", labels, key="diagnose_model")
ckpt = models[choice]
mtime = Path(ckpt).stat().st_mtime_ns
loaded = attempt(cache.classifier_model, ckpt, mtime, what="loading the model")
if loaded is None:
    st.stop()
_, meta = loaded
st.caption(_trained_on(meta))
if not (meta.get("ood") or {}).get("threshold"):
    st.caption("This checkpoint has no out-of-distribution statistics (a run still training), "
               "so unusual images are not flagged.")


# ---- the image ----------------------------------------------------------------------------------
def _pick(what: str) -> None:
    st.session_state["diagnose_input"] = what


st.markdown(f"**Upload an X-ray**: PNG (8 or 16-bit), JPEG or DICOM, up to {MAX_UPLOAD_MB} MB, "
            "a frontal chest view. It is read in memory and not stored.")
upload = st.file_uploader("X-ray file", type=["png", "jpg", "jpeg", "dcm", "dicom"],
                          max_upload_size=MAX_UPLOAD_MB, key="diagnose_upload",
                          on_change=_pick, args=("upload",), label_visibility="collapsed")
st.markdown("**Or try a built-in example**: a synthetic phantom of each class, rendered on the fly "
            "(procedural images, not patients).")
cols = st.columns(len(CLASSES))
for col, label in zip(cols, CLASSES):
    # The class alone: "PNEUMONIA phantom" was cut at 1024 px, and the line above says phantom.
    col.button(label, key=f"diagnose_example_{label}", on_click=_pick,
               help=f"A synthetic phantom radiograph drawn as {label}",
               args=(f"example:{label}",), icon=":material/science:", width="stretch")

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
else:
    st.stop()

problem = check_upload(data, name)
if problem:
    st.error(problem, icon=":material/error:")
    st.stop()
with st.spinner("Predicting..."):
    result = attempt(cache.prediction, ckpt, mtime, hashlib.sha256(data).hexdigest(), data, name,
                     DISPLAY_MAX, what="predicting")
if result is None:
    st.stop()
if not result.get("ok"):
    st.error(f"This file cannot be used: {result.get('error')}", icon=":material/error:")
    st.stop()

# ---- the result ---------------------------------------------------------------------------------
ood = result.get("ood") or {}
if ood.get("flag"):
    st.warning(f"**This image is unlike the model's training data** (distance {ood['score']:.1f}, "
               f"threshold {ood['threshold']:.1f}): a photo, a lateral view, another body part, or "
               "a real X-ray given to a phantom-trained model. The probabilities below are not "
               "meaningful for it.", icon=":material/report:")
notes = result.get("notes") or []
if notes:  # what the file itself says (DICOM header, colour, size), whatever the OOD score
    st.warning("**About this file:**\n" + "".join(f"\n- {n[0].upper()}{n[1:]}." for n in notes),
               icon=":material/info:")

left, right = st.columns([1, 1])
with left:
    state.seed("diagnose_gradcam", True)
    show_cam = st.toggle("Grad-CAM overlay", key="diagnose_gradcam",
                         help="Where the model looked for its predicted class (red: most).")
    h, w = result["input_shape"]
    caption = f"{source} · {w}x{h} px"
    if show_cam:
        st.image(result["overlay"], caption=f"{caption} · Grad-CAM for {result['predicted']}")
    else:
        st.image(result["display"], caption=caption)
with right:
    flagged = bool(ood.get("flag"))
    # A flagged image still gets its numbers (hiding them would hide what the model does with
    # it), but not as a headline: a photo called "COVID-19 99.9%" in large print misleads.
    st.metric("Closest class (image flagged, see above)" if flagged else "Predicted",
              result["predicted"], help=f"confidence {result['confidence']:.1%}")
    fig = plots.probabilities(result["probabilities"], result["predicted"], flagged)
    if flagged:  # "Class probabilities (not meaningful for this image)" was cut at 1024 px
        fig.update_layout(title=dict(text="Class probabilities",
                                     subtitle=dict(text="not meaningful for this image")),
                          margin=dict(t=60))
    st.plotly_chart(fig, key="diagnose_probs")
    if ood.get("score") is not None and not ood.get("flag"):
        st.caption(f"In distribution: distance {ood['score']:.1f} to the training data, below the "
                   f"threshold {ood['threshold']:.1f}.")
    elif ood.get("note"):
        st.caption(f"Out-of-distribution check: {ood['note']}.")
    st.caption(f"Temperature-scaled probabilities (T = {result.get('temperature', 1.0):.3g}).")
