"""``python -m egakit.perf compare``: EGA-V1 against the early-fusion cascade ranker and late fusion at equal N.

Three ways to score N candidates of one request with the workload's sizes (d, N_h, m, L):

- **EGA-V1**: ``EGAV1.allocate`` — the whole model (RecFormer with GCF + MIF, generator, payment).
- **Early fusion** (the cascade's ranker, V1 §3.3 Fig. 4 and Eq. 28): each candidate is appended to
  the L behaviours and the (L+1)-token sequence goes through m standard Transformer blocks (Eq. 25:
  QKV + output projections, SDPA, FFN 4d), separately per candidate, then a CTR MLP on the
  candidate's token. Cost ``m·N·block(L+1, d)``: linear in N with a large L² constant.
- **Late fusion** (Fig. 4): m Transformer blocks over the L behaviours once, then one cross block
  (Eq. 26) in which the N candidates attend to the encoded behaviours, then the CTR MLP.
- **MCA** (Eq. 29): a two-tower pre-ranker over N and early fusion over ``N_r = α·N``
  (α = 0.033, the paper's); its time is the early-fusion time of αN candidates plus the measured
  pre-ranker.

Formula FLOPs come from :mod:`egakit.flops.paper` (Eq. 25–33) and, for EGA-V1, also from
:mod:`egakit.flops.model`; the rankers' FLOPs are also counted with FlopCounterMode at a small N.
Times are measured: EGA-V1 and late fusion at every N; early fusion directly where the predicted
time fits ``direct_seconds`` and otherwise extrapolated linearly in N from two measured batch sizes
(the cost per candidate is constant: every candidate runs the same (L+1)-token sequence).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egakit.flops import model as fm
from egakit.flops import paper
from egakit.perf import common
from egakit.perf.flops_suite import count_flops
from egakit.perf.workload import QUICK_NS, SWEEP_NS, Workload, build_model, default_workload, request_batch

ALPHA = 0.033  # the cascade's ranking share N_r = α·N (Appendix A.1)
EARLY_CHUNK = 8  # candidates per early-fusion forward (each one is an (L+1)-token sequence)
QUERY_CHUNK = 4096  # late fusion: candidates per cross-attention call (bounds the N × L scores)
EARLY_PROBE = (8, 32)  # candidate counts measured to fit the per-candidate early-fusion time
DIRECT_SECONDS = 20.0
QUICK_DIRECT_SECONDS = 2.0


class TransformerBlock(nn.Module):
    """Standard post-LN Transformer block (Eq. 25): x (S, T, d) → (S, T, d).

    QKV ``6·T·d²`` + output ``2·T·d²`` + FFN ``16·T·d²`` = ``24·T·d²``; attention ``4·T²·d``.
    """

    def __init__(self, d: int, n_heads: int, ffn_mult: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Linear(ffn_mult * d, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        s, t, d = x.shape
        q, k, v = (part.view(s, t, self.n_heads, -1).transpose(1, 2) for part in self.qkv(x).chunk(3, dim=-1))
        heads = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(s, t, d)
        x = self.norm1(x + self.out(heads))
        return self.norm2(x + self.ffn(x))


class CrossBlock(nn.Module):
    """Cross-attention block (Eq. 26): N queries over L keys / values, then the FFN on the queries.

    Q ``2·N·d²``, K V ``4·L·d²``, attention ``4·N·L·d``, output ``2·N·d²``, FFN ``16·N·d²``.
    """

    def __init__(self, d: int, n_heads: int, ffn_mult: int = 4, query_chunk: int = QUERY_CHUNK) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.query_chunk = query_chunk
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Linear(ffn_mult * d, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """x (1, N, d) candidates, memory (1, L, d) encoded behaviours → (1, N, d)."""
        _, n, d = x.shape
        split = lambda t: t.view(1, t.shape[1], self.n_heads, -1).transpose(1, 2)  # noqa: E731
        k, v = (split(part) for part in self.kv(memory).chunk(2, dim=-1))
        q = split(self.q(x))
        heads = torch.cat([F.scaled_dot_product_attention(part, k, v) for part in q.split(self.query_chunk, dim=2)], 2)
        x = self.norm1(x + self.out(heads.transpose(1, 2).reshape(1, n, d)))
        return self.norm2(x + self.ffn(x))


def ctr_mlp(d: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = d
    for size in hidden:
        layers += [nn.Linear(width, size), nn.GELU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


class EarlyFusionRanker(nn.Module):
    """Per candidate: [behaviours; candidate] → m blocks → CTR MLP on the candidate token.

    forward(behaviours (L, d), candidates (N, d)) → logits (N,), ``chunk`` candidates per batch.
    """

    def __init__(self, d: int, n_heads: int, m: int, hidden: tuple[int, ...], chunk: int = EARLY_CHUNK) -> None:
        super().__init__()
        self.chunk = chunk
        self.blocks = nn.ModuleList(TransformerBlock(d, n_heads) for _ in range(m))
        self.head = ctr_mlp(d, hidden)

    def forward(self, behaviours: Tensor, candidates: Tensor) -> Tensor:
        logits = []
        for part in candidates.split(self.chunk):
            x = torch.cat([behaviours.expand(part.shape[0], -1, -1), part.unsqueeze(1)], dim=1)  # (c, L+1, d)
            for block in self.blocks:
                x = block(x)
            logits.append(self.head(x[:, -1]).squeeze(-1))
        return torch.cat(logits)


class LateFusionRanker(nn.Module):
    """m blocks over the behaviours once, one cross block of the N candidates over them, CTR MLP.

    forward(behaviours (L, d), candidates (N, d)) → logits (N,).
    """

    def __init__(self, d: int, n_heads: int, m: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(d, n_heads) for _ in range(m))
        self.cross = CrossBlock(d, n_heads)
        self.head = ctr_mlp(d, hidden)

    def forward(self, behaviours: Tensor, candidates: Tensor) -> Tensor:
        memory = behaviours.unsqueeze(0)
        for block in self.blocks:
            memory = block(memory)
        return self.head(self.cross(candidates.unsqueeze(0), memory)).squeeze(-1).squeeze(0)


class TwoTowerPreRanker(nn.Module):
    """The cascade's pre-ranker (Eq. 27): user tower over the L behaviours (two d × d layers, mean
    pooled), inner product with the N candidate vectors. forward(behaviours, candidates) → (N,)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.user = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, behaviours: Tensor, candidates: Tensor) -> Tensor:
        return candidates @ self.user(behaviours).mean(0)


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def _timed(fn, *, device: str, repeats: int, max_seconds: float) -> float:
    """Median seconds of ``fn()`` under no_grad (one warm-up call)."""
    with torch.no_grad():
        return common.time_fn(fn, device=device, warmup=1, repeats=repeats, max_seconds=max_seconds)["median_s"]


