"""How much oracle AUC a point-wise pCTR must give up on a world (issue 5's headroom).

    python -m egakit.evaluation.pointwise_ceiling runs/demo/world --requests 300

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


def ceilings(world_dir, n_requests: int = 300, draws: int = 5, seed: int = 0) -> dict:
    oracle = Oracle.from_world(world_dir)
    table = read_requests(world_dir, "test")
    ctx = oracle.context_from_requests(table.slice(0, min(n_requests, table.num_rows)))
    states = oracle.supply_states_per_cell
    p = oracle.truth.params
    true_logits, pointwise_logits = [], []
    for b in range(len(ctx)):
        set_id = int(ctx.set_ids[b])
        rows, _ = oracle.candidate_set(set_id)
        total = torch.zeros(len(oracle.ad_ids))
        count = torch.zeros(len(oracle.ad_ids))
        first = (set_id // states) * states
        for other in range(first, first + states):  # every supply state of the request's cell
            other_rows, other_crowd = oracle.candidate_set(other)
            total[other_rows] += other_crowd
            count[other_rows] += 1
        terms = oracle.terms(ctx.select(torch.tensor([b])), oracle.ad_ids[rows].unsqueeze(0))
        z = p.c0 + terms["interest"] + terms["quality"] + terms["cross"] + terms["distance"] + terms["crowding"]
        true_logits.append(z[0])
        pointwise_logits.append((z - terms["crowding"])[0] - p.lambda_set * total[rows] / count[rows])
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
    parser = argparse.ArgumentParser(prog="python -m egakit.evaluation.pointwise_ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("world_dir")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(ceilings(args.world_dir, args.requests, args.draws), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
