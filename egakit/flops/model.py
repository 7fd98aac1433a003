"""FLOP formulas for what this project actually runs (``egakit.model``), module by module.

Counting rule: the one of ``torch.utils.flop_counter.FlopCounterMode``. A matmul
``(M × K) @ (K × N)`` costs ``2·M·N·K``; biases, activations (Dice, GELU, sigmoid), softmax,
LayerNorm, masking and reductions cost nothing. The fused kernels count as their registered
formulas: ``ega::cluster_aggregate`` ``8·B·H·N·N_c·d_h`` forward / ``18·…`` backward,
``ega::slot_argmax`` ``2·B·N·K·d`` / ``6·…`` (see ``kernels/``). Eq. 9 goes through
``scaled_dot_product_attention``: ``4·B·H·N_q·N_kv·d_h`` forward (QKᵀ and PV), ``10·…`` backward.
Everything is counted on the *padded* lengths (the modules compute padding rows and zero them).

Every formula returns a :class:`Flops`, split by the kind of op because each kind has its own
backward cost; ``.forward`` is the total of a forward pass and ``.train`` forward + backward. The
backward assumes every matmul input requires grad (true inside the model in training): a dense
matmul's backward is two matmuls of the same size (grad input, grad weight).

Keyword arguments use the :class:`~egakit.model.EGAV1Config` field names (``d, n_heads,
n_clusters, m, m_c, m_e, K, ffn_mult, feature_emb_dim, ctr_mlp, eval_mlp, pay_mlp, variant``)
plus the shapes ``B`` (requests), ``N`` (padded candidates), ``L`` (padded behaviours);
:func:`for_config` fills them from a config.

Symbols below: d_h = d / n_heads, H = n_heads, N_c = n_clusters, F = ffn_mult.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional, Sequence

from egakit.model.recformer import VARIANT_LAYOUT
from egakit.sim.schema import AD_CATEGORICAL, BEHAVIOUR_CATEGORICAL, CONTEXT_CATEGORICAL, USER_CATEGORICAL

# Backward / forward ratios per kind of op (see the module docstring).
DENSE_BACKWARD = 2.0  # grad input + grad weight, each the size of the forward matmul
AGGREGATE_BACKWARD = 18.0 / 8.0  # egakit.kernels.cluster_aggregate: 18 vs 8 · B·H·N·N_c·d_h
ATTENTION_BACKWARD = 10.0 / 4.0  # SDPA: 5 matmuls vs 2 (recompute QKᵀ, dP, dV, dQ, dK)
SLOT_BACKWARD = 3.0  # egakit.kernels.slot_argmax: 6 vs 2 · B·N·K·d

# Feature columns per group (egakit.sim.schema): ads 5, behaviours 5, user 3 + context 2.
AD_FIELDS = len(AD_CATEGORICAL)
BEHAVIOUR_FIELDS = len(BEHAVIOUR_CATEGORICAL)
USER_CONTEXT_FIELDS = len(USER_CATEGORICAL) + len(CONTEXT_CATEGORICAL)

@dataclass(frozen=True)
class Flops:
    """Forward FLOPs split by op kind: ``dense`` (Linear, bmm, einsum), ``aggregate``
    (``ega::cluster_aggregate``), ``attention`` (SDPA, Eq. 9 and the evaluator), ``slot``
    (``ega::slot_argmax``). Supports ``+`` and multiplication by a number."""

    dense: float = 0
    aggregate: float = 0
    attention: float = 0
    slot: float = 0

    def __add__(self, other: "Flops") -> "Flops":
        return Flops(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, factor: float) -> "Flops":
        return Flops(*(getattr(self, f.name) * factor for f in fields(self)))

    __rmul__ = __mul__

    @property
    def forward(self) -> float:
        """FLOPs of one forward pass."""
        return self.dense + self.aggregate + self.attention + self.slot

    @property
    def backward(self) -> float:
        """FLOPs of the backward pass (every input requiring grad)."""
        return (
            DENSE_BACKWARD * self.dense
            + AGGREGATE_BACKWARD * self.aggregate
            + ATTENTION_BACKWARD * self.attention
            + SLOT_BACKWARD * self.slot
        )

    @property
    def train(self) -> float:
        """Forward + backward."""
        return self.forward + self.backward

    def total(self, mode: str = "forward") -> float:
        """``mode`` = ``"forward"`` or ``"train"``."""
        if mode not in ("forward", "train"):
            raise ValueError(f"mode must be 'forward' or 'train', got {mode!r}")
        return self.forward if mode == "forward" else self.train

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"forward": self.forward, "train": self.train}


ZERO = Flops()


def linear(rows: float, d_in: float, d_out: float) -> Flops:
    """``rows`` vectors through Linear(d_in → d_out): ``2·rows·d_in·d_out``."""
    return Flops(dense=2 * rows * d_in * d_out)


def mlp(rows: float, d_in: int, hidden: Sequence[int], d_out: int = 1) -> Flops:
    """``egakit.model.heads.mlp``: Linear layers d_in → hidden… → d_out over ``rows`` vectors."""
    widths = [d_in, *hidden, d_out]
    return sum((linear(rows, a, b) for a, b in zip(widths[:-1], widths[1:])), ZERO)


# ---------------------------------------------------------------------------------------------
# Embedding (Eq. 5–6)
# ---------------------------------------------------------------------------------------------
def feature_embedding(
    *, N: int, L: int, d: int, feature_emb_dim: int, B: int = 1, n_cross_fields: int = 0, id_buckets: int = 0
) -> Flops:
    """FeatureEmbedding's projections (the table lookups cost nothing):
    ads ``2·B·N·(5e)·d``, behaviours ``2·B·L·(5e)·d``, user + context ``2·B·(5e)·d``, with
    ``n_cross_fields`` explicit cross features ``2·B·N·(F_x e)·d`` and with an ad-identity
    embedding (``id_buckets`` > 0) ``2·B·N·e·d`` (e = feature_emb_dim)."""
    e = feature_emb_dim
    out = linear(B * N, AD_FIELDS * e, d) + linear(B * L, BEHAVIOUR_FIELDS * e, d) + linear(B, USER_CONTEXT_FIELDS * e, d)
    if n_cross_fields:
        out = out + linear(B * N, n_cross_fields * e, d)
    if id_buckets:
        out = out + linear(B * N, e, d)
    return out


# ---------------------------------------------------------------------------------------------
# Cluster attention (Eq. 7–14, docs/design.md §3.1)
# ---------------------------------------------------------------------------------------------
def cluster_aggregation(*, N: int, d: int, n_clusters: int, B: int = 1) -> Flops:
    """One ``egakit.kernels.cluster_aggregate`` call over N rows (Eq. 11): logits ``K Cᵀ`` and
    ``Pᵀ[Q|K|V]``, ``8·B·H·N·N_c·d_h = 8·B·N·N_c·d``."""
    return Flops(aggregate=8 * B * N * n_clusters * d)


def cluster_attention(
    *,
    N_q: int,
    d: int,
    n_heads: int,
    n_clusters: int,
    N_kv: Optional[int] = None,
    query_gating: bool = True,
    B: int = 1,
) -> Flops:
    """``ClusterAttention``: self (``N_kv=None``) or cross (queries N_q, keys / values N_kv).

    - Eq. 7 projections: Q ``2·B·N_q·d²``, K|V ``4·B·N_kv·d²``;
    - Eq. 11 aggregation: ``8·B·N_kv·N_c·d``; cross with query gating adds the queries' own
      aggregation ``8·B·N_q·N_c·d``;
    - Eq. 13–14 per-head f_k2, f_v2: ``2·B·N_c·d·d_h`` per call, 4 calls (2 without gating);
    - Eq. 12 gates (with gating): affinity ``A_q A_kᵀ`` ``2·B·N_c²·d`` and two Linear(N_c → 1)
      ``2 · 2·B·H·N_c²``;
    - Eq. 9 attention to the N_c surrogates: ``4·B·N_q·N_c·d``;
    - Eq. 10 output projection ``2·B·N_q·d²``.
    """
    is_self = N_kv is None
    n_kv = N_q if is_self else N_kv
    d_head = d // n_heads
    out = linear(B * N_q, d, d) + linear(B * n_kv, d, 2 * d) + linear(B * N_q, d, d)
    out = out + cluster_aggregation(N=n_kv, d=d, n_clusters=n_clusters, B=B)
    if query_gating and not is_self:
        out = out + cluster_aggregation(N=N_q, d=d, n_clusters=n_clusters, B=B)
    headwise_calls = 4 if query_gating else 2
    out = out + Flops(dense=headwise_calls * 2 * B * n_clusters * d * d_head)
    if query_gating:
        affinity = 2 * B * n_clusters * n_clusters * d
        gates = 2 * (2 * B * n_heads * n_clusters * n_clusters)
        out = out + Flops(dense=affinity + gates)
    return out + Flops(attention=4 * B * N_q * n_clusters * d)


def feed_forward(*, N: int, d: int, ffn_mult: int = 4, B: int = 1) -> Flops:
    """f_out of Eq. 15, d → F·d → d: ``4·F·B·N·d²`` (16·B·N·d² at F = 4)."""
    return linear(B * N, d, ffn_mult * d) + linear(B * N, ffn_mult * d, d)


def gcf_layer(*, N: int, d: int, n_heads: int, n_clusters: int, ffn_mult: int = 4, B: int = 1) -> Flops:
    """One GCF layer (Eq. 7–15) over N tokens: self cluster attention + FFN.
    Leading terms ``12·B·N·N_c·d + 24·B·N·d²`` at F = 4 (Eq. 30 writes ``10·N·N_c·d + 24·N·d²``)."""
    return cluster_attention(N_q=N, d=d, n_heads=n_heads, n_clusters=n_clusters, B=B) + feed_forward(
        N=N, d=d, ffn_mult=ffn_mult, B=B
    )


def pointwise_layer(*, N: int, d: int, ffn_mult: int = 4, B: int = 1) -> Flops:
    """The −gcf ablation's FFN-only layer."""
    return feed_forward(N=N, d=d, ffn_mult=ffn_mult, B=B)


