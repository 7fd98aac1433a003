"""Which terms of the hidden click model a pre-trained pCTR has learned.

    python -m studies.effect_probe --ckpt runs/demo/ckpt/pretrain/last.ckpt \\
        --ckpt runs/demo/ckpt/pretrain_no_gcf/last.ckpt --requests 192

AUC says how well a q̂ ranks, not what it ranks by. The world knows every additive term of the true
slot-free logit (docs/design.md §1, :meth:`egakit.sim.oracle.Oracle.terms`): interest ψ·φ, quality, the
hour × category cross, distance g(d) and crowding −λ·log1p(#strong same-category rivals in the
set). Crowding is split into the part a point-wise model can know, the ad's mean crowding over
every candidate set that holds it (``crowding_ad_mean``), and the rest, which depends on which
rivals this request's set holds (``crowding_set``).

On the first ``requests`` test requests (whole candidate sets) the model's CTR logit and every
term are centred within each request (the between-request level does not rank candidates of one
request), and the logit is regressed on the terms by least squares. A coefficient of 1 means the
model moves with that term as the truth does, 0 that it ignores it; ``r2`` is the share of the
logit's within-request variance the terms explain.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from egakit.checkpoint import ENCODER, load_ega_v1
from egakit.evaluation.report import write_json
from egakit.model.ega_v1 import EGAV1
from egakit.provenance import commit_label
from egakit.sim.oracle import Oracle

#: Regressors, in the order of the returned coefficients.
TERMS = ("interest", "quality", "cross", "distance", "crowding_ad_mean", "crowding_set")
DEFAULT_REQUESTS = 192
EVAL_BATCH = 16


def ad_mean_crowding(oracle: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
    """(ad rows, sorted) and each ad's mean raw crowding over the candidate sets that hold it
    (every set weighted once)."""
    rows, crowd = [], []
    for set_id in range(len(oracle.set_cells)):
        set_rows, set_crowd = oracle.candidate_set(set_id)
        rows.append(set_rows)
        crowd.append(set_crowd)
    rows_all, crowd_all = torch.cat(rows), torch.cat(crowd).double()
    unique, inverse = torch.unique(rows_all, return_inverse=True)
    total = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, crowd_all)
    count = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(crowd_all))
    return unique, (total / count).float()


def centred_within(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """x minus the mean of its group (request)."""
    _, inverse = np.unique(group, return_inverse=True)
    return x - (np.bincount(inverse, x) / np.bincount(inverse))[inverse]


def regress(logit: np.ndarray, terms: dict[str, np.ndarray]) -> dict:
    """Least squares of ``logit`` on ``terms`` (already centred): coefficients, r2, each term's std."""
    design = np.stack([terms[name] for name in TERMS], axis=1)
    coef, *_ = np.linalg.lstsq(design, logit, rcond=None)
    residual = logit - design @ coef
    return {
        "coefficients": {name: round(float(c), 4) for name, c in zip(TERMS, coef)},
        "r2": round(float(1.0 - residual.var() / logit.var()), 4),
        "logit_std": round(float(logit.std()), 4),
    }


def probe(checkpoints: Sequence[str], world_dir: str, requests: int = DEFAULT_REQUESTS) -> dict:
    """Regression of each checkpoint's within-request CTR logit on the truth's terms (module doc)."""
    models = {path: load_ega_v1(path, ENCODER)[0] for path in checkpoints}
    return EffectProbe(world_dir, requests)(models)


class EffectProbe:
    """A probe of one world, set up once (oracle, each ad's mean crowding over every set, the test
    loader) and called on models in memory (eval mode), keyed by the names the result uses."""

    def __init__(self, world_dir: str, requests: int = DEFAULT_REQUESTS, oracle: Optional[Oracle] = None) -> None:
        from egakit.data.world import WorldDataModule  # the data path lives outside egakit

        self.world_dir, self.requests = world_dir, requests
        self.oracle = oracle or Oracle.from_world(world_dir)
        self.mean_rows, self.mean_crowd = ad_mean_crowding(self.oracle)
        self.data = WorldDataModule(world_dir, eval_mode="full", eval_batch_size=EVAL_BATCH, splits={"test": "test"})
        self.data.setup("test")

    @torch.no_grad()
    def __call__(self, models: dict[str, EGAV1]) -> dict:
        oracle, data, requests = self.oracle, self.data, self.requests
        lam = oracle.tables.params.lambda_set
        columns: dict[str, list[np.ndarray]] = {name: [] for name in (*TERMS, "request", *models)}
        seen = 0
        for index, batch in enumerate(data.test_dataloader()):
            if seen >= requests:
                break
            batch = data.on_after_batch_transfer(batch, 0)
            truth = oracle.terms(oracle.context_from_batch(batch), batch.cand_ids)
            keep = batch.cand_mask & truth["valid"] & batch.label_mask.any(dim=1, keepdim=True)  # real requests
            keep[max(0, requests - seen):] = False
            rows = truth["rows"][keep]
            ad_mean = -lam * self.mean_crowd[torch.searchsorted(self.mean_rows, rows)]
            for name in ("interest", "quality", "cross", "distance"):
                columns[name].append(truth[name][keep].double().numpy())
            columns["crowding_ad_mean"].append(ad_mean.double().numpy())
            columns["crowding_set"].append((truth["crowding"][keep] - ad_mean).double().numpy())
            request = torch.arange(keep.shape[0]).unsqueeze(1).expand_as(keep) + index * keep.shape[0]
            columns["request"].append(request[keep].numpy())
            for name, model in models.items():
                columns[name].append(model.encode(batch).ctr_logit[keep].double().numpy())
            seen += int(keep.any(dim=1).sum())
        group = np.concatenate(columns["request"])
        terms = {name: centred_within(np.concatenate(columns[name]), group) for name in TERMS}
        return {
            "what": "within-request CTR logit of each pre-trained model regressed on the truth's logit terms "
            "(egakit/evaluation/effect_probe.py); coefficient 1 = moves with the term as the truth does",
            "world": str(self.world_dir),
            "commit": commit_label(),
            "requests": seen,
            "candidates": int(len(group)),
            "term_std": {name: round(float(terms[name].std()), 4) for name in TERMS},
            "models": {name: regress(centred_within(np.concatenate(columns[name]), group), terms) for name in models},
        }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.effect_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", action="append", required=True, help="a pre-training checkpoint (repeatable)")
    parser.add_argument("--world", default="runs/demo/world")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    result = probe(args.ckpt, args.world, args.requests)
    if args.out is not None:
        write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
