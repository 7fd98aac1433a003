"""The suite's measuring helpers: growth-exponent fits, peak memory, op traffic, environment."""
import math
import random

import pytest
import torch

from egakit.perf import common, latency


def test_fit_recovers_exponent_and_prefactor():
    ns = [1e3, 3e3, 1e4, 3e4, 1e5]
    fit = common.fit_power_law(ns, [3.0 * n**1.5 for n in ns])
    assert fit["exponent"] == pytest.approx(1.5)
    assert fit["prefactor"] == pytest.approx(3.0)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["points"] == 5


def test_fit_with_multiplicative_noise_and_a_fixed_cost():
    rng = random.Random(0)
    ns = [1e3, 3e3, 1e4, 3e4, 1e5]
    noisy = [2e-5 * n * math.exp(rng.gauss(0, 0.05)) for n in ns]
    assert common.fit_power_law(ns, noisy)["exponent"] == pytest.approx(1.0, abs=0.05)
    # a constant cost flattens the fit over all N, not over the largest N
    with_fixed = [1.0 + 1e-4 * n for n in ns]
    assert common.fit_power_law(ns, with_fixed)["exponent"] < 0.8
    assert common.fit_power_law(ns[-3:], with_fixed[-3:])["exponent"] > 0.7
    quadratic = [1e-9 * n * n for n in ns]
    assert common.fit_power_law(ns, quadratic)["exponent"] == pytest.approx(2.0)


def test_fit_drops_non_positive_points_and_needs_two():
    assert common.fit_power_law([1, 2, 4], [0, 2, 4])["exponent"] == pytest.approx(1.0)
    assert common.fit_power_law([1, 2], [0, 5])["exponent"] is None
    assert common.fit_power_law([3, 3], [1, 2])["exponent"] is None


def test_latency_fits_per_series():
    points = [{"N": n, "status": "ok", "median_s": 1e-6 * n, "peak_memory_bytes": 100 * n} for n in (10, 100, 1000, 10000)]
    points.append({"N": 100000, "status": "skipped: predicted peak memory"})
    fit = latency.fits(points)
    assert fit["time"]["exponent"] == pytest.approx(1.0)
    assert fit["memory"]["exponent"] == pytest.approx(1.0)
    assert fit["time_large_n"]["points"] == 3


def test_predict_extrapolates_linearly():
    done = [{"N": 10, "status": "ok", "x": 5.0}, {"N": 20, "status": "ok", "x": 7.0}]
    assert latency._predict(done, "x", 40) == pytest.approx(11.0)
    assert latency._predict(done[:1], "x", 40) is None


def test_peak_memory_sees_a_large_temporary():
    size = 64 * 2**20
    with common.PeakMemory("cpu") as memory:
        buffer = torch.ones(size // 4)  # touched pages
        del buffer
    assert memory.bytes >= 0.9 * size, (memory.bytes, memory.method)
    with common.PeakMemory("cpu") as idle:
        pass
    assert idle.bytes < 8 * 2**20


def test_op_traffic_counts_inputs_and_outputs_not_views():
    a, b = torch.ones(1000), torch.ones(1000)
    with common.OpTraffic() as traffic:
        c = a + b  # reads 2 × 4000 B, writes 4000 B
        c.view(10, 100).t()  # views move nothing
    assert traffic.bytes == 12000
    assert traffic.ops == 1


def test_environment_names_device_versions_and_commit():
    env = common.environment("cpu")
    for key in ("device", "device_name", "torch", "triton", "commit", "dirty", "torch_threads"):
        assert key in env
    assert env["torch"] == torch.__version__
    assert env["commit"] is None or len(env["commit"]) == 40


def test_kernel_speedup_reads_benchmark_rows():
    from egakit.perf import kernels

    def row(kernel, impl, n, ms, pass_="forward", dtype="float32"):
        return {"kernel": kernel, "impl": impl, "pass": pass_, "n": n, "dtype": dtype, "median_s": ms / 1e3}

    rows = [
        row("slot_argmax", "naive_eager", 1000, 1.0), row("slot_argmax", "torch", 1000, 2.0),
        row("slot_argmax", "naive_eager", 10000, 10.0), row("slot_argmax", "torch", 10000, 4.0),
        row("slot_argmax", "torch_compile", 10000, 1.0), row("slot_argmax", "torch", 10000, 0.1, "forward+backward"),
        row("cluster_aggregate", "naive", 10000, 9.0), row("cluster_aggregate", "triton", 10000, 1.0),
        row("cluster_aggregate", "naive_compiled", 10000, 0.1),
        row("cluster_aggregate", "torch", 10000, 3.0), row("cluster_aggregate", "triton", 10000, 0.5, dtype="bfloat16"),
    ]
    details = kernels.speedup_details(rows)
    assert details["slot_argmax"]["speedup"] == pytest.approx(2.5)  # largest N, forward, not torch_compile
    assert details["cluster_aggregate"]["kernel_impl"] == "triton"  # Triton before the torch path
    assert kernels.speedups(rows)["cluster_aggregate"] == pytest.approx(9.0)
    assert kernels.speedups([]) == {"cluster_aggregate": None, "slot_argmax": None}
