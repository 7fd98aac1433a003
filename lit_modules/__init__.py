"""One LightningModule per EGA-V1 training phase (SPEC §5), thin: the maths is in ``egakit.training``.

| phase    | module              | trains            | frozen (eval mode)            |
|----------|---------------------|-------------------|-------------------------------|
| pretrain | :class:`PretrainModule` | RecFormer + heads | —                          |
| reward   | :class:`RewardModule`   | evaluator         | RecFormer (+ embedding, heads) |
| rlaf     | :class:`RLAFModule`     | generator         | RecFormer, evaluator           |
| payment  | :class:`PaymentModule`  | payment network   | everything else                |

Each phase after pre-training starts from the previous phase's checkpoint (``init_from``).
"""
from lit_modules.base import EGAV1Module
from lit_modules.payment import PaymentModule
from lit_modules.pretrain import PretrainModule
from lit_modules.reward import RewardModule
from lit_modules.rlaf import RLAFModule

__all__ = ["EGAV1Module", "PaymentModule", "PretrainModule", "RLAFModule", "RewardModule"]
