"""Parquet schemas of the synthetic LBS world (docs/design.md §1): the contract between the world
generator, the feature stores, the DataModules and the oracle.

A world directory looks like::

    WORLD/
      world.json                       # preset, seed, sizes, vocabularies, split days, K
      ads.parquet                      # local feature store (observable ad fields)
      organics.parquet                 # organic items (EGA-V2), observable fields
      users.parquet                    # remote feature store: profile + behaviour sequence
      candidate_sets.parquet           # per (geo cell, supply state) candidate set
      requests/{pretrain,posttrain,test}/part-XXXXX.parquet   # ids only
      truth/ads.parquet                # hidden: latent, quality, value, creative attractiveness, x, y
      truth/organics.parquet           # hidden: latent, quality, x, y
      truth/users.parquet              # hidden: interest, home x, y, hour sensitivity
      truth/params.json                # hidden click-model constants (only egakit.sim.oracle reads truth/)

Every table carries ``egakit.schema_version`` and ``egakit.table`` in its Parquet metadata.
Requests reference their candidate set by ``candidate_set_id`` (docs/design.md §1 allows "a candidate-set
reference"): a geo cell has ``states_per_cell`` candidate sets, one per supply state (the ads
within the radius that are available then, :mod:`egakit.sim.supply`); a request uses one of its
cell's sets, so a city of 10^5-candidate requests stores each set once.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 3  # 2: candidate sets per supply state (supply_state column, world.json supply);
# 3: ads.popularity_bucket (equal-count bin of log popularity, an observable model feature)
META_VERSION_KEY = b"egakit.schema_version"
META_TABLE_KEY = b"egakit.table"

SPLITS = ("pretrain", "posttrain", "test")

#: Observable categorical features of an ad, in the order the local store returns them (Eq. 5).
AD_CATEGORICAL = ("category", "brand", "price_level", "geo_cell", "popularity_bucket")
#: Observable categorical features of one behaviour-sequence item.
BEHAVIOUR_CATEGORICAL = ("bhv_category", "bhv_brand", "bhv_price_level", "bhv_geo_cell", "bhv_hour")
#: Observable user profile / context features (profile from users.parquet, context from the request).
USER_CATEGORICAL = ("age_bucket", "gender", "home_cell")
CONTEXT_CATEGORICAL = ("hour", "geo_cell")
#: Hours in the world's day: ``hour`` and ``bhv_hour`` lie in [0, HOURS_PER_DAY); ``bhv_ts`` and
#: the request time ``day · HOURS_PER_DAY + hour`` count hours since the world's start.
HOURS_PER_DAY = 24

ADS = pa.schema(
    [
        ("ad_id", pa.int64()),
        ("poi_id", pa.int64()),
        ("category", pa.int32()),
        ("brand", pa.int32()),
        ("price_level", pa.int32()),  # 1..5
        ("geo_cell", pa.int32()),  # row-major index in the city grid
        ("n_creatives", pa.int32()),  # 1..4
        ("bid", pa.float32()),  # per-click bid, > 0 (= value for truthful bidders)
        ("popularity", pa.float32()),  # historical exposure share, > 0 (popularity sampling)
        # equal-count bucket of log popularity over the city's ads, 0 (least) .. n - 1 (most
        # popular): the popularity statistic as a categorical feature (docs/design.md §2 embeds only those)
        ("popularity_bucket", pa.int32()),
    ]
)

ORGANICS = pa.schema(
    [
        ("item_id", pa.int64()),
        ("poi_id", pa.int64()),
        ("category", pa.int32()),
        ("brand", pa.int32()),
        ("price_level", pa.int32()),
        ("geo_cell", pa.int32()),
        ("gmv_score", pa.float32()),  # fixes the organic order (EGA-V2)
    ]
)

USERS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("age_bucket", pa.int32()),
        ("gender", pa.int32()),
        ("home_cell", pa.int32()),
        # Behaviour sequence, oldest first, length <= max_behaviours (L).
        ("bhv_item_id", pa.list_(pa.int64())),
        ("bhv_kind", pa.list_(pa.int8())),  # 0 = ad, 1 = organic item
        ("bhv_ts", pa.list_(pa.int64())),  # hours since the world's start
        ("bhv_category", pa.list_(pa.int32())),
        ("bhv_brand", pa.list_(pa.int32())),
        ("bhv_price_level", pa.list_(pa.int32())),
        ("bhv_geo_cell", pa.list_(pa.int32())),
        ("bhv_hour", pa.list_(pa.int32())),
    ]
)

CANDIDATE_SETS = pa.schema(
    [
        ("candidate_set_id", pa.int32()),
        ("geo_cell", pa.int32()),
        ("supply_state", pa.int32()),  # 0 .. states_per_cell - 1 (egakit.sim.supply)
        ("ad_ids", pa.list_(pa.int64())),  # sorted ascending, non-empty
    ]
)

REQUESTS = pa.schema(
    [
        ("request_id", pa.int64()),
        ("day", pa.int32()),
        ("hour", pa.int32()),  # 0..23
        ("user_id", pa.int64()),
        ("geo_cell", pa.int32()),
        ("loc_x", pa.float32()),  # request location in city units
        ("loc_y", pa.float32()),
        ("candidate_set_id", pa.int32()),
        ("exposed_ids", pa.list_(pa.int64())),  # K ads shown by the logging policy, slot order
        ("exposed_creatives", pa.list_(pa.int32())),  # creative shown for each exposed ad
        ("exposed_prices", pa.list_(pa.float32())),  # per-click price charged (GSP of the cascade)
        ("clicks", pa.list_(pa.int8())),  # K click labels sampled from the truth
        ("platform_ids", pa.list_(pa.int64())),  # popularity sample of unexposed candidates
        ("platform_clicks", pa.list_(pa.int8())),  # "clicks from other entries" (V1 §4.1)
    ]
)

TRUTH_ADS = pa.schema(
    [
        ("ad_id", pa.int64()),
        ("latent", pa.list_(pa.float32())),  # phi_j, length r
        ("quality", pa.float32()),
        ("value", pa.float32()),  # private click value v_j
        ("creative_attr", pa.list_(pa.float32())),  # one attractiveness per creative
        ("x", pa.float32()),
        ("y", pa.float32()),
    ]
)

TRUTH_ORGANICS = pa.schema(
    [
        ("item_id", pa.int64()),
        ("latent", pa.list_(pa.float32())),
        ("quality", pa.float32()),
        ("x", pa.float32()),
        ("y", pa.float32()),
    ]
)

TRUTH_USERS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("interest", pa.list_(pa.float32())),  # psi_u, length r
        ("home_x", pa.float32()),
        ("home_y", pa.float32()),
        ("hour_sensitivity", pa.float32()),  # scales cross(hour, category) for this user
    ]
)

#: table name -> (relative path or directory, schema)
TABLES: dict[str, tuple[str, pa.Schema]] = {
    "ads": ("ads.parquet", ADS),
    "organics": ("organics.parquet", ORGANICS),
    "users": ("users.parquet", USERS),
    "candidate_sets": ("candidate_sets.parquet", CANDIDATE_SETS),
    "requests": ("requests", REQUESTS),
    "truth_ads": ("truth/ads.parquet", TRUTH_ADS),
    "truth_organics": ("truth/organics.parquet", TRUTH_ORGANICS),
    "truth_users": ("truth/users.parquet", TRUTH_USERS),
}


def with_metadata(schema: pa.Schema, table: str) -> pa.Schema:
    """Return ``schema`` with the egakit schema version and table name in its metadata."""
    meta = dict(schema.metadata or {})
    meta[META_VERSION_KEY] = str(SCHEMA_VERSION).encode()
    meta[META_TABLE_KEY] = table.encode()
    return schema.with_metadata(meta)
