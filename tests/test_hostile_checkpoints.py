"""Checkpoints from somewhere else (people share them): metadata that is not an object, configs
with absurd or mistyped values, garbled classes, temperatures and OOD statistics. Each is
refused with one line naming the bad field, before any large tensor is allocated; the Diagnose
page shows that line; nothing is written anywhere. Every file is generated here."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoint import _META_KEY
from core.classify.model import ClassifierConfig, build_classifier, load_classifier, save_classifier
from core.config import to_dict
from core.errors import CheckpointError
from core.gan.models import Generator, GeneratorConfig, load_generator, save_generator


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A tiny, valid classifier and generator: their tensors and metadata."""
    from safetensors.torch import load_file

    from core.checkpoint import read_meta

    root = tmp_path_factory.mktemp("good")
    model = build_classifier(ClassifierConfig(size=32, width=0.25)).eval()
    clf = save_classifier(root / "clf.safetensors", model, {"temperature": 1.2,
                                                            "ood": {"threshold": 3.0}})
    gcfg = GeneratorConfig(latent_dim=8, size=32, width=0.125)
    gen = save_generator(root / "gen.safetensors", Generator(gcfg), gcfg)
    return (load_file(str(clf)), read_meta(clf)), (load_file(str(gen)), read_meta(gen))


def _write(path: Path, state, meta) -> Path:
    save_file(state, str(path), metadata={_META_KEY: json.dumps(meta)})
    return path


def _model(meta, **changes):
    return {**meta, "model": {**meta["model"], **changes}}


CLASSIFIER_CASES = {
    "list": (lambda m: [1, 2], "not a JSON object"),
    "null": (lambda m: None, "not a JSON object"),
    "text": (lambda m: "hello", "not a JSON object"),
    "width-1e9": (lambda m: _model(m, width=1e9), "width must be between"),
    "width-negative": (lambda m: _model(m, width=-1), "width must be between"),
    "size-text": (lambda m: _model(m, size="big"), "size must be a finite whole number"),
    "n-classes-1e9": (lambda m: _model(m, n_classes=10**9), "n_classes must be between"),
    "filters-text": (lambda m: _model(m, filters="abc"), "filters must be a list"),
    "filters-huge": (lambda m: _model(m, filters=[4096] * 3, width=16.0), "parameters"),
    "model-missing": (lambda m: {k: v for k, v in m.items() if k != "model"}, "not a JSON object"),
    "temperature-nan": (lambda m: {**m, "temperature": float("nan")}, "'temperature'"),
    "temperature-text": (lambda m: {**m, "temperature": "hot"}, "'temperature'"),
    "threshold-text": (lambda m: {**m, "ood": {"threshold": "x"}}, "'ood.threshold'"),
    "classes-text": (lambda m: {**m, "classes": "COVID-19"}, "'classes'"),
    "training-data-list": (lambda m: {**m, "training_data": [1]}, "'training_data'"),
    "training-data-counts-text": (lambda m: {**m, "training_data": {"source": "x", "counts": {"NORMAL": "many"}}},
                                  "'training_data'"),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
def test_a_hostile_classifier_is_one_line(good, tmp_path, case):
    (state, meta), _ = good
    make, needle = CLASSIFIER_CASES[case]
    path = _write(tmp_path / "x.safetensors", state, make(meta))
    before = sorted(p.name for p in tmp_path.iterdir())
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, hard))   # a huge allocation would fail
    try:
        with pytest.raises(CheckpointError, match=needle) as err:
            load_classifier(path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert "\n" not in str(err.value) and "x.safetensors" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_ood_statistics_of_the_wrong_shape(good, tmp_path):
    (state, meta), _ = good
    path = _write(tmp_path / "x.safetensors", {**state, "ood.means": torch.zeros(2, 5)}, meta)
    with pytest.raises(CheckpointError, match="'means' have shape .2, 5."):
        load_classifier(path)


@pytest.mark.parametrize("changes, needle", [
    ({"latent_dim": 10**9}, "latent_dim must be between"),
    ({"size": -3}, "size must be between"),
    ({"filters": [4096] * 8, "width": 16.0}, "parameters"),
    ({"leaky_slope": "steep"}, "leaky_slope must be a finite number"),
])
def test_a_hostile_generator_is_one_line(good, tmp_path, changes, needle):
    _, (state, meta) = good
    path = _write(tmp_path / "g.safetensors", state,
                  {**meta, "generator": {**meta["generator"], **changes}})
    with pytest.raises(CheckpointError, match=needle):
        load_generator(path)


def test_the_good_files_still_load(good, tmp_path):
    (cstate, cmeta), (gstate, gmeta) = good
    model, meta = load_classifier(_write(tmp_path / "c.safetensors", cstate, cmeta))
    assert meta["temperature"] == 1.2 and model.config == ClassifierConfig(size=32, width=0.25)
    gen, _ = load_generator(_write(tmp_path / "g.safetensors", gstate, gmeta))
    assert to_dict(gen.config)["latent_dim"] == 8
