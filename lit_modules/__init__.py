"""One LightningModule per EGA-V1 training phase (docs/design.md §5), thin: the maths is in ``egakit.training``.

| phase    | module              | trains            | frozen (eval mode)            |
|----------|---------------------|-------------------|-------------------------------|
| pretrain | :class:`PretrainModule` | RecFormer + heads | —                          |
| reward   | :class:`RewardModule`   | evaluator         | RecFormer (+ embedding, heads) |
| rlaf     | :class:`RLAFModule`     | generator         | RecFormer, evaluator           |
| payment  | :class:`PaymentModule`  | payment network   | everything else                |

Each phase after pre-training starts from the previous phase's checkpoint (``init_from``).
"""
from egakit.lit.base import EGAV1Module
from egakit.lit.payment import PaymentModule
from egakit.lit.pretrain import PretrainModule
from egakit.lit.reward import RewardModule
from egakit.lit.rlaf import RLAFModule

__all__ = ["EGAV1Module", "PaymentModule", "PretrainModule", "RLAFModule", "RewardModule"]
