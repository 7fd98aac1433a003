"""Triton kernels of :func:`cluster_aggregate` (EGA-V1 Eq. 11); imported only with the Triton path.

A forward that splits N across programs (grid B·H × splits), a tiny combine kernel merging the
partial (max, sum, acc), and a backward in one pass over N. None of them materialises the
N × N_c matrix. The host side (launch tuning, ``torch.library`` ops) is :mod:`.triton_op`.
"""
import triton
import triton.language as tl

@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``tl.dot`` with float32 accumulation into ``acc`` (None = zeros). UPCAST feeds float32
    operands — exact for half-precision values — because Triton's interpreter multiplies the raw
    bit patterns of bfloat16 operands (triton-lang/triton#11584); False on GPU."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _load_rows(base, rows, cols, stride_row, stride_col, row_ok, col_ok):
    """(BLOCK_N, BLOCK_D) tile of one (N, d_h) slice, zeros outside the valid rows / columns
    (masked candidates are never read, so even non-finite padding cannot reach the outputs)."""
    pointers = base + rows[:, None] * stride_row + cols[None, :] * stride_col
    return tl.load(pointers, mask=row_ok[:, None] & col_ok[None, :], other=0.0)


@triton.jit
def _forward_split_kernel(
    Q, K, V, C, MASK,
    PART_MAX, PART_SUM, PART_ACC,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ch, stride_cc, stride_cd,
    stride_mb, stride_mn,
    heads, n_rows, n_clusters, head_dim, rows_per_split, n_splits, scale,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """One program = one (b, h) and one split of N. Streams over the split's rows with a running
    per-centroid max / sum-exp and writes the partial (max, sum, Σ exp(l − max) [q|k|v]).

    Partials (padded to the block sizes, float32):
        PART_MAX, PART_SUM: (B·H, n_splits, BLOCK_C); PART_ACC: (B·H, n_splits, 3, BLOCK_C, BLOCK_D).
    """
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    offs_n = tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    c_ok = offs_c < n_clusters
    d_ok = offs_d < head_dim
    cent = _load_rows(C + h * stride_ch, offs_c, offs_d, stride_cc, stride_cd, c_ok, d_ok)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    run_max = tl.full([BLOCK_C], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_C], tl.float32)
    acc_q = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_k = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_v = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    split_start = split * rows_per_split
    split_stop = tl.minimum(split_start + rows_per_split, n_rows)
    for start in range(split_start, split_stop, BLOCK_N):
        rows = start + offs_n
        in_range = rows < split_stop
        valid = tl.load(MASK + b * stride_mb + rows * stride_mn, mask=in_range, other=0) != 0
        k_tile = _load_rows(k_base, rows, offs_d, stride_kn, stride_kd, valid, d_ok)
        q_tile = _load_rows(q_base, rows, offs_d, stride_qn, stride_qd, valid, d_ok)
        v_tile = _load_rows(v_base, rows, offs_d, stride_vn, stride_vd, valid, d_ok)
        logits = _dot(k_tile, tl.trans(cent), None, DOT_PRECISION, UPCAST) * scale
        logits = tl.where(valid[:, None], logits, float("-inf"))            # (BLOCK_N, BLOCK_C)
        new_max = tl.maximum(run_max, tl.max(logits, axis=0))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        probs = tl.exp(logits - shift[None, :])
        rescale = tl.exp(run_max - shift)
        run_sum = run_sum * rescale + tl.sum(probs, axis=0)
        probs_t = tl.trans(probs.to(k_tile.dtype))                          # (BLOCK_C, BLOCK_N)
        acc_q = _dot(probs_t, q_tile, acc_q * rescale[:, None], DOT_PRECISION, UPCAST)
        acc_k = _dot(probs_t, k_tile, acc_k * rescale[:, None], DOT_PRECISION, UPCAST)
        acc_v = _dot(probs_t, v_tile, acc_v * rescale[:, None], DOT_PRECISION, UPCAST)
        run_max = new_max

    part = bh * n_splits + split
    tl.store(PART_MAX + part * BLOCK_C + offs_c, run_max)
    tl.store(PART_SUM + part * BLOCK_C + offs_c, run_sum)
    tile = offs_c[:, None] * BLOCK_D + offs_d[None, :]
    acc_base = PART_ACC + part * (3 * BLOCK_C * BLOCK_D)
    tl.store(acc_base + tile, acc_q)
    tl.store(acc_base + BLOCK_C * BLOCK_D + tile, acc_k)
    tl.store(acc_base + 2 * BLOCK_C * BLOCK_D + tile, acc_v)


@triton.jit
def _combine_kernel(
    PART_MAX, PART_SUM, PART_ACC, A_Q, A_K, A_V, LSE,
    n_clusters, head_dim, n_splits,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One program per (b, h): merge the n_splits partials (max, sum, acc) with the usual
    log-sum-exp rescaling, write A_x = acc / sum (B, H, N_c, d_h) and LSE (B, H, N_c).
    An all-masked row has sum 0: it gets A = 0 and LSE = −inf."""
    bh = tl.program_id(0).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    tile = offs_c[:, None] * BLOCK_D + offs_d[None, :]
    run_max = tl.full([BLOCK_C], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_C], tl.float32)
    acc_q = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_k = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_v = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    for split in range(0, n_splits):
        part = bh * n_splits + split
        part_max = tl.load(PART_MAX + part * BLOCK_C + offs_c)
        part_sum = tl.load(PART_SUM + part * BLOCK_C + offs_c)
        new_max = tl.maximum(run_max, part_max)
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        old_scale = tl.exp(run_max - shift)
        part_scale = tl.exp(part_max - shift)
        run_sum = run_sum * old_scale + part_sum * part_scale
        acc_base = PART_ACC + part * (3 * BLOCK_C * BLOCK_D)
        acc_q = acc_q * old_scale[:, None] + tl.load(acc_base + tile) * part_scale[:, None]
        acc_k = acc_k * old_scale[:, None] + tl.load(acc_base + BLOCK_C * BLOCK_D + tile) * part_scale[:, None]
        acc_v = acc_v * old_scale[:, None] + tl.load(acc_base + 2 * BLOCK_C * BLOCK_D + tile) * part_scale[:, None]
        run_max = new_max

    has_mass = run_sum > 0
    inverse = tl.where(has_mass, 1.0 / tl.where(has_mass, run_sum, 1.0), 0.0)
    shift = tl.where(run_max == float("-inf"), 0.0, run_max)
    lse = tl.where(has_mass, shift + tl.log(tl.where(has_mass, run_sum, 1.0)), float("-inf"))
    c_ok = offs_c < n_clusters
    tl.store(LSE + bh * n_clusters + offs_c, lse, mask=c_ok)
    out = bh * n_clusters * head_dim + offs_c[:, None] * head_dim + offs_d[None, :]
    out_ok = c_ok[:, None] & (offs_d < head_dim)[None, :]
    tl.store(A_Q + out, (acc_q * inverse[:, None]).to(A_Q.dtype.element_ty), mask=out_ok)
    tl.store(A_K + out, (acc_k * inverse[:, None]).to(A_K.dtype.element_ty), mask=out_ok)
    tl.store(A_V + out, (acc_v * inverse[:, None]).to(A_V.dtype.element_ty), mask=out_ok)


@triton.jit
def _load_cluster_tile(base, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok):
    """(BLOCK_C, BLOCK_D) tile of a contiguous (B·H, N_c, d_h) tensor, zeros outside."""
    pointers = base + bh * n_clusters * head_dim + offs_c[:, None] * head_dim + offs_d[None, :]
    return tl.load(pointers, mask=c_ok[:, None] & d_ok[None, :], other=0.0)


@triton.jit
def _backward_kernel(
    Q, K, V, C, MASK, GRAD_AQ, GRAD_AK, GRAD_AV, A_Q, A_K, A_V, LSE,
    GRAD_Q, GRAD_K, GRAD_V, PART_GRAD_C,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ch, stride_cc, stride_cd,
    stride_mb, stride_mn,
    heads, n_rows, n_clusters, head_dim, rows_per_split, n_splits, scale,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """One program = one (b, h) and one split of N. D_c = Σ_x ⟨dA_x[c], A_x[c]⟩ from the saved
    outputs, then per block of rows: P = exp(l − LSE) (zero on masked rows and padded columns),
    dx = P dA_x, dP = Σ_x x dA_xᵀ, dl = P (dP − D), dk += dl C / √d_h, and the partial
    dC += dlᵀ k / √d_h written to PART_GRAD_C (B·H, n_splits, BLOCK_C, BLOCK_D) float32.
    GRAD_* / A_* / LSE are contiguous; dq, dk, dv are written contiguous (B, H, N, d_h)."""
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    offs_n = tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    c_ok = offs_c < n_clusters
    d_ok = offs_d < head_dim
    dtype = Q.dtype.element_ty
    cent = _load_rows(C + h * stride_ch, offs_c, offs_d, stride_cc, stride_cd, c_ok, d_ok)
    grad_aq = _load_cluster_tile(GRAD_AQ, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    grad_ak = _load_cluster_tile(GRAD_AK, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    grad_av = _load_cluster_tile(GRAD_AV, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    a_q = _load_cluster_tile(A_Q, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    a_k = _load_cluster_tile(A_K, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    a_v = _load_cluster_tile(A_V, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    delta = tl.sum(
        grad_aq.to(tl.float32) * a_q.to(tl.float32)
        + grad_ak.to(tl.float32) * a_k.to(tl.float32)
        + grad_av.to(tl.float32) * a_v.to(tl.float32),
        axis=1,
    )                                                                        # (BLOCK_C,)
    # +inf where the LSE is −inf (all-masked row) or the column is padding: exp(l − LSE) = 0 there.
    lse = tl.load(LSE + bh * n_clusters + offs_c, mask=c_ok, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse)
    grad_aq = grad_aq.to(dtype)
    grad_ak = grad_ak.to(dtype)
    grad_av = grad_av.to(dtype)

    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    out_offset = bh * n_rows * head_dim
    grad_c = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    split_start = split * rows_per_split
    split_stop = tl.minimum(split_start + rows_per_split, n_rows)
    for start in range(split_start, split_stop, BLOCK_N):
        rows = start + offs_n
        in_range = rows < split_stop
        valid = tl.load(MASK + b * stride_mb + rows * stride_mn, mask=in_range, other=0) != 0
        k_tile = _load_rows(k_base, rows, offs_d, stride_kn, stride_kd, valid, d_ok)
        q_tile = _load_rows(q_base, rows, offs_d, stride_qn, stride_qd, valid, d_ok)
        v_tile = _load_rows(v_base, rows, offs_d, stride_vn, stride_vd, valid, d_ok)
        logits = _dot(k_tile, tl.trans(cent), None, DOT_PRECISION, UPCAST) * scale
        logits = tl.where(valid[:, None], logits, float("-inf"))
        probs = tl.exp(logits - lse[None, :])                                 # (BLOCK_N, BLOCK_C)
        probs_lo = probs.to(dtype)
        grad_probs = _dot(q_tile, tl.trans(grad_aq), None, DOT_PRECISION, UPCAST)
        grad_probs = _dot(k_tile, tl.trans(grad_ak), grad_probs, DOT_PRECISION, UPCAST)
        grad_probs = _dot(v_tile, tl.trans(grad_av), grad_probs, DOT_PRECISION, UPCAST)
        grad_logits = (probs * (grad_probs - delta[None, :]) * scale).to(dtype)  # dl / √d_h
        grad_q = _dot(probs_lo, grad_aq, None, DOT_PRECISION, UPCAST)
        grad_k = _dot(probs_lo, grad_ak, None, DOT_PRECISION, UPCAST)
        grad_k = _dot(grad_logits, cent, grad_k, DOT_PRECISION, UPCAST)
        grad_v = _dot(probs_lo, grad_av, None, DOT_PRECISION, UPCAST)
        grad_c = _dot(tl.trans(grad_logits), k_tile, grad_c, DOT_PRECISION, UPCAST)
        out = out_offset + rows[:, None] * head_dim + offs_d[None, :]
        out_ok = in_range[:, None] & d_ok[None, :]
        tl.store(GRAD_Q + out, grad_q.to(dtype), mask=out_ok)
        tl.store(GRAD_K + out, grad_k.to(dtype), mask=out_ok)
        tl.store(GRAD_V + out, grad_v.to(dtype), mask=out_ok)

    part = bh * n_splits + split
    tile = offs_c[:, None] * BLOCK_D + offs_d[None, :]
    tl.store(PART_GRAD_C + part * (BLOCK_C * BLOCK_D) + tile, grad_c)
