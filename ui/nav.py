"""The dashboard's pages in menu order, shared by streamlit_app.py (navigation) and Home (links)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DISCLAIMER = "Research and teaching tool, not a medical device."

# (file relative to the repo, title, material icon)
PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/data.py", "Data & augmentation", ":material/photo_library:"),
    ("pages/train_gan.py", "Train GAN", ":material/model_training:"),
    ("pages/samples.py", "Samples", ":material/grid_view:"),
    ("pages/classifier.py", "Classifier", ":material/analytics:"),
    ("pages/diagnose.py", "Diagnose", ":material/radiology:"),
    ("pages/playground.py", "Playground", ":material/toys:"),
    ("pages/runs.py", "Runs", ":material/history:"),
]


def path(page: str) -> str:
    """The absolute path of a page file ("pages/home.py"), for st.Page, st.page_link and
    st.switch_page: it resolves the same whichever script Streamlit runs as the main one."""
    return str(REPO / page)

