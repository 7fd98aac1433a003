"""Reinforcement learning from auction feedback (RLAF, V1 §4.2, Eq. 22–23; docs/design.md §5).

The generator proposes a list Y = [y_1, …, y_K] (Eq. 17, seeded Gumbel sampling during
training); the frozen evaluator scores it. Each ad's reward is its marginal contribution to the
list's bid-weighted value (Eq. 22)::

    V(Y)     = Σ_{j ∈ Y} b_j q_j                          q = the frozen evaluator's pCTR (Eq. 18)
    r_{y_i}  = V(Y) − V(Y_−i)                              (Eq. 22)

where Y_−i is the generator's *best* (greedy) list when y_i is removed from the candidates: the
masked argmax of Eq. 17 re-run with y_i masked out (H_ad and the slot tokens T are reused; only
the mask changes), scored by the same frozen evaluator. When a request has exactly K valid
candidates, Y_−i can hold only K − 1 ads: the argmax runs with the first K − 1 slot tokens and the
evaluator scores the shorter list.

The policy-gradient loss (Eq. 23) weighs each slot's sequential log-probability log z_{y_i,i} by
its reward minus a per-request baseline (to cut variance; it leaves the gradient unbiased because
it does not depend on the sampled list)::

    L_rlaf = −1/|D| Σ_κ Σ_{i=1}^K (r_{y_i} − β_{κ,i}) log z_{y_i,i}                        (Eq. 23)

Baselines β (``baseline=``):

- ``"greedy"`` (self-critical): β_{κ,i} = the reward of slot i in the generator's greedy list of
  the same request, computed the same way (Eq. 22 with its own Y_−i);
- ``"samples"``: draw S ≥ 2 lists per request; β for each is the leave-one-out mean of the other
  S − 1 lists' slot-i rewards;
- ``"none"``: β = 0 (the literal Eq. 23).

Everything here runs the model's public API (``generate``, ``evaluate``) on a precomputed
:class:`~egakit.model.ega_v1.Encoding`; the rewards are computed without gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor

from egakit.auction.mechanism import index_batch
from egakit.batch import RequestBatch
from egakit.model.ega_v1 import EGAV1, Encoding

Baseline = Literal["greedy", "samples", "none"]
BASELINES = ("greedy", "samples", "none")


def list_value(bids_chosen: Tensor, q: Tensor, slot_mask: Optional[Tensor] = None) -> Tensor:
    """V(Y) = Σ_j b_{y_j} q_{y_j} (B,) of lists with bids and pCTRs (B, K'); empty slots (mask
    False) count 0."""
    value = bids_chosen * q
    if slot_mask is not None:
        value = torch.where(slot_mask, value, torch.zeros_like(value))
    return value.sum(-1)


@torch.no_grad()
def evaluate_list(model: EGAV1, batch: RequestBatch, encoding: Encoding, idx: Tensor, bids: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """(V(Y) (B,), q (B, K')) of the lists ``idx`` (B, K') under the frozen evaluator."""
    bids = batch.bids if bids is None else bids
    q = model.evaluate(batch, idx, encoding=encoding)
    return list_value(bids.gather(1, idx), q), q


@torch.no_grad()
def best_list_value(
    model: EGAV1,
    batch: RequestBatch,
    encoding: Encoding,
    slot_tokens: Tensor,
    allowed: Tensor,
) -> Tensor:
    """V of the generator's greedy list over the ``allowed`` (B, N) candidates, (B,).

    A request with r < K allowed candidates gets an r-slot list (the first r slot tokens); r = 0
    gives 0. Rows are grouped by list length so every argmax call is one batched kernel call.
    """
    K = slot_tokens.shape[1]
    remaining = allowed & encoding.cand_mask
    slots = remaining.sum(1).clamp(max=K)
    value = torch.zeros(batch.batch_size, dtype=batch.bids.dtype, device=batch.bids.device)
    for k in torch.unique(slots).tolist():
        if k == 0:
            continue
        rows = (slots == k).nonzero().squeeze(1)
        whole = rows.numel() == batch.batch_size
        sub_batch = batch if whole else index_batch(batch, rows)
        sub_enc = encoding if whole else index_batch(encoding, rows)
        sub_allowed = remaining if whole else remaining[rows]
        t = (slot_tokens if whole else slot_tokens[rows])[:, :k]
        idx, _ = model.generate(sub_batch, extra_mask=sub_allowed, encoding=sub_enc, slot_tokens=t)
        v, _ = evaluate_list(model, sub_batch, sub_enc, idx)
        value[rows] = v
    return value


@dataclass
class MarginalRewards:
    """Eq. 22 for lists idx (B, K): value V(Y) (B,), q (B, K), value_without V(Y_−i) (B, K) and
    reward r_{y_i} = V(Y) − V(Y_−i) (B, K)."""

    value: Tensor
    q: Tensor
    value_without: Tensor
    reward: Tensor


@torch.no_grad()
def marginal_rewards(model: EGAV1, batch: RequestBatch, encoding: Encoding, slot_tokens: Tensor, idx: Tensor) -> MarginalRewards:
    """Eq. 22: each ad's marginal contribution to the list's bid-weighted value, with Y_−i the
    generator's greedy list after masking y_i (module docstring)."""
    value, q = evaluate_list(model, batch, encoding, idx)
    without = torch.empty_like(q)
    for i in range(idx.shape[1]):
        allowed = torch.ones_like(encoding.cand_mask).scatter_(1, idx[:, i : i + 1], False)
        without[:, i] = best_list_value(model, batch, encoding, slot_tokens, allowed)
    return MarginalRewards(value=value, q=q, value_without=without, reward=value.unsqueeze(1) - without)


def advantages(rewards: Tensor, baseline: Baseline, greedy_rewards: Optional[Tensor] = None) -> Tensor:
    """r − β for rewards (S, B, K) of S sampled lists per request (module docstring).

    ``greedy_rewards`` (B, K) is required by ``"greedy"``; ``"samples"`` needs S ≥ 2.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if rewards.dim() != 3:
        raise ValueError(f"rewards must be (S, B, K), got {tuple(rewards.shape)}")
    if baseline == "none":
        return rewards
    if baseline == "greedy":
        if greedy_rewards is None or greedy_rewards.shape != rewards.shape[1:]:
            raise ValueError("baseline='greedy' needs greedy_rewards of shape (B, K)")
        return rewards - greedy_rewards.unsqueeze(0)
    S = rewards.shape[0]
    if S < 2:
        raise ValueError("baseline='samples' needs num_samples >= 2 (a leave-one-out mean over the other lists)")
    return rewards - (rewards.sum(0, keepdim=True) - rewards) / (S - 1)


def policy_gradient_loss(logz: Tensor, advantage: Tensor) -> Tensor:
    """Eq. 23: −mean over lists of Σ_i A_{y_i} log z_{y_i,i}; logz, advantage (..., K), the
    advantage is treated as a constant."""
    if logz.shape != advantage.shape:
        raise ValueError(f"logz {tuple(logz.shape)} and advantage {tuple(advantage.shape)} must match")
    return -(advantage.detach() * logz).sum(-1).mean()


@dataclass
class RLAFStep:
    """One RLAF step: the loss (Eq. 23) and what to log.

    idx (S, B, K) sampled lists, logz (S, B, K), reward (S, B, K) (Eq. 22), advantage (S, B, K),
    value (S, B) V(Y), greedy: the greedy list's :class:`MarginalRewards` (``baseline="greedy"``).
    """

    loss: Tensor
    idx: Tensor
    logz: Tensor
    reward: Tensor
    advantage: Tensor
    value: Tensor
    greedy: Optional[MarginalRewards]


def sample_seeds(base_seed: int, step: int, num_samples: int) -> list[int]:
    """Distinct, reproducible Gumbel seeds for the S lists of one optimisation step."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return [int(base_seed) + int(step) * num_samples + s for s in range(num_samples)]


def rlaf_step(
    model: EGAV1,
    batch: RequestBatch,
    encoding: Encoding,
    seeds: Sequence[int],
    baseline: Baseline = "greedy",
) -> RLAFStep:
    """Sample one list per seed, score it (Eq. 22), and build the loss of Eq. 23.

    ``encoding`` comes from the frozen encoder (no gradient); the slot tokens T and the bid
    weight w_z of the generator carry the gradient through log z.
    """
    if not seeds:
        raise ValueError("rlaf_step needs at least one sample seed")
    t = model.slot_tokens(encoding)
    t_const = t.detach()
    idx_s, logz_s, rewards, values = [], [], [], []
    for seed in seeds:
        idx, logz = model.generate(batch, sample_seed=int(seed), encoding=encoding, slot_tokens=t)
        r = marginal_rewards(model, batch, encoding, t_const, idx)
        idx_s.append(idx)
        logz_s.append(logz)
        rewards.append(r.reward)
        values.append(r.value)
    reward = torch.stack(rewards)
    greedy = None
    if baseline == "greedy":
        with torch.no_grad():
            g_idx, _ = model.generate(batch, encoding=encoding, slot_tokens=t_const)
        greedy = marginal_rewards(model, batch, encoding, t_const, g_idx)
    advantage = advantages(reward, baseline, None if greedy is None else greedy.reward)
    logz = torch.stack(logz_s)
    return RLAFStep(
        loss=policy_gradient_loss(logz, advantage),
        idx=torch.stack(idx_s),
        logz=logz,
        reward=reward,
        advantage=advantage,
        value=torch.stack(values),
        greedy=greedy,
    )
