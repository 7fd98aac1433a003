"""FLOP formulas of :func:`cluster_aggregate` (matmul FLOPs over the N axis; see :mod:`.op` for
the derivation): forward ``8·B·H·N·N_c·d_h``, backward ``18·B·H·N·N_c·d_h``."""
from __future__ import annotations


def cluster_aggregate_flops(batch: int, heads: int, n: int, n_clusters: int, head_dim: int) -> int:
    """Forward matmul FLOPs: logits ``2·B·H·N·N_c·d_h`` + three aggregations ``3·2·B·H·N·N_c·d_h``."""
    return 8 * batch * heads * n * n_clusters * head_dim


def cluster_aggregate_backward_flops(
    batch: int, heads: int, n: int, n_clusters: int, head_dim: int
) -> int:
    """Backward matmul FLOPs ``18·B·H·N·N_c·d_h``: recomputed logits (2), ``P dA_x`` (6),
    ``Σ_x x dA_xᵀ`` (6), ``dl C`` (2) and ``dlᵀ k`` (2), each times ``B·H·N·N_c·d_h``."""
    return 18 * batch * heads * n * n_clusters * head_dim


def flops_from_shapes(q_shape, centroids_shape, *, backward: bool) -> int:
    """The formula on (B, H, N, d_h) and (H, N_c, d_h) shapes (the ops' FLOP-formula signature)."""
    batch, heads, n, head_dim = q_shape
    n_clusters = centroids_shape[1]
    formula = cluster_aggregate_backward_flops if backward else cluster_aggregate_flops
    return formula(batch, heads, n, n_clusters, head_dim)


def forward_flop_formula(q_shape, k_shape, v_shape, centroids_shape, *args, **kwargs) -> int:
    """``register_flop_formula`` signature of the forward ops (torch and Triton)."""
    return flops_from_shapes(q_shape, centroids_shape, backward=False)


def backward_flop_formula(gq_shape, gk_shape, gv_shape, q_shape, k_shape, v_shape, centroids_shape,
                          *args, **kwargs) -> int:
    """``register_flop_formula`` signature of the backward ops (torch and Triton)."""
    return flops_from_shapes(q_shape, centroids_shape, backward=True)
