"""``python -m egakit.perf flops``: FLOPs of the real modules, measured / formula, and the paper's claims.

Measured: each module of ``egakit.model`` is built on its own at the workload's sizes and run under
``torch.utils.flop_counter.FlopCounterMode`` (forward in eval mode under ``no_grad``; "train" =
forward + backward with inputs that require grad, as inside the model). The fused kernels are
counted by the formulas registered with ``torch.library`` (``ega::cluster_aggregate``,
``ega::slot_argmax`` and their backward ops); the per-op table of every measurement is kept, so the
JSON shows the counter saw them.

One gap of torch's counter is filled here: it has no formula for the CPU flash-attention op that
``scaled_dot_product_attention`` dispatches to on CPU (``aten._scaled_dot_product_flash_attention_for_cpu``
and its backward), so Eq. 9 would count as zero on CPU. :func:`flop_counter` maps those two ops to
torch's own SDPA formulas (the ones it uses for the CUDA flash / efficient kernels).

Formula: :mod:`egakit.flops.model` at the same sizes. Target: every ratio within ±10 %.

Claims: :func:`egakit.flops.claims.paper_claims` (MIF vs early / late fusion; EGA-V1 vs MCA) with
their verdicts, and the project's formulas next to the paper's Eq. 30–33 at the paper's sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from egakit.flops import claims as paper_claims_module
from egakit.flops import model as fm
from egakit.flops import paper
from egakit.model import (
    CTRHead, ClusterAttention, Evaluator, FeatureEmbedding, FeedForward, GCFLayer, Generator, MIF, PaymentNet,
    RecFormer,
)
from egakit.perf import common
from egakit.perf.workload import VOCAB_SIZES, Workload, build_model, default_workload, request_batch

TOLERANCE = 0.10
FLOPS_NS = (1_000, 10_000)
QUICK_FLOPS_NS = (500,)

aten = torch.ops.aten


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """``aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, …)``: QKᵀ and PV."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """``…_for_cpu_backward(grad_out, q, k, v, …)``: recomputed QKᵀ, dP, dV, dQ, dK."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: FLOP formulas torch's counter lacks: SDPA's CPU kernels (module docstring).
CPU_SDPA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------
def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also counts SDPA's CPU kernels."""
    return FlopCounterMode(display=False, depth=None, custom_mapping=dict(CPU_SDPA_FORMULAS))


@dataclass
class Count:
    """FLOPs of one call: ``total`` and ``per_op`` (op name → FLOPs, e.g. ``ega.cluster_aggregate``)."""

    total: int
    per_op: dict[str, int]


def count_flops(fn: Callable[[], Any]) -> Count:
    """Run ``fn()`` under :func:`flop_counter` and return its FLOPs."""
    with flop_counter() as counter:
        fn()
    per_op = {str(op): int(v) for op, v in counter.get_flop_counts().get("Global", {}).items()}
    return Count(total=int(counter.get_total_flops()), per_op=per_op)


