"""The ground-truth click model of the synthetic world (docs/design.md §1). Hidden from the models: only the
world generator and :mod:`egakit.sim.oracle` use it.

    pCTR(j | request, list Y, slot k) = posbias(k) · σ( c0 + ψ_u·φ_j + quality_j
        + s_u · cross(hour, category_j)                 ← hour × category cross feature
        + g(distance(request location, j))              ← distance cross feature, g(d) = −w·d/radius
        + creative_attr(j, shown creative)              ← creative term (V2)
        − λ_ext · Σ_{i above j in Y} max(0, cos(φ_i, φ_j))   ← in-list externality
        − λ_set · crowding_j(candidate set) )                ← set-level externality

    posbias(k) = 1 / (1 + decay · k)      (decay = 1/3 gives 1, .75, .6, .5, .43 for K = 5)

    crowding_j(S) = log1p(#{i ∈ S, i ≠ j : category_i = category_j, quality_i ≥ q_strong})

where q_strong (``strong_quality``) marks the strong shops: the count is of strong rivals of the
same category, not of the ad's rank among them, so it has little ad-level spread. Rivals are the
same *category* (observable), not the same hidden topic: a model can only tell hidden topics
apart through ad-id embeddings, too slowly for a small world's logs. It is computed per candidate
set by one bincount, O(N) (no all-pairs), and depends on the whole set: the same ad is crowded in
one request and not in the next, because which of its rivals are available changes with the
supply state the request meets (:mod:`egakit.sim.supply`), so a point-wise model cannot learn it
and a set-aware one can.

"Slot-free" CTR (platform labels, :meth:`Oracle.pointwise_ctr`) is the same with posbias 1 and no
list externality. When the shown creative is not given, CTR is the expectation over a uniformly
random creative of the ad, which is what the logging policy shows (``click_prob``).

Everything here is vectorised; the torch functions are shared by the generator (CPU) and the
oracle (any device) so the two can never disagree.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class ClickParams:
    """Scalar constants of the click model (written to ``truth/params.json``)."""

    c0: float = -2.15  # intercept: sets the CTR level (1–15 % per exposure in the small world)
    lambda_ext: float = 0.5  # in-list externality per similar ad above
    lambda_set: float = 0.8  # set-level crowding weight
    strong_quality: float = 0.3  # crowding counts same-category rivals of at least this quality (top ~30 %)
    posbias_decay: float = 1.0 / 3.0  # posbias(k) = 1 / (1 + decay·k)
    distance_weight: float = 1.0  # g(d) = −distance_weight · d / radius


@dataclass(frozen=True)
class ClickTruth:
    """All hidden constants of a world's click model: scalars plus the two tables.

    topic_centres: (M, r) unit vectors; an ad's topic is its nearest centre.
    cross: (24, C) hour × category table, scaled per user by the hour sensitivity s_u.
    radius: the candidate radius in city units (distance is measured in radii).
    """

    params: ClickParams
    topic_centres: np.ndarray
    cross: np.ndarray
    radius: float

    def to_json(self) -> dict:
        return {
            "click": asdict(self.params),
            "radius": float(self.radius),
            "topic_centres": self.topic_centres.astype(np.float32).tolist(),
            "cross_hour_category": self.cross.astype(np.float32).tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "ClickTruth":
        return cls(
            params=ClickParams(**obj["click"]),
            topic_centres=np.asarray(obj["topic_centres"], dtype=np.float32),
            cross=np.asarray(obj["cross_hour_category"], dtype=np.float32),
            radius=float(obj["radius"]),
        )

    def save(self, path: Path, extra: Optional[dict] = None) -> None:
        obj = self.to_json()
        if extra:
            obj["generation"] = extra
        Path(path).write_text(json.dumps(obj, indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "ClickTruth":
        return cls.from_json(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------------------------
# Set-level pieces (numpy, run once per candidate set)


def crowding(category: np.ndarray, quality: np.ndarray, strong_quality: float) -> np.ndarray:
    """Set-level crowding of each candidate of one set, O(N).

    category: (N,) int; quality: (N,) float. Returns (N,) float32
    log1p(#other candidates in the set with the same category and quality ≥ ``strong_quality``).
    """
    if category.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    category = category.astype(np.int64)
    strong = quality >= strong_quality
    per_category = np.bincount(category[strong], minlength=int(category.max()) + 1)
    rivals = per_category[category] - strong  # an ad is not its own rival
    return np.log1p(rivals).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Per-request terms (torch)


def posbias(decay: float, k: int, *, device=None, dtype=torch.float32) -> Tensor:
    """(k,) position bias 1 / (1 + decay · slot), slot 0 on top."""
    return 1.0 / (1.0 + decay * torch.arange(k, device=device, dtype=dtype))


def interest_term(interest: Tensor, latent: Tensor) -> Tensor:
    """ψ_u · φ_j. interest: (B, r); latent: (B, N, r) -> (B, N). Memory-linear in N."""
    return (interest.unsqueeze(1) * latent).sum(-1)


def distance_term(dist: Tensor, params: ClickParams, radius: float) -> Tensor:
    """g(d) = −w · d / radius, any shape."""
    return dist * (-params.distance_weight / radius)


def slot_free_logit(
    params: ClickParams,
    interest: Tensor,
    quality: Tensor,
    cross: Tensor,
    distance: Tensor,
    crowd: Tensor,
) -> Tensor:
    """Logit without position, list or creative terms. All inputs share one shape (B, N).

    ``cross`` is already s_u · cross(hour, category); ``distance`` is g(d); ``crowd`` is the raw
    crowding (log1p count), weighted here by −λ_set.
    """
    return params.c0 + interest + quality + cross + distance - params.lambda_set * crowd


def list_externality(latent: Tensor, valid: Tensor) -> Tensor:
    """Σ_{i above k, valid} max(0, cos(φ_i, φ_k)) for a list.

    latent: (B, K, r) of the ads in slot order; valid: (B, K) bool (False = empty slot, which
    exerts no externality). Returns (B, K), unweighted (the caller multiplies by λ_ext).
    """
    unit = latent / latent.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (unit.unsqueeze(2) * unit.unsqueeze(1)).sum(-1).clamp_min(0.0)  # (B, i, k), no BLAS
    k = latent.shape[1]
    above = torch.ones(k, k, dtype=torch.bool, device=latent.device).triu(diagonal=1)  # i < k
    mask = above.unsqueeze(0) & valid.unsqueeze(2)
    return (cos * mask).sum(dim=1)


def click_prob(
    logit: Tensor,
    creative_attr: Tensor,
    creative_count: Tensor,
    creative: Optional[Tensor] = None,
) -> Tensor:
    """σ(logit + creative attractiveness), before position bias.

    logit: (...,); creative_attr: (..., C_max) zero-padded; creative_count: (...,) ≥ 1.
    With ``creative`` (..., int index of the shown creative) the shown creative is used;
    without it, the mean over a uniformly random creative of the ad (exact expectation).
    """
    if creative is not None:
        attr = torch.gather(creative_attr, -1, creative.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        return torch.sigmoid(logit + attr)
    c_max = creative_attr.shape[-1]
    slots = torch.arange(c_max, device=logit.device)
    valid = slots < creative_count.unsqueeze(-1)
    probs = torch.sigmoid(logit.unsqueeze(-1) + creative_attr) * valid
    return probs.sum(-1) / creative_count.clamp_min(1).to(probs.dtype)


# ----------------------------------------------------------------------------------------------
# The truth evaluated on hidden tables (shared by the generator and the oracle)


@dataclass
class TruthTables:
    """Hidden per-ad and per-user arrays as torch tensors on one device, indexed by store row.

    Ads: latent (n_ads, r), quality (n_ads,), category (n_ads,) long, creative_attr
    (n_ads, C_max) zero-padded, creative_count (n_ads,) long, xy (n_ads, 2).
    Users: interest (n_users, r), sensitivity (n_users,). cross: (24, n_categories).
    """

    truth: ClickTruth
    latent: Tensor
    quality: Tensor
    category: Tensor
    creative_attr: Tensor
    creative_count: Tensor
    xy: Tensor
    interest: Tensor
    sensitivity: Tensor
    cross: Tensor

    @classmethod
    def from_numpy(cls, truth: ClickTruth, *, device="cpu", **arrays: np.ndarray) -> "TruthTables":
        """Build from numpy arrays named like the fields (float32 / int64), then move to device."""
        long_fields = {"category", "creative_count"}
        tensors = {}
        for name, arr in arrays.items():
            dtype = torch.int64 if name in long_fields else torch.float32
            tensors[name] = torch.tensor(np.asarray(arr), dtype=dtype, device=device)
        cross = torch.as_tensor(truth.cross, dtype=torch.float32, device=device)
        return cls(truth=truth, cross=cross, **tensors)

    @property
    def params(self) -> ClickParams:
        return self.truth.params

    def terms(self, user_rows: Tensor, hour: Tensor, loc: Tensor, ad_rows: Tensor, crowd: Tensor) -> dict:
        """The additive logit terms, each (B, N): interest ψ·φ, quality, cross s_u·cross(h, c),
        distance g(d), crowding −λ_set·crowd. user_rows, hour: (B,); loc: (B, 2);
        ad_rows: (B, N) store rows (any valid row on padding); crowd: (B, N) raw crowding."""
        p = self.params
        interest = interest_term(self.interest[user_rows], self.latent[ad_rows])
        cross = self.sensitivity[user_rows].unsqueeze(1) * self.cross[hour.unsqueeze(1), self.category[ad_rows]]
        dist = (self.xy[ad_rows] - loc.unsqueeze(1).to(self.xy.dtype)).norm(dim=-1)
        return {
            "interest": interest,
            "quality": self.quality[ad_rows],
            "cross": cross,
            "distance": distance_term(dist, p, self.truth.radius),
            "crowding": -p.lambda_set * crowd,
        }

    def slot_free_logit(self, user_rows, hour, loc, ad_rows, crowd) -> Tensor:
        """(B, N) logit without position, list or creative terms."""
        t = self.terms(user_rows, hour, loc, ad_rows, crowd)
        return self.params.c0 + t["interest"] + t["quality"] + t["cross"] + t["distance"] + t["crowding"]

    def slot_free_ctr(self, user_rows, hour, loc, ad_rows, crowd, creative: Optional[Tensor] = None) -> Tensor:
        """(B, N) slot-free CTR (posbias 1, no list externality), expected over a random creative
        unless ``creative`` (B, N) gives the shown one."""
        z = self.slot_free_logit(user_rows, hour, loc, ad_rows, crowd)
        return click_prob(z, self.creative_attr[ad_rows], self.creative_count[ad_rows], creative)

    def list_ctr(
        self, user_rows, hour, loc, ad_rows: Tensor, crowd: Tensor, valid: Tensor, creative: Optional[Tensor] = None
    ) -> Tensor:
        """(B, K) true CTR of the list ``ad_rows`` (B, K) in slot order; 0 where ``valid`` is False."""
        p = self.params
        z = self.slot_free_logit(user_rows, hour, loc, ad_rows, crowd)
        ext = list_externality(self.latent[ad_rows], valid)
        ctr = click_prob(z - p.lambda_ext * ext, self.creative_attr[ad_rows], self.creative_count[ad_rows], creative)
        pb = posbias(p.posbias_decay, ad_rows.shape[1], device=ctr.device, dtype=ctr.dtype)
        return ctr * pb * valid