def mif_exchange(
    *,
    N: int,
    L: int,
    d: int,
    n_heads: int,
    n_clusters: int,
    target: bool = True,
    context: bool = True,
    point_wise_target: bool = False,
    B: int = 1,
) -> Flops:
    """One MIF exchange: target attention (N ads query L behaviours) + context attention
    (L behaviours query N ads), both cross cluster attention (no FFN)."""
    out = ZERO
    if target:
        out = out + cluster_attention(
            N_q=N, N_kv=L, d=d, n_heads=n_heads, n_clusters=n_clusters, query_gating=not point_wise_target, B=B
        )
    if context:
        out = out + cluster_attention(N_q=L, N_kv=N, d=d, n_heads=n_heads, n_clusters=n_clusters, B=B)
    return out


def recformer(
    *,
    N: int,
    L: int,
    d: int,
    n_heads: int,
    n_clusters: int,
    m: int,
    m_c: int,
    variant: str = "full",
    broadcast_user_to_ads: bool = True,
    ffn_mult: int = 4,
    B: int = 1,
) -> Flops:
    """RecFormer: m ad layers (GCF, or FFN-only for ``no_gcf``), m behaviour GCF layers,
    ⌈m / m_c⌉ MIF exchanges (variant-dependent), an optional final point-wise target attention,
    the user broadcast ``2·B·d²`` and the user summary Linear(2d → d) ``4·B·d²``."""
    if variant not in VARIANT_LAYOUT:
        raise ValueError(f"variant must be one of {tuple(VARIANT_LAYOUT)}, got {variant!r}")
    if m < 1 or m_c < 1:
        raise ValueError(f"m and m_c must be >= 1, got m={m}, m_c={m_c}")
    ads_gcf, bhv_stack, target, context, point_wise_target, final_target = VARIANT_LAYOUT[variant]
    sizes = dict(d=d, n_heads=n_heads, n_clusters=n_clusters, B=B)
    ad_layer = gcf_layer(N=N, ffn_mult=ffn_mult, **sizes) if ads_gcf else pointwise_layer(N=N, d=d, ffn_mult=ffn_mult, B=B)
    out = m * ad_layer
    if bhv_stack:
        out = out + m * gcf_layer(N=L, ffn_mult=ffn_mult, **sizes)
    if target or context:
        m_k = -(-m // m_c)
        out = out + m_k * mif_exchange(
            N=N, L=L, target=target, context=context, point_wise_target=point_wise_target, **sizes
        )
    if final_target:
        out = out + mif_exchange(N=N, L=L, target=True, context=False, point_wise_target=True, **sizes)
    if broadcast_user_to_ads:
        out = out + linear(B, d, d)
    return out + linear(B, 2 * d, d)


# ---------------------------------------------------------------------------------------------
# Heads and AucFormer (Eq. 16–19)
# ---------------------------------------------------------------------------------------------
def ctr_head(*, N: int, d: int, ctr_mlp: Sequence[int] = (128, 32), B: int = 1) -> Flops:
    """MLP_ctr([h_i; e_u]) (Eq. 16) with the first layer split: ``2·B·N·d·h_0`` for the ads,
    ``2·B·d·h_0`` for the user (once per request), then h_0 → … → 1 over the N ads."""
    hidden = tuple(ctr_mlp)
    return linear(B * N, d, hidden[0]) + linear(B, d, hidden[0]) + mlp(B * N, hidden[0], hidden[1:], 1)


def slot_tokens(
    *, N: int, d: int, n_heads: int, n_clusters: int, K: int, m_e: int, ffn_mult: int = 4, B: int = 1
) -> Flops:
    """Generator slot tokens T (Eq. 17): user → slots ``2·B·d²``, m_e cross blocks (K slot
    queries over the N ads, cross cluster attention + FFN over K) and the output Linear ``2·B·K·d²``."""
    block = cluster_attention(N_q=K, N_kv=N, d=d, n_heads=n_heads, n_clusters=n_clusters, B=B) + feed_forward(
        N=K, d=d, ffn_mult=ffn_mult, B=B
    )
    return linear(B, d, d) + m_e * block + linear(B * K, d, d)


def slot_scores(*, N: int, d: int, K: int, B: int = 1) -> Flops:
    """``egakit.kernels.slot_argmax``: the scores h·tᵀ, ``2·B·N·K·d``."""
    return Flops(slot=2 * B * N * K * d)


def generator(
    *, N: int, d: int, n_heads: int, n_clusters: int, K: int, m_e: int, ffn_mult: int = 4, B: int = 1
) -> Flops:
    """Generator forward (Eq. 17): :func:`slot_tokens` + :func:`slot_scores`."""
    return slot_tokens(
        N=N, d=d, n_heads=n_heads, n_clusters=n_clusters, K=K, m_e=m_e, ffn_mult=ffn_mult, B=B
    ) + slot_scores(N=N, d=d, K=K, B=B)


def evaluator(
    *, d: int, n_heads: int, K: int, m_e: int, eval_mlp: Sequence[int] = (128, 32), ffn_mult: int = 4, B: int = 1
) -> Flops:
    """Evaluator (Eq. 18) on a K-ad list: projection ``2·B·K·3d·d``, m_e blocks of full
    attention (QKV ``6·B·K·d²``, attention ``4·B·K²·d``, output ``2·B·K·d²``, FFN) and MLP_E."""
    del n_heads  # full attention: the head split does not change the FLOPs
    block = linear(B * K, d, 3 * d) + Flops(attention=4 * B * K * K * d) + linear(B * K, d, d)
    block = block + feed_forward(N=K, d=d, ffn_mult=ffn_mult, B=B)
    return linear(B * K, 3 * d, d) + m_e * block + mlp(B * K, d, tuple(eval_mlp), 1)


def critical_payment(*, N: int, d: int, K: int, B: int = 1) -> Flops:
    """Critical-bid prices (:mod:`egakit.model.critical_payment`): the dense scores h·Tᵀ once more,
    ``2·B·N·K·d`` (the K² greedy passes over N are comparisons, not FLOPs)."""
    return Flops(slot=2 * B * N * K * d)


def payment(*, d: int, K: int, pay_mlp: Sequence[int] = (128, 32), B: int = 1) -> Flops:
    """Payment network (Eq. 19): MLP_pay over the K winners' [h; q; b_−i] (d + K inputs)."""
    return mlp(B * K, d + 1 + (K - 1), tuple(pay_mlp), 1)


# ---------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------
def encode(
    *,
    N: int,
    L: int,
    d: int,
    n_heads: int,
    n_clusters: int,
    m: int,
    m_c: int,
    feature_emb_dim: int,
    ctr_mlp: Sequence[int] = (128, 32),
    task_heads: Sequence[str] = (),
    variant: str = "full",
    broadcast_user_to_ads: bool = True,
    ffn_mult: int = 4,
    n_cross_fields: int = 0,
    id_buckets: int = 0,
    B: int = 1,
) -> Flops:
    """``EGAV1.encode`` (the pre-training forward): embedding → RecFormer → CTR and task heads."""
    return (
        feature_embedding(
            N=N, L=L, d=d, feature_emb_dim=feature_emb_dim, B=B, n_cross_fields=n_cross_fields, id_buckets=id_buckets
        )
        + recformer(
            N=N, L=L, d=d, n_heads=n_heads, n_clusters=n_clusters, m=m, m_c=m_c, variant=variant,
            broadcast_user_to_ads=broadcast_user_to_ads, ffn_mult=ffn_mult, B=B,
        )
        + (1 + len(tuple(task_heads))) * ctr_head(N=N, d=d, ctr_mlp=ctr_mlp, B=B)
    )


def ega_v1_inference(
    *,
    N: int,
    L: int,
    d: int,
    n_heads: int,
    n_clusters: int,
    m: int,
    m_c: int,
    m_e: int,
    K: int,
    feature_emb_dim: int,
    ctr_mlp: Sequence[int] = (128, 32),
    eval_mlp: Sequence[int] = (128, 32),
    pay_mlp: Sequence[int] = (128, 32),
    task_heads: Sequence[str] = (),
    variant: str = "full",
    allocation: str = "aucformer",
    payment_rule: str = "critical",
    payment_ctr_source: str = "ctr_head",
    broadcast_user_to_ads: bool = True,
    ffn_mult: int = 4,
    n_cross_fields: int = 0,
    id_buckets: int = 0,
    B: int = 1,
) -> Flops:
    """``EGAV1.allocate`` for B requests: :func:`encode`, then the generator and the prices —
    :func:`critical_payment` (``payment_rule="critical"``) or the payment network (``"network"``;
    plus the evaluator when ``payment_ctr_source="evaluator"``) — or nothing more for
    ``allocation="gsp"`` (GSP sorts, no matmuls)."""
    out = encode(
        N=N, L=L, d=d, n_heads=n_heads, n_clusters=n_clusters, m=m, m_c=m_c, feature_emb_dim=feature_emb_dim,
        ctr_mlp=ctr_mlp, task_heads=task_heads, variant=variant, broadcast_user_to_ads=broadcast_user_to_ads,
        ffn_mult=ffn_mult, n_cross_fields=n_cross_fields, id_buckets=id_buckets, B=B,
    )
    if allocation == "gsp":
        return out
    out = out + generator(N=N, d=d, n_heads=n_heads, n_clusters=n_clusters, K=K, m_e=m_e, ffn_mult=ffn_mult, B=B)
    if payment_rule == "critical":
        return out + critical_payment(N=N, d=d, K=K, B=B)
    out = out + payment(d=d, K=K, pay_mlp=pay_mlp, B=B)
    if payment_ctr_source == "evaluator":
        out = out + evaluator(d=d, n_heads=n_heads, K=K, m_e=m_e, eval_mlp=eval_mlp, ffn_mult=ffn_mult, B=B)
    return out


def config_kwargs(config: Any) -> dict[str, Any]:
    """The fields of an :class:`~egakit.model.EGAV1Config` (or any dataclass / object with those
    attribute names) as keyword arguments for the formulas."""
    names = (
        "d", "n_heads", "n_clusters", "m", "m_c", "m_e", "K", "feature_emb_dim", "ctr_mlp", "eval_mlp",
        "pay_mlp", "task_heads", "variant", "allocation", "payment_rule", "payment_ctr_source", "broadcast_user_to_ads",
        "ffn_mult", "id_buckets",
    )
    return {name: getattr(config, name) for name in names if hasattr(config, name)}


def for_config(formula: Callable[..., Flops], config: Any, **shapes: Any) -> Flops:
    """Call ``formula`` with the config fields it accepts plus ``shapes`` (``N``, ``L``, ``B``, …).

    Example: ``for_config(gcf_layer, EGAV1Config(), N=10**5)``.
    """
    accepted = inspect.signature(formula).parameters
    kwargs = {k: v for k, v in config_kwargs(config).items() if k in accepted}
    kwargs.update(shapes)
    return formula(**kwargs)
