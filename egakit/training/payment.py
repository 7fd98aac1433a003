"""Payment-network training: ex-post regret and the Lagrangian of V1 Eq. 24 (App. A.2, Eq. 34–36;
docs/design.md §5; RegretNet-style).

The mechanism is the frozen generator's greedy allocation (Eq. 17) plus the payment network
(Eq. 19, p = p̃ ⊙ b, so 0 ≤ p ≤ b: IR by construction). For a request with truthful bids b and
winners Y = [y_1, …, y_K], winner i = y_i's truthful value is its bid, v_i = b_i (truthful
bidders, docs/design.md §1), and its utility at a report b'_i is (Eq. 2)::

    u_i(b'_i) = (v_i − p_i(b'_i, b_−i)) · q_i(b'_i, b_−i)

where the allocation is **re-run** with b'_i (the frozen generator's masked argmax: the ad may
move to another slot or lose, u = 0), p_i is the payment network's price for the ad at its new
slot, and q_i the frozen evaluator's permutation-aware pCTR there. The ex-post regret (Eq. 34) is

    rgt_i = max(0, max_{b'_i} u_i(b'_i) − u_i(b_i))

approximated by a search over misreports: the grid b'_i = γ·b_i, γ ∈ ``gammas`` (default
{0.2, 0.4, …, 2.0}), then ``ascent_steps`` steps of normalised gradient ascent on log b'_i from the
best grid point, re-running the allocation at every step and keeping the best utility seen. The
allocation is piecewise constant in b'_i, so the gradient only sees the price: for Eq. 19 it is
∂u/∂b'_i = −p̃_i q_i < 0 wherever the ad still wins. The ascent therefore refines the grid's best
shading downwards until the ad would lose its slot, a deviation the grid's 0.2 spacing misses
(RegretNet uses many more steps and restarts at test time; set ``val_ascent_steps`` higher).

The regret that enters the loss is recomputed at the best misreport with gradients through the
payment network (the search itself runs without them), as in RegretNet. Eq. 35 averages over M
sampled valuations; here each request's bids are one draw (M = 1), and the batch plays the role
of the sample.

Lagrangian (Eq. 24), per request, with λ ∈ R^K one multiplier per slot of the truthful list::

    L_pay = −1/|D| Σ_κ ( Σ_i p_i q_i − Σ_i λ_i rgt_i − ρ/2 Σ_i rgt_i² )

λ_i ← max(0, λ_i + ρ · mean rgt_i) every ``lagrange_every`` steps (the mean over the steps since
the last update), and ρ grows on a step schedule (:func:`rho_at`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from egakit.auction.mechanism import index_batch
from egakit.auction.regret import DEFAULT_GAMMAS
from egakit.batch import RequestBatch
from egakit.model.ega_v1 import EGAV1, Encoding


@dataclass
class Outcome:
    """A request batch's outcome under the learned mechanism, all (B, K) but ``revenue`` (B,).

    idx: winners' candidate positions; q: frozen evaluator pCTR per slot; prices: per click
    (with gradient through the payment network); bids: the winners' bids (= values v);
    utility: (v − p)·q; revenue: Σ_k p·q.
    """

    idx: Tensor
    q: Tensor
    prices: Tensor
    bids: Tensor
    utility: Tensor
    revenue: Tensor


def truthful_outcome(model: EGAV1, batch: RequestBatch, encoding: Encoding, slot_tokens: Tensor) -> Outcome:
    """Greedy allocation with the reported bids, evaluator pCTRs and the payment network's prices
    (the prices keep their gradient; nothing else has one)."""
    with torch.no_grad():
        idx, _ = model.generate(batch, encoding=encoding, slot_tokens=slot_tokens)
        q = model.evaluate(batch, idx, encoding=encoding)
        ctr_in = model.winner_ctr(batch, idx, encoding=encoding)
    prices = model.pay(batch, idx, ctr_in, encoding=encoding)
    bids = batch.bids.gather(1, idx)
    return Outcome(idx=idx, q=q, prices=prices, bids=bids, utility=(bids - prices) * q, revenue=(prices * q).sum(-1))


class MisreportProblem:
    """The B·K (request, winner slot) pairs of a batch, stacked on the batch axis, so every
    misreport of every winner is one allocation call (chunked by ``max_rows``).

    Row r = b·K + i is winner i of request b: ad position ``ad[r]``, true value ``value[r]``.
    """

    def __init__(
        self,
        model: EGAV1,
        batch: RequestBatch,
        encoding: Encoding,
        slot_tokens: Tensor,
        idx: Tensor,
        *,
        max_rows: Optional[int] = None,
    ) -> None:
        B, K = idx.shape
        self.model = model
        self.B, self.K = B, K
        self.rows = torch.arange(B, device=idx.device).repeat_interleave(K)  # (R,)
        self.ad = idx.reshape(-1)  # (R,)
        self.value = batch.bids.gather(1, idx).reshape(-1)  # (R,) v = truthful bid
        self.max_rows = max_rows if max_rows is not None else B * K
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        self._chunks = []
        for start in range(0, B * K, self.max_rows):
            sel = torch.arange(start, min(start + self.max_rows, B * K), device=idx.device)
            rows = self.rows[sel]
            self._chunks.append(
                (sel, index_batch(batch, rows), index_batch(encoding, rows), slot_tokens[rows].detach())
            )

    def utility(self, misreport: Tensor) -> Tensor:
        """u (R,) of each row's ad when it alone reports ``misreport`` (R,) instead of its bid.

        The allocation and the evaluator run without gradient; the price keeps the gradient of the
        payment network and of ``misreport`` (through p = p̃ · b').
        """
        out = []
        for sel, sub_batch, sub_enc, t in self._chunks:
            ad = self.ad[sel].unsqueeze(1)
            bids = sub_batch.bids.scatter(1, ad, misreport[sel].unsqueeze(1).to(sub_batch.bids.dtype))
            with torch.no_grad():
                idx, _ = self.model.generate(sub_batch, bids=bids.detach(), encoding=sub_enc, slot_tokens=t)
                q = self.model.evaluate(sub_batch, idx, encoding=sub_enc)
                ctr_in = self.model.winner_ctr(sub_batch, idx, encoding=sub_enc)
            prices = self.model.pay(sub_batch, idx, ctr_in, bids=bids, encoding=sub_enc)
            hit = idx == ad
            gain = (self.value[sel].unsqueeze(1) - prices) * q
            out.append(torch.where(hit, gain, torch.zeros_like(gain)).sum(1))
        return torch.cat(out)

    def as_slots(self, per_row: Tensor) -> Tensor:
        """(R,) → (B, K)."""
        return per_row.reshape(self.B, self.K)


@dataclass
class MisreportSearch:
    """Best misreport found per winner (B, K), its utility (no gradient) and the γ = b'/b."""

    misreport: Tensor
    utility: Tensor
    gamma: Tensor


def search_misreports(
    problem: MisreportProblem,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    ascent_steps: int = 0,
    ascent_lr: float = 0.05,
) -> MisreportSearch:
    """Grid γ·b then ``ascent_steps`` normalised ascent steps on log b' (module docstring).

    Needs autograd for the ascent (call it outside ``torch.inference_mode``); the payment
    network's parameters receive no gradient from the search.
    """
    gam = torch.as_tensor(list(gammas), dtype=problem.value.dtype, device=problem.value.device)
    if gam.numel() == 0 or not bool(torch.isfinite(gam).all()) or bool((gam <= 0).any()):
        raise ValueError(f"gammas must be a non-empty sequence of finite positive numbers, got {tuple(gammas)}")
    if ascent_steps < 0 or ascent_lr <= 0:
        raise ValueError(f"ascent_steps must be >= 0 and ascent_lr > 0, got {ascent_steps}, {ascent_lr}")
    value = problem.value
    best_u = torch.full_like(value, float("-inf"))
    best_m = value.clone()
    with torch.no_grad():
        for g in gam:
            m = value * g
            u = problem.utility(m)
            better = u > best_u
            best_u = torch.where(better, u, best_u)
            best_m = torch.where(better, m, best_m)
    if ascent_steps:
        log_m = best_m.log()
        for _ in range(ascent_steps):
            with torch.enable_grad():
                theta = log_m.detach().requires_grad_(True)
                u = problem.utility(theta.exp())
                (grad,) = torch.autograd.grad(u.sum(), theta)
            with torch.no_grad():
                better = u.detach() > best_u
                best_u = torch.where(better, u.detach(), best_u)
                best_m = torch.where(better, theta.detach().exp(), best_m)
                log_m = theta.detach() + ascent_lr * torch.sign(grad)
        with torch.no_grad():  # score the last step's point too
            m = log_m.exp()
            u = problem.utility(m)
            better = u > best_u
            best_u = torch.where(better, u, best_u)
            best_m = torch.where(better, m, best_m)
    return MisreportSearch(
        misreport=problem.as_slots(best_m), utility=problem.as_slots(best_u), gamma=problem.as_slots(best_m / value)
    )


@dataclass
class RegretOutcome:
    """Truthful :class:`Outcome`, the ex-post regret (B, K) (with gradient through the payment
    network at the best misreport) and the search that found it."""

    outcome: Outcome
    regret: Tensor
    search: MisreportSearch


def ex_post_regret(
    model: EGAV1,
    batch: RequestBatch,
    encoding: Encoding,
    slot_tokens: Tensor,
    *,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    ascent_steps: int = 0,
    ascent_lr: float = 0.05,
    max_rows: Optional[int] = None,
) -> RegretOutcome:
    """Eq. 34 for every winner of the truthful greedy allocation (module docstring)."""
    outcome = truthful_outcome(model, batch, encoding, slot_tokens)
    problem = MisreportProblem(model, batch, encoding, slot_tokens, outcome.idx, max_rows=max_rows)
    search = search_misreports(problem, gammas, ascent_steps, ascent_lr)
    deviated = problem.as_slots(problem.utility(search.misreport.reshape(-1).detach()))
    regret = (deviated - outcome.utility).clamp_min(0.0)
    return RegretOutcome(outcome=outcome, regret=regret, search=search)


def payment_lagrangian(revenue_per_slot: Tensor, regret: Tensor, lam: Tensor, rho: float) -> Tensor:
    """Eq. 24: −mean_κ( Σ_i p_i q_i − Σ_i λ_i rgt_i − ρ/2 Σ_i rgt_i² ).

    revenue_per_slot = p·q (B, K); regret (B, K); lam (K,) per slot (constant).
    """
    if revenue_per_slot.shape != regret.shape:
        raise ValueError(f"revenue {tuple(revenue_per_slot.shape)} and regret {tuple(regret.shape)} must match")
    K = regret.shape[1]
    lam = lam.detach()[:K].clone()  # λ is updated in place after the step; keep this step's value
    per_request = revenue_per_slot.sum(-1) - (lam * regret).sum(-1) - 0.5 * rho * regret.pow(2).sum(-1)
    return -per_request.mean()


def rho_at(step: int, rho_init: float, rho_increment: float, rho_every: int, rho_max: float) -> float:
    """ρ after ``step`` optimisation steps: ``rho_init + rho_increment · ⌊step / rho_every⌋``,
    capped at ``rho_max`` (RegretNet grows ρ in steps)."""
    if rho_every < 1:
        raise ValueError(f"rho_every must be >= 1, got {rho_every}")
    return float(min(rho_max, rho_init + rho_increment * (step // rho_every)))


class LagrangeMultipliers(nn.Module):
    """λ ∈ R^K of Eq. 24 and the regret accumulated since its last update (buffers: they are saved
    in checkpoints and restored on resume).

    ``accumulate(mean_regret (K,))`` after every step; ``update(rho)`` applies
    λ ← max(0, λ + ρ · mean of the accumulated regrets) and clears the accumulator.
    """

    def __init__(self, K: int, init: float) -> None:
        super().__init__()
        if init < 0:
            raise ValueError(f"lambda_init must be >= 0, got {init}")
        self.register_buffer("lam", torch.full((K,), float(init)))
        self.register_buffer("regret_sum", torch.zeros(K))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def accumulate(self, mean_regret: Tensor) -> None:
        self.regret_sum += mean_regret.detach().to(self.regret_sum)
        self.batches += 1

    def update(self, rho: float) -> Tensor:
        """Apply the update; returns the new λ."""
        if int(self.batches) > 0:
            self.lam.copy_((self.lam + rho * self.regret_sum / self.batches).clamp_min(0.0))
        self.regret_sum.zero_()
        self.batches.zero_()
        return self.lam


def clone_batch(batch: RequestBatch) -> RequestBatch:
    """A copy of every tensor of ``batch`` (turns inference-mode tensors into normal ones, which
    the misreport ascent's autograd needs during validation)."""
    return RequestBatch(
        **{f.name: (v.clone() if isinstance(v := getattr(batch, f.name), Tensor) else v) for f in fields(batch)}
    )
