"""One GSP: the −auf ablation (``egakit.model.payment.gsp_allocation``) and the cascades
(``egakit.baselines.cascade`` via ``egakit.auction.position``) rank and price identically.

Written against the two former implementations before they were merged; it stays as the
guard that the model's GSP is the auction package's GSP, bit for bit.
"""
import pytest
import torch

from egakit.auction.position import GSP, position_auction
from egakit.model.payment import gsp_allocation

SHAPES = [(1, 3, 1), (4, 7, 3), (16, 40, 5), (8, 5, 5), (32, 120, 10)]  # (B, N, K)


def _random_requests(seed: int, B: int, N: int, K: int, dtype: torch.dtype):
    """Log-normal bids, sigmoid pCTRs, ragged masks with at least K valid candidates per row."""
    g = torch.Generator().manual_seed(seed)
    bids = torch.exp(torch.randn(B, N, generator=g, dtype=dtype))
    q_hat = torch.sigmoid(2.0 * torch.randn(B, N, generator=g, dtype=dtype))
    n_valid = torch.randint(K, N + 1, (B,), generator=g)
    order = torch.rand(B, N, generator=g).argsort(1)
    mask = order < n_valid.unsqueeze(1)
    return q_hat, bids.masked_fill(~mask, 0.0), mask


def _cascade_gsp(q_hat, bids, mask, K):
    """The cascades' call: position effects all 1 (GSP prices do not read them)."""
    ones = torch.ones(K, dtype=bids.dtype)
    return position_auction(bids, q_hat.to(bids.dtype), ones, mask, K, mechanism=GSP)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", SHAPES)
def test_model_and_cascade_gsp_are_identical_on_random_requests(shape, seed, dtype):
    B, N, K = shape
    q_hat, bids, mask = _random_requests(seed, B, N, K, dtype)
    idx, logz, prices = gsp_allocation(q_hat, bids, mask, K)
    cascade = _cascade_gsp(q_hat, bids, mask, K)
    assert torch.equal(idx, cascade.winners)
    assert torch.equal(prices, cascade.prices)
    assert (prices <= bids.gather(1, idx)).all()  # IR
    assert logz.shape == (B, K) and bool((logz <= 0).all())


def test_model_and_cascade_gsp_agree_on_ties():
    """Discrete bids and pCTRs make exact score ties: both break them towards the lower index."""
    g = torch.Generator().manual_seed(7)
    B, N, K = 64, 12, 4
    bids = torch.randint(1, 4, (B, N), generator=g).to(torch.float64)
    q_hat = torch.randint(1, 3, (B, N), generator=g).to(torch.float64) / 4
    mask = torch.ones(B, N, dtype=torch.bool)
    idx, _, prices = gsp_allocation(q_hat, bids, mask, K)
    cascade = _cascade_gsp(q_hat, bids, mask, K)
    assert torch.equal(idx, cascade.winners)
    torch.testing.assert_close(prices, cascade.prices, rtol=1e-15, atol=0)
