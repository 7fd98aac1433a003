"""The paper's FLOP formulas, EGA-V1 Appendix A.1 (Eq. 25–33), written exactly as printed.

Every function takes the paper's symbols as arguments with the paper's names and returns the
number of floating-point operations (``int`` when every argument is an ``int``, else ``float``):

- ``L``: user behaviour sequence length; ``d``: hidden size; ``N``: candidate ads of a request;
- ``N_c``: cluster (surrogate) tokens; ``m``: GCF blocks; ``m_k``: MIF interaction blocks
  (``m_k = ⌈m / m_c⌉``, footnote 3, see :func:`interval_blocks`); ``m_e``: AucFormer blocks;
- ``N_a``: ads the AucFormer sees; ``K``: ad slots; ``m_r``, ``N_r``: ranking-stage blocks and
  candidates of the cascade (MCA).

Nothing here is "corrected": where the paper is ambiguous the choice is a named argument and is
documented (GCF over one or both sequences in :func:`ega_v1`; what early / late fusion count in
:func:`early_fusion` / :func:`late_fusion`, which the paper gives only as O-terms in §3.3).
"""
from __future__ import annotations

import math
from typing import Union

Number = Union[int, float]

# Constants of the formulas, named after the paper's own decomposition (Eq. 25, 26, 30, 32).
ATTENTION_COEF = 4  # QKᵀ and AV, one multiply-add = 2 FLOPs each (Eq. 25: 4 L² d)
PROJ_FFN_COEF = 24  # 4 × 2 L d² projections + 16 L d² feed-forward (Eq. 25: 24 L d²)
CROSS_QUERY_COEF = 20  # query-side projections + FFN of a cross block (Eq. 26: 20 L1 d²)
CROSS_KV_COEF = 4  # key / value projections of a cross block (Eq. 26: 4 L2 d²)
CLUSTER_COEF = 6  # cluster mechanism G (Eq. 30: 6 N N_c d)
CLUSTER_ATTENTION_COEF = 4  # attention to N_c cluster tokens (Eq. 30: 4 N N_c d)
AUF_CROSS_QUERY_COEF = 18  # slot-query projections + FFN of the AucFormer cross block (Eq. 32)
USER_TOWER_COEF = 2  # user-tower matmuls of the pre-ranker (Eq. 27: 2 L d²)


def _check(**values: Number) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")


