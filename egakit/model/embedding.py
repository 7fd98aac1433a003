"""First-order representations (V1 §3.2, Eq. 5–6): categorical ids → d-dimensional tokens.

    a_i = Concat(Emb(f_1(a_i)), …, Emb(f_{N_f}(a_i)))   (Eq. 5)   → projected to d,
    E_ad = [a_1, …, a_N] ∈ R^{N×d}                                  (Eq. 6)

Eq. 6 says E_ad ∈ R^{N×d}, so the concatenation (N_f · ``emb_dim``) is followed by one Linear to d;
the same holds for behaviours (E_bhv ∈ R^{L×d}) and for the user/context vector.

Vocabularies are shared by meaning: a behaviour's ``bhv_category`` looks up the same table as an
ad's ``category`` (DIN-style shared item embeddings), the request's ``hour`` and a behaviour's
``bhv_hour`` share the ``hour`` table, the request's ``geo_cell`` shares the ads' ``geo_cell``.
Explicit cross features (optional, V1 Table 3 "w/ CF") have their own tables and projection; their
embedding is added to E_ad.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from egakit.batch import RequestBatch
from egakit.sim.schema import AD_CATEGORICAL, BEHAVIOUR_CATEGORICAL, CONTEXT_CATEGORICAL, USER_CATEGORICAL

#: Feature column → name of the vocabulary (embedding table) it looks up.
VOCABULARY_OF: dict[str, str] = {
    **{name: name for name in AD_CATEGORICAL},
    **{name: name.removeprefix("bhv_") for name in BEHAVIOUR_CATEGORICAL},
    **{name: name for name in USER_CATEGORICAL + CONTEXT_CATEGORICAL},
}
USER_CONTEXT_FEATURES = USER_CATEGORICAL + CONTEXT_CATEGORICAL


class FirstOrderTokens(NamedTuple):
    """Output of :class:`FeatureEmbedding`.

    e_ad: (B, N, d) — E_ad (Eq. 6), plus the cross-feature embedding when enabled.
    e_bhv: (B, L, d) — E_bhv.
    e_user: (B, d) — user profile + context embedding.
    """

    e_ad: Tensor
    e_bhv: Tensor
    e_user: Tensor


def _check_ids(ids: Tensor, vocab_sizes: Sequence[int], fields: Sequence[str]) -> None:
    """Raise a clear error naming the field for ids outside [0, vocab_size) (one host sync)."""
    if ids.numel() == 0:
        return
    rows = ids.reshape(-1, ids.shape[-1])
    sizes = torch.tensor(list(vocab_sizes), device=ids.device)
    bad_columns = (rows.amin(0) < 0) | (rows.amax(0) >= sizes)
    if bool(bad_columns.any()):
        column = int(bad_columns.nonzero()[0, 0])
        values = ids[..., column]
        where = ((values < 0) | (values >= sizes[column])).nonzero()[0].tolist()
        raise ValueError(
            f"feature {fields[column]!r}: id {values[tuple(where)].item()} at index {where} is outside "
            f"its vocabulary [0, {vocab_sizes[column]})"
        )


def _embed_concat(ids: Tensor, tables: Sequence[nn.Embedding], fields: Sequence[str]) -> Tensor:
    """Eq. 5 before the projection: (…, F) ids → (…, F · emb_dim)."""
    if ids.shape[-1] != len(fields):
        raise ValueError(f"expected {len(fields)} feature columns {tuple(fields)}, got {ids.shape[-1]}")
    _check_ids(ids, [table.num_embeddings for table in tables], fields)
    return torch.cat([table(ids[..., column]) for column, table in enumerate(tables)], dim=-1)


class FieldGroupEmbedding(nn.Module):
    """Eq. 5 for one group of fields: embed each column with its (shared) table, concatenate,
    project to d.  ids (…, F) int64 → (…, d). The tables are owned by :class:`FeatureEmbedding`
    and passed in, so shared vocabularies are stored once."""

    def __init__(self, fields: Sequence[str], emb_dim: int, d: int) -> None:
        super().__init__()
        self.fields = tuple(fields)
        self.proj = nn.Linear(len(self.fields) * emb_dim, d)

    def forward(self, ids: Tensor, tables: Mapping[str, nn.Embedding]) -> Tensor:
        columns = [tables[VOCABULARY_OF[field]] for field in self.fields]
        return self.proj(_embed_concat(ids, columns, self.fields))


class CrossFeatureEmbedding(nn.Module):
    """Explicit cross features (B, N, F_x) → (B, N, d): one table per column, concat, project."""

    def __init__(self, vocab_sizes: Sequence[int], emb_dim: int, d: int) -> None:
        super().__init__()
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        if not self.vocab_sizes:
            raise ValueError("cross_vocab_sizes is empty: pass at least one cross-feature vocabulary size")
        self.tables = nn.ModuleList(nn.Embedding(v, emb_dim) for v in self.vocab_sizes)
        self.fields = tuple(f"cross_feats[{column}]" for column in range(len(self.vocab_sizes)))
        self.proj = nn.Linear(len(self.vocab_sizes) * emb_dim, d)

    def forward(self, ids: Tensor) -> Tensor:
        return self.proj(_embed_concat(ids, list(self.tables), self.fields))


class FeatureEmbedding(nn.Module):
    """Ad, behaviour and user/context embeddings of a :class:`~egakit.batch.RequestBatch` (Eq. 5–6).

    Args:
        vocab_sizes: vocabulary size per vocabulary name (``category, brand, price_level,
            geo_cell, age_bucket, gender, home_cell, hour``).
        d: output size.
        emb_dim: size of each per-feature embedding before the projection.
        cross_vocab_sizes: one vocabulary size per ``cross_feats`` column, or None for no cross
            features.
        id_buckets: > 0 adds an ad-identity embedding, ``cand_ids mod id_buckets`` (the local
            feature service stores one embedding per ad, V1 §3.2), projected to d and added to
            E_ad; 0 turns it off. What an ad is worth beyond its category/brand (the world's
            hidden per-shop and per-ad quality) is learnable only through its identity.
    """

    def __init__(
        self,
        vocab_sizes: Mapping[str, int],
        d: int,
        emb_dim: int,
        cross_vocab_sizes: Optional[Sequence[int]] = None,
        id_buckets: int = 0,
    ) -> None:
        super().__init__()
        if id_buckets < 0:
            raise ValueError(f"id_buckets must be >= 0, got {id_buckets}")
        needed = sorted(set(VOCABULARY_OF.values()))
        missing = [name for name in needed if name not in vocab_sizes]
        if missing:
            raise KeyError(f"vocab_sizes is missing {missing}; it needs every one of {needed}")
        self.tables = nn.ModuleDict({name: nn.Embedding(int(vocab_sizes[name]), emb_dim) for name in needed})
        self.ad = FieldGroupEmbedding(AD_CATEGORICAL, emb_dim, d)
        self.behaviour = FieldGroupEmbedding(BEHAVIOUR_CATEGORICAL, emb_dim, d)
        self.user = FieldGroupEmbedding(USER_CONTEXT_FEATURES, emb_dim, d)
        self.cross = CrossFeatureEmbedding(cross_vocab_sizes, emb_dim, d) if cross_vocab_sizes else None
        self.id_buckets = int(id_buckets)
        self.ad_id = (
            nn.Sequential(nn.Embedding(self.id_buckets, emb_dim), nn.Linear(emb_dim, d, bias=False))
            if self.id_buckets
            else None
        )

    def forward(self, batch: RequestBatch) -> FirstOrderTokens:
        if batch.cand_feats is None:
            raise ValueError(
                "RequestBatch.cand_feats is None: the DataModule must gather candidate features "
                "(on_after_batch_transfer) before the model runs"
            )
        e_ad = self.ad(batch.cand_feats, self.tables)
        if self.ad_id is not None:  # padding ids (−1) map to bucket 0; padding is masked later
            e_ad = e_ad + self.ad_id(batch.cand_ids.clamp_min(0) % self.id_buckets)
        if self.cross is not None:
            if batch.cross_feats is None:
                raise ValueError(
                    "RequestBatch.cross_feats is None but the model uses cross features "
                    "(use_cross_features=True): enable them in the DataModule or turn them off"
                )
            e_ad = e_ad + self.cross(batch.cross_feats)
        return FirstOrderTokens(
            e_ad=e_ad,
            e_bhv=self.behaviour(batch.bhv_feats, self.tables),
            e_user=self.user(batch.user_feats, self.tables),
        )
