"""The warnings an ``ega`` command silences: each one is about a library's code, not the user's
run, and is filtered at its narrowest (message and module) with the reason. Everything else
still prints."""
from __future__ import annotations

import logging
import warnings


class _DropLitLoggerTip(logging.Filter):
    """Drops Lightning's advertisement for LitLogger (an INFO line on every run, not a warning
    about this run); every other Lightning message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_known_warnings() -> None:
    """Silence the warnings of a command that are not about the user's run (module docstring);
    ``ega`` calls it once at start."""
    # torchdata's StatefulDataLoader (our RequestLoader's base) calls torch.set_vital, deprecated
    # by torch 2.13; nothing to change on our side until torchdata stops calling it.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning,
                            module=r"torchdata\.stateful_dataloader")
    # Lightning 2.6's own pytree helper uses LeafSpec, deprecated by torch 2.13 (Lightning's code).
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            module=r"lightning\.pytorch\.utilities\._pytree")
    # RequestStream's __len__ is exact under any num_workers: batch i of a rank comes from worker
    # i mod W (egakit.data.request_stream), which is what this generic warning asks for.
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined",
                            module=r"lightning\.pytorch\.utilities\.data")
    # Each phase freezes the modules it does not train and keeps them in eval mode on purpose
    # (Dice running statistics must not move; docs/design.md §5, egakit.lit.base.EGAV1Module.train).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training",
                            module=r"lightning\.pytorch\.loops\.fit_loop")
    tip_filter = _DropLitLoggerTip()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # rank_zero_info's logger
    if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
        logger.addFilter(tip_filter)
