"""Configuration of the EGA-V1 model (docs/design.md §3): paper defaults and ablation switches.

Paper defaults (V1 §5.1.4): d = 128, N_h = 4 heads, N_c = 128 clusters, m = 6 GCF layers,
m_e = 3 AucFormer blocks, K = 5 slots, MLP hidden layers (128, 32).

MIF interval. The paper's §5.1.4 says "the number of interval layers in MIF m_k = 2" with m = 6,
while its footnote 3 defines m_k = ⌈m / m_c⌉ as the *number* of fusions. We read the "2" as the
interval ``m_c`` (fusions after layers {2, 4, 6}), so the derived number of fusions is
``m_k = ⌈m / m_c⌉ = 3`` (docs/design.md §3.2). ``m_c`` is configurable; see :attr:`EGAV1Config.m_k` and
:attr:`EGAV1Config.fusion_layers`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: RecFormer variants (docs/design.md §3.2 ablations; V1 Tables 2–3).
VARIANTS = ("full", "no_gcf", "no_mif", "ta_only", "ca_only", "late_fusion")
#: ``aucformer`` = generator + payment network (EGA-V1); ``gsp`` = the ``-auf`` ablation.
ALLOCATIONS = ("aucformer", "gsp")
#: Where the payment network's pCTR input q_{y_i} (Eq. 19) comes from (see ``egakit.model.ega_v1``).
PAYMENT_CTR_SOURCES = ("ctr_head", "evaluator")
#: How winners are priced at inference: ``critical`` = the Myerson payment of the generator's
#: monotone allocation (IC, :mod:`egakit.model.critical_payment`); ``network`` = Eq. 19 as printed.
PAYMENT_RULES = ("critical", "network")


def fusion_layers(m: int, m_c: int) -> tuple[int, ...]:
    """1-based GCF layers after which MIF fuses the streams: every ``m_c``-th layer plus the last
    one, i.e. {m_c, 2·m_c, …, m} (V1 §3.3); there are ``⌈m / m_c⌉`` of them."""
    if m < 1 or m_c < 1:
        raise ValueError(f"m and m_c must be >= 1, got m={m}, m_c={m_c}")
    layers = sorted({layer for layer in range(1, m + 1) if layer % m_c == 0} | {m})
    assert len(layers) == math.ceil(m / m_c)
    return tuple(layers)


@dataclass(frozen=True)
class BlockOptions:
    """Numerical options shared by every attention / FFN block.

    ffn_mult: FFN hidden width is ``ffn_mult · d`` (d → 4d → d).
    dice_eps, dice_momentum: Dice's variance epsilon and running-statistics momentum.
    layer_norm_eps: epsilon of every residual LayerNorm.
    query_chunk: Eq. 9 attends this many queries at a time (bounds the (chunk × N_c) temporaries).
    kernel_backend: ``backend=`` passed to ``egakit.kernels.cluster_aggregate`` / ``egakit.kernels.slot_argmax``.
    """

    ffn_mult: int = 4
    dice_eps: float = 1e-8
    dice_momentum: float = 0.1
    layer_norm_eps: float = 1e-5
    query_chunk: int = 16384
    kernel_backend: str = "auto"


@dataclass
class EGAV1Config:
    """EGA-V1 hyper-parameters (paper defaults) and ablation flags.

    Model sizes
      d: hidden size; n_heads: N_h (d_h = d / N_h); n_clusters: N_c (Eq. 11);
      m: GCF layers per stream (Eq. 15); m_c: MIF interval (fusion every m_c-th layer);
      m_e: AucFormer blocks (generator and evaluator each, Eq. 17–18); K: ad slots.
      feature_emb_dim: size of each categorical feature embedding before the Eq. 5 projection.
      id_buckets: ad-identity embedding buckets (``ad_id mod id_buckets``; 0 = none), see
        :class:`~egakit.model.embedding.FeatureEmbedding`.
      ctr_mlp / eval_mlp / pay_mlp: hidden sizes of MLP_ctr (Eq. 16), MLP_E (Eq. 18), MLP_pay (Eq. 19).
      task_heads: extra pre-training task heads next to CTR (e.g. ``("purchase",)``).
    Ablations
      variant: one of :data:`VARIANTS` (``no_gcf`` = −gcf, ``no_mif`` = −mif, ``ta_only`` = −CA,
        ``ca_only`` = −TA, ``late_fusion`` = LF).
      use_cross_features: embed ``RequestBatch.cross_feats`` and add it to E_ad (Table 3 "w/ CF").
      allocation: ``aucformer`` or ``gsp`` (−auf: rank by q̂·b, GSP prices).
    Other choices
      payment_rule: ``critical`` (default: the critical-bid payment of the generator's allocation,
        truthful by construction; see :mod:`egakit.model.critical_payment` for why) or ``network``
        (the payment network of Eq. 19 prices the winners, the paper's literal rule).
      payment_ctr_source: ``ctr_head`` (default; q_{y_i} = the winner's set-aware q̂ from Eq. 16, so
        inference needs generator + payment only) or ``evaluator`` (the permutation-aware q of Eq. 18).
      broadcast_user_to_ads: add a projection of the user/context embedding to every ad token
        before GCF (V1 §3.2: user and context embeddings are "broadcast to all candidate ads").
      w_z_init: initial w_z of Eq. 17 (bid weight e^{w_z}).
    """

    d: int = 128
    n_heads: int = 4
    n_clusters: int = 128
    m: int = 6
    m_c: int = 2
    m_e: int = 3
    K: int = 5
    feature_emb_dim: int = 32
    id_buckets: int = 0
    ctr_mlp: tuple[int, ...] = (128, 32)
    eval_mlp: tuple[int, ...] = (128, 32)
    pay_mlp: tuple[int, ...] = (128, 32)
    task_heads: tuple[str, ...] = ()
    variant: str = "full"
    use_cross_features: bool = False
    allocation: str = "aucformer"
    payment_rule: str = "critical"
    payment_ctr_source: str = "ctr_head"
    broadcast_user_to_ads: bool = True
    w_z_init: float = 0.0
    ffn_mult: int = 4
    dice_eps: float = 1e-8
    dice_momentum: float = 0.1
    layer_norm_eps: float = 1e-5
    query_chunk: int = 16384
    kernel_backend: str = "auto"

    def __post_init__(self) -> None:
        # jsonargparse / YAML hand lists; keep tuples so the config stays hashable-ish and stable.
        self.ctr_mlp = tuple(int(x) for x in self.ctr_mlp)
        self.eval_mlp = tuple(int(x) for x in self.eval_mlp)
        self.pay_mlp = tuple(int(x) for x in self.pay_mlp)
        self.task_heads = tuple(str(x) for x in self.task_heads)
        if self.d % self.n_heads:
            raise ValueError(f"d={self.d} must be divisible by n_heads={self.n_heads}")
        for name in ("d", "n_heads", "n_clusters", "m", "m_c", "m_e", "K", "feature_emb_dim", "ffn_mult", "query_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"EGAV1Config.{name} must be >= 1, got {getattr(self, name)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"EGAV1Config.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"EGAV1Config.allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if self.id_buckets < 0:
            raise ValueError(f"EGAV1Config.id_buckets must be >= 0, got {self.id_buckets}")
        if self.payment_rule not in PAYMENT_RULES:
            raise ValueError(f"EGAV1Config.payment_rule must be one of {PAYMENT_RULES}, got {self.payment_rule!r}")
        if self.payment_ctr_source not in PAYMENT_CTR_SOURCES:
            raise ValueError(
                f"EGAV1Config.payment_ctr_source must be one of {PAYMENT_CTR_SOURCES}, got {self.payment_ctr_source!r}"
            )
        if "ctr" in self.task_heads:
            raise ValueError("EGAV1Config.task_heads: 'ctr' is always present; list only extra tasks")

    @property
    def d_head(self) -> int:
        """d_h = d / N_h."""
        return self.d // self.n_heads

    @property
    def m_k(self) -> int:
        """Number of MIF fusions, ⌈m / m_c⌉ (footnote 3 of V1; 3 with the defaults)."""
        return math.ceil(self.m / self.m_c)

    @property
    def fusion_layers(self) -> tuple[int, ...]:
        """1-based GCF layers followed by a MIF exchange (see :func:`fusion_layers`)."""
        return fusion_layers(self.m, self.m_c)

    def block_options(self) -> BlockOptions:
        return BlockOptions(
            ffn_mult=self.ffn_mult,
            dice_eps=self.dice_eps,
            dice_momentum=self.dice_momentum,
            layer_norm_eps=self.layer_norm_eps,
            query_chunk=self.query_chunk,
            kernel_backend=self.kernel_backend,
        )
