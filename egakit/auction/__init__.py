"""Auctions, regret and the IC metric Ψ (docs/design.md §6).

- :mod:`egakit.auction.position`: GSP and VCG position auctions with separable CTRs; ``gsp`` is
  the one GSP (the cascades and EGA-V1's −auf ablation both call it).
- :mod:`egakit.auction.mechanism`: the ``Mechanism`` interface (``allocate(bids, batch_context)``)
  and its GSP / VCG adapters.
- :mod:`egakit.auction.regret`: ex-post regret by bid perturbation and Ψ.
"""
from egakit.auction.mechanism import (
    GSPMechanism,
    Mechanism,
    PositionContext,
    PositionMechanism,
    ScoredMechanism,
    VCGMechanism,
    as_mechanism,
    index_batch,
    separable_ctr,
)
from egakit.auction.position import GSP, MECHANISMS, VCG, AuctionResult, gsp, position_auction, rank_scores, top_ranked
from egakit.auction.regret import (
    ADVERTISER_SETS,
    DEFAULT_GAMMAS,
    RegretResult,
    ic_metric,
    psi,
    regret,
    slot_utilities,
    tested_advertisers,
)

__all__ = [
    "ADVERTISER_SETS",
    "AuctionResult",
    "DEFAULT_GAMMAS",
    "GSP",
    "GSPMechanism",
    "MECHANISMS",
    "Mechanism",
    "PositionContext",
    "PositionMechanism",
    "RegretResult",
    "ScoredMechanism",
    "VCG",
    "VCGMechanism",
    "as_mechanism",
    "gsp",
    "ic_metric",
    "index_batch",
    "position_auction",
    "psi",
    "rank_scores",
    "regret",
    "separable_ctr",
    "slot_utilities",
    "tested_advertisers",
    "top_ranked",
]