def interval_blocks(m: int, m_c: int) -> int:
    """MIF interaction blocks ``m_k = ⌈m / m_c⌉`` (footnote 3; the paper prints ``m_2`` for ``m``).

    MIF fuses at blocks ``{m_c, 2 m_c, …, m}``, i.e. every ``m_c``-th of the ``m`` GCF blocks.
    """
    _check(m=m, m_c=m_c)
    if m_c == 0:
        raise ValueError("m_c must be positive")
    return -(-int(m) // int(m_c))


def block(L: Number, d: Number) -> Number:
    """One Transformer self-attention block over ``L`` tokens of width ``d`` (Eq. 25).

    ``4 × 2 L d²`` (Q, K, V, O projections) + ``16 L d²`` (FFN) + ``4 L² d`` (attention)
    ``= 4 L² d + 24 L d²``.
    """
    _check(L=L, d=d)
    return ATTENTION_COEF * L * L * d + PROJ_FFN_COEF * L * d * d


def block2(L1: Number, L2: Number, d: Number) -> Number:
    """One cross-attention block, ``L1`` queries over ``L2`` keys / values (Eq. 26).

    ``4 L1 L2 d + 20 L1 d² + 4 L2 d²``.
    """
    _check(L1=L1, L2=L2, d=d)
    return ATTENTION_COEF * L1 * L2 * d + CROSS_QUERY_COEF * L1 * d * d + CROSS_KV_COEF * L2 * d * d


def pre_rank(N: Number, L: Number, d: Number) -> Number:
    """Two-tower pre-ranking stage of the cascade (Eq. 27): ``N d + 2 L d²``."""
    _check(N=N, L=L, d=d)
    return N * d + USER_TOWER_COEF * L * d * d


def rank(m_r: Number, N_r: Number, L: Number, d: Number) -> Number:
    """Early-fusion Transformer ranking stage of the cascade (Eq. 28).

    ``m_r [4 N_r (L+1)² d + 24 N_r (L+1) d²]`` = ``m_r · N_r · block(L+1, d)``.
    """
    _check(m_r=m_r, N_r=N_r, L=L, d=d)
    L1 = L + 1
    return m_r * (ATTENTION_COEF * N_r * L1 * L1 * d + PROJ_FFN_COEF * N_r * L1 * d * d)


def mca(N: Number, L: Number, d: Number, m_r: Number, N_r: Number) -> Number:
    """Multi-stage cascade (Eq. 29): ``FLOPs_pre + FLOPs_rank``."""
    return pre_rank(N=N, L=L, d=d) + rank(m_r=m_r, N_r=N_r, L=L, d=d)


def gcf(m: Number, N: Number, N_c: Number, d: Number) -> Number:
    """Global Cluster-Former, ``m`` blocks over a sequence of ``N`` tokens (Eq. 30).

    ``m (6 N N_c d + 4 N N_c d + 24 N d²)``: cluster mechanism G, attention to the ``N_c`` cluster
    tokens, projections + FFN. The paper writes it for the ad sequence (``N``); the behaviour
    sequence uses the same formula with ``L`` in place of ``N``.
    """
    _check(m=m, N=N, N_c=N_c, d=d)
    return m * (CLUSTER_COEF * N * N_c * d + CLUSTER_ATTENTION_COEF * N * N_c * d + PROJ_FFN_COEF * N * d * d)


def mif(m_k: Number, N: Number, L: Number, N_c: Number, d: Number) -> Number:
    """Mid-fusion Interest-Former (Eq. 31): target + context attention, ``m_k (N + L) N_c d``.

    The paper counts attention only, with coefficient 1 (no projections, no FFN).
    """
    _check(m_k=m_k, N=N, L=L, N_c=N_c, d=d)
    return m_k * N * N_c * d + m_k * L * N_c * d


def auf(m_e: Number, N_a: Number, K: Number, d: Number) -> Number:
    """AucFormer (Eq. 32): ``m_e (4 N_a² d + 24 N_a d²) + m_e (4 K N_a d + 18 K d² + 4 N_a d²)``.

    A self-attention block over the ``N_a`` ads plus a cross block of ``K`` slot queries over
    them, per AucFormer block. Note the first term is quadratic in ``N_a``: with ``N_a = N`` the
    total is not linear in ``N`` (the appendix's "proportional to N" needs ``N_a`` independent of N).
    """
    _check(m_e=m_e, N_a=N_a, K=K, d=d)
    self_blocks = m_e * (ATTENTION_COEF * N_a * N_a * d + PROJ_FFN_COEF * N_a * d * d)
    cross_blocks = m_e * (ATTENTION_COEF * K * N_a * d + AUF_CROSS_QUERY_COEF * K * d * d + CROSS_KV_COEF * N_a * d * d)
    return self_blocks + cross_blocks


def ega_v1(
    m: Number,
    N: Number,
    L: Number,
    N_c: Number,
    d: Number,
    m_k: Number,
    m_e: Number,
    N_a: Number,
    K: Number,
    *,
    gcf_both_stacks: bool = False,
) -> Number:
    """EGA-V1 total (Eq. 33): ``FLOPs_gcf + FLOPs_mif + FLOPs_auf``.

    ``gcf_both_stacks=False`` (default) is the paper literally: one GCF term, Eq. 30 over the
    ``N`` ads. The model also runs GCF over the ``L`` behaviours (§3.3: "User behavior sequence
    H_usr is computed in a similar way through Eq. (7~15)"), which Eq. 33 leaves out;
    ``gcf_both_stacks=True`` adds ``gcf(m, L, N_c, d)`` for it.
    """
    total = gcf(m=m, N=N, N_c=N_c, d=d) + mif(m_k=m_k, N=N, L=L, N_c=N_c, d=d) + auf(m_e=m_e, N_a=N_a, K=K, d=d)
    if gcf_both_stacks:
        total = total + gcf(m=m, N=L, N_c=N_c, d=d)
    return total


def early_fusion(m: Number, N: Number, L: Number, d: Number) -> Number:
    """Early fusion (§3.3, Fig. 4): each candidate is appended to the behaviours and the
    ``(L+1)``-token sequence goes through ``m`` self-attention blocks, separately per candidate.

    Counted as ``m · N · block(L+1, d)`` (Eq. 25 per candidate) — identical to the ranking stage
    Eq. 28 with ``m_r = m``, ``N_r = N``. The paper's O-term is ``O(m N (L+1)² d)``.
    """
    _check(m=m, N=N, L=L, d=d)
    return m * N * block(L=L + 1, d=d)


def late_fusion(m: Number, N: Number, L: Number, d: Number) -> Number:
    """Late fusion (§3.3, Fig. 4): ``m`` self-attention blocks over the ``L`` behaviours once,
    then the ``N`` candidates attend to the encoded behaviours (target attention).

    Counted as ``m · block(L, d) + block2(N, L, d)`` (Eq. 25 + Eq. 26): the target attention is
    one cross block with the ``N`` candidates as queries over the ``L`` behaviours, so the
    behaviours' K / V projections are shared by all candidates. The paper's O-term is
    ``O((N L + m L²) d)``.
    """
    _check(m=m, N=N, L=L, d=d)
    return m * block(L=L, d=d) + block2(L1=N, L2=L, d=d)
