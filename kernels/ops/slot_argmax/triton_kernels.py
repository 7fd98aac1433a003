"""Triton kernels of :func:`slot_argmax` (EGA-V1 Eq. 17); imported only with the Triton path.

Four kernels; every loop over slots, ranks or blocks is a runtime loop (``tl.range``), so K only
changes trip counts and the (K, K) per-block lists: nothing is unrolled K or K² times.

1. ``_slot_argmax_fwd_kernel``, grid (N / BLOCK_N, B), one pass over N. Each program scores its
   block for all K slots (tl.dot, fp32 accumulation) and stores, per slot k:
   * the block's top K by the selection key (score, plus noise when sampling): key, position and
     own score s[n, k] per rank. At most K − 1 candidates are ever excluded, so slot k's winner
     is always in some block's slot-k list;
   * the block's top K by score (the same list unless sampling) and the "tail" LSE over the
     block minus that list, and the whole-block LSE.
2. ``_slot_argmax_select_kernel``, grid (B,): the greedy y_1..y_K. Slot k's winner is the best
   head among the lists of the blocks that hold no earlier pick ("clean" blocks: their head is
   their best), and the best non-excluded entry of the ≤ k − 1 "dirty" blocks' lists; ties go
   to the lower position.
3. ``_slot_argmax_lse_kernel``, grid (K, B): the remaining-set log-sum-exp of each slot, exactly:
   clean blocks add their whole-block LSE; a dirty block adds its non-excluded top-K scores and
   its tail minus the excluded candidates that lie in the tail. Such a candidate ranks below the
   block's K listed ones, of which at most K − 2 are excluded, so at least two listed candidates
   that score as high remain: the subtraction loses at most a few ulps of the result (no
   log(exp(LSE_all) − Σ exp(s_excluded)) cancellation even when an excluded ad holds almost all
   of slot k's mass). The excluded candidates' scores s[y_j, k] are recomputed from h and t.
4. ``_slot_argmax_bwd_kernel``, grid (N / BLOCK_N, B), one pass over N: recompute s, rebuild R_k
   from ``idx`` and the saved remaining-set LSE, write dh and dbias, and a per-block partial of dt
   that torch sums over blocks (deterministic, no atomics).

The greedy is a kernel, not torch code, because it is K sequential steps of ~a dozen tiny ops
each: ~10² kernel launches in eager torch, longer than the memory-bound pass over N = 10^5.
The host side (launch tuning, ``torch.library`` ops) is :mod:`.triton_op`.
"""
import triton
import triton.language as tl

INT32_MAX = tl.constexpr(2147483647)


