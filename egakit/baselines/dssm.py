"""DSSM two-tower pre-ranking (Huang et al. 2013), the cascade's second stage (V1 §5.1.3: "DSSM
[8] for pre-ranking"; its cost is Eq. 27 of Appendix A.1).

    u = Tower_user([e_user; mean_valid(E_bhv)]),   a_n = Tower_ad(e_ad,n)
    logit_n = w · cos(u, a_n) + c                 (w > 0 and c learnable),  pCTR = σ(logit)

The two towers never see each other's features, so the ad side can be pre-computed and a request
costs one user tower plus N dot products — which is why the towers cannot read the user × ad
cross features (those are DIN's, the rank stage's). Cosine similarity as in DSSM; the learnable
scale and offset turn it into a CTR logit trained with BCE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egakit.baselines.common import masked_mean, require_features
from egakit.batch import RequestBatch
from egakit.model.embedding import FeatureEmbedding
from egakit.model.heads import mlp


@dataclass
class DSSMConfig:
    """DSSM hyper-parameters.

    d: embedding size of the inputs (Eq. 5 projection); emb_dim: per-feature embedding size;
    tower_hidden: hidden sizes of each tower's MLP; out_dim: tower output size; scale_init: the
    initial cosine scale w (learned in log space); eps: of the cosine normalisation;
    id_buckets: ad-identity embedding buckets of the ad tower (0 = none), as EGA-V1's.
    """

    d: int = 64
    emb_dim: int = 16
    tower_hidden: tuple[int, ...] = (128, 64)
    out_dim: int = 32
    scale_init: float = 5.0
    eps: float = 1e-6
    id_buckets: int = 0

    def __post_init__(self) -> None:
        if self.id_buckets < 0:
            raise ValueError(f"DSSMConfig.id_buckets must be >= 0, got {self.id_buckets}")
        self.tower_hidden = tuple(int(x) for x in self.tower_hidden)
        for name in ("d", "emb_dim", "out_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"DSSMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.scale_init <= 0:
            raise ValueError(f"DSSMConfig.scale_init must be > 0, got {self.scale_init}")


class DSSM(nn.Module):
    """Pre-rank model: ``forward(batch) -> (B, N)`` CTR logits (padding is not masked)."""

    def __init__(self, config: DSSMConfig, vocab_sizes: Mapping[str, int]) -> None:
        super().__init__()
        self.config = config
        self.embedding = FeatureEmbedding(vocab_sizes, config.d, config.emb_dim, id_buckets=config.id_buckets)
        self.user_tower = mlp(2 * config.d, config.tower_hidden, config.out_dim)
        self.ad_tower = mlp(config.d, config.tower_hidden, config.out_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.scale_init)))
        self.offset = nn.Parameter(torch.zeros(()))

    def towers(self, batch: RequestBatch) -> tuple[Tensor, Tensor]:
        """Unit-norm user (B, D) and ad (B, N, D) vectors."""
        require_features(batch, cross=False)
        tokens = self.embedding(batch)
        user_in = torch.cat([tokens.e_user, masked_mean(tokens.e_bhv, batch.bhv_mask)], dim=-1)
        u = F.normalize(self.user_tower(user_in), dim=-1, eps=self.config.eps)
        a = F.normalize(self.ad_tower(tokens.e_ad), dim=-1, eps=self.config.eps)
        return u, a

    def forward(self, batch: RequestBatch) -> Tensor:
        u, a = self.towers(batch)
        return torch.exp(self.log_scale) * torch.einsum("bd,bnd->bn", u, a) + self.offset
