"""How much oracle AUC a point-wise pCTR must give up on a world (issue 5's headroom).

    python -m studies.pointwise_ceiling runs/demo/world --requests 300

On the first ``requests`` test requests (every candidate of each), clicks are drawn from the true
slot-free CTR (``draws`` times); the AUC of the true logit is the ceiling of any model, and the
AUC of the true logit with each ad's crowding replaced by its mean over its cell's supply states
(what the ad's id, the user and the place determine) is the ceiling of any point-wise model.
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

import torch
from torchmetrics.functional.classification import binary_auroc

from egakit.sim import Oracle, read_requests


def mean_crowding_of_cell(oracle: Oracle, set_id: int) -> torch.Tensor:
    """(n_ads,) each ad's raw crowding averaged over the supply states of ``set_id``'s cell that
    hold it (0 for ads in none): what a point-wise model can know of it."""
    states = oracle.supply_states_per_cell
    total = torch.zeros(len(oracle.ad_ids))
    count = torch.zeros(len(oracle.ad_ids))
    first = (set_id // states) * states
    for other in range(first, first + states):
        rows, crowd = oracle.candidate_set(other)
        total[rows] += crowd
        count[rows] += 1
    return total / count.clamp(min=1)


def ceilings(world_dir, n_requests: int = 300, draws: int = 5, seed: int = 0) -> dict:
    oracle = Oracle.from_world(world_dir)
    table = read_requests(world_dir, "test")
    ctx = oracle.context_from_requests(table.slice(0, min(n_requests, table.num_rows)))
    tables, states = oracle.tables, oracle.supply_states_per_cell
    cell_means: dict[int, torch.Tensor] = {}  # first set id of a cell -> its mean crowding
    true_logits, pointwise_logits = [], []
    for b in range(len(ctx)):
        set_id = int(ctx.set_ids[b])
        rows, crowd = oracle.candidate_set(set_id)
        first = (set_id // states) * states
        if first not in cell_means:
            cell_means[first] = mean_crowding_of_cell(oracle, set_id)
        request = (ctx.user_rows[b : b + 1], ctx.hour[b : b + 1], ctx.loc[b : b + 1], rows.unsqueeze(0))
        true_logits.append(tables.slot_free_logit(*request, crowd.unsqueeze(0))[0])
        pointwise_logits.append(tables.slot_free_logit(*request, cell_means[first][rows].unsqueeze(0))[0])
    z, z_pw = torch.cat(true_logits), torch.cat(pointwise_logits)
    gen = torch.Generator().manual_seed(seed)
    truth, pointwise = [], []
    for _ in range(draws):
        y = (torch.rand(z.shape, generator=gen) < torch.sigmoid(z)).long()
        truth.append(float(binary_auroc(z, y)))
        pointwise.append(float(binary_auroc(z_pw, y)))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"requests": len(ctx), "candidates": int(z.numel()), "draws": draws,
            "truth_oracle_auc": mean(truth), "best_pointwise_oracle_auc": mean(pointwise),
            "gap": mean(truth) - mean(pointwise)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.pointwise_ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("world_dir")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(ceilings(args.world_dir, args.requests, args.draws), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
