"""World presets (docs/design.md §1): every size and generation constant lives here, none in code.

A :class:`WorldPreset` groups one frozen dataclass per generation step. ``get_preset(name,
**overrides)`` returns a preset with any field replaced by its (unique) name, e.g.
``get_preset("tiny", n_requests=500, seed_note=...)``.

Units: distances in km of a square city of side ``city_size`` cut into a ``grid`` × ``grid``
raster of geo cells (row-major, ``cell = row·grid + col``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from egakit.sim.click_model import ClickParams
from egakit.sim.supply import SupplyConfig


@dataclass(frozen=True)
class GeoConfig:
    grid: int  # G: the city is G × G geo cells
    city_size: float  # side of the square city, km
    radius: float  # candidate radius around the request cell's centre, km
    n_districts: int  # Gaussian density blobs (ads, organics and homes)
    district_sigma: float  # km
    district_weight_alpha: float  # Dirichlet concentration of the district weights
    background_share: float  # share of points drawn uniformly over the city
    min_candidates: int  # a cell is usable for requests when its candidate set has ≥ this many ads
    sets_for_all_cells: bool  # True: a candidate set for every usable cell; False: only requested cells
    district_margin: float = 0.1  # district centres lie in [margin, 1 - margin] × city_size


@dataclass(frozen=True)
class CatalogConfig:
    n_ads: int
    n_organics: int
    n_categories: int = 50
    n_brands: int = 2000
    n_price_levels: int = 5
    max_creatives: int = 4
    latent_dim: int = 16  # r
    n_topics: int = 32  # M hidden topics (latent clusters of the ads: interest and list externality)
    ads_per_poi_probs: tuple = (0.6, 0.3, 0.1)  # P(shop runs 1, 2, 3 ads)
    organic_shares_ad_poi: float = 0.3  # organic items that are an advertiser shop's organic form
    brand_zipf: float = 0.8  # brand popularity ∝ rank^-zipf
    brand_category_coupling: float = 0.9  # P(shop category = its brand's category)
    category_topic_coupling: float = 0.8  # P(shop topic = its category's topic)
    topic_noise: float = 0.6  # norm of the latent's noise around its topic centre (same-topic cos ≈ .75)
    ad_latent_noise: float = 0.2  # an ad's latent around its shop's
    price_level_probs: tuple = (0.15, 0.3, 0.3, 0.17, 0.08)  # category base price level
    price_level_sd: float = 0.8  # shop price level around its category's base
    quality_sd: float = 0.5  # shop quality
    ad_quality_sd: float = 0.2  # ad quality around its shop's
    creative_sd: float = 0.4  # creative attractiveness
    value_mu: float = 0.0  # log click value
    value_category_sd: float = 0.5  # category offset of log value
    value_price_slope: float = 0.15  # log value (and log GMV) per price level above the middle one
    value_sd: float = 0.4  # per-ad log value noise
    popularity_quality_weight: float = 1.0  # log popularity = w_q·quality + w_v·log v + noise
    popularity_value_weight: float = 0.5
    popularity_sd: float = 0.7
    # observable popularity_bucket: equal-count bins of log popularity (a quality signal the models
    # can read: AUC 0.77 for "strong" ads, quality >= 0.3, on the small world)
    n_popularity_buckets: int = 16
    gmv_sd: float = 0.5  # organic log GMV score noise around quality + price level
    id_max_gap: int = 7  # ids are sorted but sparse: consecutive ids differ by 1..id_max_gap
    ad_id_base: int = 1_000_000
    organic_id_base: int = 500_000_000
    poi_id_base: int = 100_000
    user_id_base: int = 10_000_000


@dataclass(frozen=True)
class UserConfig:
    n_users: int
    max_behaviours: int  # L
    min_behaviours: int  # shortest behaviour sequence
    history_days: int  # behaviours happen on days [0, history_days); requests follow
    behaviour_pool: int  # items near home that one user's behaviours are drawn from
    n_age_buckets: int = 7
    gender_probs: tuple = (0.05, 0.475, 0.475)  # 0 = unknown
    favourite_topics: int = 3  # topics a user likes
    group_dirichlet: float = 0.3  # topic preference of an (age, gender) group
    group_weight: float = 0.5  # share of a user's favourites drawn from the group preference
    interest_noise: float = 0.5  # noise on the interest direction
    interest_scale: float = 1.8  # |ψ_u| (median)
    interest_scale_sd: float = 0.2  # log-normal spread of |ψ_u|
    hour_sensitivity_sd: float = 0.5  # s_u = exp(N(0, sd))
    activity_sd: float = 1.0  # request rate ∝ exp(N(0, sd))
    home_spread: float = 1.0  # extra km spread of homes around the district centres
    home_redraws: int = 64  # rounds of redrawing homes that fall in unusable cells
    user_chunk: int = 256  # users per vectorised behaviour chunk


@dataclass(frozen=True)
class RequestConfig:
    n_requests: int
    n_days: int  # D request days, after the history days
    split_fractions: tuple = (0.7, 0.2, 0.1)  # pretrain / posttrain / test, by day
    move_sd: float = 0.8  # km: request location around home
    hour_peaks: tuple = (8.0, 12.0, 18.5, 21.0)  # activity (and category preference) peaks
    hour_peak_sd: float = 1.5
    hour_base: float = 0.15  # flat share of the hour-of-day activity


@dataclass(frozen=True)
class LoggingConfig:
    """The noisy cascade that decided what was shown (logging_policy.py)."""

    K: int = 5
    recall_popular: int = 30  # top-R by popularity
    recall_random: int = 10  # plus uniformly random candidates
    prerank_keep: int = 15  # M kept by the noisy pre-rank
    prerank_noise: float = 1.0  # sd of the pre-rank's logit error
    rank_noise: float = 0.5  # sd of the rank's logit error
    reserve_price: float = 0.01  # price of the last slot when no runner-up exists
    platform_sample: int = 32  # unexposed candidates with a platform label per request
    platform_pop_exponent: float = 0.75  # popularity sampling ∝ popularity^exponent
    observation_rate: float = 0.5  # platform clicks are observed with this probability


@dataclass(frozen=True)
class CrossConfig:
    """Generation of the hidden hour × category table."""

    amp_min: float = 0.2
    amp_max: float = 0.6
    peak_jitter: float = 1.0  # hours around one of RequestConfig.hour_peaks


@dataclass(frozen=True)
class IOConfig:
    row_group_size: int  # requests per Parquet row group (DataModules stream row groups)
    row_groups_per_file: int  # row groups per requests/<split>/part-XXXXX.parquet
    sets_per_row_group: int  # candidate sets per row group of candidate_sets.parquet


@dataclass(frozen=True)
class WorldPreset:
    name: str
    geo: GeoConfig
    catalog: CatalogConfig
    users: UserConfig
    requests: RequestConfig
    logging: LoggingConfig
    io: IOConfig
    click: ClickParams = field(default_factory=ClickParams)
    cross: CrossConfig = field(default_factory=CrossConfig)
    supply: SupplyConfig = field(default_factory=SupplyConfig)

    def to_json(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    def validate(self) -> "WorldPreset":
        lg, cat = self.logging, self.catalog
        checks = [
            (self.geo.min_candidates >= lg.K + 1, "geo.min_candidates must exceed K"),
            (lg.prerank_keep >= lg.K + 1, "logging.prerank_keep must exceed K"),
            (lg.recall_popular + lg.recall_random >= lg.prerank_keep, "recall must cover prerank_keep"),
            (0.0 < lg.observation_rate <= 1.0, "logging.observation_rate must be in (0, 1]"),
            (abs(sum(self.requests.split_fractions) - 1.0) < 1e-9, "split_fractions must sum to 1"),
            (self.requests.n_days >= len(self.requests.split_fractions), "need ≥ 1 day per split"),
            (1 <= self.users.min_behaviours <= self.users.max_behaviours, "bad behaviour lengths"),
            (cat.n_ads >= 1 and cat.n_organics >= 1 and self.users.n_users >= 1, "empty world"),
            (1 <= cat.max_creatives, "max_creatives must be ≥ 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"preset {self.name!r}: {msg}")
        self.supply.validate(self.name)
        return self


_SECTIONS = ("geo", "catalog", "users", "requests", "logging", "io", "click", "cross", "supply")


TINY = WorldPreset(
    name="tiny",
    geo=GeoConfig(
        grid=8, city_size=8.0, radius=2.5, n_districts=3, district_sigma=1.6,
        district_weight_alpha=4.0, background_share=0.4, min_candidates=20, sets_for_all_cells=True,
    ),
    catalog=CatalogConfig(n_ads=360, n_organics=200),
    users=UserConfig(n_users=200, max_behaviours=50, min_behaviours=1, history_days=28, behaviour_pool=100),
    requests=RequestConfig(n_requests=2500, n_days=10),
    logging=LoggingConfig(),
    io=IOConfig(row_group_size=256, row_groups_per_file=4, sets_per_row_group=16),
    click=ClickParams(c0=-2.4),  # fewer rivals per set than small: a lower intercept, the same CTR level
    supply=SupplyConfig(states_per_cell=4, busy_share=0.5),
)

SMALL = WorldPreset(
    name="small",
    geo=GeoConfig(
        grid=24, city_size=24.0, radius=5.0, n_districts=6, district_sigma=4.0,
        district_weight_alpha=4.0, background_share=0.5, min_candidates=2000, sets_for_all_cells=True,
    ),
    catalog=CatalogConfig(n_ads=24_000, n_organics=12_000),
    users=UserConfig(n_users=6000, max_behaviours=200, min_behaviours=5, history_days=60, behaviour_pool=400),
    requests=RequestConfig(n_requests=96_000, n_days=20),
    logging=LoggingConfig(
        # 200 platform labels per request, every platform click observed: ~3.3 labelled clicks per
        # request (128 labels at observation 0.5 gave ~1.3; both pre-trained variants then sat
        # 0.018 oracle AUC lower, reports/v1/pretrain_experiments.json "label_density")
        recall_popular=300, recall_random=100, prerank_keep=100, platform_sample=200, observation_rate=1.0,
    ),
    io=IOConfig(row_group_size=512, row_groups_per_file=8, sets_per_row_group=32),
    supply=SupplyConfig(states_per_cell=8, busy_share=0.5),
)

CITY = WorldPreset(
    name="city",
    geo=GeoConfig(
        grid=40, city_size=40.0, radius=8.0, n_districts=4, district_sigma=6.0,
        district_weight_alpha=4.0, background_share=0.3, min_candidates=2000, sets_for_all_cells=False,
    ),
    catalog=CatalogConfig(n_ads=385_000, n_organics=100_000),
    users=UserConfig(n_users=1000, max_behaviours=1000, min_behaviours=50, history_days=90, behaviour_pool=2000,
                     user_chunk=64),
    requests=RequestConfig(n_requests=400, n_days=10, split_fractions=(0.2, 0.1, 0.7)),
    logging=LoggingConfig(
        recall_popular=1000, recall_random=500, prerank_keep=300, platform_sample=64,
    ),
    io=IOConfig(row_group_size=64, row_groups_per_file=4, sets_per_row_group=4),
    click=ClickParams(c0=0.0),  # 10^5-candidate sets hold ~30x the small world's rivals per category
    supply=SupplyConfig(),  # whole radius sets: N up to 10^5 for the perf suite
)

PRESETS: dict[str, WorldPreset] = {p.name: p for p in (TINY, SMALL, CITY)}


def get_preset(name: str, **overrides: Any) -> WorldPreset:
    """The preset ``name`` with fields replaced by name (each field name is unique across sections).

    Raises ``ValueError`` for an unknown preset or field, or an inconsistent result.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown world preset {name!r}; choose one of {sorted(PRESETS)}")
    return apply_overrides(PRESETS[name], **overrides)


def apply_overrides(preset: WorldPreset, **overrides: Any) -> WorldPreset:
    """``preset`` with fields replaced by their (unique) names, validated."""
    by_section: dict[str, dict[str, Any]] = {}
    owners = {f.name: sec for sec in _SECTIONS for f in fields(getattr(preset, sec))}
    for key, value in overrides.items():
        if key not in owners:
            raise ValueError(f"unknown world preset field {key!r}; valid fields: {sorted(owners)}")
        by_section.setdefault(owners[key], {})[key] = value
    for sec, changes in by_section.items():
        preset = replace(preset, **{sec: replace(getattr(preset, sec), **changes)})
    return preset.validate()
