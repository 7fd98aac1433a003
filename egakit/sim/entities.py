"""The world's entities (docs/design.md §1): the city's density, the hidden click-model tables, ads and
their shops, organic items, and users. Pure numpy, deterministic from the generators passed in.

Ids are sorted but sparse (consecutive ids differ by 1..``id_max_gap``), so consumers must map
id -> row (the stores do, with a sorted search) and can never confuse the two. Rows of every
table are in ascending id order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egakit.sim.click_model import ClickParams, ClickTruth
from egakit.sim.geo import CityGrid
from egakit.sim.presets import CatalogConfig, CrossConfig, GeoConfig, RequestConfig, UserConfig
from egakit.sim.schema import HOURS_PER_DAY

HOURS = HOURS_PER_DAY  # hours of the world's day (one home: egakit.sim.schema)


# ----------------------------------------------------------------------------------------------
# Helpers


def sparse_ids(rng: np.random.Generator, n: int, base: int, max_gap: int) -> np.ndarray:
    """(n,) sorted unique int64 ids starting above ``base`` with random gaps 1..max_gap."""
    return base + np.cumsum(rng.integers(1, max_gap + 1, size=n, dtype=np.int64))


def mid_price(cat: CatalogConfig) -> float:
    """The middle price level (3 of 1..5): value and GMV scale with the level above it."""
    return (cat.n_price_levels + 1) / 2.0


def unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def noisy_unit(rng: np.random.Generator, centre: np.ndarray, noise: float) -> np.ndarray:
    """Unit vectors around ``centre`` (n, r): noise of expected norm ``noise``."""
    r = centre.shape[-1]
    return unit_rows(centre + rng.normal(0.0, noise / np.sqrt(r), size=centre.shape))


def hour_profile(cfg: RequestConfig) -> np.ndarray:
    """(24,) activity distribution over the hours of the day: a flat share plus circular
    Gaussian peaks at ``hour_peaks``."""
    h = np.arange(HOURS, dtype=np.float64)
    bumps = np.zeros(HOURS)
    for peak in cfg.hour_peaks:
        d = np.abs(h - peak)
        d = np.minimum(d, HOURS - d)
        bumps += np.exp(-0.5 * (d / cfg.hour_peak_sd) ** 2)
    bumps /= bumps.sum()
    p = cfg.hour_base / HOURS + (1.0 - cfg.hour_base) * bumps
    return p / p.sum()


# ----------------------------------------------------------------------------------------------
# City density


@dataclass(frozen=True)
class Districts:
    centres: np.ndarray  # (D, 2) km
    weights: np.ndarray  # (D,) sums to 1


def make_districts(rng: np.random.Generator, geo: GeoConfig) -> Districts:
    lo, hi = geo.district_margin * geo.city_size, (1.0 - geo.district_margin) * geo.city_size
    centres = rng.uniform(lo, hi, size=(geo.n_districts, 2))
    weights = rng.dirichlet(np.full(geo.n_districts, geo.district_weight_alpha))
    return Districts(centres, weights)


def sample_locations(
    rng: np.random.Generator, n: int, geo: GeoConfig, districts: Districts, extra_sigma: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) x, y as float32: a ``background_share`` uniformly over the city, the rest around the
    districts (Gaussian, sd ``district_sigma`` + ``extra_sigma``), clipped to the city."""
    uniform = rng.random(n) < geo.background_share
    which = rng.choice(len(districts.weights), size=n, p=districts.weights)
    sd = geo.district_sigma + extra_sigma
    xy = districts.centres[which] + rng.normal(0.0, sd, size=(n, 2))
    xy[uniform] = rng.uniform(0.0, geo.city_size, size=(int(uniform.sum()), 2))
    xy = np.clip(xy, 0.0, geo.city_size)
    return xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Hidden click-model tables


@dataclass(frozen=True)
class CategoryTables:
    topic: np.ndarray  # (C,) primary topic of each category
    base_price: np.ndarray  # (C,) base price level 1..5
    value_offset: np.ndarray  # (C,) log click value offset
    brand_category: np.ndarray  # (n_brands,) primary category of each brand
    brand_probs: np.ndarray  # (n_brands,) brand popularity (Zipf over a random order)


