"""FlopCounterMode on small real modules agrees with egakit.flops.model within 10 % for every module,
forward and forward + backward, and it sees the custom kernels (``ega::`` ops in its per-op table)."""
import pytest
import torch

from egakit.model import EGAV1Config
from egakit.perf import flops_suite
from egakit.perf.workload import Workload

TINY = Workload(
    "tiny-test",
    EGAV1Config(d=16, n_heads=2, n_clusters=6, m=3, m_c=2, m_e=2, K=3, feature_emb_dim=4,
                ctr_mlp=(8, 4), eval_mlp=(8,), pay_mlp=(8,), query_chunk=16),  # several Eq. 9 query chunks
    L=12,
)
N = 40

#: Modules that run each custom kernel (forward / backward op names in the counter's table).
USES_AGGREGATE = {"cluster_attention_self", "cluster_attention_cross", "gcf_layer", "mif_exchange", "recformer",
                  "generator", "ega_v1"}
USES_SLOT_ARGMAX = {"generator", "ega_v1"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_every_module_matches_its_formula_and_the_counter_sees_the_kernels(mode):
    rows = {r["module"]: r for r in (flops_suite.measure_case(c) for c in flops_suite.module_cases(TINY, N, mode))}
    assert set(rows) >= {"gcf_layer", "mif_exchange", "generator", "evaluator", "payment"}
    for name, row in rows.items():
        assert row["within_tolerance"], row
        assert abs(row["ratio"] - 1.0) <= 0.10, (name, row["ratio"])
    for module in flops_suite.MODULES:
        per_op = rows[flops_suite.case_name(module, mode)]["per_op"]
        kernels = set()
        if module in USES_AGGREGATE:
            kernels.add("ega.cluster_aggregate")
        if module in USES_SLOT_ARGMAX and not (module == "ega_v1" and mode == "train"):  # pretrain: no generator
            kernels.add("ega.slot_argmax")
        if mode == "train":
            kernels |= {op + "_backward" for op in kernels}
        for op in kernels:
            assert per_op.get(op, 0) > 0, (module, op, per_op)
        if not kernels:
            assert not any(op.startswith("ega.") for op in per_op), (module, per_op)


def test_sdpa_on_cpu_is_counted():
    """Eq. 9 runs through SDPA's CPU flash kernel, which torch's counter has no formula for: the suite's
    counter maps it to torch's SDPA formula (4·B·H·N_q·N_kv·d_h forward)."""
    q = torch.randn(1, 2, 10, 8)
    k = v = torch.randn(1, 2, 3, 8)
    count = flops_suite.count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert count.total == 4 * 2 * 10 * 3 * 8


@pytest.mark.parametrize("variant", ["no_gcf", "no_mif", "ta_only", "ca_only", "late_fusion"])
def test_recformer_variants_match(variant):
    w = Workload(f"tiny-{variant}", EGAV1Config(**{**TINY.config.__dict__, "variant": variant}), L=TINY.L)
    row = flops_suite.measure_case(flops_suite.build_case("recformer", w, N, "forward"))
    assert row["within_tolerance"], row
