"""EGA-V1 model blocks (docs/design.md §3): pure ``nn.Module``s; the LightningModules only wire losses.

- :class:`Dice` — the paper's φ (DIN), with padding-masked statistics.
- :class:`FeatureEmbedding` — Eq. 5–6.
- :class:`ClusterAttention` — Eq. 7–14 (self and cross), via ``egakit.kernels.cluster_aggregate``.
- :class:`GCFLayer` — cluster attention + FFN (Eq. 15); :class:`MIF` — one mid-fusion exchange.
- :class:`RecFormer` — GCF stacks + MIF, all ablation variants.
- :class:`CTRHead` (Eq. 16), :class:`Generator` (Eq. 17), :class:`Evaluator` (Eq. 18),
  :class:`PaymentNet` (Eq. 19); :mod:`egakit.model.critical_payment` — the critical-bid (Myerson)
  prices of the generator's allocation; :class:`ObservationRates` — the logs' click-observation
  rates (pre-training's label sources, the prices' position effects).
- :class:`EGAV1` and :class:`EGAV1Config` — the whole model.
"""
from egakit.model.cluster_attention import ClusterAttention
from egakit.model.config import ALLOCATIONS, PAYMENT_CTR_SOURCES, PAYMENT_RULES, VARIANTS, BlockOptions, EGAV1Config, fusion_layers
from egakit.model.dice import Dice
from egakit.model.ega_v1 import EGAV1, Encoding
from egakit.model.embedding import FeatureEmbedding, FirstOrderTokens
from egakit.model.evaluator import Evaluator
from egakit.model.gcf import CrossBlock, FeedForward, GCFLayer, PointwiseLayer
from egakit.model.generator import Generator
from egakit.model.heads import CTRHead, ObservationRates
from egakit.model.mif import MIF
from egakit.model.payment import PaymentNet, gsp_allocation
from egakit.model.recformer import RecFormer, RecFormerOutput

__all__ = [
    "ALLOCATIONS",
    "PAYMENT_RULES",
    "ObservationRates",
    "BlockOptions",
    "CTRHead",
    "ClusterAttention",
    "CrossBlock",
    "Dice",
    "EGAV1",
    "EGAV1Config",
    "Encoding",
    "Evaluator",
    "FeatureEmbedding",
    "FeedForward",
    "FirstOrderTokens",
    "GCFLayer",
    "Generator",
    "MIF",
    "PAYMENT_CTR_SOURCES",
    "PaymentNet",
    "PointwiseLayer",
    "RecFormer",
    "RecFormerOutput",
    "VARIANTS",
    "fusion_layers",
    "gsp_allocation",
]
