"""City geometry: the G × G geo-cell raster and radius queries (docs/design.md §1 "candidate set = every ad
within the request's radius").

A candidate set belongs to a geo cell: the ads whose distance to the cell's centre is ≤ radius
(float64 arithmetic on the stored float32 coordinates, so the generator, the oracle and the tests
get identical sets). Points are bucketed by cell in row-major order, so the cells of one raster
row that meet the disc are one contiguous slice: a query touches O(radius / cell) slices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CityGrid:
    grid: int  # G
    city_size: float  # side, km
    radius: float  # candidate radius, km

    @property
    def cell_size(self) -> float:
        return self.city_size / self.grid

    @property
    def n_cells(self) -> int:
        return self.grid * self.grid

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n,) coordinates -> (n,) int32 row-major cell index (clipped to the city)."""
        cs = self.cell_size
        col = np.clip(np.floor(np.asarray(x, np.float64) / cs), 0, self.grid - 1).astype(np.int64)
        row = np.clip(np.floor(np.asarray(y, np.float64) / cs), 0, self.grid - 1).astype(np.int64)
        return (row * self.grid + col).astype(np.int32)

    def centre(self, cell) -> tuple[np.ndarray, np.ndarray]:
        """Cell index (scalar or array) -> centre coordinates (float64)."""
        cell = np.asarray(cell, dtype=np.int64)
        cs = self.cell_size
        return (cell % self.grid + 0.5) * cs, (cell // self.grid + 0.5) * cs


def within_radius(x: np.ndarray, y: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """Boolean mask of the points at distance ≤ radius of (cx, cy), the one distance rule of the
    world (float64)."""
    dx = np.asarray(x, np.float64) - cx
    dy = np.asarray(y, np.float64) - cy
    return dx * dx + dy * dy <= radius * radius


class PointIndex:
    """Points (ads or organic items, by row) bucketed by geo cell for radius queries."""

    def __init__(self, grid: CityGrid, x: np.ndarray, y: np.ndarray) -> None:
        self.grid = grid
        self.x = np.asarray(x, np.float64)
        self.y = np.asarray(y, np.float64)
        cells = grid.cell_of(self.x, self.y)
        self.order = np.argsort(cells, kind="stable").astype(np.int64)
        self.offsets = np.searchsorted(cells[self.order], np.arange(grid.n_cells + 1)).astype(np.int64)

    def within(self, cx: float, cy: float, radius: float) -> np.ndarray:
        """Sorted (ascending) rows of the points within ``radius`` of (cx, cy)."""
        rows = self._gather(cx, cy, radius)
        rows.sort()
        return rows

    def _gather(self, cx: float, cy: float, radius: float) -> np.ndarray:
        """Rows of the points within ``radius`` of (cx, cy), unsorted."""
        g, cs = self.grid.grid, self.grid.cell_size
        r0 = max(0, int(np.floor((cy - radius) / cs)))
        r1 = min(g - 1, int(np.floor((cy + radius) / cs)))
        c0 = max(0, int(np.floor((cx - radius) / cs)))
        c1 = min(g - 1, int(np.floor((cx + radius) / cs)))
        if r0 > r1 or c0 > c1:
            return np.zeros(0, dtype=np.int64)
        pieces = [self.order[self.offsets[r * g + c0] : self.offsets[r * g + c1 + 1]] for r in range(r0, r1 + 1)]
        rows = np.concatenate(pieces)
        return rows[within_radius(self.x[rows], self.y[rows], cx, cy, radius)]

    def cell_set(self, cell: int) -> np.ndarray:
        """Sorted rows of the points within the grid's radius of ``cell``'s centre."""
        cx, cy = self.grid.centre(cell)
        return self.within(float(cx), float(cy), self.grid.radius)

    def cell_counts(self) -> np.ndarray:
        """(G·G,) number of points within the radius of every cell's centre."""
        cx, cy = self.grid.centre(np.arange(self.grid.n_cells))
        r = self.grid.radius
        return np.array([self._gather(float(a), float(b), r).shape[0] for a, b in zip(cx, cy)], dtype=np.int64)
