"""Train GAN page under AppTest: Start launches a real tiny CPU job; steering sliders and buttons
write control.json; the live panel marks control changes on the charts and shows why a run
failed; a second run is refused while one is active."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest

from core.data.config import DataConfig
from core.runs.store import RunStore, runs_root
from ui.gan_view import steer_key

PAGE = str(REPO / "pages" / "train_gan.py")


def _start_button(at: AppTest):
    """The Start button: its key changes after each start that went through (ui.jobs.start_key)."""
    return next(b for b in at.button if b.key.startswith("gan_start_"))


def _owner(at: AppTest) -> str:
    """The owner a session records with its runs and changes (ui.identity.owner)."""
    import hashlib

    return "browser " + hashlib.sha256(at.session_state["_browser_token"].encode()).hexdigest()[:8]


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["data_config"] = DataConfig(source="phantom", size=32, phantom_per_class=8)
    return at


def _fake_run(name: str, state: str, steps: int = 0, events: list[tuple[int, dict]] = ()) -> RunStore:
    """A run directory as a GAN job writes it; pid is this process, so 'running' counts as alive."""
    store = RunStore(runs_root() / name, create=True)
    store.write_header_json({"kind": "gan", "train": {"loss": "wgan-gp", "gp_lambda": 10.0, "n_critic": 5,
                                                 "lr_critic": 1e-4, "lr_gen": 1e-4}})
    store.set_status(state, step=steps, total_steps=100, device="CPU (test)", path="eager",
                     command=["train-gan", "--loss", "wgan-gp"], heldout_images=12)
    for step in range(1, steps + 1):
        store.log_metrics(step, {"loss/critic": 1.0 / step, "loss/gen": 0.1 * step,
                                 "wgan/w_estimate": 0.5, "wgan/gp": 0.2, "wgan/grad_norm_mean": 0.9,
                                 "wgan/grad_norm_std": 0.1, "throughput/img_s": 50.0,
                                 "time/step_s": 0.1, "lambda": 10.0})
        if step % 3 == 0:   # the held-out check comes with the sample grids
            store.log_metrics(step, {"heldout/w_train": 0.6, "heldout/w_heldout": 0.4})
    for step, payload in events:
        store.log_event(step, "control", payload)
    store.close()
    return store


def _kill_jobs() -> None:
    for p in runs_root().iterdir():
        status = RunStore(p).status() if (p / "status.json").exists() else {}
        if status.get("state") in ("queued", "running", "paused") and status.get("pid") != os.getpid():
            try:
                os.killpg(int(status["pid"]), signal.SIGKILL)  # launch() gives each job its session
            except (OSError, KeyError, TypeError):
                pass


def test_start_launches_a_real_cpu_run():
    at = _app().run()
    assert not at.exception and not at.error
    k = "wgan-gp_cpu-tiny"
    at.number_input(key=f"gan_steps_{k}").set_value(2)
    at.number_input(key=f"gan_batch_{k}").set_value(4)
    at.number_input(key=f"gan_log_every_{k}").set_value(1)
    at.slider(key="gan_holdout_pct").set_value(30)
    _start_button(at).click().run()
    try:
        assert not at.exception and not at.error, [e.value for e in at.error]
        runs = [p for p in runs_root().iterdir() if p.is_dir()]
        assert len(runs) == 1 and "-gan-wgan-gp-" in runs[0].name
        assert at.session_state["gan_run"] == runs[0].name
        header = RunStore(runs[0]).header()   # the page wrote the configs; the job starts from them
        assert header.command == "train-gan" and header.section("train")["steps"] == 2
        assert header.section("data")["phantom_per_class"] == 8
        assert header.section("train")["holdout"] == 0.3
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:
            state = RunStore(runs[0]).status()["state"]
            if state in ("running", "finished", "failed"):
                break
            time.sleep(0.5)
        assert state in ("running", "finished"), (state, RunStore(runs[0]).tail_log())
        at.run()  # the page now shows this run with its live panel
        assert not at.exception
        assert any(runs[0].name in m.value for m in at.markdown)
    finally:
        _kill_jobs()


def test_steering_and_buttons_write_control():
    store = _fake_run("20260101-000000-gan-wgan-gp-aaaa", "running", steps=3)
    at = _app().run()
    assert not at.exception
    at.select_slider(key=steer_key(store, "gp_lambda")).set_value(5.0).run()
    assert store.control()["gp_lambda"] == 5.0
    at.slider(key=steer_key(store, "n_critic")).set_value(2).run()
    assert store.control()["n_critic"] == 2
    at.button(key="gan_pause").click().run()
    assert store.control()["paused"] is True
    at.button(key="gan_stop").click().run()
    assert store.control()["stop"] is True
    assert not at.exception


def test_two_sessions_show_the_values_in_force():
    """Session B lowers lambda; once the job applies it (and says so in status.json), session A's
    slider shows it too, and A, which touched nothing, sends nothing."""
    store = _fake_run("20260101-000000-gan-wgan-gp-twin", "running", steps=3)
    live = {"gp_lambda": 10.0, "n_critic": 5, "lr_critic": 1e-4, "lr_gen": 1e-4, "clip": 0.0}
    store.set_status("running", live=live)
    a, b = _app().run(), _app().run()
    key = steer_key(store, "gp_lambda")
    assert a.select_slider(key=key).value == 10.0 and b.select_slider(key=key).value == 10.0
    b.select_slider(key=key).set_value(2.0).run()
    control = store.control()
    assert control["gp_lambda"] == 2.0 and control["by"] == {"gp_lambda": _owner(b)}
    assert _owner(a) != _owner(b)
    store.set_status("running", live={**live, "gp_lambda": 2.0})   # the job applied it
    a.run()
    b.run()
    assert not a.exception and not b.exception
    key = steer_key(store, "gp_lambda")
    assert a.select_slider(key=key).value == 2.0 and b.select_slider(key=key).value == 2.0
    assert a.slider(key=steer_key(store, "n_critic")).value == 5
    assert store.control()["seq"] == control["seq"] and not a.toast   # A sent nothing


def test_a_move_on_a_slider_drawn_for_a_replaced_value_sends_nothing():
    """A watching browser can report its slider at the old value after another session's change
    landed (it did, and three sessions undid each other's steering): a move on a slider drawn
    for a value no longer in force is not sent; the redrawn slider's is."""
    store = _fake_run("20260101-000000-gan-wgan-gp-echo", "running", steps=3)
    live = {"gp_lambda": 10.0, "n_critic": 5, "lr_critic": 1e-4, "lr_gen": 1e-4, "clip": 0.0}
    store.set_status("running", live=live)
    at = _app().run()
    drawn_for_10 = steer_key(store, "gp_lambda")
    store.send_control(by="browser 0therone", gp_lambda=5.0)       # another session's change,
    store.set_status("running", live={**live, "gp_lambda": 5.0})   # applied by the job
    seq = store.control()["seq"]
    at.select_slider(key=drawn_for_10).set_value(20.0).run()
    assert store.control()["seq"] == seq and store.control()["gp_lambda"] == 5.0
    assert any("changed meanwhile" in t.value for t in at.toast)
    redrawn = steer_key(store, "gp_lambda")
    assert redrawn != drawn_for_10 and at.select_slider(key=redrawn).value == 5.0
    at.select_slider(key=redrawn).set_value(20.0).run()           # a real move is still sent
    assert store.control()["gp_lambda"] == 20.0
    assert store.control()["by"]["gp_lambda"] == _owner(at)


def test_quick_moves_of_ones_own_slider_are_all_sent():
    """Moving the same slider again before the page redrew: the value in force may by then be
    this session's own first change, which is no reason to refuse the second."""
    store = _fake_run("20260101-000000-gan-wgan-gp-quick", "running", steps=3)
    live = {"gp_lambda": 10.0, "n_critic": 5, "lr_critic": 1e-4, "lr_gen": 1e-4, "clip": 0.0}
    store.set_status("running", live=live)
    at = _app().run()
    key = steer_key(store, "gp_lambda")
    at.select_slider(key=key).set_value(5.0).run()
    assert store.control()["gp_lambda"] == 5.0
    at.select_slider(key=key).set_value(2.0).run()                 # not applied yet: sent
    assert store.control()["gp_lambda"] == 2.0
    store.set_status("running", live={**live, "gp_lambda": 5.0})   # the job applied the first
    at.select_slider(key=key).set_value(1.0).run()
    assert store.control()["gp_lambda"] == 1.0


def test_every_value_the_form_accepts_the_slider_shows_and_can_set_back():
    """lambda 1000 from the form showed a 0-1000 slider, then 0-100 after one move."""
    from core.gan import live
    from ui.gan_view import slider_options

    for spec in live.SPECS:
        if spec.stops:
            assert min(spec.stops) <= spec.form_low * 1.0001 and max(spec.stops) == spec.high, spec
    store = _fake_run("20260101-000000-gan-wgan-gp-wide", "running", steps=3)
    values = {"gp_lambda": 1000.0, "n_critic": 5, "lr_critic": 1e-4, "lr_gen": 1e-4, "clip": 0.0}
    store.set_status("running", live=values)
    at = _app().run()
    slider = at.select_slider(key=steer_key(store, "gp_lambda"))
    assert slider.value == 1000.0 and max(slider.options, key=float) in ("1000", "1000.0")
    slider.set_value(50.0).run()
    store.set_status("running", live={**values, "gp_lambda": 50.0})
    at.run()
    slider = at.select_slider(key=steer_key(store, "gp_lambda"))
    assert slider.value == 50.0 and "1000" in slider.options
    assert 7.0 in slider_options(live.BY_NAME["gp_lambda"], 7.0)


def _datasets(chart) -> list:
    """The data frames a Vega-Lite chart element carries (Arrow IPC bytes in the proto)."""
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def test_live_panel_marks_control_changes():
    store = _fake_run("20260101-000000-gan-wgan-gp-bbbb", "finished", steps=6,
                      events=[(3, {"gp_lambda": 5.0}), (5, {"n_critic": 2})])
    at = _app().run()
    assert not at.exception
    charts = at.get("vega_lite_chart")
    titles = [json.loads(c.proto.spec)["title"]["text"] for c in charts]
    assert titles[:3] == ["Critic loss", "Generator loss", "W estimate"] and len(charts) == 6
    # At most 14 characters: at 1024 px a chart is about 125 px wide ("Wasserstei…" before).
    assert max(map(len, titles)) <= 14
    for chart in charts:   # every panel has its line and the two change markers
        frames = _datasets(chart)
        # Only the data its layers read: updating an unused dataset fails in the browser.
        assert len(frames) == 2
        if chart is not charts[5]:
            metrics = next(f for f in frames if "step" in f and len(f) == 6)
            assert metrics["step"].tolist() == [1, 2, 3, 4, 5, 6]
        changes = next(f for f in frames if "change" in f)
        assert changes["step"].tolist() == [3, 5]
    assert changes["change"].tolist() == ["λ=5", "n_critic=2"]
    assert changes["label_y"].tolist() == [0, 13]  # one line each, not printed over each other
    # Of many changes only the newest four are labelled (eleven were unreadable); all keep a rule.
    import pandas as pd

    from ui.plots import training_panels
    many = pd.DataFrame({"step": range(6), "payload": [{"n_critic": k} for k in range(6)]})
    labelled = training_panels(pd.DataFrame(), many)[0]["datasets"]["changes"]
    assert labelled["label"].tolist() == ["", ""] + [f"n_critic={k}" for k in range(2, 6)]
    assert labelled["label_y"].tolist()[2:] == [0, 13, 26, 39] and len(labelled) == 6
    # The last panel draws the held-out check, measured at steps 3 and 6 only: one point per
    # line and measurement (no gaps a line would break at), training images above held-out ones.
    assert json.loads(charts[5].proto.spec)["layer"][0]["data"] == {"name": "heldout"}
    heldout = next(f for f in _datasets(charts[5]) if "images" in f)
    assert heldout.sort_values(["images", "step"]).values.tolist() == [
        [3, "seen", 0.6], [6, "seen", 0.6], [3, "unseen", 0.4], [6, "unseen", 0.4]]
    # The gradient-norm panel has its target line at 1.
    layers = json.loads(charts[3].proto.spec)["layer"]
    assert {"values": [{"target": 1.0}]} in [layer["data"] for layer in layers]
    assert any("6 logged steps" in c.value and "2 live changes" in c.value for c in at.caption)
    assert any(c.value.startswith("Held-out check (12 images held out)")
               and "Seen − unseen: +0.20 over the first check, +0.20 over the last." in c.value
               for c in at.caption)
    assert any(str(store.name) in m.value and "finished" in m.value for m in at.markdown)
    t0 = time.perf_counter()
    at.run()
    assert time.perf_counter() - t0 < 1.0 and not at.exception


def test_failed_run_shows_reason_and_log():
    store = _fake_run("20260101-000000-gan-wgan-gp-cccc", "failed", steps=2)
    store.set_status("failed", reason="non-finite loss at step 2")
    store.log_path.write_text("step 1/100 critic +1.0\nTraceback: boom at the end\n")
    at = _app().run()
    assert not at.exception
    assert any("non-finite loss at step 2" in e.value for e in at.error)
    assert any("boom at the end" in c.value for c in at.code)


def test_a_second_run_waits_in_the_queue_and_another_sessions_run_asks_before_stop(monkeypatch):
    from core.runs import queue as jobqueue
    from ui import jobs

    monkeypatch.setattr(jobqueue, "slots", lambda: ("cpu", 1))
    other = _fake_run("20260101-000000-gan-wgan-gp-dddd", "running", steps=1)
    at = _app().run()
    assert not at.exception
    assert not _start_button(at).disabled
    # Started from this (test) process with no browser session: the command line's run.
    queued = jobs.start("train-gan", ["--data", "phantom:8"], "gan-wgan-gp")
    assert jobqueue.is_waiting(queued.status())
    assert jobqueue.position(queued)["position"] == 1
    # The other run is not this session's: Stop sits behind a confirmation.
    at.session_state["gan_run"] = other.name
    at.run()
    assert not at.exception
    assert not any(b.key == "gan_stop" and b.label == "Stop" for b in at.button)
    confirm = at.button(key="gan_stop")
    assert confirm.label == "Stop their run"
    confirm.click().run()
    assert other.control().get("stop") is True


def test_start_trains_on_the_classifier_training_patients_unless_switched_off(monkeypatch):
    from ui import jobs

    started = []
    monkeypatch.setattr(jobs, "start", lambda command, args, kind, header=None, request=None:
                        started.append(header.section("data")))
    at = _app().run()
    _start_button(at).click().run()
    assert started[-1]["split"] == "train"
    at.toggle(key="gan_train_split").set_value(False).run()
    _start_button(at).click().run()
    assert started[-1]["split"] == "" and len(started) == 2
    assert not at.exception


def _in_app() -> AppTest:
    """This page inside the whole app (st.navigation registers the pages its links point to)."""
    app = str(REPO / "streamlit_app.py")
    at = AppTest.from_string(f"import runpy\nrunpy.run_path({app!r}, run_name='__main__')\n",
                             default_timeout=60)
    at.session_state["data_config"] = DataConfig(source="phantom", size=32, phantom_per_class=8)
    return at.switch_page(PAGE)


def test_a_finished_run_is_shown_with_the_next_steps_and_the_form_closed():
    store = _fake_run("20260101-000000-gan-wgan-gp-done", "finished", steps=3)
    at = _in_app().run()
    assert not at.exception
    assert not at.expander[0].proto.expanded          # the run, not a blank form, comes first
    assert not any(b.key.startswith("gan_to_") for b in at.button)   # no grid yet: nothing to show
    from PIL import Image
    Image.new("L", (8, 8)).save(store.sample_path(0))   # the untrained generator's grid only
    at.run()
    assert not any(b.key.startswith("gan_to_") for b in at.button)
    Image.new("L", (8, 8)).save(store.sample_path(3))
    at.run()
    assert {b.key for b in at.button} >= {"gan_to_samples", "gan_to_classifier"}
    assert any("last report" in c.value for c in at.caption)
    assert any("this one has ended" in m.value for m in at.markdown)
    # The way on to the Classifier page carries the run, picked for the class it learned.
    from core.gan.models import Generator, GeneratorConfig, save_generator
    data = {"source": "phantom", "phantom_per_class": 8, "classes": ["COVID-19"], "split": "train",
            "split_val_fraction": 0.15, "split_test_fraction": 0.15, "split_seed": 0}
    store.write_header_json({**store.header_json(), "data": data})
    cfg = GeneratorConfig(latent_dim=8, size=32, width=0.125)
    save_generator(store.checkpoints_dir / "latest.safetensors", Generator(cfg), cfg,
                   {"classes": ["COVID-19"], "loss": "wgan-gp", "step": 3, "data": data})
    RunStore(runs_root() / "20260101-000001-classifier-report-cnn-old", create=True).write_header_json(
        {"command": "train-classifier"})               # an earlier classifier: its form is closed
    at.button(key="gan_to_classifier").click().run()
    assert not at.exception
    assert at.selectbox(key="clf_syn_COVID-19").value == store.name
    assert at.expander[0].proto.expanded              # open, to train with these samples


def test_the_new_run_form_is_open_before_the_first_run():
    at = _in_app().run()
    assert not at.exception and at.expander[0].proto.expanded


def test_heldout_summary_says_what_the_chart_shows():
    import pandas as pd

    from ui.gan_view import heldout_summary

    on = {"heldout_images": 14, "training_images": 28}
    unseen = [0.0, 1.0, 1.2, 0.8, 0.6, 0.1, 0.0]
    gap = [0, 0.1, -0.1, 0.2, 0.9, 1.4, 1.6]
    gaps = pd.DataFrame({"heldout/w_train": [u + g for u, g in zip(unseen, gap)],
                         "heldout/w_heldout": unseen, "loss/critic": 1.0},
                        index=[0, 50, 100, 150, 200, 250, 300])
    gaps.loc[75] = [None, None, 2.0]          # a logged step between two checks
    text = heldout_summary(on, gaps)
    assert text.startswith("Held-out check (28 training images, 14 held out)")
    # Step 0 (the untrained critic) left out; three checks each side of six.
    assert "+0.07 over the first 3 checks, +1.30 over the last 3." in text
    assert "Seen − unseen" not in heldout_summary(on, pd.DataFrame())   # nothing measured yet
    assert heldout_summary({}, gaps) == "Held-out check: not measured, this run predates it."
    assert "off (Held out 0%)" in heldout_summary({"heldout_images": 0, "holdout": 0.0}, gaps)
    assert "too few images" in heldout_summary({"heldout_images": 0, "holdout": 0.3}, gaps)


def test_thinning_a_long_history_keeps_every_held_out_check():
    import pandas as pd

    from ui import gan_view

    rows = [(s, "loss/critic", 1.0) for s in range(1, 4001)]
    rows += [(s, m, 1.0) for s in range(50, 4001, 50) for m in ("heldout/w_train", "heldout/w_heldout")]
    wide = gan_view._wide(pd.DataFrame(rows, columns=["step", "name", "value"]))
    assert len(wide) <= gan_view.MAX_POINTS
    assert wide["heldout/w_train"].notna().sum() == 80 and wide.index[-1] == 4000


def _path_of(at: AppTest, key: str) -> tuple | None:
    """Where the widget `key` sits in the page's element tree (indices from the root)."""
    def walk(node, path):
        for i, child in getattr(node, "children", {}).items():
            if getattr(child, "key", None) == key:
                return (*path, i)
            if (found := walk(child, (*path, i))) is not None:
                return found
        return None
    return walk(at._tree, ())


def test_the_controls_keep_their_place_when_a_run_ends():
    """The browser keeps an element by its place in the page until the new run of the script
    replaces it: a row that appeared above the controls only once the run ended shifted them,
    and for a moment the old sliders showed, faded, above the new ones. Running, queued or
    ended, the controls and sliders sit at the same places."""
    from PIL import Image

    store = _fake_run("20260101-000000-gan-wgan-gp-ends", "running", steps=3)
    Image.new("L", (8, 8)).save(store.sample_path(3))
    at = _app().run()
    keys = ("gan_pause", steer_key(store, "gp_lambda"), steer_key(store, "n_critic"))
    running = [_path_of(at, k) for k in keys]
    assert None not in running
    store.set_status("finished", step=3)
    at.run()
    assert not at.exception
    assert any(b.key == "gan_to_samples" for b in at.button)   # the row that used to shift them
    assert [_path_of(at, k) for k in keys] == running


def test_values_in_force_of_an_old_or_odd_run_come_from_its_logs_config_or_defaults():
    from ui import gan_view

    store = RunStore(runs_root() / "20260101-000009-gan-wgan-gp-odd", create=True)
    # A run from before the job published its values, and from elsewhere: lambda 1e9 in its
    # config, n_critic logged under the old name, lr_gen not a number.
    store.write_header_json({"kind": "gan", "train": {"loss": "wgan-gp", "gp_lambda": 1e9, "n_critic": 5,
                                                 "lr_gen": "fast"}})
    store.log_metrics(3, {"n_critic": 2.0})
    values = gan_view.current_values(store)
    assert values == {"gp_lambda": 10.0, "clip": 0.0, "n_critic": 2, "lr_critic": 1e-4, "lr_gen": 1e-4}


def test_change_markers_say_who_made_each_change():
    from ui.plots import _change_label

    mine = {"gp_lambda": 5.0, "by": {"gp_lambda": "browser 3fa2c1d0"}}
    assert _change_label(mine, me="browser 3fa2c1d0") == "λ=5 (you)"
    assert _change_label(mine, me="browser 00000000") == "λ=5 (3fa2c1)"
    assert _change_label({"n_critic": 4, "by": {"n_critic": "command line"}}) == "n_critic=4 (CLI)"
    assert _change_label({"gp_lambda": 5.0}) == "λ=5"          # an event from before "by"


def test_a_run_deleted_in_another_session_is_said_plainly():
    first = _fake_run("20260101-000000-gan-wgan-gp-keep", "finished", steps=3)
    gone = _fake_run("20260101-000001-gan-wgan-gp-gone", "finished", steps=3)
    at = _app().run()
    at.session_state["gan_run"] = gone.name
    at.run()
    assert any(gone.name in m.value for m in at.markdown)
    import shutil
    shutil.rmtree(gone.path)                 # another session deletes it
    at.run()
    assert not at.exception
    assert any(gone.name in w.value and "no longer in the runs folder" in w.value for w in at.warning)
    assert at.session_state["gan_run"] == first.name
    shutil.rmtree(first.path)
    at.run()
    assert not at.exception
    assert any("no longer in the runs folder" in w.value for w in at.warning)


def test_pause_and_resume_of_another_browsers_run_ask_first():
    store = _fake_run("20260101-000000-gan-wgan-gp-theirs", "running", steps=3)
    at = _app().run()
    pause = at.button(key="gan_pause")
    assert pause.label == "Pause their run"          # inside a popover that says whose it is
    assert "paused" not in store.control()
    pause.click().run()
    assert store.control()["paused"] is True and store.control()["by"]["paused"] == _owner(at)


def test_the_weight_average_and_the_raw_generator_side_by_side():
    from PIL import Image

    store = _fake_run("20260101-000000-gan-wgan-gp-ema", "finished", steps=3)
    Image.new("L", (8, 8)).save(store.sample_path(3))
    at = _app().run()
    html = " ".join(e.proto.body for e in at.get("html"))
    assert "Fixed-z samples, step 3" in html and "Raw generator" not in html   # a run without
    store.raw_sample_path(3).parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8)).save(store.raw_sample_path(3))
    at.run()
    html = " ".join(e.proto.body for e in at.get("html"))
    assert "Fixed-z samples (weight average), step 3" in html and "Raw generator, step 3" in html


