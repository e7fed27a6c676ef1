"""X-Ray GAN Studio: the dashboard's entry point (`streamlit run streamlit_app.py`). Builds the
navigation over pages/ and shows the compute device and
the disclaimer in the sidebar of every page."""

import streamlit as st

from ui import cache, identity, nav, state

st.set_page_config(page_title="X-Ray GAN Studio", page_icon=":material/radiology:", layout="wide")
page = st.navigation([st.Page(nav.path(path), title=title, icon=icon, default=(path == "pages/home.py"))
                      for path, title, icon in nav.PAGES])
state.init()  # after st.navigation, which leaves Streamlit's old pages/ mode (see ui/state.py)

with st.sidebar:
    st.caption(f":material/memory: **Device:** {cache.device_name()}")
    st.caption(f":material/warning: {nav.DISCLAIMER}")
identity.remember()   # this browser's token in a cookie, so its runs stay its own after a reload

page.run()
