"""The shipped real-X-ray models in checkpoints/: each loads from its safetensors header without
running code, predicts or samples, carries its card; the numbers of the model cards are the ones
`evaluate` and `gan-metrics` give for the committed files (recomputed here on a small fixed set
when the development data is beside the repository)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import read_meta

REPO = Path(__file__).resolve().parent.parent
CLASSIFIER = REPO / "checkpoints" / "classifier-cxr.safetensors"
GENERATOR = REPO / "checkpoints" / "generator-cxr-covid.safetensors"


def _card_row(card: Path, name: str) -> list[str]:
    """The cells of the first table row of a model card whose first cell starts with `name`."""
    for line in card.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(name):
            return cells
    raise AssertionError(f"no row {name!r} in {card.name}")


def _pct(cell: str) -> float:
    return float(cell.rstrip("%")) / 100


def test_checkpoints_folder_stays_small():
    total = sum(p.stat().st_size for p in (REPO / "checkpoints").iterdir() if p.is_file())
    assert total < 30 * 2**20


def test_shipped_classifier_loads_predicts_and_flags_a_phantom():
    from core.classify.model import load_classifier
    from core.data.phantom import render
    from core.classify.predict import predict_image

    meta = read_meta(CLASSIFIER)                  # the header alone: no tensors, no code
    assert meta["kind"] == "classifier" and meta["training_data"]["real"] is True
    assert meta["card"]["file"] == "classifier-cxr.md" and meta["card"]["results"]
    assert (REPO / "checkpoints" / meta["card"]["file"]).is_file()
    licensed = {w.split("=", 1)[1] for w in meta["data"]["where"] if w.startswith("source=")}
    assert "COVID-19 Radiography Database (RSNA normals)" not in licensed
    model, meta = load_classifier(CLASSIFIER)
    r = predict_image(model, meta, render("NORMAL", 3, size=64, seed=5)[0] / 255.0)
    assert sum(r["probabilities"].values()) == pytest.approx(1.0)
    assert r["ood"]["flag"] and r["ood"]["like_known_outlier"]   # a phantom is no patient


def test_classifier_card_matches_evaluate(real_data_v2):
    """One row of the card recomputed: the Figure 1 images (never trained on), unseen split."""
    from core.classify.model import load_classifier
    from core.data.config import DataConfig
    from core.data.sources import load_dataset
    from core.classify.evaluate import evaluate, split_indices

    source = "agchung/Figure1-COVID-chestxray-dataset"
    model, meta = load_classifier(CLASSIFIER)
    meta["data"]["source"] = str(real_data_v2)   # the card's path is relative to the repo's parent
    ds = load_dataset(DataConfig(source=str(real_data_v2), size=64, where=(f"source={source}",)))
    r = evaluate(model, meta, ds, split_indices(meta, ds, "unseen"), probe=False)
    cells = _card_row(REPO / "checkpoints" / "classifier-cxr.md", source)
    assert int(cells[1]) == r["n"]
    assert _pct(cells[2]) == pytest.approx(r["accuracy"], abs=5e-4)


def test_what_diagnose_says_the_model_misses_is_its_cards_unseen_number():
    """The card's `misses` (shown beside a NORMAL or PNEUMONIA answer) is the COVID-19
    sensitivity of the model card's unseen table, and the counts the card's text gives."""
    miss = read_meta(CLASSIFIER)["card"]["misses"]
    assert [m["class"] for m in miss] == ["COVID-19"]
    card = REPO / "checkpoints" / "classifier-cxr.md"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in card.read_text().splitlines() if line.startswith("| all |")]
    unseen = rows[1]   # the second table: patients it never trained or validated on
    assert miss[0]["found"] / miss[0]["of"] == pytest.approx(_pct(unseen[4]), abs=5e-4)
    assert f"Of the {miss[0]['of']} COVID-19 images among these" in card.read_text()
    assert f"it found {miss[0]['found']} ({_pct(unseen[4]):.1%})" in " ".join(card.read_text().split())


@pytest.mark.skipif(not GENERATOR.is_file(), reason="no shipped generator in this copy")
def test_shipped_generator_loads_and_samples():
    from core.gan.models import load_generator

    meta = read_meta(GENERATOR)
    assert meta["kind"] == "generator" and meta["classes"] == ["COVID-19"]
    assert meta["card"]["label"] and (REPO / "checkpoints" / meta["card"]["file"]).is_file()
    model, _ = load_generator(GENERATOR)
    with torch.no_grad():
        x = model(torch.randn(4, model.config.latent_dim))
    assert x.shape == (4, 1, model.config.size, model.config.size) and model.config.size >= 64
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.05


@pytest.mark.skipif(not GENERATOR.is_file(), reason="no shipped generator in this copy")
def test_generator_card_matches_gan_metrics(real_data_v2):
    """The card's relative FD, recomputed with the command the card gives."""
    from core.studies.gan_metrics import GanMetricsConfig, gan_metrics

    card = REPO / "checkpoints" / "generator-cxr-covid.md"
    spec = json.loads(re.search(r"<!-- gan-metrics (\{.*?\}) -->", card.read_text()).group(1))
    result = gan_metrics(GENERATOR, str(real_data_v2), CLASSIFIER, GanMetricsConfig(n=spec["n"]),
                         real_where=tuple(spec["real_where"]), real_split=tuple(spec["real_split"]))
    cells = _card_row(card, "relative FD")
    assert float(cells[1]) == pytest.approx(result["relative_fd"], abs=0.006)
    assert np.isfinite(result["precision"]) and np.isfinite(result["recall"])
