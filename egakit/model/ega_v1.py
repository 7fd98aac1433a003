"""EGA-V1 (V1 §3, docs/design.md §3): one model from N candidate ads to K slots and prices.

    embedding (Eq. 5–6) → RecFormer (Eq. 7–15) → q̂ = σ(MLP_ctr([h_i; e_u])) (Eq. 16)
    → generator (Eq. 17) → idx, log z;  evaluator (Eq. 18) → q per slot;
    → prices p: the critical bids of the generator's allocation (default, ``payment_rule``) or the
      payment network (Eq. 19)

The training phases (docs/design.md §5) use the pieces: pretrain ``forward`` (q̂ + extra task heads),
reward ``evaluate_logits``, RLAF ``generate`` (with ``extra_mask`` for Y_−i), payment ``pay``
(with ``bids=`` for misreports). Each takes an optional precomputed :class:`Encoding` so a phase
that re-runs the auction many times (Y_−i for every winner, a grid of misreports) encodes the
request once: the encoder and the slot tokens T never read the bids.

**Which pCTR feeds the payment network at inference (Eq. 19).** Eq. 19 takes q_{y_i}, "the
permutation-aware pCTR", yet the paper also says "the payment network operates independently of
the evaluator" and "only the generator and the payment network are deployed". Both can hold only
if q_{y_i} is not the evaluator's. By default (``payment_ctr_source="ctr_head"``) q_{y_i} is the
winner's set-aware q̂ from the CTR head (Eq. 16) — computed anyway, since it is the generator's
bid term — so serving needs generator + payment only, and training and serving see the same
input (no train/serve skew). The evaluator still enters payment *training* through the revenue
and regret terms of Eq. 24, which the LightningModule computes with :meth:`EGAV1.evaluate`.
``payment_ctr_source="evaluator"`` is the literal reading (evaluator run on the K winners; at
K = 5 this costs m_e tiny blocks, negligible next to RecFormer on N candidates).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from egakit.batch import RequestBatch
from egakit.model.config import EGAV1Config
from egakit.model.embedding import FeatureEmbedding
from egakit.model.evaluator import Evaluator
from egakit.model.generator import Generator
from egakit.model.critical_payment import myerson_prices, winner_thresholds
from egakit.model.heads import CTRHead, ObservationRates
from egakit.model.payment import PaymentNet, gsp_allocation
from egakit.model.recformer import RecFormer


@dataclass
class Encoding:
    """One encoder pass over a request batch (everything after it reuses this).

    h_ad (B, N, d), h_usr (B, L, d), e_u (B, d): RecFormer outputs.
    cand_mask (B, N), bhv_mask (B, L): validity masks.
    ctr_logit (B, N): logit of q̂ (Eq. 16); q_hat (B, N) = σ(ctr_logit), 0 on padding.
    task_logits: extra task name → logits (B, N).
    """

    h_ad: Tensor
    h_usr: Tensor
    e_u: Tensor
    cand_mask: Tensor
    bhv_mask: Tensor
    ctr_logit: Tensor
    q_hat: Tensor
    task_logits: dict[str, Tensor] = field(default_factory=dict)

    def gather_ads(self, idx: Tensor) -> Tensor:
        """H_ad rows at candidate positions idx (B, K) → (B, K, d)."""
        return self.h_ad.gather(1, idx.unsqueeze(-1).expand(-1, -1, self.h_ad.shape[-1]))


def _check_bids(bids: Tensor, mask: Tensor) -> None:
    """Valid candidates must carry finite bids > 0 (docs/design.md §12); names the first bad row."""
    bad = mask & ~(torch.isfinite(bids) & (bids > 0))
    if bool(bad.any()):
        row, col = bad.nonzero()[0].tolist()
        raise ValueError(f"bids[{row}, {col}] = {bids[row, col].item()}: a valid candidate needs a finite bid > 0")


class EGAV1(nn.Module):
    """The EGA-V1 model.

    Args:
        config: :class:`~egakit.model.config.EGAV1Config`.
        vocab_sizes: vocabulary size per name (``category, brand, price_level, geo_cell,
            age_bucket, gender, home_cell, hour``).
        cross_vocab_sizes: one vocabulary size per ``cross_feats`` column; required when
            ``config.use_cross_features``.
    """

    def __init__(
        self,
        config: EGAV1Config,
        vocab_sizes: Mapping[str, int],
        cross_vocab_sizes: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        if config.use_cross_features and not cross_vocab_sizes:
            raise ValueError("use_cross_features=True needs cross_vocab_sizes (one per cross_feats column)")
        self.config = config
        options = config.block_options()
        d = config.d
        self.embedding = FeatureEmbedding(
            vocab_sizes, d, config.feature_emb_dim, cross_vocab_sizes if config.use_cross_features else None,
            id_buckets=config.id_buckets,
        )
        self.recformer = RecFormer(
            d, config.n_heads, config.n_clusters, config.m, config.m_c, config.variant,
            broadcast_user_to_ads=config.broadcast_user_to_ads, options=options,
        )
        self.ctr_head = CTRHead(d, d, config.ctr_mlp)
        self.task_heads = nn.ModuleDict({name: CTRHead(d, d, config.ctr_mlp) for name in config.task_heads})
        self.observation = ObservationRates(config.K)  # click-observation rates of the logs' sources
        self.generator = Generator(
            d, config.n_heads, config.n_clusters, config.K, config.m_e, w_z_init=config.w_z_init, options=options
        )
        self.evaluator = Evaluator(d, config.n_heads, config.K, config.m_e, config.eval_mlp, options)
        self.payment = PaymentNet(d, config.K, config.pay_mlp)

    # ----------------------------------------------------------------- encoder (pretrain)
    def encode(self, batch: RequestBatch) -> Encoding:
        """Embedding → RecFormer → CTR (and task) heads."""
        tokens = self.embedding(batch)
        h_ad, h_usr, e_u = self.recformer(tokens.e_ad, batch.cand_mask, tokens.e_bhv, batch.bhv_mask, tokens.e_user)
        ctr_logit = self.ctr_head(h_ad, e_u)
        q_hat = torch.sigmoid(ctr_logit).masked_fill(~batch.cand_mask, 0.0)
        task_logits = {name: head(h_ad, e_u) for name, head in self.task_heads.items()}
        return Encoding(h_ad, h_usr, e_u, batch.cand_mask, batch.bhv_mask, ctr_logit, q_hat, task_logits)

    def forward(self, batch: RequestBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Pre-training forward (Eq. 16, 20): q̂ (B, N) (0 on padding) and aux: ``ctr_logit``
        (B, N) and, per extra task, ``<task>`` probabilities and ``<task>_logit``."""
        enc = self.encode(batch)
        aux = {"ctr_logit": enc.ctr_logit}
        for name, logit in enc.task_logits.items():
            aux[name] = torch.sigmoid(logit)
            aux[f"{name}_logit"] = logit
        return enc.q_hat, aux

    def pctr(self, batch: RequestBatch) -> Tensor:
        """Set-aware q̂ (B, N) of Eq. 16, 0 on padding."""
        return self.encode(batch).q_hat

    # ----------------------------------------------------------------- AucFormer
    def slot_tokens(self, encoding: Encoding) -> Tensor:
        """Generator slot representations T (B, K, d) (Eq. 17)."""
        return self.generator.slot_tokens(encoding.h_ad, encoding.cand_mask, encoding.e_u)

    def generate(
        self,
        batch: RequestBatch,
        sample_seed: Optional[int] = None,
        extra_mask: Optional[Tensor] = None,
        bids: Optional[Tensor] = None,
        *,
        encoding: Optional[Encoding] = None,
        slot_tokens: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        """Allocation of Eq. 17 → idx (B, K) candidate positions, logz (B, K).

        sample_seed: None = greedy argmax; an int = seeded Gumbel sampling.
        extra_mask: (B, N) bool, **True = may still win**; AND-ed with ``cand_mask`` (to drop y_i
            for RLAF's Y_−i, set it False there). H_ad and T are not recomputed.
        bids: (B, N) bids to use instead of ``batch.bids`` (misreports).
        encoding / slot_tokens: reuse a previous :meth:`encode` / :meth:`slot_tokens`.
        With ``config.allocation == "gsp"`` this ranks by q̂·b instead (−auf).
        Raises ValueError when a request has fewer than K allowed candidates.
        """
        enc = self.encode(batch) if encoding is None else encoding
        bids = batch.bids if bids is None else bids
        mask = enc.cand_mask if extra_mask is None else enc.cand_mask & extra_mask
        if self.config.allocation == "gsp":
            idx, logz, _ = gsp_allocation(enc.q_hat, bids, mask, self.config.K)
            return idx, logz
        t = self.slot_tokens(enc) if slot_tokens is None else slot_tokens
        return self.generator.allocate(enc.h_ad, t, enc.q_hat, bids, mask, sample_seed=sample_seed)

    def evaluate_logits(self, batch: RequestBatch, idx: Tensor, *, encoding: Optional[Encoding] = None) -> Tensor:
        """Evaluator logits (B, K) for the lists idx (B, K) (Eq. 18, BCE of Eq. 21)."""
        enc = self.encode(batch) if encoding is None else encoding
        return self.evaluator(enc.gather_ads(idx), enc.e_u)

    def evaluate(self, batch: RequestBatch, idx: Tensor, *, encoding: Optional[Encoding] = None) -> Tensor:
        """Permutation-aware pCTR q (B, K) of the lists idx (B, K) (Eq. 18)."""
        return torch.sigmoid(self.evaluate_logits(batch, idx, encoding=encoding))

    def winner_ctr(self, batch: RequestBatch, idx: Tensor, *, encoding: Optional[Encoding] = None) -> Tensor:
        """q_{y_i} (B, K) for the payment input, from ``config.payment_ctr_source`` (module doc)."""
        enc = self.encode(batch) if encoding is None else encoding
        if self.config.payment_ctr_source == "evaluator":
            return self.evaluate(batch, idx, encoding=enc)
        return enc.q_hat.gather(1, idx)

    def pay(
        self,
        batch: RequestBatch,
        idx: Tensor,
        q: Tensor,
        *,
        bids: Optional[Tensor] = None,
        encoding: Optional[Encoding] = None,
    ) -> Tensor:
        """Per-click prices (B, K) of Eq. 19 for winners idx (B, K) with pCTR input q (B, K);
        ``bids`` (B, N) replaces ``batch.bids`` (misreports). 0 ≤ p ≤ b always (IR)."""
        enc = self.encode(batch) if encoding is None else encoding
        bids = batch.bids if bids is None else bids
        return self.payment(enc.gather_ads(idx), q, bids.gather(1, idx))

    def critical_prices(
        self,
        idx: Tensor,
        bids: Tensor,
        mask: Tensor,
        *,
        encoding: Encoding,
        slot_tokens: Tensor,
    ) -> Tensor:
        """Myerson per-click prices (B, K) of the generator's winners idx (B, K) under ``bids``
        (B, N) with candidates ``mask`` (B, N) (:mod:`egakit.model.critical_payment`); 0 ≤ p ≤ b."""
        gen = self.generator
        free = gen.bid_free_scores(encoding.h_ad, slot_tokens)  # (B, N, K) h_n · T_k
        scores = gen.scores(encoding.h_ad, slot_tokens, encoding.q_hat, bids, free=free)  # Eq. 17
        own_free = free.gather(1, idx.unsqueeze(-1).expand(-1, -1, free.shape[-1]))  # (B, winner, slot)
        slope = (torch.exp(gen.w_z) * encoding.q_hat.gather(1, idx)).clamp_min(torch.finfo(scores.dtype).tiny)
        thresholds = winner_thresholds(scores, mask, idx, own_free, slope)
        own_bids = bids.gather(1, idx)
        return myerson_prices(thresholds, self.observation.position_ctr(), own_bids)

    @torch.no_grad()
    def allocate(
        self,
        batch: RequestBatch,
        *,
        bids: Optional[Tensor] = None,
        encoding: Optional[Encoding] = None,
        slot_tokens: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        """Inference: winners' ad ids (B, K) (from ``batch.cand_ids``) and per-click payments (B, K).

        AucFormer: greedy generator, priced by ``config.payment_rule`` — the critical-bid
        (Myerson) payment of that allocation, or the payment network of Eq. 19 (q_{y_i} per
        ``payment_ctr_source``); ``allocation="gsp"``: GSP on q̂·b. Runs under no_grad; put the model in eval mode first.
        ``encoding`` / ``slot_tokens`` reuse a previous :meth:`encode` / :meth:`slot_tokens`: both
        are bid-free, so re-allocating under other ``bids`` (misreports) needs neither again.
        """
        enc = self.encode(batch) if encoding is None else encoding
        bids = batch.bids if bids is None else bids
        _check_bids(bids, enc.cand_mask)
        if self.config.allocation == "gsp":
            idx, _, prices = gsp_allocation(enc.q_hat, bids, enc.cand_mask, self.config.K)
        else:
            t = self.slot_tokens(enc) if slot_tokens is None else slot_tokens
            idx, _ = self.generate(batch, bids=bids, encoding=enc, slot_tokens=t)
            if self.config.payment_rule == "critical":
                prices = self.critical_prices(idx, bids, enc.cand_mask, encoding=enc, slot_tokens=t)
            else:
                prices = self.pay(batch, idx, self.winner_ctr(batch, idx, encoding=enc), bids=bids, encoding=enc)
        return batch.cand_ids.gather(1, idx), prices