@pytest.mark.parametrize("state", ["running", "finished"])
def test_leaving_train_gan_and_coming_back_shows_the_run(state):
    """In-app navigation away and back: Streamlit drops a widget's key when a run does not draw
    it, and the steering sliders then read a key that was gone (a KeyError box, no charts)."""
    store = _fake_run(f"20260101-000000-gan-wgan-gp-nav-{state}", state, steps=3)
    store.set_status(state, live={"gp_lambda": 10.0, "n_critic": 5, "lr_critic": 1e-4,
                                  "lr_gen": 1e-4, "clip": 0.0})
    at = _in_app().run()
    assert not at.exception and at.select_slider(key=steer_key(store, "gp_lambda")).value == 10.0
    at.switch_page(str(REPO / "pages" / "home.py")).run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception[0].value
    assert any(store.name in m.value for m in at.markdown)
    assert at.select_slider(key=steer_key(store, "gp_lambda")).value == 10.0


def test_a_resume_after_a_blow_up_says_which_values_it_took():
    store = _fake_run("20260101-000000-gan-wgan-gp-reset", "running", steps=3)
    reason = ("resumed after a non-finite loss with the values in force at step 3 (lambda 10); "
              "--keep-control keeps the later ones")
    store.set_status("running", reason=reason, step=3)
    at = _app().run()
    assert not at.exception and any(reason in i.value for i in at.info)
