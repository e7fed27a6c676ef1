"""The app shell (streamlit_app.py) under AppTest: its own sidebar menu lists every page in
ui/nav.py's order above the device and the disclaimer, and Streamlit's page list for pages/ is
off (a fresh server drew it, bare, before the app; the browser test watches a first load)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from ui import nav  # noqa: E402

APP = str(REPO / "streamlit_app.py")


def _app() -> AppTest:
    # From a script outside the repo, as tests/test_page_home.py explains.
    return AppTest.from_string(f"import runpy\nrunpy.run_path({APP!r}, run_name='__main__')\n",
                               default_timeout=60)


def test_the_sidebar_menu_lists_every_page_in_order():
    at = _app().run()
    assert not at.exception
    links = at.sidebar.get("page_link")
    assert [link.proto.label for link in links] == [title for _, title, _ in nav.PAGES]
    assert [link.proto.icon for link in links] == [icon for _, _, icon in nav.PAGES]
    at.switch_page(nav.path("pages/runs.py")).run()
    assert not at.exception and at.title[0].value == "Runs"
    assert [link.proto.label for link in at.sidebar.get("page_link")][-1] == "Runs"


def test_streamlits_own_page_list_is_off():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False
