"""The app shell and Home under AppTest: navigation over the pages that exist, device and
disclaimer in the sidebar, links to every page, and the CPU-demo button that launches the cpu-tiny
preset on phantoms and opens Train GAN on that run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pytest
from streamlit.testing.v1 import AppTest

from core.config import save_json
from core.runs.store import RunStore, runs_root
from ui import nav

APP = str(REPO / "streamlit_app.py")



def _demo_button(at):
    """The demo's button: its key changes after each start that went through (ui.jobs.start_key)."""
    return next(b for b in at.button if b.key.startswith("home_demo_"))

def _app() -> AppTest:
    # Run the app from a script outside the repo: with a pages/ folder beside the main script,
    # AppTest wraps every run in Streamlit's old multipage mode, which drops button clicks.
    return AppTest.from_string(f"import runpy\nrunpy.run_path({APP!r}, run_name='__main__')\n",
                               default_timeout=60)


def test_shell_and_home():
    at = _app().run()
    assert not at.exception
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert nav.DISCLAIMER in sidebar and "Device:" in sidebar
    assert at.title[0].value == "X-Ray GAN Studio"
    links = {link.proto.label for link in at.main.get("page_link")}   # the sidebar has its own
    expected = {title for path, title, _ in nav.PAGES if path != "pages/home.py"}
    assert links == expected and {"Data & augmentation", "Train GAN", "Samples", "Runs"} <= links


SHIPPED_GENERATOR = REPO / "checkpoints" / "generator-cxr-covid.safetensors"


def test_home_shows_the_shipped_generator_samples():
    # It ships with the repository (checkpoints/README.md) so that a fresh clone shows real-X-ray
    # samples on Home: a copy without it is broken, not a state to pass quietly.
    from ui import cache

    assert SHIPPED_GENERATOR.is_file(), (
        f"{SHIPPED_GENERATOR.relative_to(REPO)} is missing; it ships with the repository "
        f"(checkpoints/README.md) and Home shows its samples")
    assert cache.SHIPPED_GENERATOR == SHIPPED_GENERATOR   # the file the app reads
    at = _app().run()
    assert not at.exception
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert any("Synthetic chest X-rays, not patients" in c for c in captions), captions


def test_home_without_a_shipped_generator_shows_no_samples_and_no_error(tmp_path, monkeypatch):
    from ui import cache

    monkeypatch.setattr(cache, "SHIPPED_GENERATOR", tmp_path / "absent.safetensors")
    at = _app().run()
    assert not at.exception and not at.error
    assert not any("Synthetic chest X-rays" in im.proto.imgs[0].caption for im in at.get("image"))
    assert at.title[0].value == "X-Ray GAN Studio"


@pytest.mark.parametrize("page", [p[0] for p in nav.PAGES])
def test_every_page_run_on_its_own_starts_the_session(page, tmp_path):
    # A deep link on a fresh server (/playground before anyone opened "/") runs the page file
    # alone, in Streamlit's old pages/ mode: a page that did not leave that mode and set the
    # session's defaults itself (ui.state.init) showed Streamlit's bare file list as navigation,
    # with no device or disclaimer (seen in a real browser), and failed on its first read of a
    # default. A main script with a pages/ folder beside it puts AppTest in that mode.
    from streamlit.runtime.pages_manager import PagesManager

    from ui import state

    (tmp_path / "pages").mkdir()
    script = tmp_path / "deep_link.py"
    script.write_text(f"import runpy\nrunpy.run_path({nav.path(page)!r}, run_name='__main__')\n")
    at = AppTest.from_file(str(script), default_timeout=60).run()
    assert PagesManager.uses_pages_directory is False, f"{page} left the old pages/ mode on"
    missing = [key for key in state.DEFAULTS if key not in at.session_state]
    assert not missing, f"{page} run on its own left {missing} unset"


def test_every_page_in_the_menu_exists():
    assert all((REPO / path).is_file() for path, _, _ in nav.PAGES)


def test_demo_button_launches_cpu_tiny_and_opens_its_live_view(monkeypatch):
    from core.runs import queue as jobqueue

    launched = []

    def fake_launch(command, run_dir, env=None):
        # Stand in for the real process: record the command, report the job as just queued.
        launched.append(command)
        save_json(Path(run_dir) / "status.json", {"state": "queued", "pid": os.getpid(),
                                                 "heartbeat": time.time(), "command": command})
        return os.getpid()

    monkeypatch.setattr(jobqueue, "launch", fake_launch)
    at = _app().run()
    _demo_button(at).click().run()
    assert not at.exception, at.exception
    assert len(launched) == 1
    command = launched[0]
    assert command[0] == "train-gan" and "--from-config" in command
    run = RunStore(command[command.index("--run-dir") + 1])
    header = run.header()   # the cpu-tiny preset's configs, written before the job starts
    assert header.section("data")["source"] == "phantom"
    assert header.section("data")["phantom_per_class"] == 300
    assert header.section("generator")["width"] == 0.125
    # Training patients only, so the Classifier page accepts its samples on the default data.
    assert header.section("data")["split"] == "train"
    assert run.path.parent == runs_root()
    assert at.session_state["gan_run"] == run.name
    assert at.title[0].value == "Train GAN"   # switched page
    assert any(run.name in m.value for m in at.markdown)