# ---------------------------------------------------------------------------------------------
# Module cases
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One module measurement: ``run()`` performs the pass; ``formula`` predicts its FLOPs."""

    name: str
    mode: str  # "forward" or "train"
    run: Callable[[], Any]
    formula: float
    shape: dict[str, int]


def _inputs(*shape: int, device: str, grad: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device).requires_grad_(grad)


def _pass(module: torch.nn.Module, call: Callable[[], Any], mode: str, loss: Callable[[Any], torch.Tensor]) -> Callable[[], Any]:
    """A forward (eval, no_grad) or forward + backward (train) pass of ``call``."""
    if mode == "forward":
        module.eval()

        def forward() -> Any:
            with torch.no_grad():
                return call()
        return forward
    module.train()

    def train() -> Any:
        loss(call()).backward()
    return train


def _sum(out: Any) -> torch.Tensor:
    return out.float().sum() if isinstance(out, torch.Tensor) else sum(o.float().sum() for o in out if o.is_floating_point())


#: The measured modules, in model order; "ega_v1" is ``allocate`` (forward) or a pre-training step (train).
MODULES = (
    "feature_embedding", "cluster_attention_self", "cluster_attention_cross", "feed_forward", "gcf_layer",
    "mif_exchange", "recformer", "ctr_head", "generator", "evaluator", "payment", "ega_v1",
)
#: Modules whose cost does not depend on N (they see the K winners only).
N_INDEPENDENT = ("evaluator", "payment")


def case_name(module: str, mode: str) -> str:
    """Row name of a module: the whole model is ``ega_v1_allocate`` / ``ega_v1_pretrain_step``."""
    if module == "ega_v1":
        return "ega_v1_allocate" if mode == "forward" else "ega_v1_pretrain_step"
    return module


def build_case(module: str, w: Workload, N: int, mode: str, device: str = "cpu") -> Case:
    """One module of the model at N candidates, ``mode`` = ``forward`` or ``train``.

    Inputs: hidden states x_ad (1, N, d), x_bhv (1, L, d), e_u (1, d) (requiring grad in train
    mode), all-valid masks, a synthetic request batch for the embedding / whole model.
    """
    if module not in MODULES:
        raise ValueError(f"unknown module {module!r}; one of {MODULES}")
    if mode not in ("forward", "train"):
        raise ValueError(f"mode must be 'forward' or 'train', got {mode!r}")
    c = w.config
    L, K, d = w.L, c.K, c.d
    opts = c.block_options()
    grad = mode == "train"
    sizes = dict(d=d, n_heads=c.n_heads, n_clusters=c.n_clusters)
    ad_mask = torch.ones(1, N, dtype=torch.bool, device=device)
    bhv_mask = torch.ones(1, L, dtype=torch.bool, device=device)
    x_ad = lambda: _inputs(1, N, d, device=device, grad=grad, seed=1)  # noqa: E731 (built on demand)
    x_bhv = lambda: _inputs(1, L, d, device=device, grad=grad, seed=2)  # noqa: E731
    e_u = _inputs(1, d, device=device, grad=grad, seed=3)
    torch.manual_seed(0)

    def case(net: torch.nn.Module, call: Callable[[], Any], formula: fm.Flops, loss=_sum) -> Case:
        net.to(device)
        return Case(case_name(module, mode), mode, _pass(net, call, mode, loss), formula.total(mode), dict(N=N, L=L, K=K))

    if module == "feature_embedding":
        batch = request_batch(N, L, K, device=device)
        net = FeatureEmbedding(VOCAB_SIZES, d, c.feature_emb_dim)
        return case(net, lambda: net(batch), fm.feature_embedding(N=N, L=L, d=d, feature_emb_dim=c.feature_emb_dim))
    if module == "cluster_attention_self":
        net, h = ClusterAttention(options=opts, **sizes), x_ad()
        return case(net, lambda: net(h, ad_mask), fm.cluster_attention(N_q=N, **sizes))
    if module == "cluster_attention_cross":
        net, h, u = ClusterAttention(options=opts, **sizes), x_ad(), x_bhv()
        return case(net, lambda: net(h, ad_mask, u, bhv_mask), fm.cluster_attention(N_q=N, N_kv=L, **sizes))
    if module == "feed_forward":
        net, h = FeedForward(d, opts), x_ad()
        return case(net, lambda: net(h, ad_mask), fm.feed_forward(N=N, d=d, ffn_mult=c.ffn_mult))
    if module == "gcf_layer":
        net, h = GCFLayer(c.d, c.n_heads, c.n_clusters, opts), x_ad()
        return case(net, lambda: net(h, ad_mask), fm.gcf_layer(N=N, ffn_mult=c.ffn_mult, **sizes))
    if module == "mif_exchange":
        net, h, u = MIF(options=opts, **sizes), x_ad(), x_bhv()
        return case(net, lambda: net(h, ad_mask, u, bhv_mask), fm.mif_exchange(N=N, L=L, **sizes))
    if module == "recformer":
        net = RecFormer(c.d, c.n_heads, c.n_clusters, c.m, c.m_c, c.variant,
                        broadcast_user_to_ads=c.broadcast_user_to_ads, options=opts)
        h, u = x_ad(), x_bhv()
        return case(net, lambda: net(h, ad_mask, u, bhv_mask, e_u), fm.for_config(fm.recformer, c, N=N, L=L))
    if module == "ctr_head":
        net, h = CTRHead(d, d, c.ctr_mlp), x_ad()
        return case(net, lambda: net(h, e_u), fm.ctr_head(N=N, d=d, ctr_mlp=c.ctr_mlp))
    if module == "generator":
        net, h = Generator(c.d, c.n_heads, c.n_clusters, K, c.m_e, options=opts), x_ad()
        q_hat = torch.rand(1, N, device=device)
        bids = torch.rand(1, N, device=device) + 0.1
        return case(net, lambda: net(h, ad_mask, e_u, q_hat, bids), fm.for_config(fm.generator, c, N=N),
                    loss=lambda out: out[1].sum())
    if module == "evaluator":
        net, chosen = Evaluator(c.d, c.n_heads, K, c.m_e, c.eval_mlp, opts), _inputs(1, K, d, device=device, grad=grad, seed=4)
        return case(net, lambda: net(chosen, e_u), fm.for_config(fm.evaluator, c))
    if module == "payment":
        net, chosen = PaymentNet(d, K, c.pay_mlp), _inputs(1, K, d, device=device, grad=grad, seed=4)
        q_chosen = torch.rand(1, K, device=device)
        bids = torch.rand(1, K, device=device) + 0.1
        return case(net, lambda: net(chosen, q_chosen, bids), fm.payment(d=d, K=K, pay_mlp=c.pay_mlp))
    # module == "ega_v1"
    batch = request_batch(N, L, K, device=device)
    net = build_model(c, device=device)
    if mode == "forward":
        return case(net, lambda: net.allocate(batch), fm.for_config(fm.ega_v1_inference, c, N=N, L=L), loss=lambda out: out)
    return case(net, lambda: net(batch)[1]["ctr_logit"], fm.for_config(fm.encode, c, N=N, L=L),
                loss=lambda logit: F.binary_cross_entropy_with_logits(logit, batch.labels))


def module_cases(w: Workload, N: int, mode: str, device: str = "cpu") -> list[Case]:
    """Every module of :data:`MODULES` at N candidates (``mode`` = ``forward`` or ``train``)."""
    return [build_case(module, w, N, mode, device) for module in MODULES]


def measure_case(case: Case) -> dict[str, Any]:
    """Count one case and compare it with its formula."""
    count = count_flops(case.run)
    ratio = count.total / case.formula if case.formula else None
    return {
        "module": case.name, "mode": case.mode, **case.shape, "measured_flops": count.total,
        "formula_flops": case.formula, "ratio": ratio,
        "within_tolerance": ratio is not None and abs(ratio - 1.0) <= TOLERANCE, "per_op": count.per_op,
        "kernel_ops_seen": sorted({op for op in count.per_op if op.startswith("ega.")}),
    }


# ---------------------------------------------------------------------------------------------
# The paper's claims and the paper's formulas next to ours
# ---------------------------------------------------------------------------------------------
def claims_report() -> list[dict[str, Any]]:
    """Both claims of the paper (egakit.flops.claims) with numbers and verdicts."""
    out = []
    for result in paper_claims_module.paper_claims():
        d = result.to_dict()
        d["ratios"] = {c.label: dict(c.values) for c in result.checks}
        out.append(d)
    return out


def paper_vs_project(w: Workload, N: int) -> dict[str, Any]:
    """The paper's Eq. 30–33 and this project's formulas at the workload's sizes and N.

    The paper's GCF (Eq. 30) counts the ad stack only; ours has both stacks. Eq. 31 counts
    MIF's attention with coefficient 1; ours counts projections, aggregations and Eq. 9.
    Eq. 32 counts a self-attention block over N_a ads + a slot cross block; ours is the generator
    (slot tokens over N via cluster attention + slot_argmax) and the payment network.
    """
    c = w.config
    L = w.L
    m_k = c.m_k
    project = {
        "gcf_ads": c.m * fm.for_config(fm.gcf_layer, c, N=N).forward,
        "gcf_behaviours": c.m * fm.for_config(fm.gcf_layer, c, N=L).forward,
        "mif": m_k * fm.for_config(fm.mif_exchange, c, N=N, L=L).forward,
        "aucformer": fm.for_config(fm.generator, c, N=N).forward + fm.for_config(fm.payment, c).forward,
        "total_inference": fm.for_config(fm.ega_v1_inference, c, N=N, L=L).forward,
    }
    eq = {
        "gcf_ads": paper.gcf(m=c.m, N=N, N_c=c.n_clusters, d=c.d),
        "gcf_behaviours": paper.gcf(m=c.m, N=L, N_c=c.n_clusters, d=c.d),
        "mif": paper.mif(m_k=m_k, N=N, L=L, N_c=c.n_clusters, d=c.d),
        "aucformer": paper.auf(m_e=c.m_e, N_a=c.K, K=c.K, d=c.d),
        "total_inference": paper.ega_v1(m=c.m, N=N, L=L, N_c=c.n_clusters, d=c.d, m_k=m_k, m_e=c.m_e, N_a=c.K, K=c.K,
                                        gcf_both_stacks=True),
    }
    return {
        "workload": w.name, "N": N, "L": L, "project_flops": project, "paper_flops": eq,
        "project_over_paper": {k: project[k] / eq[k] if eq[k] else None for k in project},
        "note": (
            "paper: Eq. 30 per stack, Eq. 31 (coefficient 1, attention only), Eq. 32 with N_a = K; "
            "project: egakit.flops.model (projections, FFN, both aggregations of cross attention, Eq. 9, "
            "slot tokens over N, slot_argmax, payment MLP)"
        ),
    }


# ---------------------------------------------------------------------------------------------
# Suite
# ---------------------------------------------------------------------------------------------
def run(device: str = "cpu", *, quick: bool = False, paper_config: bool = False, ns: Optional[tuple[int, ...]] = None) -> dict[str, Any]:
    """Measure every module at each N (forward and train), plus the claims. Returns the JSON payload."""
    w = default_workload(device, paper=paper_config, quick=quick)
    ns = ns or (QUICK_FLOPS_NS if quick else FLOPS_NS)
    rows = []
    for n in ns:
        for mode in ("forward", "train"):
            for case in module_cases(w, n, mode, device):
                row = measure_case(case)
                common.log(f"[flops] N={n:>7} {mode:<7} {row['module']:<24} measured/formula = {row['ratio']:.6f}")
                rows.append(row)
    largest = max(ns)
    ratios = {
        (r["module"] if r["mode"] == "forward" else f"{r['module']}.train"): r["ratio"]
        for r in rows if r["N"] == largest
    }
    claims = claims_report()
    return {
        "suite": "flops",
        "environment": common.environment(device),
        "workload": w.describe(),
        "counting": {
            "rule": "FlopCounterMode: matmul 2·M·N·K; ega:: kernels by their registered formulas; "
                    "SDPA's CPU ops mapped to torch's SDPA formulas",
            "tolerance": TOLERANCE,
        },
        "rows": rows,
        "measured_over_formula": ratios,
        "all_within_tolerance": all(r["within_tolerance"] for r in rows),
        "kernel_ops_seen": sorted({op for r in rows for op in r["kernel_ops_seen"]}),
        "claims": claims,
        "paper_vs_project": [paper_vs_project(default_workload(device, paper=True, quick=False), n) for n in (10**3, 10**5)],
    }


def print_report(payload: dict[str, Any]) -> None:
    """Human-readable ratios and claim verdicts on stdout."""
    print(f"FLOPs measured / formula ({payload['workload']['name']} config, tolerance ±{TOLERANCE:.0%}):")
    for module, ratio in payload["measured_over_formula"].items():
        print(f"  {module:<30} {ratio:.6f}")
    print(f"  custom kernels seen by the counter: {', '.join(payload['kernel_ops_seen']) or 'NONE'}")
    for claim in payload["claims"]:
        print(f"\nClaim: {claim['claim']}\n  holds under the formulas: {claim['holds']}")
        for label, values in claim["ratios"].items():
            print(f"  {label}: " + ", ".join(f"{k} = {v:.4g}" for k, v in values.items()))
        print(f"  verdict: {claim['verdict']}")
    for cmp in payload["paper_vs_project"]:
        ratios = ", ".join(f"{k} {v:.3g}" for k, v in cmp["project_over_paper"].items())
        print(f"\nThis project's formulas / the paper's (Eq. 30-33), {cmp['workload']} sizes, N = {cmp['N']:,}: {ratios}")
