"""Run a model over overlapping tiles with smooth (Hann-like) blending, so there are no seams."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .progress import Feedback


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def edge_ramp(n: int) -> np.ndarray:
    """(n,) weights rising from 0 to 1 across an edge (raised cosine): ramp + ramp[::-1] is 1 everywhere,
    so two neighbours' weights across their common edge sum to 1."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _ramp(n: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    wts = np.ones(n, np.float64)
    k = min(overlap, n // 2)
    if k > 0:
        r = edge_ramp(k)
        if start:
            wts[:k] = r
        if end:
            wts[n - k:] = r[::-1]
    return np.maximum(wts, 1e-3)


def fit_tile(size: int, tile: int, overlap: int) -> int:
    """The smallest tile (<= `tile`) that covers `size` px with as few tiles of `overlap` as `tile`
    itself needs: e.g. 528 px in 3 tiles of 187 rather than tiles of 256 at 0, 240 and 272."""
    if size <= tile:
        return size
    step = max(1, tile - overlap)
    n = -(-(size - overlap) // step)  # tiles needed
    return -(-(size - overlap) // n) + overlap


def blend_window(h: int, w: int, overlap: int, edges: tuple[bool, bool, bool, bool] = (True,) * 4
                 ) -> np.ndarray:
    """(h, w) weights: 1 inside, a raised-cosine ramp over `overlap` pixels at the edges
    flagged in `edges` (top, bottom, left, right); image borders get no ramp."""
    top, bottom, left, right = edges
    return np.outer(_ramp(h, overlap, top, bottom), _ramp(w, overlap, left, right))


def predict_tiled(fn: Callable[[dict[str, np.ndarray]], np.ndarray], inputs: dict[str, np.ndarray],
                  tile: int, overlap: int, batch: int = 1,
                  feedback: Feedback | None = None, fit: bool = False,
                  max_pixels: int | None = None) -> np.ndarray:
    """Apply `fn` to overlapping tiles of `inputs` and blend the results.

    inputs: arrays sharing their last two (spatial) axes H, W; each tile of each array is cut
    on those axes and tiles are stacked on a new leading batch axis (so an input (..., H, W)
    reaches fn as (n, ..., tile, tile)). fn returns (n, ..., tile, tile); the result is
    (..., H, W), each pixel the weighted mean of the tiles covering it (raised-cosine weights
    falling towards tile edges, except at the image border). fit: tiles shrunk per axis to the
    smallest size that needs no more of them (fit_tile), for models that take any tile size.
    max_pixels: instead of `batch`, as many tiles per call as hold that many pixels (at least one).
    """
    if not inputs:
        raise ValueError("predict_tiled needs at least one input")
    shapes = {k: v.shape[-2:] for k, v in inputs.items()}
    H, W = next(iter(shapes.values()))
    if any(s != (H, W) for s in shapes.values()):
        raise ValueError(f"inputs differ in spatial shape: {shapes}")
    th, tw = (fit_tile(H, tile, overlap), fit_tile(W, tile, overlap)) if fit else (min(tile, H), min(tile, W))
    overlap = max(0, min(overlap, min(th, tw) // 2))
    rows = _starts(H, th, max(1, th - overlap))
    cols = _starts(W, tw, max(1, tw - overlap))
    boxes = [(r, c) for r in rows for c in cols]
    out = None
    weight = np.zeros((H, W), np.float64)
    batch = max(1, int(max_pixels) // (th * tw) if max_pixels else int(batch))
    for i in range(0, len(boxes), batch):
        if feedback is not None:
            feedback.check()
            feedback.report(100.0 * i / len(boxes), f"tile {i + 1}/{len(boxes)}")
        group = boxes[i:i + batch]
        chunk = {k: np.stack([v[..., r:r + th, c:c + tw] for r, c in group]) for k, v in inputs.items()}
        pred = np.asarray(fn(chunk))
        if out is None:
            out = np.zeros(pred.shape[1:-2] + (H, W), np.float64)
        for j, (r, c) in enumerate(group):
            wts = blend_window(th, tw, overlap, (r > 0, r + th < H, c > 0, c + tw < W))
            out[..., r:r + th, c:c + tw] += pred[j] * wts
            weight[r:r + th, c:c + tw] += wts
    if feedback is not None:
        feedback.report(100.0, "tiles done")
    return (out / weight).astype(np.float32)
