"""core/classify/modelcard.py: a shipped copy keeps the weights and configs, carries the card, drops the
run path; a card of the wrong shape is refused with one line; the CLI."""

import json

import pytest
import torch

from core import __main__ as cli
from core.checkpoint import load_model, read_meta
from core.classify.model import ClassifierConfig, build_classifier, load_classifier, save_classifier
from core.errors import UserError
from core.classify.modelcard import read_card

CARD = {"label": "a test model", "summary": "Trained on nothing.", "results": ["accuracy 1"],
        "limits": "none known", "file": "test.md",
        "misses": [{"class": "COVID-19", "found": 1, "of": 4, "where": "other hospitals"}]}


def test_stamp_keeps_the_model_and_adds_the_card(tmp_path):
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(size=32, width=0.25))
    src = save_classifier(tmp_path / "best.safetensors", model, {"run": "/somewhere/run-1"})
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps(CARD))
    out = tmp_path / "shipped.safetensors"
    assert cli.main(["model-card", "--checkpoint", str(src), "--card", str(card_file),
                     "--out", str(out)]) == 0
    meta = read_meta(out)
    assert meta["card"] == CARD and "run" not in meta
    shipped, _ = load_classifier(out)
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(shipped(x), model.eval()(x))
    assert load_model(out)[0].keys() == load_model(src)[0].keys()


@pytest.mark.parametrize("text,needle", [
    ("not json", "cannot read the card"),
    ("[1, 2]", "a card is a JSON object"),
    ('{"label": "x", "run": "y"}', "a card is a JSON object"),
    ('{"results": "one line"}', "'results' must be a list of strings"),
    ('{"summary": 3}', "'summary' must be a string"),
    ('{"misses": {"class": "COVID-19"}}', "'misses' must be a list"),
    ('{"misses": [{"class": "COVID-19", "found": 5, "of": 4, "where": "x"}]}', "found <= of"),
    ('{"misses": [{"class": "COVID-19", "found": "1", "of": 4, "where": "x"}]}', "found <= of"),
])
def test_bad_cards_are_refused(tmp_path, text, needle):
    path = tmp_path / "card.json"
    path.write_text(text)
    with pytest.raises(UserError, match=needle):
        read_card(path)
