"""A class-conditional source adversary for the classifier (`--source-adversary W`): gradient
reversal on the penultimate features, an attempt at the source shortcut."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import UserError


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class SourceAdversary(torch.nn.Module):
    """Guesses each training image's source (metadata "source") from its penultimate features
    and its true class, through a gradient reversal: the better it guesses, the more the
    features are pushed to hide the source within a class (a class-conditional form of Ganin &
    Lempitsky's domain-adversarial training). An attempt at the source shortcut the shortcut
    probe measures; docs/results.md has what it did."""

    def __init__(self, n_features: int, n_classes: int, sources: list[str], weight: float, device):
        super().__init__()
        names = sorted(set(sources))
        if len(names) < 2:
            raise UserError("source_adversary needs training images from two sources or more "
                            "(metadata column 'source')")
        self.source = torch.tensor([names.index(s) for s in sources], device=device)
        self.n_classes, self.weight = n_classes, weight
        self.net = torch.nn.Sequential(torch.nn.Linear(n_features + n_classes, 64),
                                       torch.nn.ReLU(), torch.nn.Linear(64, len(names))).to(device)

    def loss(self, features: torch.Tensor, y: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.n_classes).float()
        guess = self.net(torch.cat([_GradientReversal.apply(features, self.weight), onehot], 1))
        return F.cross_entropy(guess, self.source[i])
