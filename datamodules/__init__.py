"""LightningDataModules (SPEC §2, §5): stream a world's requests as :class:`egakit.batch.RequestBatch`.

- :class:`WorldDataModule` (``datamodules.world``): the DataModule configs name.
- :class:`RequestStream` / :class:`RequestLoader` (``datamodules.request_stream``): the sharded,
  resumable IterableDataset and its StatefulDataLoader.
- :class:`RequestCollate` (``datamodules.collate``): samples → padded RequestBatch.
"""
from datamodules.collate import RequestCollate
from datamodules.request_stream import RequestLoader, RequestStream
from datamodules.world import DEFAULT_SPLITS, ConsumedBatchesTracker, WorldDataModule, parse_split

__all__ = [
    "DEFAULT_SPLITS",
    "ConsumedBatchesTracker",
    "RequestCollate",
    "RequestLoader",
    "RequestStream",
    "WorldDataModule",
    "parse_split",
]
