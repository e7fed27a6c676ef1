"""A deep ensemble of trained classifiers (Lakshminarayanan et al. 2017): the members' calibrated
probabilities averaged. Seeds of one configuration disagree on a few images each (on cxr-real
their test accuracies spread over 3 points); averaging them scores the configuration rather
than one draw of its initialisation and shuffling."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from core.errors import UserError

# Checkpoint meta that must agree for the members to be one model on one split.
_SAME = ("classes", "split", "data")


class Ensemble(nn.Module):
    """forward(x) -> log of the mean of softmax(member(x) / T_member): log-probabilities, so
    argmax, softmax and cross-entropy read them like any classifier's logits."""

    def __init__(self, members: list[nn.Module], temperatures: list[float]):
        super().__init__()
        if not members or len(members) != len(temperatures):
            raise UserError("an ensemble needs at least one member, each with a temperature")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32))
        self.config = members[0].config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(m(x).float() / t, 1)
                            for m, t in zip(self.members, self.temperatures)])  # (M, N, K)
        return torch.logsumexp(logp, 0) - math.log(len(self.members))


def load_ensemble(paths: list[str | Path]) -> tuple[Ensemble, dict]:
    """(Ensemble in eval mode, meta) from classifier checkpoints or run dirs. The meta is the
    first member's with temperature 1 (each member's own is inside the ensemble), without its
    OOD statistics, plus "members" (the checkpoint paths) and "member_metas" (each member's
    own meta, OOD tensors included). Raises UserError unless the members share classes, input
    size, data source and patient split: otherwise one member's test images could be
    another's training images."""
    from core.classify.model import find_checkpoint, load_classifier
    from core.config import from_dict, to_dict
    from core.data.config import DataConfig

    def same(meta: dict, key: str):
        if key == "data":  # through the dataclass, so fields added since an older run compare equal
            return to_dict(from_dict(DataConfig, meta.get("data") or {}))
        return meta.get("model", {}).get("size") if key == "model.size" else meta.get(key)

    files = [find_checkpoint(p) for p in paths]
    loaded = [load_classifier(f) for f in files]
    first = loaded[0][1]
    for f, (_, meta) in zip(files[1:], loaded[1:]):
        for key in _SAME + ("model.size",):
            a, b = same(first, key), same(meta, key)
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict):  # name only what differs
                    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
                    a, b = ({k: d.get(k) for k in keys} for d in (a, b))
                raise UserError(f"{f} differs from {files[0]} in {key} ({b!r} vs {a!r}); "
                                f"ensemble members must be trained on the same classes, size, "
                                f"data and patient split")
    model = Ensemble([m for m, _ in loaded],
                     [float(meta.get("temperature") or 1.0) for _, meta in loaded]).eval()
    meta = {k: v for k, v in first.items() if k not in ("ood_tensors", "ood")}
    meta.update(temperature=1.0, members=[str(f) for f in files],
                member_metas=[m for _, m in loaded])
    return model, meta
