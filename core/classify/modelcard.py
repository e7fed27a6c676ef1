"""Shipping a trained model: a copy of its snapshot with a short card in its metadata (what it was
trained on, its measured results, its limits, where its full model card is), which the Diagnose,
Home and Samples pages show beside its output; the `model-card` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.checkpoint import load_model, save_model
from core.errors import UserError

CARD_FIELDS = ("label", "summary", "results", "limits", "file", "misses")
# One class the model mostly misses on images unlike its training set, measured: `found` of
# `of` such images called that class, on images from `where` ("hospitals it never trained
# on"). Diagnose says it beside any other answer, where a reader cannot miss it.
MISS_FIELDS = {"class": str, "found": int, "of": int, "where": str}


def read_card(path: str | Path) -> dict:
    """A card JSON file: {"label", "summary", "results": [lines], "limits", "file", "misses":
    [{"class", "found", "of", "where"}]}; only these keys, each a string (results: a list of
    strings; misses: a list of MISS_FIELDS objects, 0 <= found <= of, of > 0)."""
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"cannot read the card {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(card, dict) or set(card) - set(CARD_FIELDS):
        raise UserError(f"{path}: a card is a JSON object with the keys {', '.join(CARD_FIELDS)}")
    for key, value in card.items():
        if key == "misses":
            _check_misses(path, value)
            continue
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) \
            if key == "results" else isinstance(value, str)
        if not ok:
            raise UserError(f"{path}: {key!r} must be " +
                            ("a list of strings" if key == "results" else "a string"))
    return card


def _check_misses(path, misses) -> None:
    shape = ", ".join(MISS_FIELDS)
    if not isinstance(misses, list):
        raise UserError(f"{path}: 'misses' must be a list of objects with {shape}")
    for m in misses:
        if not (isinstance(m, dict) and set(m) == set(MISS_FIELDS)
                and all(type(m[k]) is t for k, t in MISS_FIELDS.items())
                and 0 <= m["found"] <= m["of"] and m["of"] > 0):
            raise UserError(f"{path}: each of 'misses' is an object with {shape} "
                            f"(0 <= found <= of, of > 0), not {m!r}")


def stamp(checkpoint: str | Path, card: dict, out: str | Path) -> Path:
    """Write `out`: the snapshot at `checkpoint` (weights, OOD statistics, configs) with `card`
    in its metadata and the machine-specific run paths dropped."""
    state, meta = load_model(checkpoint)
    meta = {**meta, "card": card}
    meta.pop("run", None)
    return save_model(out, state, meta)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="the snapshot to ship (.safetensors)")
    parser.add_argument("--card", required=True, help="card JSON (label, summary, results, "
                                                      "limits, file)")
    parser.add_argument("--out", required=True, help="where to write the shipped copy")


def main(args: argparse.Namespace) -> int:
    path = stamp(args.checkpoint, read_card(args.card), args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)")
    return 0
