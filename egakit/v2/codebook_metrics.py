"""Health metrics of a semantic-id tokenizer: what breaks first in RQ-VAE recommenders.

- usage per level: fraction of the W codes used by at least one item (collapse shows here);
- perplexity per level: exp(entropy) of the code histogram, between 1 (one code) and W (uniform);
- collision rate: fraction of items whose C codes equal an earlier item's (they need a suffix > 0);
- reconstruction error: mean squared error of the RQ-VAE's x̂ against x.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def level_usage(codes: Tensor, codebook_size: int) -> Tensor:
    """Fraction of codes used per level: codes (N, C) -> (C,) float in [0, 1]."""
    return torch.stack([torch.bincount(col, minlength=codebook_size).gt(0).float().mean() for col in codes.T])


def level_perplexity(codes: Tensor, codebook_size: int) -> Tensor:
    """exp(entropy) of each level's code histogram: codes (N, C) -> (C,) float in [1, W]."""
    out = []
    for col in codes.T:
        p = torch.bincount(col, minlength=codebook_size).double() / max(col.numel(), 1)
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        out.append(entropy.exp().float())
    return torch.stack(out)


def collision_rate(codes: Tensor) -> float:
    """1 - (distinct code tuples / items): codes (N, C) -> the fraction of items that share their
    tuple with an earlier item."""
    if codes.shape[0] == 0:
        return 0.0
    return 1.0 - torch.unique(codes, dim=0).shape[0] / codes.shape[0]


@dataclass(frozen=True)
class TokenizerReport:
    """Usage and perplexity per level, the collision rate and the reconstruction MSE."""

    usage: tuple[float, ...]
    perplexity: tuple[float, ...]
    collision_rate: float
    reconstruction_mse: Optional[float] = None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        usage = ", ".join(f"{u:.3f}" for u in self.usage)
        perplexity = ", ".join(f"{p:.1f}" for p in self.perplexity)
        mse = "" if self.reconstruction_mse is None else f", reconstruction MSE {self.reconstruction_mse:.4g}"
        return f"usage per level [{usage}], perplexity per level [{perplexity}], collision rate {self.collision_rate:.4f}{mse}"


def codes_report(codes: Tensor, codebook_size: int, reconstruction_mse: Optional[float] = None) -> TokenizerReport:
    """:class:`TokenizerReport` of item codes (N, C)."""
    return TokenizerReport(
        usage=tuple(level_usage(codes, codebook_size).tolist()),
        perplexity=tuple(level_perplexity(codes, codebook_size).tolist()),
        collision_rate=collision_rate(codes),
        reconstruction_mse=reconstruction_mse,
    )


@torch.no_grad()
def tokenizer_report(model, embeddings: Tensor, batch_size: int = 4096) -> TokenizerReport:
    """Tokenise every item of ``embeddings`` (N, D) with an :class:`~egakit.v2.rqvae.RQVAE` and
    report its codebook health and reconstruction MSE (x̂ decoded from the codes)."""
    codes = model.tokenize(embeddings, batch_size=batch_size)
    squared_error = sum(
        F.mse_loss(model.decode_codes(c), x, reduction="sum").item()
        for c, x in zip(codes.split(batch_size), embeddings.split(batch_size))
    )
    mse = squared_error / max(embeddings.numel(), 1)
    return codes_report(codes, model.config.codebook_size, mse)
