"""Data & augmentation: pick the data source, see its classes and examples, tune the Augmentor
pipeline with a live preview, balance the classes. The choice here is what training uses."""

import hashlib
import json
import re
import secrets
from pathlib import Path

import streamlit as st

from core import CLASSES
from core.data.archive import data_folder, extract_zip
from core.data.augment import AugmentConfig, build_pipeline
from core.data.deid import deidentify, deidentify_uploads
from core.config import to_dict
from core.data.config import DataConfig
from core.data.sources import describe
from core.errors import ImageReadError
from core.data.imageio import read_image
from core.runs.store import prune_uploads, runs_root
from ui import cache, plots, state
from ui.errors import attempt, public
from ui.images import tile, upscale

state.init()
st.title("Data & augmentation")
st.caption("The data chosen here is what **Train GAN** and **Classifier** train on; the "
           "augmentation and balancing are what **Classifier** uses.")

SOURCES = {"phantom": "Phantoms (built in)", "folder": "A folder on this machine",
           "zip": "Upload a ZIP of class folders", "files": "Upload image files"}
SIZES = [32, 64, 128, 256]
DEID_NOTE = ("DICOM files are de-identified as they are saved: the patient's name, ID, birth date "
             "and other dates, accession number, institution and staff names are removed (DICOM "
             "PS3.15 Basic Profile). The patient ID is kept only as a keyed hash, so one "
             "patient's films stay on one side of the train/test split.")
cfg: DataConfig = st.session_state["data_config"]


def _uploads():
    return runs_root() / "uploads"


if "uploads_pruned" not in st.session_state:  # once per browser session: cheap, and enough
    st.session_state["uploads_pruned"] = attempt(prune_uploads, what="tidying old uploads")
    attempt(deidentify_uploads, _uploads(), what="de-identifying earlier uploads")


def _zip_source(upload) -> str | None:
    """Extract an uploaded ZIP once (keyed by its content hash) and return the data folder."""
    digest = hashlib.sha256(upload.getvalue()).hexdigest()[:12]
    dest = _uploads() / f"zip-{digest}"
    if dest.is_dir() and any(dest.iterdir()):
        return str(data_folder(dest))
    with st.spinner("Checking and extracting the ZIP file..."):
        folder = attempt(extract_zip, upload, dest, what="extracting the ZIP file")
    return str(folder) if folder else None


def _add_files(files, label: str) -> None:
    """Save uploaded images under this session's upload folder in a class sub-folder."""
    folder = _uploads() / st.session_state["upload_id"] / label
    folder.mkdir(parents=True, exist_ok=True)
    bad = []
    for f in files:
        try:
            read_image(f.getvalue(), f.name)  # refuse unreadable files now, with the reason
            data = deidentify(f.getvalue(), f.name)   # a DICOM is kept without its patient
        except ImageReadError as exc:
            bad.append(f"{f.name}: {getattr(exc, 'reason', exc)}")
            continue
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f.name)[-120:] or "image.png"
        (folder / name).write_bytes(data)
    # Shown after the rerun that empties the uploader (see below).
    st.session_state["data_files_bad"] = bad


# ---- source ------------------------------------------------------------------------------------
state.keep("data_kind", "phantom" if cfg.source.startswith("phantom") else "folder")
state.keep("data_size", cfg.size)
state.keep("data_phantom_n", cfg.phantom_per_class)
state.keep("data_folder", "" if cfg.source.startswith("phantom") else cfg.source)
state.keep("data_keep_extra", cfg.keep_extra_classes)

left, right = st.columns([3, 1])
with left:
    kind = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="data_kind")
with right:
    size = st.select_slider("Image size (pixels)", SIZES, key="data_size")

source, per_class = None, cfg.phantom_per_class
if kind == "phantom":
    per_class = st.slider("Phantoms per class", 20, 1000, step=20, key="data_phantom_n",
                          help="Procedural chest radiographs: COVID-19, NORMAL and PNEUMONIA.")
    source = "phantom"
elif kind == "folder":
    path = st.text_input("Folder of class sub-folders (e.g. COVID-19/, NORMAL/, PNEUMONIA/)",
                         key="data_folder", placeholder="/path/to/chest_xray")
    source = path.strip() or None
    # Said here in the terms of this box; the loader's own message lists every source spec of
    # the command line (phantom:N, medmnist:PATH...), which this box is not about.
    folder = Path(source).expanduser() if source and ":" not in source else None
    if folder is not None and not folder.is_dir():
        st.error(f"`{source}` is a file, not a folder of class folders." if folder.is_file() else
                 f"There is no folder `{source}` on the machine running this dashboard (a path "
                 "on your own computer works only when the dashboard runs there).",
                 icon=":material/folder_off:")
        source = None
