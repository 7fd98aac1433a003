"""Backend selection shared by the kernels: Triton on CUDA, the chunked torch path elsewhere.

``backend="auto"`` picks Triton when every tensor is on a CUDA device and Triton is installed,
else the torch path. ``backend="triton"`` forces Triton: on CPU that needs ``TRITON_INTERPRET=1``
set before the first Triton call (Triton reads it when the kernels are decorated, and the kernel
modules are imported lazily, on that first call). ``backend="torch"`` forces the chunked torch
path (the CPU production path).

Nothing here imports triton: ``import egakit.kernels`` and the torch path need torch alone.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch

Backend = Literal["auto", "triton", "torch"]
BACKENDS = ("auto", "triton", "torch")
TRITON_INSTALL_HINT = "pip install 'egakit[triton]' (CUDA builds of torch bring it already)"


@torch.compiler.assume_constant_result
def triton_interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


@torch.compiler.assume_constant_result
def triton_available() -> bool:
    """True when the ``triton`` package can be imported (it is looked up, not imported)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def require_triton(op_name: str) -> None:
    """Raise a clear ImportError when the Triton path is asked for without Triton installed."""
    if not triton_available():
        raise ImportError(f"{op_name}(backend='triton') needs the triton package: {TRITON_INSTALL_HINT}")


def resolve_backend(backend: str, *tensors: torch.Tensor) -> Literal["triton", "torch"]:
    """Return the concrete backend for ``tensors`` (see module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "triton":
        if not on_cuda and not triton_interpreting():
            raise RuntimeError(
                "backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before the first "
                "Triton call (the Triton interpreter); use backend='torch' for the CPU path"
            )
        return "triton"
    return "triton" if on_cuda and triton_available() else "torch"
