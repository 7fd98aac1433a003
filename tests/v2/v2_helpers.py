"""Helpers of the v2 tests: a Gaussian mixture with known clusters and a test-size RQ-VAE config
(a uniquely named module, so that ``import`` never picks another folder's conftest)."""
from dataclasses import dataclass

import torch

from egakit.v2 import RQVAE, RQVAEConfig, TokenizerTrainingHistory

N_CLUSTERS = 8
DIM = 16
N_ITEMS = 1500
CENTRE_SCALE = 4.0
NOISE_SCALE = 0.5
#: Test size: W = 16 codes per level (>= the clusters), C = 3 levels.
CODEBOOK_SIZE = 16
N_LEVELS = 3


@dataclass
class Mixture:
    x: torch.Tensor  # (N, D) embeddings
    labels: torch.Tensor  # (N,) cluster of each item
    centres: torch.Tensor  # (K, D)


def gaussian_mixture(n: int = N_ITEMS, k: int = N_CLUSTERS, dim: int = DIM, seed: int = 0) -> Mixture:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * CENTRE_SCALE
    labels = torch.arange(n) % k
    x = centres[labels] + torch.randn(n, dim, generator=g) * NOISE_SCALE
    return Mixture(x=x, labels=labels, centres=centres)


def small_config(**overrides) -> RQVAEConfig:
    options = dict(
        input_dim=DIM, latent_dim=8, hidden_dims=(32,), n_levels=N_LEVELS, codebook_size=CODEBOOK_SIZE, dead_code_steps=20
    )
    options.update(overrides)
    return RQVAEConfig(**options)


@dataclass
class TrainedTokenizer:
    model: RQVAE
    history: TokenizerTrainingHistory
    mixture: Mixture
