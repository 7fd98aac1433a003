"""Backend selection shared by the kernels: Triton on CUDA, the torch reference elsewhere.

``backend="auto"`` picks Triton when every tensor is on a CUDA device, else the torch path.
``backend="triton"`` forces Triton: on CPU that needs ``TRITON_INTERPRET=1`` set *before* the
``kernels`` package is imported (Triton reads it when the kernels are decorated).
``backend="torch"`` forces the pure-torch reference (the CPU production path).
"""
from __future__ import annotations

import os
from typing import Literal

import torch

Backend = Literal["auto", "triton", "torch"]
BACKENDS = ("auto", "triton", "torch")


def triton_interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def resolve_backend(backend: str, *tensors: torch.Tensor) -> Literal["triton", "torch"]:
    """Return the concrete backend for ``tensors`` (see module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "torch":
        return "torch"
    if backend == "triton":
        if not on_cuda and not triton_interpreting():
            raise RuntimeError(
                "backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before importing "
                "`kernels` (the Triton interpreter); use backend='torch' for the CPU path"
            )
        return "triton"
    return "triton" if on_cuda else "torch"
