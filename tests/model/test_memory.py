"""Memory is linear in N (docs/design.md §3, §10): no N × N tensor anywhere, and doubling N doubles memory.

The fast test counts, with a TorchDispatchMode, every byte the forward pass allocates (op outputs
that do not alias an input): peak memory ≤ total allocation, so a total that grows ×2 when N
grows ×2 bounds the peak linearly. The slow test measures the process's real peak RSS.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from egakit.model import EGAV1

from conftest import VOCAB_SIZES, make_batch, small_config


class AllocationMeter(TorchDispatchMode):
    """Total bytes of new tensors produced by ops, and the largest single one (in elements)."""

    def __init__(self):
        super().__init__()
        self.total_bytes = 0
        self.largest_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.total_bytes += t.untyped_storage().nbytes()
                self.largest_numel = max(self.largest_numel, t.numel())
        return out


def measure(model, n: int, train: bool) -> AllocationMeter:
    batch = make_batch(B=1, N=n, L=32, seed=0, valid_counts=[n - 7])
    meter = AllocationMeter()
    if train:
        with meter:
            q_hat, _ = model(batch)
            q_hat.sum().backward()
    else:
        with torch.no_grad(), meter:
            model.allocate(batch)
    return meter


@pytest.mark.parametrize("train", [False, True], ids=["inference", "train_step"])
def test_allocation_grows_linearly_in_n(train):
    torch.manual_seed(0)
    model = EGAV1(small_config(m=2, m_c=1, query_chunk=4096), VOCAB_SIZES).train(train)
    n = 10_000 if not train else 5_000
    small, large = measure(model, n, train), measure(model, 2 * n, train)
    ratio = large.total_bytes / small.total_bytes
    assert 1.7 < ratio < 2.3, f"allocation grew ×{ratio:.2f} when N doubled"
    assert large.largest_numel / small.largest_numel < 2.3
    assert large.largest_numel < (2 * n) ** 2 / 50, "an N × N-sized tensor was built"


RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from conftest import VOCAB_SIZES, make_batch, small_config
    from egakit.model import EGAV1
    n = int(sys.argv[1])
    torch.manual_seed(0)
    model = EGAV1(small_config(d=64, n_heads=4, n_clusters=32, m=2, m_c=1, query_chunk=8192), VOCAB_SIZES).eval()
    batch = make_batch(B=1, N=n, L=64, valid_counts=[n - 3])
    with torch.no_grad():
        model.allocate(make_batch(B=1, N=64, L=8))  # warm up lazy allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        model.allocate(batch)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"kib": after - before}}))
    """
)


@pytest.mark.slow
def test_peak_rss_grows_linearly_in_n():
    script = RSS_SCRIPT.format(tests=os.path.dirname(__file__))
    peaks = {}
    for n in (20_000, 40_000):
        out = subprocess.run([sys.executable, "-c", script, str(n)], capture_output=True, text=True, check=True)
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])["kib"]
    ratio = peaks[40_000] / peaks[20_000]
    assert 1.4 < ratio < 2.6, f"peak RSS grew ×{ratio:.2f} when N doubled: {peaks}"
