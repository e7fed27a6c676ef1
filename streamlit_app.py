"""X-Ray GAN Studio: the dashboard's entry point (`streamlit run streamlit_app.py`). Builds the
navigation over pages/ and shows it, the compute device and the disclaimer in the sidebar of
every page."""

import streamlit as st

from ui import identity, nav

st.set_page_config(page_title="X-Ray GAN Studio", page_icon=":material/radiology:", layout="wide")
pages = [st.Page(nav.path(path), title=title, icon=icon, default=(path == "pages/home.py"))
         for path, title, icon in nav.PAGES]
# The menu is drawn here, not by st.navigation: .streamlit/config.toml turns Streamlit's sidebar
# page list off (see there), and that hides st.navigation's sidebar menu too.
page = st.navigation(pages, position="hidden")
with st.sidebar:
    for p in pages:
        st.page_link(p)
    st.divider()

# Imported after the menu is drawn: the first run on a fresh server spends seconds importing
# torch and core/, and the browser shows the menu meanwhile instead of an empty page.
from ui import cache, state  # noqa: E402

state.init()  # after st.navigation, which leaves Streamlit's old pages/ mode (see ui/state.py)
with st.sidebar:
    st.caption(f":material/memory: **Device:** {cache.device_name()}")
    st.caption(f":material/warning: {nav.DISCLAIMER}")
identity.remember()   # this browser's token in a cookie, so its runs stay its own after a reload

page.run()
