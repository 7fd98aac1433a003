"""k-means in torch: k-means++ seeding followed by Lloyd iterations.

Used to initialise each RQ-VAE codebook level on the first batch's residuals (the practice of
TIGER-style RQ-VAE recommenders: a randomly initialised codebook collapses onto a few codes).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

#: Relative scale of the jitter added to codes seeded from repeated points when there are fewer
#: points than codes (those codes start as near-duplicates and are left to the dead-code reset).
DUPLICATE_JITTER = 1e-3


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """Squared Euclidean distances, (n, d) x (k, d) -> (n, k), via ||x||² - 2 x·c + ||c||²."""
    x_sq = x.pow(2).sum(dim=1, keepdim=True)
    c_sq = centroids.pow(2).sum(dim=1)
    return (x_sq - 2.0 * x @ centroids.T + c_sq).clamp_min_(0.0)


def nearest_centroid(x: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid for each row: (n, d) x (k, d) -> (n,) int64."""
    return squared_distances(x, centroids).argmin(dim=1)


def kmeans_plus_plus(x: Tensor, k: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007; the greedy variant of
    scikit-learn): (n, d) -> (k, d) centroids.

    Each new centroid is the best, by the resulting total squared distance, of ``2 + ⌊ln k⌋``
    data points drawn with probability proportional to their squared distance to the nearest
    centroid chosen so far (one draw per step falls into two-clusters-one-code minima more
    often). With fewer distinct points than ``k``, the remaining centroids are copies of random
    points plus a small jitter.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point, got an empty batch")
    trials = 2 + int(math.log(k))
    centroids = x.new_empty(k, x.shape[1])
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centroids[0] = x[first[0]]
    closest = squared_distances(x, centroids[:1]).squeeze(1)
    for j in range(1, k):
        total = closest.sum()
        if total <= 0:  # every point already is a centroid: fill with jittered copies
            rest = torch.randint(n, (k - j,), generator=generator, device=x.device)
            scale = x.std(dim=0, unbiased=False).clamp_min(1.0) * DUPLICATE_JITTER
            noise = torch.randn(k - j, x.shape[1], generator=generator, device=x.device, dtype=x.dtype)
            centroids[j:] = x[rest] + noise * scale
            break
        candidates = torch.multinomial(closest / total, trials, replacement=True, generator=generator)
        # (trials, n): each point's distance to its nearest centroid if candidate t were added
        potential = torch.minimum(closest.unsqueeze(0), squared_distances(x, x[candidates]).T)
        best = potential.sum(dim=1).argmin()
        centroids[j] = x[candidates[best]]
        closest = potential[best]
    return centroids


def lloyd(x: Tensor, centroids: Tensor, iterations: int) -> Tensor:
    """``iterations`` Lloyd steps from ``centroids`` (k, d) on points ``x`` (n, d) -> (k, d).

    A centroid that loses all its points keeps its place (the dead-code reset re-seeds it later).
    """
    centroids = centroids.clone()
    k = centroids.shape[0]
    for _ in range(iterations):
        assignment = nearest_centroid(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        counts = torch.bincount(assignment, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled].unsqueeze(1).to(x.dtype)
    return centroids


def kmeans(x: Tensor, k: int, iterations: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """k-means++ seeding then ``iterations`` Lloyd steps: points (n, d) -> centroids (k, d)."""
    x = x.detach()
    return lloyd(x, kmeans_plus_plus(x, k, generator), iterations)