elif kind == "zip":
    upload = st.file_uploader("ZIP of class folders", type=["zip"], key="data_zip",
                              help="Paths are checked: no absolute paths, '..', links or zip bombs.")
    st.caption(DEID_NOTE)
    if upload is not None:
        source = _zip_source(upload)
        st.session_state["data_zip_folder"] = source
    else:
        source = st.session_state.get("data_zip_folder")
else:
    st.session_state.setdefault("upload_id", "files-" + secrets.token_hex(4))
    st.session_state.setdefault("data_files_round", 0)
    c1, c2 = st.columns([3, 1])
    with c1:
        # A new key after each Add empties the uploader (its files cannot be cleared through
        # session state), so the same files are not added again under the next class.
        files = st.file_uploader("PNG, JPEG or DICOM files of one class", accept_multiple_files=True,
                                 type=["png", "jpg", "jpeg", "dcm", "dicom"],
                                 key=f"data_files_{st.session_state['data_files_round']}")
        st.caption(DEID_NOTE)
    with c2:
        label = st.selectbox("Their class", CLASSES, key="data_files_class")
        if st.button("Add to my upload set", key="data_files_add", disabled=not files):
            _add_files(files, label)
            st.session_state["data_files_round"] += 1
            st.rerun()
    folder = _uploads() / st.session_state["upload_id"]
    counts = ({p.name: sum(1 for _ in p.iterdir()) for p in sorted(folder.iterdir()) if p.is_dir()}
              if folder.is_dir() else {})
    if bad := st.session_state.pop("data_files_bad", None):
        st.warning("Not added (unreadable):\n\n" + "\n".join(f"- {b}" for b in bad))
    if counts:
        st.caption("Upload set: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if len(counts) == 1:  # the usual first step, not an error: training needs two classes
        st.info("Now add images of at least one more class: training needs two or more.",
                icon=":material/info:")
    elif counts:
        source = str(folder)
keep_extra = kind != "phantom" and st.checkbox(
    "Keep extra classes (e.g. Lung_Opacity)", key="data_keep_extra")

if not source:
    # Say what training uses meanwhile: the last data that loaded, which a rejected ZIP or an
    # empty folder box does not change.
    st.caption(f"Until data from this source loads, training uses the last data that loaded: "
               f"**{state.data_label(cfg)}**.")
    st.stop()

new_cfg = DataConfig(source=source, size=int(size), channels=1, phantom_per_class=int(per_class),
                     keep_extra_classes=bool(keep_extra), seed=cfg.seed)
bar = st.empty()
with st.spinner("Loading images..."):
    ds = attempt(cache.dataset, new_cfg,
                 lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=public(msg)),
                 what="loading the data")
bar.empty()
if ds is None:
    st.stop()
if new_cfg != cfg:
    st.session_state["data_config"] = new_cfg
    st.session_state["balance_per_class"] = 0  # a new source invalidates the old target
cfg = new_cfg

info = describe(ds)
m = st.columns(4)
m[0].metric("Images", f"{info['n_images']:,}")
m[1].metric("Classes", len(info["classes"]))
m[2].metric("Patients", f"{info['n_patients']:,}")
m[3].metric("Skipped files", info["n_skipped"])
if len(ds.classes) == 1:   # a GAN learns one class; the classifier compares classes
    st.info(f"One class: **{ds.classes[0]}**. Enough to train a GAN on it (*Train GAN*); the "
            "*Classifier* needs at least two classes.", icon=":material/info:")
if info.get("cache"):   # folders only: decoded once, then read from runs/cache/
    # Without the entry's folder on the server (data-info on the command line prints it).
    st.caption(f"Images {re.sub(r' [(]/[^()]*[)]', '', info['cache'])}.")

c_chart, c_grid = st.columns([1, 2])
with c_chart:
    st.html(plots.class_counts_html(ds.class_counts()))
