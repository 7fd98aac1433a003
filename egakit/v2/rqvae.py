"""RQ-VAE tokenizer (EGA-V2 §4.1.2, Eq. 10-12; docs/design.md §9).

An item embedding x (D) is encoded to a latent z (d), quantised by C residual levels of W codes
each, and decoded back:

    r_1 = z,   a^l = argmin_w ||r_l - e^l_w||²,   r_{l+1} = r_l - e^l_{a^l}     (l = 1..C)
    ẑ = Σ_l e^l_{a^l},   x̂ = Decoder(z + sg(ẑ - z))         (straight-through estimator)

so the item's token is a = (a^1, ..., a^C) (EGA-V2 Eq. 12). The loss is the VQ-VAE one summed
over levels:

    L = ||x - x̂||² + Σ_l ||sg(r_l) - e^l_{a^l}||² + β Σ_l ||r_l - sg(e^l_{a^l})||²
        reconstruction   codebook                    commitment (β = 0.25)

The commitment term is the only one that pulls the encoder towards its codes; it is computed
with the gradient reaching the encoder and enters the loss multiplied by β (some public RQ-VAE
recommenders compute it and then drop it).

Codebooks are initialised by k-means on the first training batch's residuals, level by level
(:mod:`egakit.v2.kmeans`), and a code that no batch used for ``dead_code_steps`` training steps
is re-seeded at the current batch's worst-quantised residuals of its level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egakit.v2.kmeans import kmeans, nearest_centroid

#: Paper size (EGA-V2 §5.1): C = 3 levels of W = 1024 codes.
PAPER_LEVELS = 3
PAPER_CODEBOOK_SIZE = 1024
#: VQ-VAE commitment weight β (van den Oord et al., 2017; TIGER uses the same).
DEFAULT_BETA = 0.25


@dataclass
class RQVAEConfig:
    """RQ-VAE sizes and training options.

    input_dim: D, size of the item embeddings being tokenised.
    latent_dim: d, size of the quantised latent (TIGER: 32).
    hidden_dims: encoder MLP hidden sizes D -> hidden... -> d; the decoder mirrors them
      (TIGER: 512, 256, 128).
    n_levels: C, residual levels (paper: 3). codebook_size: W, codes per level (paper: 1024).
    beta: commitment weight β. kmeans_iters: Lloyd iterations of the k-means initialisation.
    dead_code_steps: a code unused by every batch for this many training steps is re-seeded
      (0 turns the reset off).
    seed: seeds the k-means++ draws of the initialisation.
    """

    input_dim: int
    latent_dim: int = 32
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    n_levels: int = PAPER_LEVELS
    codebook_size: int = PAPER_CODEBOOK_SIZE
    beta: float = DEFAULT_BETA
    kmeans_iters: int = 10
    dead_code_steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("input_dim", "latent_dim", "n_levels", "codebook_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"RQVAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"RQVAEConfig.beta must be >= 0, got {self.beta}")
        if self.kmeans_iters < 0 or self.dead_code_steps < 0:
            raise ValueError("RQVAEConfig.kmeans_iters and dead_code_steps must be >= 0")
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)


@dataclass
class QuantizerOutput:
    """What :class:`ResidualQuantizer` returns for a batch of B latents.

    quantized: (B, d) ẑ with the straight-through gradient (equals Σ_l e^l_{a^l} in value).
    codes: (B, C) int64 code per level. residuals: (C, B, d) r_l before each level (detached).
    codebook_loss, commitment_loss: scalars, summed over levels (commitment not yet × β).
    n_reset: number of codes re-seeded by this call (0 outside training).
    """

    quantized: Tensor
    codes: Tensor
    residuals: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    n_reset: int


class ResidualQuantizer(nn.Module):
    """C levels x W codes of residual quantisation (EGA-V2 Eq. 12), with k-means initialisation
    and dead-code reset. Input (B, d) latents, output :class:`QuantizerOutput`."""

    def __init__(
        self, n_levels: int, codebook_size: int, dim: int, *, kmeans_iters: int = 10, dead_code_steps: int = 100, seed: int = 0
    ) -> None:
        super().__init__()
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.dim = dim
        self.kmeans_iters = kmeans_iters
        self.dead_code_steps = dead_code_steps
        self.seed = seed
        #: (C, W, d) the codes e^l_w; overwritten by k-means on the first training batch.
        self.codebooks = nn.Parameter(torch.randn(n_levels, codebook_size, dim) / dim**0.5)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        #: (C, W) training steps since each code was last used by a batch.
        self.register_buffer("steps_unused", torch.zeros(n_levels, codebook_size, dtype=torch.long))

    @torch.no_grad()
    def initialise(self, z: Tensor) -> None:
        """k-means-initialise every level on the residuals of ``z`` (B, d), level by level: level l
        is fitted on the residuals left by the already-initialised levels 1..l-1."""
        generator = torch.Generator(device=z.device).manual_seed(self.seed)
        residual = z.detach().to(self.codebooks.dtype)
        for level in range(self.n_levels):
            centroids = kmeans(residual, self.codebook_size, self.kmeans_iters, generator)
            self.codebooks[level].copy_(centroids)
            residual = residual - centroids[nearest_centroid(residual, centroids)]
        self.steps_unused.zero_()
        self.initialised.fill_(True)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantise latents ``z`` (B, d); in training, initialises on the first call and resets
        dead codes afterwards."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"ResidualQuantizer expects latents of shape (B, {self.dim}), got {tuple(z.shape)}")
        if self.training and not bool(self.initialised):
            self.initialise(z)
        residual = z
        quantized = torch.zeros_like(z)
        codebook_loss = z.new_zeros(())
        commitment_loss = z.new_zeros(())
        codes, residuals = [], []
        for level in range(self.n_levels):
            codebook = self.codebooks[level]
            code = nearest_centroid(residual.detach(), codebook.detach())
            chosen = codebook[code]
            codebook_loss = codebook_loss + F.mse_loss(chosen, residual.detach())
            commitment_loss = commitment_loss + F.mse_loss(residual, chosen.detach())
            residuals.append(residual.detach())
            codes.append(code)
            quantized = quantized + chosen.detach()
            residual = residual - chosen.detach()
        codes_t = torch.stack(codes, dim=1)
        residuals_t = torch.stack(residuals, dim=0)
        n_reset = self._reset_dead_codes(codes_t, residuals_t) if self.training else 0
        return QuantizerOutput(
            quantized=z + (quantized - z).detach(),
            codes=codes_t,
            residuals=residuals_t,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            n_reset=n_reset,
        )

    @torch.no_grad()
    def _reset_dead_codes(self, codes: Tensor, residuals: Tensor) -> int:
        """Count one training step for every code, and re-seed the codes unused for
        ``dead_code_steps`` steps at the batch's residuals of their level that the current
        codebook quantises worst. codes: (B, C); residuals: (C, B, d). Returns the number reset."""
        if self.dead_code_steps == 0:
            return 0
        batch = codes.shape[0]
        n_reset = 0
        for level in range(self.n_levels):
            used = torch.bincount(codes[:, level], minlength=self.codebook_size) > 0
            self.steps_unused[level] += 1
            self.steps_unused[level][used] = 0
            dead = (self.steps_unused[level] >= self.dead_code_steps).nonzero().squeeze(1)
            if dead.numel() == 0:
                continue
            residual = residuals[level]
            error = (residual - self.codebooks[level][codes[:, level]]).pow(2).sum(dim=1)
            worst = error.argsort(descending=True)
            picks = worst[torch.arange(dead.numel(), device=worst.device) % batch]
            self.codebooks[level][dead] = residual[picks].to(self.codebooks.dtype)
            self.steps_unused[level][dead] = 0
            n_reset += int(dead.numel())
        return n_reset

    def lookup(self, codes: Tensor) -> Tensor:
        """Σ_l e^l_{a^l}: codes (B, C) -> quantised latents (B, d)."""
        levels = torch.arange(self.n_levels, device=codes.device)
        return self.codebooks[levels, codes].sum(dim=1)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last): sizes[0] -> ... -> sizes[-1]."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class RQVAEOutput:
    """What :class:`RQVAE` returns for B items.

    reconstruction: (B, D) x̂. latent: (B, d) z. codes: (B, C) int64.
    loss: reconstruction + codebook + β · commitment (scalar); the three terms separately.
    n_reset: codes re-seeded by this step.
    """

    reconstruction: Tensor
    latent: Tensor
    codes: Tensor
    loss: Tensor
    reconstruction_loss: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    n_reset: int


class RQVAE(nn.Module):
    """Encoder MLP -> :class:`ResidualQuantizer` -> decoder MLP (EGA-V2 §4.1.2)."""

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = mlp([config.input_dim, *config.hidden_dims, config.latent_dim])
        self.decoder = mlp([config.latent_dim, *reversed(config.hidden_dims), config.input_dim])
        self.quantizer = ResidualQuantizer(
            config.n_levels,
            config.codebook_size,
            config.latent_dim,
            kmeans_iters=config.kmeans_iters,
            dead_code_steps=config.dead_code_steps,
            seed=config.seed,
        )

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.config.input_dim:
            raise ValueError(f"RQVAE expects embeddings of shape (B, {self.config.input_dim}), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> RQVAEOutput:
        """Encode, quantise and decode item embeddings ``x`` (B, D); returns the loss terms."""
        self._check_input(x)
        latent = self.encoder(x)
        q = self.quantizer(latent)
        reconstruction = self.decoder(q.quantized)
        reconstruction_loss = F.mse_loss(reconstruction, x)
        loss = reconstruction_loss + q.codebook_loss + self.config.beta * q.commitment_loss
        return RQVAEOutput(
            reconstruction=reconstruction,
            latent=latent,
            codes=q.codes,
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=q.codebook_loss,
            commitment_loss=q.commitment_loss,
            n_reset=q.n_reset,
        )

    @torch.no_grad()
    def initialise(self, x: Tensor) -> None:
        """k-means-initialise the codebooks on the residuals of the encoded batch ``x`` (B, D)."""
        self._check_input(x)
        self.quantizer.initialise(self.encoder(x))

    @torch.no_grad()
    def tokenize(self, x: Tensor, batch_size: Optional[int] = 4096) -> Tensor:
        """Codes of every item: embeddings (N, D) -> (N, C) int64 (no training side effects)."""
        self._check_input(x)
        if not bool(self.quantizer.initialised):
            raise RuntimeError("RQVAE.tokenize: the codebooks are not initialised; train the tokenizer first (or call initialise)")
        was_training = self.training
        self.eval()
        try:
            chunks = [self.quantizer(self.encoder(part)).codes for part in x.split(batch_size or x.shape[0])]
        finally:
            self.train(was_training)
        return torch.cat(chunks) if chunks else x.new_zeros(0, self.config.n_levels, dtype=torch.long)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Reconstruction from codes: (B, C) -> (B, D)."""
        return self.decoder(self.quantizer.lookup(codes))
