"""egakit: end-to-end generative advertising (EGA-V1 / EGA-V2).

One model reads all N candidate ads of a request, picks the K ads to show and what each pays.
Subpackages: :mod:`egakit.sim` (synthetic LBS world with ground truth), :mod:`egakit.features`
(hybrid feature service), :mod:`egakit.model` (RecFormer, AucFormer), :mod:`egakit.auction`,
:mod:`egakit.metrics`, :mod:`egakit.flops`; the CLI is :mod:`egakit.cli`.
"""
__version__ = "0.1.0"