with c_grid:
    for k, name in enumerate(ds.classes):
        idx = (ds.labels == k).nonzero()[0][:8]
        if len(idx):
            st.image(upscale(tile(ds.images[idx, 0], ncol=8), max(1, 96 // ds.size)),
                     output_format="PNG", caption=f"{name}: first {len(idx)} images")
if ds.skipped:
    with st.expander(f"{len(ds.skipped)} files skipped, with reasons"):
        st.dataframe([{"file": f, "reason": r} for f, r in ds.skipped], hide_index=True,
                     key="data_skipped")

# ---- augmentation -------------------------------------------------------------------------------
st.header("Augmentation")
st.caption("Augmentor operations; each runs with its probability. Probability 0 leaves it out.")
aug: AugmentConfig = st.session_state["augment_config"]
# (title, probability field, [(field, label, min, max, step)], (min field, max field, lo, hi) or None)
OPS = [
    ("Rotate", "rotate_p", [("rotate_deg", "max degrees", 0.0, 25.0, 1.0)], None),
    ("Flip left-right", "flip_lr_p", [], None),
    ("Shear", "shear_p", [("shear_deg", "max degrees", 0.0, 25.0, 1.0)], None),
    ("Skew / tilt", "skew_p", [("skew_mag", "magnitude", 0.0, 1.0, 0.05)], None),
    ("Random distortion", "distortion_p", [("distortion_mag", "pixels", 0, 10, 1),
                                           ("distortion_grid", "grid cells", 2, 8, 1)], None),
    ("Zoom", "zoom_p", [], ("zoom_min", "zoom_max", 1.0, 1.5)),
    ("Brightness", "brightness_p", [], ("brightness_min", "brightness_max", 0.5, 1.5)),
    ("Contrast", "contrast_p", [], ("contrast_min", "contrast_max", 0.5, 1.5)),
]
values = {}
for i, (title, p_field, mags, rng) in enumerate(OPS):
    if i % 4 == 0:  # a row of four cards, so the rows line up
        cols = st.columns(4)
    with cols[i % 4].container(border=True, height="stretch"):
        st.markdown(f"**{title}**")
        state.keep(f"aug_{p_field}", float(getattr(aug, p_field)))
        values[p_field] = st.slider("probability", 0.0, 1.0, step=0.05, key=f"aug_{p_field}")
        for field, label, lo, hi, step in mags:
            state.keep(f"aug_{field}", type(lo)(getattr(aug, field)))
            values[field] = st.slider(label, lo, hi, step=step, key=f"aug_{field}")
        if rng:
            lo_f, hi_f, lo, hi = rng
            state.keep(f"aug_{lo_f}", (float(getattr(aug, lo_f)), float(getattr(aug, hi_f))))
            values[lo_f], values[hi_f] = st.slider("factor range", lo, hi, step=0.05, key=f"aug_{lo_f}")
new_aug = AugmentConfig(**{**to_dict(aug), **values})
if attempt(build_pipeline, new_aug, what="checking the augmentation settings") is not None:
    st.session_state["augment_config"] = new_aug
    aug = new_aug

st.subheader("Live preview")
p1, p2, p3 = st.columns([1, 1, 1])
with p1:
    pv_class = st.selectbox("Class", ds.classes, key="aug_preview_class")
members = (ds.labels == ds.classes.index(pv_class)).nonzero()[0]
with p2:
    pv_index = st.number_input("Image number", 0, max(len(members) - 1, 0), key="aug_preview_index")
with p3:
    st.session_state.setdefault("aug_preview_seed", 0)
    if st.button("New random draw", key="aug_preview_redraw"):
        st.session_state["aug_preview_seed"] += 1
if len(members):
    original = ds.images[members[int(pv_index)], 0]
    shots = attempt(cache.augment_preview, original, json.dumps(to_dict(aug), sort_keys=True), 7,
                    st.session_state["aug_preview_seed"], what="augmenting the preview image")
    if shots is not None:
        scale = max(1, 128 // ds.size)
        st.image(upscale(tile([original, *shots], ncol=8, pad=3), scale), output_format="PNG",
                 caption="Original (left) and seven augmented versions")

# ---- balancing -----------------------------------------------------------------------------------
st.header("Balance classes")
counts = ds.class_counts()
state.keep("bal_per_class", int(st.session_state["balance_per_class"] or max(counts.values())))
b1, b2 = st.columns([1, 3])
with b1:
    target = st.number_input("Images per class", 1, 20000, step=50, key="bal_per_class",
                             help="Each class grows to this count with augmented copies (marked, "
                                  "so they never reach validation or test).")
    go = st.button("Balance", key="bal_go", type="primary")
if go or st.session_state["balance_per_class"] == target:
    bar = st.progress(0.0, text="Balancing...")
    grown = attempt(cache.balanced, cfg, aug, int(target),
                    lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg),
                    what="balancing the classes")
    bar.empty()
    if grown is not None:
        st.session_state["balance_per_class"] = int(target)
        with b2:
            st.vega_lite_chart(spec=plots.balance_counts(counts, grown.class_counts()),
                               width="stretch", key="bal_chart")
            st.caption(f"Training will use {len(grown):,} images "
                       f"({sum(1 for m in grown.metas if m.get('augmented')):,} augmented copies).")
