"""``import egakit.kernels`` and both ops on CPU need torch alone (``pip install egakit``).

Each check runs in a fresh interpreter (``sys.executable -c``): one where a meta-path finder makes
``triton`` unimportable, one with triton installed. In both, importing the package and running
the ops (functions and modules, forward and backward) on CPU must not import the package's Triton
modules, nor any egakit module outside ``egakit.kernels`` (the bottom layer imports nothing above
it); without triton, ``backend="triton"`` must raise an ImportError that says how to install it.
"""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300

BLOCK_TRITON = """
import importlib.abc
import sys

class NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, NoTriton())
"""

RUN_BOTH_OPS = """
import sys

import torch

import egakit.kernels as kernels

triton_blocked = {blocked}
if triton_blocked:
    assert "triton" not in sys.modules and not kernels.triton_available()
gen = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(2, 2, 30, 4, generator=gen, requires_grad=True) for _ in range(3))
mask = torch.rand(2, 30, generator=gen) < 0.8
mask[:, :5] = True
layer = kernels.ClusterAggregate(heads=2, n_clusters=3, head_dim=4)
a_q, a_k, a_v = layer(q, k, v, mask)
dense = kernels.cluster_aggregate_dense(q, k, v, layer.centroids, mask)
assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip((a_q, a_k, a_v), dense))
(a_q.sum() + a_k.sum() + a_v.sum()).backward()
assert layer.centroids.grad is not None and q.grad is not None

h = torch.randn(2, 30, 6, generator=gen, requires_grad=True)
t = torch.randn(2, 4, 6, generator=gen, requires_grad=True)
bias = torch.zeros(2, 30)
idx, logz = kernels.SlotArgmax()(h, t, bias, mask)
want_idx, want_logz = kernels.slot_argmax_dense(h, t, bias, mask)
assert torch.equal(idx, want_idx) and torch.allclose(logz, want_logz, atol=1e-5)
_, logz_sampled = kernels.slot_argmax(h, t, bias, mask, sample_seed=3)
(logz.sum() + logz_sampled.sum()).backward()
assert h.grad is not None and t.grad is not None

if triton_blocked:
    for call in (lambda: kernels.slot_argmax(h, t, bias, mask, backend="triton"),
                 lambda: kernels.cluster_aggregate(q, k, v, layer.centroids, mask, backend="triton")):
        try:
            call()
        except ImportError as error:
            assert "egakit[triton]" in str(error), error
        else:
            raise AssertionError("backend='triton' without triton must raise ImportError")

ours = sorted(name for name in sys.modules if name == "egakit" or name.startswith("egakit."))
outside = [name for name in ours if name != "egakit" and not name.startswith("egakit.kernels")]
assert not outside, f"egakit.kernels imported egakit modules outside itself: {{outside}}"
triton_modules = [name for name in ours if name.rsplit(".", 1)[-1].startswith("triton")]
assert not triton_modules, f"the Triton path was imported without being used: {{triton_modules}}"
print("OK", len(ours))
"""


def run_fresh(code: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    env["TRITON_INTERPRET"] = "1"  # even with the interpreter on, "auto" on CPU is the torch path
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("blocked", [True, False], ids=["triton_unimportable", "triton_installed"])
def test_import_and_cpu_ops_need_torch_alone(blocked):
    code = (BLOCK_TRITON if blocked else "") + RUN_BOTH_OPS.format(blocked=blocked)
    result = run_fresh(code)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.startswith("OK"), result.stdout


def test_readme_example_runs_without_triton():
    """The exact ```python block of kernels/README.md, with triton unimportable."""
    readme = (REPO / "kernels" / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    result = run_fresh(BLOCK_TRITON + example + "\nassert 'triton' not in sys.modules\nprint('OK')\n")
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.rstrip().endswith("OK"), result.stdout


def test_the_blocker_really_blocks_triton():
    """The meta-path finder above does make ``import triton`` fail (so the test can fail)."""
    result = run_fresh(BLOCK_TRITON + "import triton\n")
    assert result.returncode != 0 and "blocked by the test" in result.stderr
