"""AppTest of pages/playground.py: loads, steps, plays (in the training thread), applies live
settings, draws charts whose spec does not change with the data."""

import json
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "playground.py")


@pytest.fixture(scope="module")
def app():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: a second thread only adds waiting on a busy CPU
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    yield at
    torch.set_num_threads(before)


def trainer(at, slot="a"):
    return at.session_state["toy_trainers"][slot]


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def layer_names(spec: dict) -> list[str]:
    return [n for layer in spec["layer"] for n in
            (layer_names(layer) if "layer" in layer else [layer["data"]["name"]])]


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_page_loads_without_exception(app):
    assert not app.exception
    assert not app.error
    assert app.title[0].value == "Playground"
    assert trainer(app).gen_steps == 0 and trainer(app, "b").config.loss == "gan"
    assert len(app.get("vega_lite_chart")) == 4  # landscape + curves, for each of two trainers


def test_step_buttons(app):
    app.button(key="toy_step_critic").click().run()
    assert (trainer(app).critic_steps, trainer(app).gen_steps) == (1, 0)
    app.button(key="toy_step_gen").click().run()
    assert trainer(app).gen_steps == 1
    app.button(key="toy_step_iteration").click().run()
    t = trainer(app)
    assert t.gen_steps == 2 and t.critic_steps == 1 + t.config.n_critic
    assert t.history and trainer(app, "b").gen_steps == 2  # both trainers step together
    assert not app.exception


def test_compare_mode_shows_metrics_two_to_a_row(app):
    # Four to a row in a half-width column were cut short ("-0.…", "modes cover…").
    assert len(app.metric) == 8
    cols = [c for c in app.columns if c.get("metric") and not c.get("vega_lite_chart")]
    assert [len(c.get("metric")) for c in cols] == [2, 2, 2, 2]  # two columns per trainer
    assert all(c.weight == 0.5 for c in cols)


def test_play_trains_in_the_background_then_pause(app):
    """The trainers train in the runner's thread, not in the page's runs: steps go on with no
    rerun at all (AppTest's run_every never fires), and Pause stops them at once."""
    app.select_slider(key="toy_speed").set_value(1000).run()
    before = trainer(app).gen_steps
    app.button(key="toy_play").click().run()
    assert app.session_state["toy_playing"] and app.session_state["toy_runner"].playing
    wait_for(lambda: trainer(app).gen_steps >= before + 3)
    # The period follows the measured cost of a refresh, within its bounds.
    assert app.session_state["toy_period"] in (0.25, 0.5, 1.0)
    assert app.button(key="toy_play").label.endswith("Pause")
    # Steps are for a paused run (a live rerun could apply a step click twice).
    assert all(app.button(key=f"toy_step_{k}").disabled for k in ("critic", "gen", "iteration"))
    app.button(key="toy_play").click().run()
    runner = app.session_state["toy_runner"]
    assert not app.session_state["toy_playing"] and not runner.playing and not app.exception
    wait_for(lambda: not runner.running)
    with app.session_state["toy_lock"]:
        assert trainer(app).gen_steps == trainer(app, "b").gen_steps   # in lockstep
    steps = trainer(app).gen_steps
    time.sleep(0.3)
    assert trainer(app).gen_steps == steps
    assert not app.button(key="toy_step_critic").disabled


def test_charts_keep_their_spec_while_the_data_changes(app):
    """The browser updates a Vega-Lite chart in place only when its spec is unchanged: every
    number (the axes' extent included) travels in the datasets."""
    before = [(c.proto.spec, [d.data.data for d in c.proto.datasets])
              for c in app.get("vega_lite_chart")]
    app.button(key="toy_step_iteration").click().run()
    app.button(key="toy_step_iteration").click().run()
    after = [(c.proto.spec, [d.data.data for d in c.proto.datasets])
             for c in app.get("vega_lite_chart")]
    assert len(after) == 4 and [s for s, _ in before] == [s for s, _ in after]
    assert all(b != a for (_, b), (_, a) in zip(before, after))
    assert all(s["usermeta"]["embedOptions"]["renderer"] == "canvas" for s in charts(app))


def test_live_settings_reach_the_trainer(app):
    app.select_slider(key="toy_a_lr_critic").set_value(1e-3).run()
    assert trainer(app).opt_critic.param_groups[0]["lr"] == 1e-3
    app.selectbox(key="toy_a_loss").set_value("wgan").run()
    t = trainer(app)
    assert t.config.clip == 0.01 and isinstance(t.opt_critic, torch.optim.RMSprop)
    assert app.select_slider(key="toy_a_clip").value == 0.01  # widgets follow the new defaults
    app.slider(key="toy_noise_dim").set_value(3).run()
    assert trainer(app).generator[0].in_features == 3 == trainer(app, "b").generator[0].in_features
    assert not app.exception


def test_buttons_wrap_and_the_landscape_shows_every_layer(app):
    """Fixed button columns cut "Play" and "Step iteration" at 1024 px: a row that wraps. The
    landscape: heatmap, border, gradient arrows, generated and real points, each from its data."""
    main = charts(app)[0]
    assert layer_names(main) == ["field", "frame", "arrows", "generated", "real"]
    data = app.get("vega_lite_chart")[0].proto.datasets
    assert {d.name for d in data} == {"field", "frame", "arrows", "generated", "real"}
    row = next(b for b in app.main.children.values()
               if type(b).__name__ == "Block" and "toy_play" in [getattr(c, "key", None)
                                                                 for c in b.children.values()])
    assert row.proto.flex_container.wrap
    assert [c.key for c in row.children.values()] == [
        "toy_play", "toy_step_critic", "toy_step_gen", "toy_step_iteration", "toy_reset"]
    app.toggle(key="toy_heatmap").set_value(False).run()
    app.toggle(key="toy_arrows").set_value(False).run()
    assert layer_names(charts(app)[0]) == ["frame", "generated", "real"]
    app.toggle(key="toy_heatmap").set_value(True).run()
    app.toggle(key="toy_arrows").set_value(True).run()
    assert not app.exception


def test_1d_dataset_and_reset(app):
    app.selectbox(key="toy_dataset").set_value("gaussian-1d").run()
    assert not app.exception and trainer(app).dim == 1
    specs = charts(app)
    assert layer_names(specs[0]) == ["bars", "curve", "span"]
    # The critic's axis has a span of its own: the GAN's D(x) on [0, 1].
    spans = [pa.ipc.open_stream(d.data.data).read_all().to_pandas()["v"].tolist()
             for c in app.get("vega_lite_chart")[::2] for d in c.proto.datasets
             if d.name == "span"]
    assert len(spans) == 2 and spans[1] == [0.0, 1.0] and spans[0][0] < spans[0][1]
    # The gradient-norm band always reaches 1, where its dotted target line is drawn.
    assert all(c["layer"][2]["layer"][1]["data"]["values"] == [{"gn": 1.0}]
               for c in specs[1::2])
    assert app.session_state["toy_noise_dim"] == 1
    app.button(key="toy_step_iteration").click().run()
    assert trainer(app).gen_steps == 1
    app.button(key="toy_reset").click().run()
    assert trainer(app).gen_steps == 0 and not app.exception


def test_single_trainer_view(app):
    app.toggle(key="toy_compare").set_value(False).run()
    assert not app.exception and len(app.get("vega_lite_chart")) == 2
