"""AppTest of pages/playground.py: loads, steps, plays one refresh, applies live settings."""

import json
from pathlib import Path

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


def test_page_loads_without_exception(app):
    assert not app.exception
    assert not app.error
    assert app.title[0].value == "Playground"
    assert trainer(app).gen_steps == 0 and trainer(app, "b").config.loss == "gan"
    assert len(app.get("plotly_chart")) == 4  # landscape + curves, for each of two trainers


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
    cols = [c for c in app.columns if c.get("metric") and not c.get("plotly_chart")]
    assert [len(c.get("metric")) for c in cols] == [2, 2, 2, 2]  # two columns per trainer
    assert all(c.weight == 0.5 for c in cols)


def test_play_trains_one_refresh_then_pause(app):
    app.slider(key="toy_speed").set_value(2).run()
    before = trainer(app).gen_steps
    app.button(key="toy_play").click().run()  # AppTest renders the fragment once, no timer
    assert app.session_state["toy_playing"]
    # At most `speed` iterations (fewer once the refresh's time budget runs out), in lockstep.
    assert before < trainer(app).gen_steps <= before + 2 and \
        trainer(app).gen_steps == trainer(app, "b").gen_steps
    # The period follows the measured cost of a refresh, within its bounds.
    assert 0.5 <= app.session_state["toy_period"] <= 2.0
    assert app.button(key="toy_play").label.endswith("Pause")
    # Steps are for a paused run (a live rerun could apply a step click twice).
    assert all(app.button(key=f"toy_step_{k}").disabled for k in ("critic", "gen", "iteration"))
    app.button(key="toy_play").click().run()
    assert not app.session_state["toy_playing"] and not app.exception
    assert not app.button(key="toy_step_critic").disabled


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


def _legend_entries(spec: dict) -> list[str]:
    # plotly leaves contours out of the legend unless told otherwise
    return [t["name"] for t in spec["data"] if t.get("showlegend", t.get("type") != "contour")]


def test_buttons_wrap_and_legends_fit_two_panels_at_1024_px(app):
    """Side by side at 1024 px a plot is 160-200 px wide: a horizontal legend of three or four
    entries wrapped to a row each, above the fixed top margin (the first rows cut off), and
    fixed button columns cut "Play" and "Step iteration". Now at most two entries (a line alone
    in its panel is named by its axis title) in a margin for two rows, and a row of buttons
    that wraps."""
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    assert len(specs) == 4
    assert all(len(_legend_entries(s)) <= 2 and s["layout"]["margin"]["t"] >= 50 for s in specs)
    assert _legend_entries(specs[1]) == ["critic loss", "generator loss"]
    row = next(b for b in app.main.children.values()
               if type(b).__name__ == "Block" and "toy_play" in [getattr(c, "key", None)
                                                                 for c in b.children.values()])
    assert row.proto.flex_container.wrap
    assert [c.key for c in row.children.values()] == [
        "toy_play", "toy_step_critic", "toy_step_gen", "toy_step_iteration", "toy_reset"]


def test_1d_dataset_and_reset(app):
    app.selectbox(key="toy_dataset").set_value("gaussian-1d").run()
    assert not app.exception and trainer(app).dim == 1
    # The critic's axis: ticks of its own, not synced to the density axis (0.49287, 0.48878);
    # the GAN's D(x) on [0, 1]. Margins fixed: a changing tick width would draw twice.
    specs = [json.loads(c.proto.spec)["layout"] for c in app.get("plotly_chart")]
    gan_hist = specs[2]
    assert gan_hist["yaxis2"]["tickmode"] == "auto" and gan_hist["yaxis2"]["range"] == [0, 1]
    assert all(s["margin"]["autoexpand"] is False for s in specs)
    hist = json.loads(app.get("plotly_chart")[0].proto.spec)    # critic curve: its axis names it
    assert _legend_entries(hist) == ["real", "generated"] and hist["layout"]["margin"]["t"] >= 50
    # The gradient-norm panel always reaches 1, where its dotted target line is drawn.
    curves = [s for s in specs if "yaxis3" in s]
    assert curves and all(s["yaxis3"]["autorangeoptions"]["include"] == [1] for s in curves)
    assert app.session_state["toy_noise_dim"] == 1
    app.button(key="toy_step_iteration").click().run()
    assert trainer(app).gen_steps == 1
    app.button(key="toy_reset").click().run()
    assert trainer(app).gen_steps == 0 and not app.exception


def test_single_trainer_view(app):
    app.toggle(key="toy_compare").set_value(False).run()
    assert not app.exception and len(app.get("plotly_chart")) == 2
