"""One package per op (as Liger-Kernel's ``ops`` and HSTU's ``ops``), each with the same files:

``contract`` (dtypes, validation), ``dense`` (the plain definition), ``chunked`` (the torch path),
``triton_kernels`` + ``triton_op`` (the Triton path, imported on first use) and ``op`` (the
dispatch, the ``torch.library`` registration and the FLOP formulas). The public functions are
re-exported by :mod:`egakit.kernels`; this package exports nothing itself, so that the op
packages' names never collide with the functions of the same name.
"""
