"""Samples: what a trained generator makes. A grid of samples from any checkpoint, the same fixed z
across training (the progression figure of the GAN papers), spherical interpolation between two
samples, downloads, and export as a class-folder dataset for the classifier."""

import numpy as np
import streamlit as st

from core import CLASSES
from core.checkpoint import read_meta
from core.gan.losses import LOSS_LABELS
from core.gan.runs import run_class
from core.gan.nearest import copy_check
from core.runs.store import runs_root
from ui import cache, jobs, shipped, state
from ui.errors import attempt
from ui.images import (
    export_dataset,
    latents,
    png,
    sample_u8,
    slerp,
    tile,
    upscale,
    zip_of_pngs,
)

state.init()
st.title("Samples")

runs = [r for r in jobs.gan_runs() if r.checkpoints() or r.samples()]
if not runs:
    shipped.generator_samples(n=24, columns=8)
    st.info("No GAN run of yours has saved samples or checkpoints yet. Start one on **Train GAN**; "
            "its samples, their progression over training and the copy check appear here.")
    st.stop()
c1, c2 = st.columns([2, 1])
with c1:   # a run started or picked on Train GAN since this page last looked is the one shown
    store = jobs.pick_run(runs, "samples_run", label="GAN run", follow="gan_run")
name = store.name
ckpts = store.checkpoints()
if store.is_active():  # this page does not poll; say so rather than look frozen
    a1, a2 = st.columns([4, 1], vertical_alignment="center")
    a1.info("This run is still training: newer grids and checkpoints appear when you refresh.",
            icon=":material/hourglass_top:")
    a2.button("Refresh", key="samples_refresh", icon=":material/refresh:")


left, right = st.columns(2, gap="large")

# ---- fixed z across training ---------------------------------------------------------------------
left.subheader("The same z across training")
grids = store.samples()
with left:
    if grids:
        steps = [s for s, _ in grids]
        if st.session_state.get("samples_step") not in steps:
            st.session_state["samples_step"] = steps[-1]
        step = st.select_slider("Training step", steps, key="samples_step",
                                help="Every grid uses the same latent vectors, so you watch the "
                                     "same samples form as training goes on.") \
            if len(steps) > 1 else steps[0]
        path = grids[steps.index(step)][1]
        st.image(cache.sample_grid(str(path), path.stat().st_mtime_ns), output_format="PNG",
                 caption=f"Fixed-z samples at step {step:,}", width="stretch")
    else:
        st.caption("This run has not written a sample grid yet.")

if not ckpts:
    right.info("No checkpoint yet: the grids above come from the training process; the generator "
            "itself appears here once the run saves its first checkpoint.")
    st.stop()

# ---- a checkpoint's samples ------------------------------------------------------------------------
right.subheader("Generate from a checkpoint")
with c2:
    ck_name = st.selectbox("Checkpoint", [p.name for p in ckpts], key="samples_ckpt")
ckpt = ckpts[[p.name for p in ckpts].index(ck_name)]
mtime = ckpt.stat().st_mtime_ns
meta = attempt(read_meta, ckpt, what="reading the checkpoint")
loaded = meta and attempt(cache.generator, str(ckpt), mtime, what="loading the generator")
if not loaded:
    st.stop()
model, meta = loaded
latent_dim, size = int(model.config.latent_dim), int(model.config.size)
label = run_class(meta) or "synthetic"
loss = LOSS_LABELS.get(meta.get("loss"), "?")
trained_on = label if label != "synthetic" else ", ".join(meta.get("classes") or []) or "?"
right.caption(f"{loss} generator at step {meta.get('step', '?')} · {size}x{size} px · "
              f"trained on: {trained_on}")

g1, g2 = right.columns([1, 1])
with g1:
    state.keep("samples_n", 32)
    n = st.slider("How many", 8, 64, step=8, key="samples_n")
with g2:
    state.keep("samples_seed", 0)
    seed = st.number_input("Seed", 0, 10**6, key="samples_seed")
images = attempt(cache.generate, str(ckpt), mtime, latents(int(seed), n, latent_dim),
                 what="generating samples")
if images is None:
    st.stop()
