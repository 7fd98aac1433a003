"""Test-wide setup.

Without CUDA, the Triton kernels run in Triton's CPU interpreter; Triton reads TRITON_INTERPRET
when kernels are decorated, so it must be set before `kernels` is imported anywhere.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Two cores: keep intra-op threads from oversubscribing when pytest runs alongside other work.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
