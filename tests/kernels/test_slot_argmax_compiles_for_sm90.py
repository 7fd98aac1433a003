"""The slot_argmax Triton kernels compile for an H100 (sm_90) at K = 32, without a GPU.

``triton.compile`` with a ``GPUTarget`` runs Triton's whole NVIDIA pipeline down to a cubin with
the ptxas that Triton ships, so a kernel that only the interpreter accepts (the CPU tests) fails
here. It runs in a fresh interpreter without ``TRITON_INTERPRET`` (with it, ``triton.jit`` makes
interpreter functions, which do not compile). Marked slow (tens of seconds): ``make test-all``
runs it.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
pytest.importorskip("triton.backends.nvidia")

pytestmark = pytest.mark.slow

SLOTS = 32
BLOCK_N, BLOCK_D = 128, 64
STRIDES = {f"s_{name}": "i32" for name in "hb hn hd tb tk td bb bn".split()}


def compile_for_sm90(kernel, signature, constants):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(fn=kernel, signature=signature, constexprs=constants)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernels_compile_for_sm90_at_k32(dtype):
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), dtype], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.split() == ["compiled", "5"], result.stdout


def compile_all(dtype: str) -> int:
    """Compile the four kernels (the forward with and without sampling) for sm_90; returns how
    many cubins came out."""
    from egakit.kernels.ops.slot_argmax import triton_kernels as kernels
    from egakit.kernels.ops.slot_argmax import triton_op

    cubins = 0
    kp, slot_pad = max(16, SLOTS), SLOTS
    chunk = triton_op._merge_chunk(782, slot_pad, on_cuda=True)
    picks_per_step = triton_op._picks_per_step(slot_pad, on_cuda=True)
    inputs = {"h_ptr": f"*{dtype}", "t_ptr": f"*{dtype}", "bias_ptr": f"*{dtype}"}
    for sample in (False, True):
        signature = {**inputs, "mask_ptr": "*i1", "key_ptr": "*fp32", "pos_ptr": "*i32", "own_ptr": "*fp32",
                     "spos_ptr": "*i32", "sscore_ptr": "*fp32", "tail_ptr": "*fp32", "blse_ptr": "*fp32",
                     "N": "i32", "D": "i32", "NB": "i32", "stream_key": "i64", **STRIDES, "s_mb": "i32",
                     "s_mn": "i32", "K": "constexpr", "KP": "constexpr", "BLOCK_N": "constexpr",
                     "BLOCK_D": "constexpr", "SAMPLE": "constexpr", "DOT_FP32": "constexpr"}
        compiled = compile_for_sm90(kernels._slot_argmax_fwd_kernel, signature, dict(
            K=SLOTS, KP=kp, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, SAMPLE=sample, DOT_FP32=False))
        cubins += bool(compiled.asm["cubin"])
    signature = {"key_ptr": "*fp32", "pos_ptr": "*i32", "own_ptr": "*fp32", "idx_ptr": "*i64",
                 "pick_score_ptr": "*fp32", "NB": "i32", "K": "constexpr", "KS": "constexpr",
                 "CHUNK": "constexpr", "JC": "constexpr", "BLOCK_N": "constexpr"}
    cubins += bool(compile_for_sm90(kernels._slot_argmax_select_kernel, signature, dict(
        K=SLOTS, KS=slot_pad, CHUNK=chunk, JC=picks_per_step, BLOCK_N=BLOCK_N)).asm["cubin"])
    signature = {**inputs, "spos_ptr": "*i32", "sscore_ptr": "*fp32", "tail_ptr": "*fp32", "blse_ptr": "*fp32",
                 "idx_ptr": "*i64", "pick_score_ptr": "*fp32", "logz_ptr": f"*{dtype}", "lse_ptr": "*fp32",
                 "D": "i32", "NB": "i32", **STRIDES, "K": "constexpr", "KS": "constexpr", "CHUNK": "constexpr",
                 "JC": "constexpr", "BLOCK_N": "constexpr", "BLOCK_D": "constexpr"}
    cubins += bool(compile_for_sm90(kernels._slot_argmax_lse_kernel, signature, dict(
        K=SLOTS, KS=slot_pad, CHUNK=chunk, JC=picks_per_step, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)).asm["cubin"])
    signature = {**inputs, "mask_ptr": "*i1", "idx_ptr": "*i64", "lse_ptr": "*fp32", "grad_ptr": f"*{dtype}",
                 "dh_ptr": f"*{dtype}", "dbias_ptr": f"*{dtype}", "dt_part_ptr": "*fp32", "N": "i32", "D": "i32",
                 "NB": "i32", **STRIDES, "s_mb": "i32", "s_mn": "i32", "K": "constexpr", "KP": "constexpr",
                 "BLOCK_N": "constexpr", "BLOCK_D": "constexpr", "DOT_FP32": "constexpr"}
    block_n = min(BLOCK_N, triton_op.GPU_BACKWARD_TILE // kp)
    cubins += bool(compile_for_sm90(kernels._slot_argmax_bwd_kernel, signature, dict(
        K=SLOTS, KP=kp, BLOCK_N=block_n, BLOCK_D=BLOCK_D, DOT_FP32=False)).asm["cubin"])
    return cubins


if __name__ == "__main__":
    print("compiled", compile_all(sys.argv[1]))