@pytest.mark.parametrize("command,page", [("train-gan", "Train GAN"),
                                          ("train-classifier", "Classifier")])
def test_demo_button_queues_behind_an_active_run(command, page, monkeypatch):
    """Another session's run holds the only slot: the demo is not refused, it waits in the
    queue, and the live view says so; Home links to the active run."""
    from core.runs import queue as jobqueue

    monkeypatch.setattr(jobqueue, "slots", lambda: ("cpu", 1))
    store = RunStore(runs_root() / f"20260101-000000-{command}-eeee", create=True)
    store.set_status("running", command=[command])  # pid is this process: alive
    at = _app().run()
    assert not at.exception
    labels = [link.proto.label for link in at.get("page_link")]
    assert f"1 run(s) active or queued: watch the newest on {page}" in labels
    demo = _demo_button(at)
    assert not demo.disabled
    demo.click().run()
    assert not at.exception
    queued = RunStore(runs_root() / at.session_state["gan_run"])
    assert jobqueue.is_waiting(queued.status())
    assert any("Queued, number 1 in line" in i.value for i in at.info)
    at.button(key="gan_cancel").click().run()
    assert queued.status()["state"] == "stopped"


def test_a_finished_gan_run_is_one_click_away():
    at = _app().run()
    assert not any(b.key == "home_last_run" for b in at.button)
    old = RunStore(runs_root() / "20260101-000000-gan-wgan-gp-old", create=True)
    old.set_status("finished", command=["train-gan"])
    new = RunStore(runs_root() / "20260102-000000-gan-wgan-gp-new", create=True)
    new.set_status("finished", command=["train-gan"])
    at.run()
    button = at.button(key="home_last_run")
    assert new.name in button.label
    button.click().run()
    assert not at.exception
    assert at.session_state["gan_run"] == new.name and at.title[0].value == "Train GAN"


def test_runs_started_alike_get_names_a_person_tells_apart(monkeypatch):
    """Two demo runs: the same kind, a start time in minutes and a counter, not a random hex
    suffix; an older run's all-digit hex suffix does not count, and the newest is listed first."""
    import re

    from core.runs import queue as jobqueue
    from core.runs.store import list_runs

    def fake_launch(command, run_dir, env=None):
        save_json(Path(run_dir) / "status.json", {"state": "finished", "command": command})
        return os.getpid()

    monkeypatch.setattr(jobqueue, "launch", fake_launch)
    old = RunStore(runs_root() / "20260101-000000-gan-wgan-gp-8618", create=True)
    old.set_status("finished", command=["train-gan"])
    names = []
    for _ in range(2):
        at = _app().run()
        _demo_button(at).click().run()
        assert not at.exception
        names.append(at.session_state["gan_run"])
    stamp = r"\d{6}-\d{4}"  # yymmdd-hhmm
    assert re.fullmatch(rf"{stamp}-gan-wgan-gp-1", names[0]), names
    assert re.fullmatch(rf"{stamp}-gan-wgan-gp-2", names[1]), names
    assert [r.name for r in list_runs()][:2] == names[::-1]   # still newest first, old one last
    assert len(names[0]) < len(old.name)


def test_run_name_format():
    from core.runs.store import new_run_name

    now = time.mktime((2026, 1, 22, 23, 42, 5, 0, 0, -1))
    assert new_run_name("classifier-resnet", [], now) == "260122-2342-classifier-resnet-1"
    taken = ["260122-2342-classifier-resnet-4", "260101-0000-gan-wgan-gp-9",
             "20260101-000000-classifier-resnet-7777"]
    assert new_run_name("classifier-resnet", taken, now) == "260122-2342-classifier-resnet-5"


def test_page_links_wrap_rather_than_cut():
    # In four fixed columns, 1024 px with the sidebar open cut "Data & augmentation" short.
    at = _app().run()
    rows = [b for b in at.main.children.values() if type(b).__name__ == "Block"
            and any(type(c).__name__ == "PageLink" or getattr(c, "type", "") == "page_link"
                    for c in b.children.values())]
    assert len(rows) == 1 and rows[0].proto.flex_container.wrap
    assert len(rows[0].children) == len(nav.PAGES) - 1   # every page but Home, no columns


def test_the_demo_time_says_what_the_machine_is_doing(monkeypatch):
    """Home promises the demo's idle-machine time and, on a busy machine, says so and scales
    the expectation instead of promising what it cannot keep."""
    import os

    from ui import jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    calm = jobs.machine_line(67, "The demo")
    assert "2 core(s), load average 0.2" in calm and "about 1 min" in calm
    assert "now expect" not in calm
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    busy = jobs.machine_line(67, "The demo")
    assert "load average 7.0" in busy and "now expect about 4 min" in busy
