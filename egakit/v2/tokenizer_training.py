"""A plain-torch training loop for the RQ-VAE tokenizer (no Lightning): Adam on random batches
of an item-embedding table, codebooks k-means-initialised on the first batch."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from egakit.v2.rqvae import RQVAE


@dataclass
class TokenizerTrainingConfig:
    """steps: optimiser steps; batch_size: items per step (all items when larger than N);
    init_batch_size: items of the first batch, on which the codebooks are k-means-initialised
    (default: batch_size; at least W items give every code its own point); lr, weight_decay: Adam;
    seed: batch order and initialisation draws."""

    steps: int = 500
    batch_size: int = 256
    init_batch_size: Optional[int] = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


@dataclass
class TokenizerTrainingHistory:
    """Per-step loss terms and dead-code resets."""

    loss: list[float] = field(default_factory=list)
    reconstruction_loss: list[float] = field(default_factory=list)
    codebook_loss: list[float] = field(default_factory=list)
    commitment_loss: list[float] = field(default_factory=list)
    n_reset: list[int] = field(default_factory=list)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless random batches of row indices, each epoch a fresh permutation."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def train_tokenizer(
    model: RQVAE, embeddings: Tensor, config: Optional[TokenizerTrainingConfig] = None, progress: bool = False
) -> TokenizerTrainingHistory:
    """Train ``model`` on item embeddings (N, D) for ``config.steps`` steps; returns the history.

    ``progress`` shows a tqdm bar (tqdm comes with the ``train`` extra).
    """
    config = config or TokenizerTrainingConfig()
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) table, got {tuple(embeddings.shape)}")
    device = next(model.parameters()).device
    embeddings = embeddings.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    if not bool(model.quantizer.initialised):
        n_init = min(config.init_batch_size or config.batch_size, embeddings.shape[0])
        model.initialise(embeddings[torch.randperm(embeddings.shape[0], generator=generator)[:n_init].to(device)])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TokenizerTrainingHistory()
    steps = range(config.steps)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as error:  # pragma: no cover - tqdm ships with egakit[train]
            raise ImportError("progress=True needs tqdm: pip install 'egakit[train]'") from error
        bar = tqdm(total=config.steps, desc="RQ-VAE", unit="step", file=sys.stderr)
    batches = _batches(embeddings.shape[0], config.batch_size, generator)
    for _ in steps:
        out = model(embeddings[next(batches).to(device)])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        history.loss.append(out.loss.item())
        history.reconstruction_loss.append(out.reconstruction_loss.item())
        history.codebook_loss.append(out.codebook_loss.item())
        history.commitment_loss.append(out.commitment_loss.item())
        history.n_reset.append(out.n_reset)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history.loss[-1]:.4g}", recon=f"{history.reconstruction_loss[-1]:.4g}")
    if bar is not None:
        bar.close()
    model.eval()
    return history
