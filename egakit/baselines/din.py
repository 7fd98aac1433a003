"""DIN ranking (Zhou et al. 2018), the cascade's third stage (V1 §5.1.3: "DIN [36] for ranking").

    w_nj  = MLP_att([e_n; b_j; e_n − b_j; e_n ⊙ b_j])     activation unit, Dice, no softmax
    v_n   = Σ_j w_nj b_j                                   the user's interest in candidate n
    logit = MLP([e_user; v_n; e_n (; x_n)])                Dice hidden layers, pCTR = σ(logit)

e_n is the candidate's Eq. 5–6 embedding, b_j the behaviours', e_user the profile + context; x_n
the embedding of the **explicit cross features** (distance bucket, hour × category, behaviour
count in the category — :mod:`egakit.features.cross`) when ``use_cross_features`` (V1 Table 3:
the ``w/o CF`` rows turn them off). DIN keeps the un-normalised weights (no softmax) so the
interest's magnitude says how strongly the history supports the candidate.

The activation unit's first layer is applied as ``W_q e + W_k b + W_p (e ⊙ b)`` — the same linear
function of the concatenation (its e − b block folds into W_q and W_k), without materialising the
4d-wide (N × L) input. At evaluation candidates are processed ``cand_chunk`` at a time, so memory
stays linear in N for any L.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from egakit.baselines.common import require_features
from egakit.batch import RequestBatch
from egakit.model.dice import Dice
from egakit.model.embedding import CrossFeatureEmbedding, FeatureEmbedding


# Evaluation chunk budget, in elements of one activation-unit temporary. Measured here (2-core AMD
# EPYC, 1 thread, B = 4, L = 50, hidden 32/16, 3.3k candidates): 0.41 s at 512 candidates per
# chunk (3.3M elements), 0.16 s at 128, 0.13 s at 64 (410k), 0.11 s at 32 (205k), 0.13 s at 16:
# the elementwise Dice passes are memory-bound once a temporary leaves the cache.
EVAL_CHUNK_ELEMENTS = 1 << 18


@dataclass
class DINConfig:
    """DIN hyper-parameters.

    d: embedding size (Eq. 5 projection); emb_dim: per-feature embedding size;
    attention_hidden: hidden sizes of the activation unit (DIN: 80, 40); mlp_hidden: hidden sizes
    of the prediction MLP (DIN: 200, 80); use_cross_features: read ``cross_feats``;
    cand_chunk: candidates per chunk at evaluation; dice_eps / dice_momentum: Dice's;
    id_buckets: ad-identity embedding buckets (0 = none), as EGA-V1's
    (:class:`~egakit.model.embedding.FeatureEmbedding`).
    """

    d: int = 32
    emb_dim: int = 16
    attention_hidden: tuple[int, ...] = (80, 40)
    mlp_hidden: tuple[int, ...] = (200, 80)
    use_cross_features: bool = True
    cand_chunk: int = 512
    dice_eps: float = 1e-8
    dice_momentum: float = 0.1
    id_buckets: int = 0

    def __post_init__(self) -> None:
        if self.id_buckets < 0:
            raise ValueError(f"DINConfig.id_buckets must be >= 0, got {self.id_buckets}")
        self.attention_hidden = tuple(int(x) for x in self.attention_hidden)
        self.mlp_hidden = tuple(int(x) for x in self.mlp_hidden)
        if not self.attention_hidden or not self.mlp_hidden:
            raise ValueError("DINConfig.attention_hidden and mlp_hidden need at least one hidden layer each")
        for name in ("d", "emb_dim", "cand_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"DINConfig.{name} must be >= 1, got {getattr(self, name)}")


class DiceMLP(nn.Module):
    """Linear → Dice → … → Linear(1); Dice statistics over the rows of ``mask`` only."""

    def __init__(self, in_dim: int, hidden: Sequence[int], *, eps: float, momentum: float, first: Optional[nn.Module] = None):
        super().__init__()
        widths = [in_dim, *hidden]
        self.first = first if first is not None else nn.Linear(widths[0], widths[1])
        self.linears = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(1, len(hidden)))
        self.acts = nn.ModuleList(Dice(w, eps=eps, momentum=momentum) for w in hidden)
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, x: Tensor, mask: Tensor, pre_activated: Optional[Tensor] = None) -> Tensor:
        """x (…, in) (or the first layer's output ``pre_activated``), mask (…) → (…)."""
        h = self.first(x) if pre_activated is None else pre_activated
        h = self.acts[0](h, mask)
        for linear, act in zip(self.linears, self.acts[1:]):
            h = act(linear(h), mask)
        return self.head(h).squeeze(-1)


class ActivationUnit(nn.Module):
    """DIN's activation unit: weights (B, n, L) of behaviours for each candidate."""

    def __init__(self, d: int, hidden: Sequence[int], *, eps: float, momentum: float) -> None:
        super().__init__()
        self.w_q = nn.Linear(d, hidden[0])
        self.w_k = nn.Linear(d, hidden[0], bias=False)
        self.w_p = nn.Linear(d, hidden[0], bias=False)
        self.mlp = DiceMLP(4 * d, hidden, eps=eps, momentum=momentum, first=nn.Identity())

    def forward(self, e_ad: Tensor, e_bhv: Tensor, mask: Tensor) -> Tensor:
        """e_ad (B, n, d), e_bhv (B, L, d), mask (B, n, L) → weights (B, n, L), 0 where masked."""
        first = (
            self.w_q(e_ad).unsqueeze(2)
            + self.w_k(e_bhv).unsqueeze(1)
            + self.w_p(e_ad.unsqueeze(2) * e_bhv.unsqueeze(1))
        )
        return self.mlp(None, mask, pre_activated=first) * mask.to(first.dtype)


class DIN(nn.Module):
    """Rank model: ``forward(batch) -> (B, N)`` CTR logits (padding is not masked).

    Args:
        config: :class:`DINConfig`.
        vocab_sizes: vocabulary size per name (world.json ``vocab``).
        cross_vocab_sizes: one size per ``cross_feats`` column; needed with ``use_cross_features``.
    """

    def __init__(self, config: DINConfig, vocab_sizes: Mapping[str, int], cross_vocab_sizes: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        if config.use_cross_features and not cross_vocab_sizes:
            raise ValueError("DIN with use_cross_features=True needs cross_vocab_sizes (one per cross_feats column)")
        self.config = config
        d = config.d
        dice = dict(eps=config.dice_eps, momentum=config.dice_momentum)
        self.embedding = FeatureEmbedding(vocab_sizes, d, config.emb_dim, id_buckets=config.id_buckets)
        self.cross = CrossFeatureEmbedding(cross_vocab_sizes, config.emb_dim, d) if config.use_cross_features else None
        self.attention = ActivationUnit(d, config.attention_hidden, **dice)
        n_inputs = 4 if config.use_cross_features else 3
        self.mlp = DiceMLP(n_inputs * d, config.mlp_hidden, **dice)

    def eval_chunk(self, batch: int, behaviours: int) -> int:
        """Candidates per evaluation chunk: ``config.cand_chunk`` at most, and no more than
        EVAL_CHUNK_ELEMENTS elements per (B, chunk, L, attention_hidden[0]) temporary."""
        per_candidate = max(1, batch * behaviours * self.config.attention_hidden[0])
        return max(1, min(self.config.cand_chunk, EVAL_CHUNK_ELEMENTS // per_candidate))

    def _chunk(self, e_ad: Tensor, cross: Optional[Tensor], e_bhv: Tensor, e_user: Tensor, cand_mask: Tensor, bhv_mask: Tensor) -> Tensor:
        pair_mask = cand_mask.unsqueeze(2) & bhv_mask.unsqueeze(1)
        weights = self.attention(e_ad, e_bhv, pair_mask)
        interest = torch.einsum("bnl,bld->bnd", weights, e_bhv)
        parts = [e_user.unsqueeze(1).expand_as(e_ad), interest, e_ad]
        if cross is not None:
            parts.append(cross)
        return self.mlp(torch.cat(parts, dim=-1), cand_mask)

    def forward(self, batch: RequestBatch) -> Tensor:
        require_features(batch, cross=self.cross is not None)
        tokens = self.embedding(batch)
        cross = self.cross(batch.cross_feats) if self.cross is not None else None
        n = tokens.e_ad.shape[1]
        # Training statistics (Dice) must cover the whole batch; evaluation is chunked over N so
        # that each (B, chunk, L, hidden) activation-unit temporary stays in cache.
        chunk = n if self.training else self.eval_chunk(tokens.e_ad.shape[0], tokens.e_bhv.shape[1])
        outs = []
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            outs.append(
                self._chunk(
                    tokens.e_ad[:, sl], None if cross is None else cross[:, sl], tokens.e_bhv, tokens.e_user,
                    batch.cand_mask[:, sl], batch.bhv_mask,
                )
            )
        return torch.cat(outs, dim=1) if outs else tokens.e_ad.new_zeros(tokens.e_ad.shape[:2])
