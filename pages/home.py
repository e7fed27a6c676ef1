"""Home: what X-Ray GAN Studio is, one button that trains the CPU demo and opens its live view, and
links to every page."""

import streamlit as st

from ui import jobs, nav, shipped, state
from ui.errors import attempt

# The demo: the cpu-tiny preset on the built-in phantoms, the minority class of the report, the
# classifier's training patients only, so its samples may join a classifier's training set on
# the default data (300 phantoms per class, as the preset) without leaking held-out patients.
# DEMO_IDLE_S: its wall time on the idle 2-core machine (docs/performance.md).
DEMO_IDLE_S = 67
# The demo: the cpu-tiny preset's WGAN-GP on the COVID-19 phantoms of the classifier's
# training patients (its samples may then join a classifier without leaking its test patients).
DEMO = {"data": {"source": "phantom", "classes": ("COVID-19",), "split": "train"},
        "train": {"loss": "wgan-gp"}}

state.init()
st.title("X-Ray GAN Studio")
st.markdown(
    "Generative adversarial networks for **data augmentation of chest X-rays**, following a study "
    "that grew the COVID-19 class of a small X-ray set with WGAN-GP samples before training a CNN "
    "classifier.\n\n"
    "- **Data & augmentation**: built-in phantom radiographs or your own class folders, with "
    "Augmentor's classic augmentation and class balancing.\n"
    "- **Train GAN**: GAN, WGAN (weight clipping) or WGAN-GP, with live charts and live steering "
    "of the gradient-penalty weight, critic steps and learning rates.\n"
    "- **Samples**, **Classifier**, **Diagnose**: look at what the generator learned, train a "
    "classifier with and without synthetic images, and try it on one X-ray.\n"
    "- **Playground**: the three losses side by side on toy 1D and 2D data, trained live, to "
    "see what the critic learns and why the gradient penalty helps.\n\n"
    f"_{nav.DISCLAIMER}_")

shipped.generator_samples(n=8, columns=8)

active = jobs.active_runs()
demo_key, request = jobs.start_key("home_demo")
if st.button("Train the CPU demo", key=demo_key, type="primary", icon=":material/play_arrow:",
             help="WGAN-GP, cpu-tiny preset (900 steps at 32 px), on phantom COVID-19 images. "
                  "Opens the live view; when every CPU slot is taken it waits in the queue "
                  "there."):
    run = attempt(jobs.start_gan, "cpu-tiny", DEMO, "gan-wgan-gp", request=request,
                  what="starting the demo run")
    if run is not None:
        jobs.started("home_demo")
        st.session_state["gan_run"] = run.name
        st.switch_page(nav.path("pages/train_gan.py"))
st.caption(jobs.machine_line(DEMO_IDLE_S, "The demo"))
if active:
    page, title = (("pages/classifier.py", "Classifier")
                   if jobs.run_command(active[0]) == "train-classifier"
                   else ("pages/train_gan.py", "Train GAN"))
    st.page_link(nav.path(page), label=f"{len(active)} run(s) active or queued: watch the newest "
                                       f"on {title}", icon=":material/monitoring:")
elif gans := [r for r in jobs.gan_runs() if r.status().get("state") == "finished"]:
    # After the demo, Home looked as it did before it: say where its result is.
    if st.button(f"See the finished GAN run {gans[0].name} on Train GAN", key="home_last_run",
                 icon=":material/monitoring:", type="tertiary"):
        st.session_state["gan_run"] = gans[0].name
        st.switch_page(nav.path("pages/train_gan.py"))

st.subheader("Pages")
# A row that wraps: in four equal columns, 1024 px cut "Data & augmentation" short.
links = st.container(horizontal=True, gap="medium")
for path, title, icon in nav.PAGES:
    if path != "pages/home.py":
        links.page_link(nav.path(path), label=title, icon=icon)