def make_truth(
    rng: np.random.Generator, cat: CatalogConfig, req: RequestConfig, cross_cfg: CrossConfig,
    click: ClickParams, radius: float,
) -> tuple[ClickTruth, CategoryTables]:
    """Topic centres, the hour × category cross table and the per-category/brand tables."""
    centres = unit_rows(rng.normal(size=(cat.n_topics, cat.latent_dim))).astype(np.float32)
    peaks = np.asarray(req.hour_peaks)[rng.integers(0, len(req.hour_peaks), size=cat.n_categories)]
    peaks = peaks + rng.normal(0.0, cross_cfg.peak_jitter, size=cat.n_categories)
    amp = rng.uniform(cross_cfg.amp_min, cross_cfg.amp_max, size=cat.n_categories)
    h = np.arange(HOURS, dtype=np.float64)[:, None]
    cross = (amp[None, :] * np.cos(2.0 * np.pi * (h - peaks[None, :]) / HOURS)).astype(np.float32)
    truth = ClickTruth(params=click, topic_centres=centres, cross=cross, radius=float(radius))

    probs = np.asarray(cat.price_level_probs, dtype=np.float64)
    tables = CategoryTables(
        topic=rng.integers(0, cat.n_topics, size=cat.n_categories),
        base_price=1 + rng.choice(len(probs), size=cat.n_categories, p=probs / probs.sum()),
        value_offset=rng.normal(0.0, cat.value_category_sd, size=cat.n_categories),
        brand_category=rng.integers(0, cat.n_categories, size=cat.n_brands),
        brand_probs=_zipf_probs(rng, cat.n_brands, cat.brand_zipf),
    )
    return truth, tables


def _zipf_probs(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    p = p[rng.permutation(n)]
    return p / p.sum()


# ----------------------------------------------------------------------------------------------
# Shops, ads and organic items


@dataclass
class Shops:
    """Points of interest: location and descriptive fields shared by their ads / organic form."""

    poi_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price_level: np.ndarray
    quality: np.ndarray
    latent: np.ndarray  # (n, r) unit


def make_shops(
    rng: np.random.Generator, n: int, poi_ids: np.ndarray, cat: CatalogConfig, geo: GeoConfig,
    districts: Districts, truth: ClickTruth, tables: CategoryTables,
) -> Shops:
    brand = rng.choice(cat.n_brands, size=n, p=tables.brand_probs)
    category = np.where(
        rng.random(n) < cat.brand_category_coupling, tables.brand_category[brand], rng.integers(0, cat.n_categories, size=n)
    )
    topic = np.where(
        rng.random(n) < cat.category_topic_coupling, tables.topic[category], rng.integers(0, cat.n_topics, size=n)
    )
    price = np.clip(tables.base_price[category] + np.rint(rng.normal(0.0, cat.price_level_sd, size=n)), 1, cat.n_price_levels)
    x, y = sample_locations(rng, n, geo, districts)
    return Shops(
        poi_id=poi_ids,
        x=x,
        y=y,
        category=category.astype(np.int32),
        brand=brand.astype(np.int32),
        price_level=price.astype(np.int32),
        quality=rng.normal(0.0, cat.quality_sd, size=n),
        latent=noisy_unit(rng, truth.topic_centres[topic].astype(np.float64), cat.topic_noise),
    )


@dataclass
class Ads:
    """Ads by row (ascending ad_id). Observable: ad_id .. popularity_bucket; hidden: the rest."""

    ad_id: np.ndarray  # int64
    poi_id: np.ndarray  # int64
    category: np.ndarray  # int32
    brand: np.ndarray
    price_level: np.ndarray
    geo_cell: np.ndarray
    n_creatives: np.ndarray
    bid: np.ndarray  # float32 (= value: truthful bidders)
    popularity: np.ndarray  # float32, sums to 1
    popularity_bucket: np.ndarray  # int32, equal-count bins of popularity, 0 = least popular
    latent: np.ndarray  # (n, r) float32
    quality: np.ndarray  # float32
    value: np.ndarray  # float32
    creative_attr: np.ndarray  # (n, C_max) float32, zero beyond n_creatives
    x: np.ndarray  # float32
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.ad_id.shape[0])


@dataclass
class Organics:
    """Organic items by row (ascending item_id): observable fields, then hidden ones."""

    item_id: np.ndarray
    poi_id: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price_level: np.ndarray
    geo_cell: np.ndarray
    gmv_score: np.ndarray  # float32
    latent: np.ndarray
    quality: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.item_id.shape[0])


