"""The maths of EGA-V1's four training phases (V1 §4, docs/design.md §5); the LightningModules in
``lit_modules`` only wire these to data, optimisers and logging.

- :mod:`egakit.training.losses`: BCE of pre-training (Eq. 20) and of the reward model (Eq. 21).
- :mod:`egakit.training.rlaf`: marginal rewards with Y_−i (Eq. 22), baselines, policy gradient (Eq. 23).
- :mod:`egakit.training.payment`: ex-post regret under misreports (Eq. 34), the Lagrangian (Eq. 24),
  λ / ρ schedules.
"""
from egakit.training.losses import masked_bce_with_logits, pretrain_loss, reward_model_loss
from egakit.training.payment import (
    LagrangeMultipliers,
    MisreportProblem,
    Outcome,
    RegretOutcome,
    ex_post_regret,
    payment_lagrangian,
    rho_at,
    search_misreports,
    truthful_outcome,
)
from egakit.training.rlaf import (
    MarginalRewards,
    RLAFStep,
    advantages,
    best_list_value,
    list_value,
    marginal_rewards,
    policy_gradient_loss,
    rlaf_step,
    sample_seeds,
)

__all__ = [
    "LagrangeMultipliers",
    "MarginalRewards",
    "MisreportProblem",
    "Outcome",
    "RLAFStep",
    "RegretOutcome",
    "advantages",
    "best_list_value",
    "ex_post_regret",
    "list_value",
    "marginal_rewards",
    "masked_bce_with_logits",
    "payment_lagrangian",
    "policy_gradient_loss",
    "pretrain_loss",
    "reward_model_loss",
    "rho_at",
    "rlaf_step",
    "sample_seeds",
    "search_misreports",
    "truthful_outcome",
]
