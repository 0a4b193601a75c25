"""Std temperature that depends on the days to the nearest clear S2 observation of each pixel.

One global temperature over-covers short gaps and under-covers long ones (seen on the validation
months as on the test targets), so the temperature is fitted per bin of that distance on the
validation dates and interpolated between the bins' median distances at inference.
"""

from __future__ import annotations

import numpy as np

from .dataset import GAP_SCALE

EDGES = (7.0, 15.0, 30.0, 60.0)  # days: bins of the distance to the nearest clear observation
MIN_PER_BIN = 1000  # |z| values a bin needs to get its own temperature
COVERAGE = 0.683  # the temperature puts this fraction of |error| within 1 std


def nearest_clear_days(base_info: np.ndarray) -> np.ndarray:
    """(..., h, w) days from the target to the nearest clear observation (either side), from the
    model input base_info (..., 5, h, w); the cap (3 x GAP_SCALE) where there is none."""
    cap = 3.0 * GAP_SCALE
    prev = np.where(base_info[..., 3, :, :] > 0.5, base_info[..., 1, :, :] * GAP_SCALE, cap)
    nxt = np.where(base_info[..., 4, :, :] > 0.5, base_info[..., 2, :, :] * GAP_SCALE, cap)
    return np.minimum(prev, nxt).astype(np.float32)


def fit_by_days(az: np.ndarray, days: np.ndarray) -> dict | None:
    """Per bin of `days` (EDGES) with enough values, the COVERAGE quantile of |z| `az`:
    {"days": median distance of each bin, "scale": its temperature}; None if no bin qualifies."""
    which = np.digitize(days, EDGES)
    out: dict = {"days": [], "scale": []}
    for b in range(len(EDGES) + 1):
        sel = which == b
        if sel.sum() >= MIN_PER_BIN:
            out["days"].append(round(float(np.median(days[sel])), 2))
            out["scale"].append(round(float(np.quantile(az[sel], COVERAGE)), 4))
    return out if out["days"] else None


def scale_map(days: np.ndarray, table: dict) -> np.ndarray:
    """The temperature at each distance `days` (linear between the bins, constant beyond them)."""
    return np.interp(days, table["days"], table["scale"]).astype(np.float32)
