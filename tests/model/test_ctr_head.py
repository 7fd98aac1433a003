"""The CTR head's prior init (Eq. 16 head, pre-training's ``prior_ctr``)."""
import math

import pytest
import torch

from egakit.model.heads import CTRHead


def test_set_prior_starts_the_output_at_the_prior_logit():
    head = CTRHead(8, 8, (4, 2))
    torch.nn.init.zeros_(head.rest[-1].weight)
    head.set_prior(0.01)
    logits = head(torch.randn(2, 3, 8), torch.randn(2, 8))
    torch.testing.assert_close(logits, torch.full((2, 3), math.log(0.01 / 0.99)))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1])
def test_set_prior_refuses_a_rate_outside_0_1(bad):
    with pytest.raises(ValueError, match="prior_ctr must be in"):
        CTRHead(8, 8, (4,)).set_prior(bad)