def _hidden(n: int, d: int, device: str, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(device)


def run(
    device: str = "cpu",
    *,
    quick: bool = False,
    paper_config: bool = False,
    ns: Optional[tuple[int, ...]] = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Formula FLOPs and measured times of EGA-V1, early fusion, late fusion and MCA per N."""
    w: Workload = default_workload(device, paper=paper_config, quick=quick)
    c = w.config
    d, L, m = c.d, w.L, c.m
    ns = tuple(sorted(ns or (QUICK_NS if quick else SWEEP_NS)))
    direct = QUICK_DIRECT_SECONDS if quick else DIRECT_SECONDS
    point_seconds = 5.0 if quick else 30.0
    torch.manual_seed(0)
    early = EarlyFusionRanker(d, c.n_heads, m, c.ctr_mlp).to(device).eval()
    late = LateFusionRanker(d, c.n_heads, m, c.ctr_mlp).to(device).eval()
    pre = TwoTowerPreRanker(d).to(device).eval()
    ega = build_model(c, device=device)
    behaviours = _hidden(L, d, device, seed=1)

    # Early fusion: FLOPs counted at a probe size, time per candidate from two probe sizes.
    probe_flops = count_flops(lambda: early(behaviours, _hidden(EARLY_PROBE[0], d, device, 2)))
    probe_times = {}
    for n_probe in EARLY_PROBE:
        cands = _hidden(n_probe, d, device, seed=2)
        probe_times[n_probe] = _timed(lambda: early(behaviours, cands), device=device, repeats=repeats, max_seconds=point_seconds)
    (n0, t0), (n1, t1) = sorted(probe_times.items())
    per_candidate = max((t1 - t0) / (n1 - n0), t1 / n1 * 0.5)
    early_fixed = max(0.0, t1 - per_candidate * n1)

    def early_time(n: int) -> tuple[float, str]:
        predicted = early_fixed + per_candidate * n
        if predicted <= direct:
            cands = _hidden(n, d, device, seed=2)
            return _timed(lambda: early(behaviours, cands), device=device, repeats=1, max_seconds=direct), "measured"
        return predicted, "extrapolated"

    rows = []
    for n in ns:
        batch = request_batch(n, L, c.K, device=device)
        cands = _hidden(n, d, device, seed=3)
        n_r = max(1, math.ceil(ALPHA * n))
        ega_s = _timed(lambda: ega.allocate(batch), device=device, repeats=repeats, max_seconds=point_seconds)
        late_s = _timed(lambda: late(behaviours, cands), device=device, repeats=repeats, max_seconds=point_seconds)
        pre_s = _timed(lambda: pre(behaviours, cands), device=device, repeats=repeats, max_seconds=point_seconds)
        early_s, early_source = early_time(n)
        rank_s, rank_source = early_time(n_r)
        flops = {
            "ega_v1_project": fm.for_config(fm.ega_v1_inference, c, N=n, L=L).forward,
            "ega_v1_paper_eq33": paper.ega_v1(m=m, N=n, L=L, N_c=c.n_clusters, d=d, m_k=c.m_k, m_e=c.m_e, N_a=c.K,
                                              K=c.K, gcf_both_stacks=True),
            "early_fusion": paper.early_fusion(m=m, N=n, L=L, d=d),
            "late_fusion": paper.late_fusion(m=m, N=n, L=L, d=d),
            "mca": paper.mca(N=n, L=L, d=d, m_r=m, N_r=n_r),
        }
        times = {"ega_v1": ega_s, "early_fusion": early_s, "late_fusion": late_s, "mca": pre_s + rank_s}
        rows.append({
            "N": n, "N_r": n_r, "flops": flops, "time_s": times,
            "time_source": {"ega_v1": "measured", "early_fusion": early_source, "late_fusion": "measured",
                            "mca": f"pre-rank measured + ranking {rank_source}"},
            "time_over_ega": {k: v / ega_s for k, v in times.items()},
            "flops_over_ega": {k: v / flops["ega_v1_project"] for k, v in flops.items()},
        })
        common.log(f"[compare] N={n:>7}: EGA-V1 {ega_s:8.3f} s | early fusion {early_s:10.2f} s ({early_source}) | "
                   f"late fusion {late_s:7.3f} s | MCA {pre_s + rank_s:8.2f} s")

    late_probe = count_flops(lambda: late(behaviours, _hidden(EARLY_PROBE[0], d, device, 2)))
    return {
        "suite": "compare",
        "environment": common.environment(device),
        "workload": w.describe(),
        "alpha": ALPHA,
        "rows": rows,
        "early_fusion_probe": {
            "candidates": list(EARLY_PROBE), "times_s": {str(k): v for k, v in probe_times.items()},
            "seconds_per_candidate": per_candidate, "fixed_seconds": early_fixed,
            "counted_flops_at_probe": probe_flops.total,
            "paper_flops_at_probe": paper.early_fusion(m=m, N=EARLY_PROBE[0], L=L, d=d),
            "counted_over_paper": probe_flops.total / paper.early_fusion(m=m, N=EARLY_PROBE[0], L=L, d=d),
        },
        "late_fusion_probe": {
            "candidates": EARLY_PROBE[0], "counted_flops": late_probe.total,
            "paper_flops": paper.late_fusion(m=m, N=EARLY_PROBE[0], L=L, d=d),
            "counted_over_paper": late_probe.total / paper.late_fusion(m=m, N=EARLY_PROBE[0], L=L, d=d),
        },
        "crossover": crossover(rows),
    }


def crossover(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Smallest measured N at which each baseline is slower than EGA-V1, and the ratios at the largest N."""
    out: dict[str, Any] = {}
    for name in ("early_fusion", "late_fusion", "mca"):
        slower = [r["N"] for r in rows if r["time_s"][name] > r["time_s"]["ega_v1"]]
        out[name] = {
            "first_N_slower_than_ega": min(slower) if slower else None,
            "time_over_ega_at_largest_N": rows[-1]["time_over_ega"][name] if rows else None,
            "flops_over_ega_at_largest_N": rows[-1]["flops_over_ega"][name] if rows else None,
        }
    return out


def print_report(payload: dict[str, Any]) -> None:
    print(f"EGA-V1 vs fusion baselines ({payload['workload']['name']} config, L = {payload['workload']['L']}):")
    print(f"  {'N':>7} {'EGA-V1 s':>10} {'early s':>12} {'late s':>9} {'MCA s':>9}   early/EGA FLOPs  time")
    for r in payload["rows"]:
        t = r["time_s"]
        mark = "*" if r["time_source"]["early_fusion"] == "extrapolated" else " "
        print(f"  {r['N']:>7} {t['ega_v1']:>10.3f} {t['early_fusion']:>11.2f}{mark} {t['late_fusion']:>9.3f} "
              f"{t['mca']:>9.2f}   {r['flops_over_ega']['early_fusion']:>10.1f}x {r['time_over_ega']['early_fusion']:>8.1f}x")
    print("  (* extrapolated from the measured per-candidate time)")
