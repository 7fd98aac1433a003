"""Session fixtures of the v2 tests: the Gaussian mixture and one RQ-VAE trained on it."""
import pytest
import torch

from egakit.v2 import RQVAE, TokenizerTrainingConfig, train_tokenizer
from v2_helpers import Mixture, TrainedTokenizer, gaussian_mixture, small_config

#: Training of the shared tokenizer: a few hundred steps, seconds on one CPU thread.
TRAIN_STEPS = 200
TRAIN_BATCH = 256
TRAIN_LR = 3e-3


@pytest.fixture(scope="session")
def mixture() -> Mixture:
    return gaussian_mixture()


@pytest.fixture(scope="session")
def trained_tokenizer(mixture: Mixture) -> TrainedTokenizer:
    torch.manual_seed(0)
    model = RQVAE(small_config())
    history = train_tokenizer(model, mixture.x, TokenizerTrainingConfig(steps=TRAIN_STEPS, batch_size=TRAIN_BATCH, lr=TRAIN_LR, seed=0))
    return TrainedTokenizer(model=model, history=history, mixture=mixture)