grid = tile(images, ncol=8)
scale = max(1, 96 // size)
right.image(upscale(grid, scale), output_format="PNG", caption=f"{n} samples, seed {seed}",
            width="stretch")

# ---- interpolation -------------------------------------------------------------------------------
st.header("Interpolation")
i1, i2, i3 = st.columns(3)
with i1:
    state.keep("samples_z0", 1)
    s0 = st.number_input("From seed", 0, 10**6, key="samples_z0")
with i2:
    state.keep("samples_z1", 2)
    s1 = st.number_input("To seed", 0, 10**6, key="samples_z1")
with i3:
    state.keep("samples_interp_steps", 8)
    k = st.slider("Steps", 3, 12, key="samples_interp_steps")
path_z = slerp(latents(int(s0), 1, latent_dim)[0], latents(int(s1), 1, latent_dim)[0], k)
between = attempt(cache.generate, str(ckpt), mtime, path_z, what="interpolating")
if between is not None:
    st.image(upscale(tile(between, ncol=k), scale), output_format="PNG",
             caption="Spherical interpolation (slerp) in z")

# ---- copies of training images? -------------------------------------------------------------------
st.header("Does it copy its training images?")
st.caption("Each sample of the grid above beside the training image nearest to it in pixels (root-mean-"
           "square difference on a 0-1 scale). Real images the GAN never saw, the run's held-out "
           "patients, give the scale: a sample much nearer to a training image than they come is "
           "a near-copy. The *Held-out check* on Train GAN asks the same of the critic.")
nn_key = (str(ckpt), mtime, int(seed), int(n))
if st.button("Find the nearest training images", key="samples_nn", icon=":material/image_search:"):
    with st.spinner("Loading the images the run trained on..."):
        loaded_images = attempt(cache.run_images, str(store.path), store.stamp("config.json"),
                                what="loading the run's training images")
    found = loaded_images and attempt(copy_check, images, *loaded_images,
                                      what="comparing with the training images")
    if found:
        st.session_state["samples_nn_found"] = (nn_key, found)
nn = st.session_state.get("samples_nn_found")
if nn and nn[0] == nn_key:     # for the grid shown: another seed or count needs a new search
    check = nn[1]
    summary = check.summary()
    row = st.container(horizontal=True)
    row.metric("Samples, median distance", f"{summary['sample_rmse_median']:.3f}",
               help="From each sample to its nearest training image")
    if summary["heldout_images"]:
        row.metric("Unseen real, median", f"{summary['heldout_rmse_median']:.3f}",
                   help=f"From each of the {summary['heldout_images']} held-out real images to "
                        "its nearest training image")
        row.metric("Nearer than real", f"{summary['samples_nearer_than_heldout_p5']} of {len(images)}",
                   help="Samples nearer to a training image than 95% of the unseen real images "
                        f"come (distance below {summary['heldout_rmse_p5']:.3f}). Pixel distance "
                        "also finds a blurry sample near a smooth image, so look at the pairs "
                        "below before calling one a copy.")
    else:
        row.caption("This run held no images out (or too few), so there is no real-image scale.")
    order = np.argsort(check.sample_rmse)[:8]        # the most copy-like first
    pairs = np.concatenate([images[order], check.training[check.sample_index[order], 0]])
    st.image(upscale(tile(pairs, ncol=len(order)), scale), output_format="PNG",
             caption="Top: the samples nearest to a training image, nearest first ("
                     + ", ".join(f"{d:.3f}" for d in check.sample_rmse[order])
                     + "). Bottom: that training image.")

# ---- download and export ---------------------------------------------------------------------------
st.header("Download and export")
d1, d2, d3 = st.columns(3)
with d1:
    # Short, as "PNG of the sample grid" was cut at 1024 px.
    st.download_button("PNG of the grid", png(grid), file_name=f"{name}-seed{seed}.png",
                       help="The grid of samples above, as one PNG", mime="image/png",
                       key="samples_dl_png", icon=":material/download:")
with d2:
    # Two steps, so the ZIP holds what was asked for: a download button's file is fixed when
    # the page draws it, and typing a count then clicking the button straight away downloaded
    # the previous count (the click went out before the typed value's rerun had redrawn it).
    # Inside a form the typed count travels with the click.
    with st.form("samples_zip_form", border=False):
        state.keep("samples_zip_n", 100)
        zip_n = st.number_input("Images in the ZIP", 1, 5000, key="samples_zip_n",
                                help="Then press *Make a ZIP*: the download button offers what "
                                     "was made (its label gives the count).")
        make = st.form_submit_button("Make a ZIP", icon=":material/folder_zip:", key="samples_zip_make")
    want = (str(ckpt), mtime, int(seed), int(zip_n))
    if make:
        zip_z = latents(int(seed), int(zip_n), latent_dim)   # its first images are the grid's
        with st.spinner(f"Generating {zip_n} samples..."):
            data = attempt(lambda: zip_of_pngs(sample_u8(model, zip_z), prefix=label),
                           what="making the ZIP")
        if data is not None:
            st.session_state["samples_zip"] = (want, data)   # one per session: the newest
    ready = st.session_state.get("samples_zip")
    # The server sees a typed count only when the form is sent, so a count typed and not yet
    # made left "Download 100 samples" beside "250" with no word why. These captions are right
    # whatever is typed: they say what the button holds and that a new count needs the press.
    if ready and ready[0] == want:
        size_mb = len(ready[1]) / 1e6
        # The count alone: "Download 100 samples" was cut to "Download 100 sam…" at 1024 px.
        st.download_button(f"Download {zip_n:,}", ready[1],
                           help=f"A ZIP of {zip_n:,} PNG samples, {size_mb:.2g} MB",
                           file_name=f"{name}-seed{seed}-{zip_n}.zip", mime="application/zip",
                           key="samples_dl_zip", icon=":material/download:")
        st.caption(f"This ZIP holds the {zip_n:,} samples made last (seed {seed}). For another "
                   "count, type it and press **Make a ZIP** again.")
    else:
        st.caption("Type a count and press **Make a ZIP**: the download button for that many "
                   "samples appears here.")
with d3:
    state.keep("samples_export_n", 200)
    export_n = st.number_input("Images to export", 1, 20000, key="samples_export_n")
    options = list(dict.fromkeys([label, *CLASSES]))
    export_class = st.selectbox("As class", options, key="samples_export_class")
    if st.button("Export as a dataset", key="samples_export", icon=":material/save:"):
        z = latents(2 * 10**6 + int(seed), int(export_n), latent_dim)
        made = attempt(sample_u8, model, z, what="generating the export")
        if made is not None:
            out = attempt(export_dataset, made, export_class, runs_root() / "exports", name,
                          what="writing the dataset")
            if out is not None:
                where = out.relative_to(runs_root()) if runs_root() in out.parents else out.name
                st.success(f"Wrote {len(made)} images into the runs folder of the machine running "
                           f"the dashboard, under `{where}/{export_class}/`, for use outside this "
                           "app or merged into your own class folders (from another computer, use "
                           "the ZIP download instead). To "
                           "train the classifier with generated images, pick this GAN run under "
                           "*Synthetic samples* on the Classifier page: it samples the run "
                           "directly, for the training split only.")
