"""core.runs.header: one config.json layout for every job, and the layouts of older runs read
through one function."""

import json

from core.runs import header as runheader
from core.runs.store import RunStore


def test_a_new_header_round_trips_through_the_run_directory(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.write_header(runheader.new("train-gan", {"data": {"source": "phantom", "classes": []},
                                                   "train": {"loss": "wgan"}},
                                     classes=["COVID-19"], world_size=1))
    raw = json.loads((store.path / "config.json").read_text())
    assert set(raw) == {"command", "version", "configs", "info"} and raw["version"] == 2
    header = store.header()
    assert (header.command, header.loss, header.classes, header.data_source) == \
        ("train-gan", "wgan", ["COVID-19"], "phantom")


def test_old_layouts_read_as_the_new_one():
    gan = runheader.read({"kind": "gan", "data": {"source": "x", "classes": ["NORMAL"]},
                          "generator": {}, "critic": {}, "train": {"loss": "gan"},
                          "classes": ["NORMAL"], "world_size": 2})
    assert (gan.command, gan.version, gan.loss, gan.info) == \
        ("train-gan", 1, "gan", {"classes": ["NORMAL"], "world_size": 2})
    assert set(gan.configs) == {"data", "generator", "critic", "train"}
    clf = runheader.read({"command": "train-classifier", "data": {"size": 64},
                          "model": {"arch": "resnet"}, "train": {}, "augment": None})
    assert clf.command == "train-classifier" and clf.section("model") == {"arch": "resnet"}
    assert clf.section("augment") == {} and clf.info == {}
    abl = runheader.read({"command": "ablation", "data": {}, "model": {}, "train": {},
                          "fractions": [0.5], "seeds": [0], "arms": ["real"]})
    assert abl.section("ablation") == {"fractions": [0.5], "seeds": [0], "arms": ["real"]}


def test_a_header_the_dashboard_queued_is_not_yet_started():
    queued = runheader.new("train-gan", {"data": {}, "train": {}})
    assert not queued.started and runheader.new("train-gan", {}, classes=["NORMAL"]).started
    assert runheader.read({"kind": "gan", "train": {}}).started       # older jobs wrote it all
    assert not runheader.read({}).started


def test_a_queued_run_without_config_is_known_by_its_launch_or_name():
    assert runheader.read({}, ["train-classifier", "--data", "x"]).command == "train-classifier"
    assert runheader.read({}, None, "20260101-000000-gan-wgan-abcd").command == "train-gan"
    assert runheader.read({}, None, "run").command == ""


def test_odd_files_give_an_empty_header():
    for raw in ([], "text", {"configs": [1]}, {"command": 3, "configs": {"data": 5}}):
        header = runheader.read(raw)
        assert header.loss is None and header.classes == [] and header.data_source is None
