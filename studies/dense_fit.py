"""Can the pre-training architecture learn the world's terms at all? Fit it to the truth.

    python -m studies.dense_fit -c configs/v1/pretrain.yaml --steps 800 [--variant no_gcf]

Pre-training (Eq. 20) sees about 1.3 clicks per request. This diagnostic takes label noise and
sparsity away: the model of a pre-training config is trained with the BCE against the *true*
slot-free CTR of every candidate of its training context (the config's K exposed + N_s sampled
candidates, data order, batch size and learning rate), then :mod:`studies.effect_probe`
regresses its within-request logit on the truth's terms every ``--probe-every`` steps. A term whose
coefficient stays near 0 here is out of reach of the architecture and budget, whatever the labels.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from studies.effect_probe import DEFAULT_REQUESTS, EffectProbe
from egakit.evaluation.report import write_json
from egakit.model import EGAV1, EGAV1Config
from egakit.provenance import commit_label
from egakit.sim.oracle import Oracle


def dense_fit(config_path: str, steps: int, variant: Optional[str] = None, probe_every: Optional[int] = None,
              requests: int = DEFAULT_REQUESTS, seed: int = 0) -> dict[str, Any]:
    """Train the config's model on the truth's CTR for ``steps`` steps; effect probes along the way."""
    from egakit.data.world import WorldDataModule  # the data path lives outside egakit

    tree = yaml.safe_load(Path(config_path).read_text())
    module_args, data_args = tree["model"]["init_args"], dict(tree["data"]["init_args"])
    model_block = module_args["model"]
    if isinstance(model_block, str):  # a shared model file, relative to the config (model/small.yaml)
        model_block = yaml.safe_load((Path(config_path).parent / model_block).read_text())
    model_args = dict(model_block, **({"variant": variant} if variant else {}))
    data_args.pop("splits", None)
    data = WorldDataModule(**{**data_args, "eval_mode": "full"}, splits={"train": "pretrain", "test": "test"})
    data.setup("fit")
    torch.manual_seed(seed)
    model = EGAV1(EGAV1Config(**model_args), data.meta["vocab"])
    if module_args.get("prior_ctr") is not None:
        model.ctr_head.set_prior(module_args["prior_ctr"])
    optimizer = torch.optim.Adam(model.parameters(), lr=float(module_args.get("lr", 1e-3)))
    oracle = Oracle.from_world(data.world_dir)
    effect_probe = EffectProbe(data.world_dir, requests, oracle)
    probe_every = probe_every or steps
    probes, losses = {}, []
    batches = iter(data.train_dataloader())
    for step in tqdm(range(1, steps + 1), desc="dense fit", unit="step"):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(data.train_dataloader())
            batch = next(batches)
        batch = data.on_after_batch_transfer(batch, 0)
        with torch.no_grad():
            target = oracle.pointwise_ctr(batch)  # (B, N) true slot-free CTR, expected over creatives
        mask = batch.cand_mask
        loss = F.binary_cross_entropy_with_logits(model.encode(batch).ctr_logit[mask], target[mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if step % probe_every == 0 or step == steps:
            model.eval()
            probes[str(step)] = effect_probe({"model": model})["models"]["model"]
            model.train()
    return {
        "what": "the config's model trained on the true slot-free CTR of every training candidate (BCE, dense, "
        "noise-free), effect probe (egakit/evaluation/effect_probe.py) by step",
        "config": str(config_path), "variant": model_args.get("variant", "full"), "steps": steps,
        "commit": commit_label(), "probe_requests": requests,
        "final_loss_mean_last_100": sum(losses[-100:]) / len(losses[-100:]),
        "probes": probes,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.dense_fit", description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", required=True, help="a pre-training config (configs/v1/pretrain*.yaml)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--variant", help="override model.variant (e.g. no_gcf)")
    parser.add_argument("--probe-every", type=int, help="probe every this many steps (default: at the end)")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="test requests per probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    result = dense_fit(args.config, args.steps, args.variant, args.probe_every, args.requests, args.seed)
    if args.out is not None:
        write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