@triton.jit
def _mix32(x):
    """lowbias32 on uint32 (wrapping multiply), as ``gumbel.mix32_torch``."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    x = x ^ (x >> 16)
    return x


@triton.jit
def _gumbel_tile(stream_key, row, offs_n, offs_k):
    """(BLOCK_N, KP) Gumbel noise for candidates ``offs_n`` and slots ``offs_k`` of row ``row``."""
    key = stream_key.to(tl.uint32)
    per_row = _mix32(key ^ row.to(tl.uint32))
    per_slot = _mix32(per_row ^ offs_k.to(tl.uint32))
    bits = _mix32(_mix32(per_slot[None, :] ^ offs_n.to(tl.uint32)[:, None]) ^ key)
    u = ((bits >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07
    return -tl.log(-tl.log(u))


@triton.jit
def _block_scores(h_ptr, t_ptr, bias_ptr, row, offs_n, offs_k, in_n, D,
                  s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
                  K: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, KP: tl.constexpr,
                  DOT_FP32: tl.constexpr):
    """(BLOCK_N, KP) fp32 scores h·tᵀ + bias of one block (padding rows/slots hold garbage).

    ``DOT_FP32`` upcasts 16-bit operands before tl.dot: Triton's CPU interpreter multiplies the
    raw bf16 bits otherwise. On a GPU it is off, and bf16/fp16 go to the tensor cores.
    """
    acc = tl.zeros((BLOCK_N, KP), dtype=tl.float32)
    h_rows = h_ptr + row.to(tl.int64) * s_hb + offs_n.to(tl.int64)[:, None] * s_hn
    t_cols = t_ptr + row.to(tl.int64) * s_tb + offs_k[None, :] * s_tk
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        h_tile = tl.load(h_rows + offs_d[None, :] * s_hd, mask=in_n[:, None] & in_d[None, :], other=0.0)
        t_tile = tl.load(t_cols + offs_d[:, None] * s_td, mask=in_d[:, None] & (offs_k < K)[None, :],
                         other=0.0)
        if DOT_FP32:
            h_tile = h_tile.to(tl.float32)
            t_tile = t_tile.to(tl.float32)
        acc += tl.dot(h_tile, t_tile, input_precision="ieee")
    bias = tl.load(bias_ptr + row.to(tl.int64) * s_bb + offs_n * s_bn, mask=in_n, other=0.0)
    return acc + bias.to(tl.float32)[:, None]


@triton.jit
def _column_lse(x):
    """Log-sum-exp over axis 0 of a (BLOCK_N, KP) tile (−inf for an all −inf column)."""
    top = tl.max(x, axis=0)
    safe = tl.where(top == float("-inf"), 0.0, top)
    total = tl.sum(tl.exp(x - safe[None, :]), axis=0)
    return tl.where(total > 0, safe + tl.log(tl.where(total > 0, total, 1.0)), float("-inf"))


@triton.jit
def _top_lists(values, finite_scores, local, first_pos, list_base, key_out, pos_out, own_out,
               slot_ok, K: tl.constexpr, STORE_KEY: tl.constexpr):
    """Per slot column of ``values`` (BLOCK_N, KP): the top K (ties → lower index), stored at
    ``list_base + rank`` as key (if STORE_KEY), position and own noise-free score. Returns the
    (BLOCK_N, KP) int32 tile marking the listed candidates of each slot."""
    listed = tl.zeros(values.shape, dtype=tl.int32)
    for rank in tl.range(0, K):
        best, at = tl.max(values, axis=0, return_indices=True, return_indices_tie_break_left=True)
        found = best > float("-inf")
        is_pick = (local[:, None] == at[None, :]) & found[None, :]
        own = tl.sum(tl.where(is_pick, finite_scores, 0.0), axis=0)  # exact: one non-zero term
        values = tl.where(is_pick, float("-inf"), values)
        listed = tl.where(is_pick, 1, listed)
        entry = list_base + rank
        if STORE_KEY:
            tl.store(key_out + entry, best, mask=slot_ok)
        tl.store(pos_out + entry, tl.where(found, first_pos + at, -1), mask=slot_ok)
        tl.store(own_out + entry, tl.where(found, own, float("-inf")), mask=slot_ok)
    return listed


@triton.jit
def _slot_argmax_fwd_kernel(
    h_ptr, t_ptr, bias_ptr, mask_ptr,
    key_ptr, pos_ptr, own_ptr, spos_ptr, sscore_ptr, tail_ptr, blse_ptr,
    N, D, NB, stream_key,
    s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn, s_mb, s_mn,
    K: tl.constexpr, KP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    SAMPLE: tl.constexpr, DOT_FP32: tl.constexpr,
):
    """Per (block, row): the per-slot lists, tail and block LSE (module docstring).

    Outputs, per row and block, list entry (slot k, rank r) at index k·K + r:
      key, pos, own    (B, NB, K, K)  fp32 key / int32 position (−1: none) / fp32 noise-free
                                      score s[pos, k] of slot k's r-th best by key
      spos, sscore     (B, NB, K, K)  the same by score (written only when SAMPLE; else = pos, own)
      tail, blse       (B, NB, K)     fp32 LSE per slot over the block minus its by-score list /
                                      over the whole block (−inf: empty)
    """
    blk = tl.program_id(0)
    row = tl.program_id(1)
    local = tl.arange(0, BLOCK_N)
    offs_n = blk * BLOCK_N + local
    offs_k = tl.arange(0, KP)
    in_n = offs_n < N
    slot_ok = offs_k < K
    valid = tl.load(mask_ptr + row.to(tl.int64) * s_mb + offs_n * s_mn, mask=in_n, other=0) != 0
    live = valid[:, None] & slot_ok[None, :]

    scores = _block_scores(h_ptr, t_ptr, bias_ptr, row, offs_n, offs_k, in_n, D,
                           s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
                           K, BLOCK_D, BLOCK_N, KP, DOT_FP32)
    scores = tl.where(live, scores, float("-inf"))
    finite_scores = tl.where(live, scores, 0.0)  # operand of the exact one-hot gathers
    list_base = (row.to(tl.int64) * NB + blk) * (K * K) + offs_k * K  # (KP,): entry (k, rank 0)
    if SAMPLE:
        keys = tl.where(live, scores + _gumbel_tile(stream_key, row, offs_n, offs_k), float("-inf"))
        _top_lists(keys, finite_scores, local, blk * BLOCK_N, list_base, key_ptr, pos_ptr, own_ptr,
                   slot_ok, K, True)
        listed = _top_lists(scores, finite_scores, local, blk * BLOCK_N, list_base, key_ptr,
                            spos_ptr, sscore_ptr, slot_ok, K, False)
    else:
        listed = _top_lists(scores, finite_scores, local, blk * BLOCK_N, list_base, key_ptr,
                            pos_ptr, own_ptr, slot_ok, K, True)

    slot_base = (row.to(tl.int64) * NB + blk) * K + offs_k
    tl.store(tail_ptr + slot_base, _column_lse(tl.where(listed != 0, float("-inf"), scores)),
             mask=slot_ok)
    tl.store(blse_ptr + slot_base, _column_lse(scores), mask=slot_ok)


@triton.jit
def _slot_argmax_select_kernel(
    key_ptr, pos_ptr, own_ptr, idx_ptr, pick_score_ptr, NB,
    K: tl.constexpr, KS: tl.constexpr, CHUNK: tl.constexpr, JC: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program per row: the greedy y_1..y_K over the block lists (module docstring).
    Writes idx (B, K) int64 (−1: no candidate left) and the picks' scores s[y_k, k] (B, K) fp32.

    Written without helper calls in its loops: Triton's CPU interpreter re-patches the language
    module on every @triton.jit call, so each helper (and each reduction) costs milliseconds there.
    """
    row = tl.program_id(0).to(tl.int64)
    offs_s = tl.arange(0, KS)
    offs_c = tl.arange(0, CHUNK)
    offs_j = tl.arange(0, JC)
    rank_ok = offs_s < K
    picked = tl.full((KS,), -1, dtype=tl.int32)
    pick_score = tl.full((KS,), float("nan"), dtype=tl.float32)
    for k in tl.range(0, K):
        earlier = (offs_s < k) & (picked >= 0)
        excluded_pos = tl.where(earlier, picked, -2)
        excluded_blk = tl.where(earlier, picked // BLOCK_N, -2)
        best_key = tl.full([], float("-inf"), dtype=tl.float32)
        best_pos = tl.full([], INT32_MAX, dtype=tl.int32)
        best_own = tl.full([], float("nan"), dtype=tl.float32)
        # clean blocks (no earlier pick): the head of their slot-k list is their best
        for c0 in tl.range(0, NB, CHUNK):
            blocks = c0 + offs_c
            head = ((row * NB + blocks) * K + k) * K
            ok = blocks < NB
            pos = tl.load(pos_ptr + head, mask=ok, other=-1)
            key = tl.load(key_ptr + head, mask=ok, other=float("-inf"))
            own = tl.load(own_ptr + head, mask=ok, other=float("-inf"))
            dirty = tl.max((blocks[:, None] == excluded_blk[None, :]).to(tl.int32), axis=1)
            key = tl.where((dirty > 0) | (pos < 0), float("-inf"), key)
            chunk_key = tl.max(key, axis=0)
            chunk_pos = tl.min(tl.where((key == chunk_key) & (key > float("-inf")), pos, INT32_MAX), axis=0)
            chunk_own = tl.max(tl.where(pos == chunk_pos, own, float("-inf")), axis=0)
            better = (chunk_key > best_key) | ((chunk_key == best_key) & (chunk_pos < best_pos))
            best_key = tl.where(better, chunk_key, best_key)
            best_pos = tl.where(better, chunk_pos, best_pos)
            best_own = tl.where(better, chunk_own, best_own)
        # dirty blocks: their slot-k lists without the excluded candidates, JC picks' blocks per
        # step (a block seen twice changes nothing: max is idempotent)
        for j0 in tl.range(0, k, JC):
            rows_j = j0 + offs_j
            pick_j = tl.sum(tl.where(offs_s[None, :] == rows_j[:, None], picked[None, :], 0), axis=1)
            use = (rows_j < k) & (pick_j >= 0)                                       # (JC,)
            block_j = row * NB + tl.maximum(pick_j, 0) // BLOCK_N
            entries = (block_j[:, None] * K + k) * K + offs_s[None, :]             # (JC, KS)
            ok = use[:, None] & rank_ok[None, :]
            pos = tl.load(pos_ptr + entries, mask=ok, other=-1)
            key = tl.load(key_ptr + entries, mask=ok, other=float("-inf"))
            own = tl.load(own_ptr + entries, mask=ok, other=float("-inf"))
            hit = tl.max((pos[:, :, None] == excluded_pos[None, None, :]).to(tl.int32), axis=2)
            key = tl.where((hit > 0) | (pos < 0), float("-inf"), key)
            chunk_key = tl.max(tl.max(key, axis=1), axis=0)
            top = (key == chunk_key) & (key > float("-inf"))
            chunk_pos = tl.min(tl.min(tl.where(top, pos, INT32_MAX), axis=1), axis=0)
            chunk_own = tl.max(tl.max(tl.where(pos == chunk_pos, own, float("-inf")), axis=1), axis=0)
            better = (chunk_key > best_key) | ((chunk_key == best_key) & (chunk_pos < best_pos))
            best_key = tl.where(better, chunk_key, best_key)
            best_pos = tl.where(better, chunk_pos, best_pos)
            best_own = tl.where(better, chunk_own, best_own)
        got = best_key > float("-inf")
        picked = tl.where(offs_s == k, tl.where(got, best_pos, -1), picked)
        pick_score = tl.where(offs_s == k, tl.where(got, best_own, float("nan")), pick_score)

    out = row * K + offs_s
    tl.store(idx_ptr + out, picked.to(tl.int64), mask=rank_ok)
    tl.store(pick_score_ptr + out, pick_score, mask=rank_ok)


@triton.jit
def _slot_argmax_lse_kernel(
    h_ptr, t_ptr, bias_ptr, spos_ptr, sscore_ptr, tail_ptr, blse_ptr, idx_ptr, pick_score_ptr,
    logz_ptr, lse_ptr, D, NB,
    s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
    K: tl.constexpr, KS: tl.constexpr, CHUNK: tl.constexpr, JC: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One program per (slot k, row): lse_k = LSE over R_k of s[:, k] (module docstring) and
    logz_k = s[y_k, k] − lse_k. Writes lse (B, K) fp32 and logz (B, K) in logz's dtype."""
    k = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, KS)
    offs_c = tl.arange(0, CHUNK)
    offs_j = tl.arange(0, JC)
    picks = tl.load(idx_ptr + row * K + offs_s, mask=offs_s < k, other=-1).to(tl.int32)
    earlier = (offs_s < k) & (picks >= 0)
    excluded_pos = tl.where(earlier, picks, -2)
    excluded_blk = tl.where(earlier, picks // BLOCK_N, -2)

    # the excluded candidates' scores for slot k, s[y_j, k] = h[y_j] · t[k] + bias[y_j], fp32
    rows_at = tl.where(earlier, picks, 0).to(tl.int64)
    h_rows = h_ptr + row * s_hb + rows_at[:, None] * s_hn
    t_row = t_ptr + row * s_tb + k * s_tk
    excluded_score = tl.zeros((KS,), dtype=tl.float32)
    for d0 in tl.range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        h_tile = tl.load(h_rows + offs_d[None, :] * s_hd, mask=earlier[:, None] & in_d[None, :], other=0.0)
        t_tile = tl.load(t_row + offs_d * s_td, mask=in_d, other=0.0)
        excluded_score += tl.sum(h_tile.to(tl.float32) * t_tile.to(tl.float32)[None, :], axis=1)
    excluded_bias = tl.load(bias_ptr + row * s_bb + rows_at * s_bn, mask=earlier, other=0.0)
    excluded_score = tl.where(earlier, excluded_score + excluded_bias.to(tl.float32), float("-inf"))

    run_max = tl.full([], float("-inf"), dtype=tl.float32)
    run_sum = tl.full([], 0.0, dtype=tl.float32)
    # clean blocks: their whole-block LSE
    for c0 in tl.range(0, NB, CHUNK):
        blocks = c0 + offs_c
        value = tl.load(blse_ptr + (row * NB + blocks) * K + k, mask=blocks < NB, other=float("-inf"))
        dirty = tl.max((blocks[:, None] == excluded_blk[None, :]).to(tl.int32), axis=1)
        value = tl.where(dirty > 0, float("-inf"), value)
        new_max = tl.maximum(run_max, tl.max(value, axis=0))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(value - shift), axis=0)
        run_max = new_max
    # dirty blocks, each once, JC picks' blocks per step: their listed scores not excluded, plus
    # their tail minus the excluded candidates that lie in it
    for j0 in tl.range(0, k, JC):
        rows_j = j0 + offs_j
        blk_j = tl.sum(tl.where(offs_s[None, :] == rows_j[:, None], excluded_blk[None, :], 0), axis=1)
        seen = tl.max(((offs_s[None, :] < rows_j[:, None]) & (excluded_blk[None, :] == blk_j[:, None]))
                      .to(tl.int32), axis=1)
        first = (rows_j < k) & (blk_j >= 0) & (seen == 0)                            # (JC,)
        block_row = row * NB + tl.maximum(blk_j, 0)
        entries = (block_row[:, None] * K + k) * K + offs_s[None, :]                # (JC, KS)
        listed_ok = first[:, None] & (offs_s < K)[None, :]
        spos = tl.load(spos_ptr + entries, mask=listed_ok, other=-1)
        sscore = tl.load(sscore_ptr + entries, mask=listed_ok, other=float("-inf"))
        same = spos[:, :, None] == excluded_pos[None, None, :]                     # (JC, KS, KS)
        hit = tl.max(same.to(tl.int32), axis=2)
        kept = tl.where((hit > 0) | (spos < 0), float("-inf"), sscore)
        tail = tl.load(tail_ptr + block_row * K + k, mask=first, other=float("-inf"))
        listed = tl.max(same.to(tl.int32), axis=1)                                 # (JC, KS e)
        in_tail = (first[:, None] & earlier[None, :] & (excluded_blk[None, :] == blk_j[:, None])
                   & (listed == 0))
        top = tl.maximum(tl.max(kept, axis=1), tail)
        ref = tl.where(top == float("-inf"), 0.0, top)
        tail_excluded = tl.sum(tl.where(in_tail, tl.exp(excluded_score[None, :] - ref[:, None]), 0.0), axis=1)
        kept_mass = tl.sum(tl.exp(kept - ref[:, None]), axis=1)
        mass = tl.maximum(tl.exp(tail - ref) - tail_excluded, 0.0) + kept_mass
        value = tl.where(mass > 0, ref + tl.log(tl.where(mass > 0, mass, 1.0)), float("-inf"))
        new_max = tl.maximum(run_max, tl.max(value, axis=0))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(value - shift), axis=0)
        run_max = new_max

    lse = tl.where(run_sum > 0, run_max + tl.log(tl.where(run_sum > 0, run_sum, 1.0)), float("-inf"))
    pick = tl.load(idx_ptr + row * K + k)
    own = tl.load(pick_score_ptr + row * K + k)
    logz = tl.where(pick >= 0, own - lse, float("nan"))
    tl.store(lse_ptr + row * K + k, lse)
    tl.store(logz_ptr + row * K + k, logz.to(logz_ptr.dtype.element_ty))


