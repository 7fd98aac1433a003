"""egakit's performance suite (SPEC §10): ``python -m perf {flops,latency,kernels,compare,all}``.

- :mod:`perf.flops_suite` — FLOPs of the real modules (FlopCounterMode) vs ``egakit.flops.model``;
  the paper's claims via ``egakit.flops.claims``.
- :mod:`perf.latency` — full inference per request and each block over N: time, peak memory,
  fitted growth exponents, achieved FLOP/s and bytes/s against the measured machine peaks.
- :mod:`perf.kernels` — the kernels' own benchmarks (``perf.bench_cluster_aggregate``,
  ``perf.bench_slot_argmax``), merged.
- :mod:`perf.compare` — EGA-V1 vs early-fusion and late-fusion rankers at equal N.
- :mod:`perf.plots`, :mod:`perf.summary` — PNGs and ``summary.json``.
Shared helpers: :mod:`perf.common` (timing, memory, peaks, environment), :mod:`perf.workload`
(model configurations, synthetic requests).
"""
