"""Errors that name what is wrong and where (docs/design.md §12: "a clear error naming the field and the row").
"""
from __future__ import annotations

from os import PathLike
from typing import Optional, Union


class WorldDataError(ValueError):
    """Bad world data: names the file, the field and the row.

    ``field`` is ``None`` when the whole file is at fault (corrupt Parquet, wrong schema version
    in a file without that field); ``row`` is ``None`` when no single row is (a missing column,
    a wrong column type). The message always carries all three, e.g.::

        ads.parquet: field 'bid' row 17: bid must be > 0, got -1.0
        ads.parquet: field 'bid' (all rows): missing column
        requests/test/part-00000.parquet: (whole file) (all rows): corrupt or truncated Parquet: ...
    """

    def __init__(
        self,
        path: Union[str, PathLike, None],
        field: Optional[str] = None,
        row: Optional[int] = None,
        reason: Optional[str] = None,
    ) -> None:
        if reason is None:
            # Re-raised from a DataLoader worker: torch rebuilds the exception from one formatted
            # message (``exc_type(msg)``), which already names the file, field and row.
            self.path = self.field = self.row = None
            self.reason = str(path)
            super().__init__(self.reason)
            return
        self.path = None if path is None else str(path)
        self.field = field
        self.row = None if row is None else int(row)
        self.reason = reason
        where_field = "(whole file)" if field is None else f"field {field!r}"
        where_row = "(all rows)" if row is None else f"row {int(row)}"
        super().__init__(f"{self.path or '<unknown file>'}: {where_field} {where_row}: {reason}")

    def __reduce__(self):  # keep the attributes across pickling (DataLoader workers re-raise)
        return (type(self), (self.path, self.field, self.row, self.reason))


class NonFiniteOutputError(ArithmeticError):
    """A model produced NaN or ±inf where a number is served (a price, a score): never printed as
    an answer (``json.dumps(..., allow_nan=False)`` would refuse it anyway)."""
