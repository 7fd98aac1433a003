"""SASRec-style recall (Kang & McAuley 2018), the cascade's first stage (V1 §5.1.3: "SASREC [10]
for recall").

    x_j   = E_bhv[j] + P[age_j]                        behaviour tokens (oldest first) + position
    H     = Blocks_{n_layers}(x)  causal self-attention: token j sees tokens ≤ j only
    u     = LayerNorm(H[last]) (+ W_ctx e_user)        the user vector = the most recent state
    score = u · e_ad                                   one dot product per candidate ad

As in SASRec the next item is scored by a dot product with the item embedding; here items are
ads described by their categorical features (there are no item ids among the observable features,
docs/design.md §2), so e_ad is the ad's Eq. 5–6 embedding whose tables are shared with the behaviours'.
Positions count back from the most recent behaviour (``age`` 0 = newest), so sequences of any
length share one table; only the ``max_len`` most recent behaviours are read. With
``use_context`` the request's user/context embedding (profile, hour, cell) is added to u — the
LBS recall needs the hour, which a pure sequence model cannot see. A user with no behaviour gets
the context part only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egakit.baselines.common import require_features
from egakit.batch import RequestBatch
from egakit.model.embedding import FeatureEmbedding


@dataclass
class SASRecConfig:
    """SASRec hyper-parameters.

    d: hidden size (= item embedding size); n_heads: attention heads; n_layers: causal blocks;
    emb_dim: per-feature embedding size before the Eq. 5 projection; max_len: behaviours read
    (the most recent ones); dropout: on the input and inside the blocks; ffn_mult: FFN width
    ``ffn_mult · d``; use_context: add the user/context embedding to the user vector;
    layer_norm_eps: of every LayerNorm.
    """

    d: int = 64
    n_heads: int = 2
    n_layers: int = 2
    emb_dim: int = 16
    max_len: int = 200
    dropout: float = 0.1
    ffn_mult: int = 4
    use_context: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("d", "n_heads", "n_layers", "emb_dim", "max_len", "ffn_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d % self.n_heads:
            raise ValueError(f"SASRecConfig.d={self.d} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")


class CausalBlock(nn.Module):
    """Pre-LN causal self-attention + FFN, each with a residual (SASRec's block)."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.d
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.attn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_mult * d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(config.ffn_mult * d, d)
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x (B, L, d); allowed (B, 1, L, L) bool, True = query i may attend to key j."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).chunk(3, dim=-1)
        split = lambda t: t.view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
        heads = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.out(heads.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """Recall model: ``forward(batch) -> (B, N)`` recall scores (dot products; padding is not masked).

    Args:
        config: :class:`SASRecConfig`.
        vocab_sizes: vocabulary size per name (world.json ``vocab``).
    """

    def __init__(self, config: SASRecConfig, vocab_sizes: Mapping[str, int]) -> None:
        super().__init__()
        self.config = config
        self.embedding = FeatureEmbedding(vocab_sizes, config.d, config.emb_dim)
        self.position = nn.Embedding(config.max_len, config.d)
        self.blocks = nn.ModuleList(CausalBlock(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d, eps=config.layer_norm_eps)
        self.context = nn.Linear(config.d, config.d) if config.use_context else None
        self.input_drop = nn.Dropout(config.dropout)

    def sequence_states(self, e_bhv: Tensor, bhv_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Causal states H (B, L, d) and the read mask (B, L) (valid and among the ``max_len`` newest)."""
        count = bhv_mask.sum(1, keepdim=True)
        order = torch.cumsum(bhv_mask.long(), dim=1) - 1  # 0 = oldest valid behaviour
        age = (count - 1 - order).clamp_min(0)  # 0 = newest
        read = bhv_mask & (age < self.config.max_len)
        x = self.input_drop(e_bhv + self.position(age.clamp_max(self.config.max_len - 1))) * read.unsqueeze(-1)
        length = e_bhv.shape[1]
        idx = torch.arange(length, device=e_bhv.device)
        causal = idx.unsqueeze(1) >= idx.unsqueeze(0)  # (L, L): key j not after query i
        diagonal = torch.eye(length, dtype=torch.bool, device=e_bhv.device)
        allowed = ((causal.unsqueeze(0) & read.unsqueeze(1)) | diagonal).unsqueeze(1)  # every row sees itself
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_norm(x), read

    def user_vector(self, batch: RequestBatch, e_bhv: Tensor, e_user: Tensor) -> Tensor:
        """u (B, d): the state at the newest read behaviour (+ the context projection)."""
        states, read = self.sequence_states(e_bhv, batch.bhv_mask)
        has_any = read.any(1)
        last = (read.long() * torch.arange(read.shape[1], device=read.device)).argmax(1)  # newest read index
        u = states.gather(1, last.view(-1, 1, 1).expand(-1, 1, states.shape[-1])).squeeze(1)
        u = u * has_any.unsqueeze(-1).to(u.dtype)
        if self.context is not None:
            u = u + self.context(e_user)
        return u

    def forward(self, batch: RequestBatch) -> Tensor:
        require_features(batch, cross=False)
        tokens = self.embedding(batch)
        u = self.user_vector(batch, tokens.e_bhv, tokens.e_user)
        return torch.einsum("bd,bnd->bn", u, tokens.e_ad)
