"""Dice (the paper's φ): DIN semantics, with padding-masked statistics."""
import torch

from egakit.model import Dice


def make_dice(features: int = 5) -> Dice:
    return Dice(features, eps=1e-8, momentum=0.1)


def test_training_statistics_ignore_padding_rows():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5)
    mask = torch.rand(3, 7) < 0.6
    mask[0, 0] = True
    noisy = x.clone()
    noisy[~mask] = 1e4  # huge padding values must not move the valid rows
    dice_a, dice_b = make_dice(), make_dice()
    dice_b.load_state_dict(dice_a.state_dict())
    out_masked = dice_a(noisy, mask)
    out_valid_only = dice_b(x[mask].unsqueeze(0))  # the valid rows alone, no mask
    torch.testing.assert_close(out_masked[mask], out_valid_only.squeeze(0))
    torch.testing.assert_close(dice_a.running_mean, dice_b.running_mean)
    torch.testing.assert_close(dice_a.running_var, dice_b.running_var)


def test_formula_and_eval_uses_running_statistics():
    dice = make_dice(4)
    with torch.no_grad():
        dice.alpha.fill_(0.25)
        dice.running_mean.fill_(1.0)
        dice.running_var.fill_(4.0)
    dice.eval()
    x = torch.randn(2, 3, 4)
    p = torch.sigmoid((x - 1.0) / torch.sqrt(torch.tensor(4.0 + 1e-8)))
    torch.testing.assert_close(dice(x), p * x + (1 - p) * 0.25 * x)


def test_batch_with_no_valid_row_keeps_running_statistics():
    dice = make_dice(3)
    before = (dice.running_mean.clone(), dice.running_var.clone())
    out = dice(torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(dice.running_mean, before[0])
    torch.testing.assert_close(dice.running_var, before[1])
