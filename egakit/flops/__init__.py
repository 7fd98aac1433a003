"""FLOP formulas: the paper's Appendix A.1 (:mod:`egakit.flops.paper`, Eq. 25–33) and its two
complexity claims evaluated from them (:mod:`egakit.flops.claims`)."""
from egakit.flops import claims, paper
from egakit.flops.claims import ClaimResult, RatioCheck, ega_vs_mca, mif_vs_fusion, paper_claims
from egakit.flops.paper import (
    auf,
    block,
    block2,
    early_fusion,
    ega_v1,
    gcf,
    interval_blocks,
    late_fusion,
    mca,
    mif,
    pre_rank,
    rank,
)

__all__ = [
    "ClaimResult",
    "RatioCheck",
    "auf",
    "block",
    "block2",
    "claims",
    "early_fusion",
    "ega_v1",
    "ega_vs_mca",
    "gcf",
    "interval_blocks",
    "late_fusion",
    "mca",
    "mif",
    "mif_vs_fusion",
    "paper",
    "paper_claims",
    "pre_rank",
    "rank",
]
