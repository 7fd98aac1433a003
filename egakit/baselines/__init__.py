"""The cascade baselines of V1 §5.1.3 (docs/design.md §7): MCA and FS-LTR.

- :class:`SASRec` (recall), :class:`DSSM` (pre-rank), :class:`DIN` (rank) — real models,
  :mod:`egakit.baselines.sasrec`, :mod:`~egakit.baselines.dssm`, :mod:`~egakit.baselines.din`.
- :class:`CascadeMechanism` / :class:`MCAPipeline` — recall top-R → pre-rank top-M → rank → GSP
  as one :class:`~egakit.auction.mechanism.Mechanism` (:mod:`egakit.baselines.cascade`).
- :mod:`egakit.baselines.relabel` — stage-local (MCA) and full-stage relabelled (FS-LTR) targets.
- :mod:`egakit.baselines.losses` — BCE and sampled softmax.
- :mod:`egakit.baselines.checkpoint` — build the stage models and load them from checkpoints.

The LightningModules that train each stage are in ``egakit.lit.baselines``.
"""
from egakit.baselines.cascade import PRERANK_SCORES, CascadeContext, CascadeMechanism, MCAPipeline
from egakit.baselines.checkpoint import STAGE_MODELS, LoadedStage, build_stage_model, load_stage_model, stage_config
from egakit.baselines.common import STAGES, resolve_cross_vocab_sizes
from egakit.baselines.din import DIN, DINConfig
from egakit.baselines.dssm import DSSM, DSSMConfig
from egakit.baselines.losses import sampled_softmax, weighted_bce
from egakit.baselines.relabel import (
    FullStageLabels,
    FunnelOutcome,
    downstream_selection,
    full_stage_targets,
    stage_local_targets,
)
from egakit.baselines.sasrec import SASRec, SASRecConfig

__all__ = [
    "CascadeContext",
    "CascadeMechanism",
    "DIN",
    "DINConfig",
    "DSSM",
    "DSSMConfig",
    "FullStageLabels",
    "FunnelOutcome",
    "LoadedStage",
    "MCAPipeline",
    "PRERANK_SCORES",
    "SASRec",
    "SASRecConfig",
    "STAGES",
    "STAGE_MODELS",
    "build_stage_model",
    "downstream_selection",
    "full_stage_targets",
    "load_stage_model",
    "resolve_cross_vocab_sizes",
    "sampled_softmax",
    "stage_config",
    "stage_local_targets",
    "weighted_bce",
]
