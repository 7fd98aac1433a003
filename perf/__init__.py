"""egakit's performance suite (docs/design.md §10): ``python -m egakit.perf {flops,latency,kernels,compare,all}``.

- :mod:`egakit.perf.flops_suite` — FLOPs of the real modules (FlopCounterMode) vs ``egakit.flops.model``;
  the paper's claims via ``egakit.flops.claims``.
- :mod:`egakit.perf.latency` — full inference per request and each block over N: time, peak memory,
  fitted growth exponents, achieved FLOP/s and bytes/s against the measured machine peaks.
- :mod:`egakit.perf.kernels` — the kernels' own benchmarks (``egakit.perf.bench_cluster_aggregate``,
  ``egakit.perf.bench_slot_argmax``), merged.
- :mod:`egakit.perf.compare` — EGA-V1 vs early-fusion and late-fusion rankers at equal N.
- :mod:`egakit.perf.plots`, :mod:`egakit.perf.summary` — PNGs and ``summary.json``.
The one harness: :mod:`egakit.perf.common` (timing, memory, peaks, environment, benchmark rows with
one key spelling, JSON); every suite above only configures it. :mod:`egakit.perf.workload` (model
configurations, synthetic requests); :mod:`egakit.perf.migrate_result_keys` (rewrites rows of older
kernel-benchmark JSON into the one spelling).
"""
