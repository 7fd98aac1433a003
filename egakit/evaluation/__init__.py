"""``ega evaluate`` (docs/design.md §8): every system on the world's test split → V1 Tables 1–3 and Fig. 5.

- :mod:`egakit.evaluation.config` — the YAML config (systems, world, seeds).
- :mod:`egakit.evaluation.systems` — MCA / FS-LTR cascades, EGA-V1, GSP / VCG on the true CTR
  behind one interface; :mod:`egakit.evaluation.loading` builds them from checkpoints.
- :mod:`egakit.evaluation.scoring` — the metrics per source (oracle truth / the paper's evaluator).
- :mod:`egakit.evaluation.report` — table JSON + Markdown, the scaling figure.
- :mod:`egakit.evaluation.runner` — the resumable run; the command is :mod:`egakit.evaluate`.
"""
from egakit.evaluation.config import METRICS, SOURCES, SYSTEM_KINDS, TABLES, EvalConfig, EvalConfigError, SystemSpec, load_config, parse_config
from egakit.evaluation.runner import EvalSummary, Evaluation, git_commit, run_evaluation

__all__ = [
    "EvalConfig",
    "EvalConfigError",
    "EvalSummary",
    "Evaluation",
    "METRICS",
    "SOURCES",
    "SYSTEM_KINDS",
    "SystemSpec",
    "TABLES",
    "git_commit",
    "load_config",
    "parse_config",
    "run_evaluation",
]