@triton.jit
def _slot_argmax_bwd_kernel(
    h_ptr, t_ptr, bias_ptr, mask_ptr, idx_ptr, lse_ptr, grad_ptr,
    dh_ptr, dbias_ptr, dt_part_ptr,
    N, D, NB,
    s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn, s_mb, s_mn,
    K: tl.constexpr, KP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_FP32: tl.constexpr,
):
    """One pass over N: ds from the recomputed s, then dh (B, N, d), dbias (B, N) and the
    per-block partial dt (B, NB, K, d); ds[n, k] = g_k·(1[n = y_k] − exp(s[n, k] − lse_k)·1[n ∈ R_k]).
    """
    blk = tl.program_id(0)
    row = tl.program_id(1)
    offs_n = blk * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, KP)
    in_n = offs_n < N
    slot_ok = offs_k < K
    valid = tl.load(mask_ptr + row.to(tl.int64) * s_mb + offs_n * s_mn, mask=in_n, other=0) != 0
    scores = _block_scores(h_ptr, t_ptr, bias_ptr, row, offs_n, offs_k, in_n, D,
                           s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
                           K, BLOCK_D, BLOCK_N, KP, DOT_FP32)
    small = row.to(tl.int64) * K + offs_k
    picks = tl.load(idx_ptr + small, mask=slot_ok, other=-1).to(tl.int32)
    lse = tl.load(lse_ptr + small, mask=slot_ok, other=0.0)
    grad = tl.load(grad_ptr + small, mask=slot_ok, other=0.0).to(tl.float32)

    chosen = (offs_n[:, None] == picks[None, :]) & slot_ok[None, :]  # (BLOCK_N, KP): n = y_j
    # n ∉ R_k iff n = y_j for some j < k: a one-hot matmul with the strict upper triangle (j < k)
    before = (offs_k[:, None] < offs_k[None, :]).to(tl.float32)  # (KP j, KP k)
    excluded = tl.dot(chosen.to(tl.float32), before, input_precision="ieee") > 0
    remaining = valid[:, None] & slot_ok[None, :] & (excluded == 0)
    prob = tl.where(remaining, tl.exp(tl.where(remaining, scores, 0.0) - lse[None, :]), 0.0)
    ds = grad[None, :] * (chosen.to(tl.float32) - prob)  # (BLOCK_N, KP), zero off the valid rows

    tl.store(dbias_ptr + row.to(tl.int64) * N + offs_n,
             tl.sum(ds, axis=1).to(dbias_ptr.dtype.element_ty), mask=in_n)
    h_rows = h_ptr + row.to(tl.int64) * s_hb + offs_n.to(tl.int64)[:, None] * s_hn
    dh_rows = dh_ptr + (row.to(tl.int64) * N + offs_n.to(tl.int64))[:, None] * D
    t_rows = t_ptr + row.to(tl.int64) * s_tb + offs_k[:, None] * s_tk
    dt_rows = dt_part_ptr + ((row.to(tl.int64) * NB + blk) * K + offs_k)[:, None] * D
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        t_tile = tl.load(t_rows + offs_d[None, :] * s_td, mask=slot_ok[:, None] & in_d[None, :],
                         other=0.0).to(tl.float32)  # (KP, BLOCK_D)
        dh = tl.dot(ds, t_tile, input_precision="ieee")
        tl.store(dh_rows + offs_d[None, :], dh.to(dh_ptr.dtype.element_ty),
                 mask=in_n[:, None] & in_d[None, :])
        h_tile = tl.load(h_rows + offs_d[None, :] * s_hd, mask=in_n[:, None] & in_d[None, :],
                         other=0.0).to(tl.float32)
        dt = tl.dot(tl.trans(ds), h_tile, input_precision="ieee")  # (KP, BLOCK_D)
        tl.store(dt_rows + offs_d[None, :], dt, mask=slot_ok[:, None] & in_d[None, :])

