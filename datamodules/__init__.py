"""LightningDataModules (docs/design.md §2, §5): stream a world's requests as :class:`egakit.batch.RequestBatch`.

- :class:`WorldDataModule` (``egakit.data.world``): the DataModule configs name.
- :class:`RequestStream` / :class:`RequestLoader` (``egakit.data.request_stream``): the sharded,
  resumable IterableDataset and its StatefulDataLoader.
- :class:`RequestCollate` (``egakit.data.collate``): samples → padded RequestBatch.
"""
from egakit.data.collate import RequestCollate
from egakit.data.request_stream import RequestLoader, RequestStream
from egakit.data.world import DEFAULT_SPLITS, ConsumedBatchesTracker, WorldDataModule, parse_split

__all__ = [
    "DEFAULT_SPLITS",
    "ConsumedBatchesTracker",
    "RequestCollate",
    "RequestLoader",
    "RequestStream",
    "WorldDataModule",
    "parse_split",
]
