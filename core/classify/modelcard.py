"""Shipping a trained model: a copy of its snapshot with a short card in its metadata (what it was
trained on, its measured results, its limits, where its full model card is), which the Diagnose,
Home and Samples pages show beside its output; the `model-card` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.checkpoint import load_model, save_model
from core.errors import UserError

CARD_FIELDS = ("label", "summary", "results", "limits", "file")


def read_card(path: str | Path) -> dict:
    """A card JSON file: {"label", "summary", "results": [lines], "limits", "file"}; only these
    keys, each a string (results: a list of strings)."""
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"cannot read the card {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(card, dict) or set(card) - set(CARD_FIELDS):
        raise UserError(f"{path}: a card is a JSON object with the keys {', '.join(CARD_FIELDS)}")
    for key, value in card.items():
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) \
            if key == "results" else isinstance(value, str)
        if not ok:
            raise UserError(f"{path}: {key!r} must be " +
                            ("a list of strings" if key == "results" else "a string"))
    return card


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