def equal_count_buckets(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """(n,) int32 bucket of each value, 0 .. n_buckets - 1, by rank: bucket b holds the values
    of rank [b·n / n_buckets, (b + 1)·n / n_buckets) (ties broken by position, so counts are equal)."""
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    rank = np.empty(values.shape[0], dtype=np.int64)
    rank[np.argsort(values, kind="stable")] = np.arange(values.shape[0])
    return (rank * n_buckets // max(values.shape[0], 1)).astype(np.int32)


def _shop_counts(rng: np.random.Generator, n_ads: int, probs: tuple) -> np.ndarray:
    """Ads per shop (1, 2, 3, ...) summing exactly to n_ads."""
    p = np.asarray(probs, dtype=np.float64)
    counts = 1 + rng.choice(len(p), size=n_ads, p=p / p.sum())
    cut = int(np.searchsorted(np.cumsum(counts), n_ads)) + 1
    counts = counts[:cut]
    counts[-1] -= counts.sum() - n_ads
    return counts


def make_ads(
    rng: np.random.Generator, cat: CatalogConfig, geo: GeoConfig, grid: CityGrid, districts: Districts,
    truth: ClickTruth, tables: CategoryTables,
) -> tuple[Ads, Shops]:
    counts = _shop_counts(rng, cat.n_ads, cat.ads_per_poi_probs)
    n_shops = counts.shape[0]
    shops = make_shops(
        rng, n_shops, sparse_ids(rng, n_shops, cat.poi_id_base, cat.id_max_gap), cat, geo, districts, truth, tables
    )
    owner = np.repeat(np.arange(n_shops), counts)
    n = cat.n_ads
    latent = noisy_unit(rng, shops.latent[owner], cat.ad_latent_noise).astype(np.float32)
    quality = (shops.quality[owner] + rng.normal(0.0, cat.ad_quality_sd, size=n)).astype(np.float32)
    n_creatives = rng.integers(1, cat.max_creatives + 1, size=n)
    attr = rng.normal(0.0, cat.creative_sd, size=(n, cat.max_creatives))
    attr[np.arange(cat.max_creatives)[None, :] >= n_creatives[:, None]] = 0.0
    category = shops.category[owner]
    price = shops.price_level[owner]
    log_value = (
        cat.value_mu + tables.value_offset[category] + cat.value_price_slope * (price - mid_price(cat))
        + rng.normal(0.0, cat.value_sd, size=n)
    )
    value = np.exp(log_value).astype(np.float32)
    log_pop = (
        cat.popularity_quality_weight * quality + cat.popularity_value_weight * log_value
        + rng.normal(0.0, cat.popularity_sd, size=n)
    )
    pop = np.exp(log_pop - log_pop.max())
    x, y = shops.x[owner], shops.y[owner]
    ads = Ads(
        ad_id=sparse_ids(rng, n, cat.ad_id_base, cat.id_max_gap),
        poi_id=shops.poi_id[owner],
        category=category,
        brand=shops.brand[owner],
        price_level=price,
        geo_cell=grid.cell_of(x, y),
        n_creatives=n_creatives.astype(np.int32),
        bid=value.copy(),
        popularity=(pop / pop.sum()).astype(np.float32),
        popularity_bucket=equal_count_buckets(log_pop, cat.n_popularity_buckets),
        latent=latent,
        quality=quality,
        value=value,
        creative_attr=attr.astype(np.float32),
        x=x,
        y=y,
    )
    return ads, shops


def make_organics(
    rng: np.random.Generator, cat: CatalogConfig, geo: GeoConfig, grid: CityGrid, districts: Districts,
    truth: ClickTruth, tables: CategoryTables, ad_shops: Shops,
) -> Organics:
    """Organic items: a share are advertisers' shops in organic form (same poi_id, place and
    fields), the rest are shops without ads."""
    n = cat.n_organics
    n_shared = min(int(round(cat.organic_shares_ad_poi * n)), len(ad_shops.poi_id))
    shared = rng.choice(len(ad_shops.poi_id), size=n_shared, replace=False)
    n_new = n - n_shared
    last_poi = int(ad_shops.poi_id.max())
    new = make_shops(
        rng, n_new, sparse_ids(rng, n_new, last_poi, cat.id_max_gap), cat, geo, districts, truth, tables
    )

    def both(field: str) -> np.ndarray:
        return np.concatenate([getattr(ad_shops, field)[shared], getattr(new, field)])

    price = both("price_level")
    quality = both("quality") + rng.normal(0.0, cat.ad_quality_sd, size=n)
    latent = noisy_unit(rng, both("latent"), cat.ad_latent_noise).astype(np.float32)
    gmv = np.exp(quality + cat.value_price_slope * (price - mid_price(cat)) + rng.normal(0.0, cat.gmv_sd, size=n))
    perm = rng.permutation(n)  # interleave shared and new shops along the id order
    x, y = both("x")[perm], both("y")[perm]
    return Organics(
        item_id=sparse_ids(rng, n, cat.organic_id_base, cat.id_max_gap),
        poi_id=both("poi_id")[perm],
        category=both("category")[perm],
        brand=both("brand")[perm],
        price_level=price[perm],
        geo_cell=grid.cell_of(x, y),
        gmv_score=gmv[perm].astype(np.float32),
        latent=latent[perm],
        quality=quality[perm].astype(np.float32),
        x=x,
        y=y,
    )


# ----------------------------------------------------------------------------------------------
# Users


@dataclass
class Users:
    """Users by row (ascending user_id). Observable profile, then hidden fields."""

    user_id: np.ndarray
    age_bucket: np.ndarray  # int32
    gender: np.ndarray  # int32
    home_cell: np.ndarray  # int32
    interest: np.ndarray  # (n, r) float32, ψ_u
    home_x: np.ndarray  # float32
    home_y: np.ndarray
    hour_sensitivity: np.ndarray  # float32, s_u > 0
    activity: np.ndarray  # float64, relative request rate (generation only)

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


def make_users(
    rng: np.random.Generator, ucfg: UserConfig, cat: CatalogConfig, geo: GeoConfig, grid: CityGrid,
    districts: Districts, truth: ClickTruth, usable_cell: np.ndarray,
) -> Users:
    """Users with homes in usable cells (cells whose candidate set is large enough) and interests
    built from a few favourite topics, partly shared with their (age, gender) group, so the
    observable profile carries signal."""
    n = ucfg.n_users
    hx, hy = sample_locations(rng, n, geo, districts, extra_sigma=ucfg.home_spread)
    bad = ~usable_cell[grid.cell_of(hx, hy)]
    for _ in range(ucfg.home_redraws):  # rejection: redraw homes that fall in unusable cells
        if not bad.any():
            break
        nx, ny = sample_locations(rng, int(bad.sum()), geo, districts, extra_sigma=ucfg.home_spread)
        hx[bad], hy[bad] = nx, ny
        bad = ~usable_cell[grid.cell_of(hx, hy)]
    if bad.any():  # what is left goes to the centre of a random usable cell
        cells = rng.choice(np.flatnonzero(usable_cell), size=int(bad.sum()))
        cx, cy = grid.centre(cells)
        hx[bad], hy[bad] = cx.astype(np.float32), cy.astype(np.float32)

    n_genders = len(ucfg.gender_probs)
    gp = np.asarray(ucfg.gender_probs, dtype=np.float64)
    age = rng.integers(0, ucfg.n_age_buckets, size=n)
    gender = rng.choice(n_genders, size=n, p=gp / gp.sum())
    group_pref = rng.dirichlet(np.full(cat.n_topics, ucfg.group_dirichlet), size=ucfg.n_age_buckets * n_genders)
    group = age * n_genders + gender
    fav_shape = (n, ucfg.favourite_topics)
    cum = np.cumsum(group_pref[group], axis=1)  # (n, M): inverse-CDF draw from each user's group
    from_group = (cum[:, None, :] < rng.random(fav_shape)[:, :, None]).sum(axis=2).clip(max=cat.n_topics - 1)
    fav = np.where(rng.random(fav_shape) < ucfg.group_weight, from_group, rng.integers(0, cat.n_topics, size=fav_shape))
    direction = noisy_unit(rng, truth.topic_centres[fav].astype(np.float64).sum(axis=1), ucfg.interest_noise)
    scale = ucfg.interest_scale * np.exp(rng.normal(0.0, ucfg.interest_scale_sd, size=n))
    return Users(
        user_id=sparse_ids(rng, n, cat.user_id_base, cat.id_max_gap),
        age_bucket=age.astype(np.int32),
        gender=gender.astype(np.int32),
        home_cell=grid.cell_of(hx, hy),
        interest=(direction * scale[:, None]).astype(np.float32),
        home_x=hx,
        home_y=hy,
        hour_sensitivity=np.exp(rng.normal(0.0, ucfg.hour_sensitivity_sd, size=n)).astype(np.float32),
        activity=np.exp(rng.normal(0.0, ucfg.activity_sd, size=n)),
    )
