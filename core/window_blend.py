"""Blend neighbouring processing windows across their common edges, so a run shows no seams.

A learned model sees each window of a run on its own (its choice of dates, its spatial context), so two
windows can disagree where they meet. Each window's prediction is kept on its tile and `blend` px beyond
every edge it shares with another window (inside its halo), weighted by a raised cosine that falls from 1
to 0 across the 2·blend px around that edge: each pixel is the weighted mean of the windows covering it
(where one window has no value the others' stand). Windows come in `grid.tiles`' row-major order, and each
pixel is given out once, when every window covering it is in: besides the window at hand a run holds a
band of 2·blend rows across the image and one of 2·blend columns beside the window.
"""

from __future__ import annotations

import numpy as np

from .grid import Tile
from .tiling import edge_ramp


class WindowBlender:
    """Blends (C, h, w) predictions of the windows of one grid, added in grid.tiles' order."""

    def __init__(self, height: int, width: int, blend: int):
        self.height, self.width, self.blend = int(height), int(width), max(0, int(blend))
        self._ramp = edge_ramp(2 * self.blend).astype(np.float32)
        self._above: np.ndarray | None = None  # the previous row of windows' share of the band around this row's top
        self._below: np.ndarray | None = None  # this row's share of the band around its bottom (for the next row)
        self._left: np.ndarray | None = None  # the previous window's share of the band around this one's left
        self._expected = (0, 0)

    def add(self, tile: Tile, values: np.ndarray) -> tuple[int, int, np.ndarray]:
        """Add one window's (C, height0, width0) prediction on the tile's extended window; return (row, col,
        done): the (C, h, w) pixels at (row, col) of the grid that are now complete (each pixel exactly once
        over a run; with blend 0, the tile itself)."""
        if (tile.row, tile.col) != self._expected:
            raise ValueError(f"window at row {tile.row}, col {tile.col} out of order: expected {self._expected}")
        H, W, b = self.height, self.width, self.blend
        top, bottom = tile.row > 0, tile.row + tile.height < H
        left, right = tile.col > 0, tile.col + tile.width < W
        self._expected = (tile.row, tile.col + tile.width) if right else (tile.row + tile.height, 0)
        if b == 0:
            return tile.row, tile.col, values[(slice(None), *tile.inner)]
        if not left:  # a new row of windows
            self._above, self._below, self._left = self._below, None, None
        r0, r1 = tile.row - b * top, min(H, tile.row + tile.height + b * bottom)
        c0, c1 = tile.col - b * left, min(W, tile.col + tile.width + b * right)
        part = values[:, r0 - tile.row0:r1 - tile.row0, c0 - tile.col0:c1 - tile.col0]
        if r0 < tile.row0 or c0 < tile.col0 or part.shape[1:] != (r1 - r0, c1 - c0):
            raise ValueError(f"the window at row {tile.row}, col {tile.col} has less than {b} px of halo to blend")
        ok = np.isfinite(part).all(axis=0)
        weight = np.outer(self._weights(r0, r1, tile.row, tile.row + tile.height, top, bottom),
                          self._weights(c0, c1, tile.col, tile.col + tile.width, left, right)) * ok
        acc = np.empty((part.shape[0] + 1, *part.shape[1:]), np.float32)  # weighted values, then their weight
        np.multiply(np.where(ok, part, 0), weight, out=acc[:-1])
        acc[-1] = weight
        # complete: up to the band around the right (bottom) edge, which the next window (row) completes
        done_c = tile.col + tile.width - b if right else c1
        done_r = tile.row + tile.height - b if bottom else r1
        if left:
            acc[:, :, :self._left.shape[2]] += self._left
        if top:
            acc[:, :self._above.shape[1], :done_c - c0] += self._above[:, :, c0:done_c]
        self._left = acc[:, :, done_c - c0:].copy() if right else None
        if bottom:
            if self._below is None:
                self._below = np.zeros((acc.shape[0], r1 - done_r, W), np.float32)
            self._below[:, :, c0:done_c] = acc[:, done_r - r0:, :done_c - c0]
        done = acc[:, :done_r - r0, :done_c - c0]
        with np.errstate(invalid="ignore", divide="ignore"):
            return r0, c0, done[:-1] / done[-1]  # NaN where no window has a value

    def _weights(self, start: int, stop: int, lo: int, hi: int, before: bool, after: bool) -> np.ndarray:
        """(stop - start,) weights along one axis of a window whose tile spans [lo, hi): rising across
        [lo - blend, lo + blend) when it has a neighbour before, falling across [hi - blend, hi + blend) when
        it has one after (cut at the grid's edge), 1 elsewhere."""
        w = np.ones(stop - start, np.float32)
        if before:
            n = min(2 * self.blend, stop - start)
            w[:n] *= self._ramp[:n]
        if after:
            n = stop - (hi - self.blend)
            w[-n:] *= self._ramp[::-1][:n]
        return w
