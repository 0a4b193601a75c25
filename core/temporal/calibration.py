"""Std temperature that depends on the days to the nearest clear S2 observation of each pixel.

One global temperature over-covers short gaps and under-covers long ones (seen on the validation
months as on the test targets), so the temperature is fitted per bin of that distance on the
validation dates and interpolated between the bins' median distances at inference. Since model
contract calibration `std_scale_by_days_and_side`, one such table for the pixels that have a clear
observation after the target ("with_next": gap-filling) and one for those that have none
("without_next": forecasting): at one distance the two err differently (twelfth session).
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


SIDES = ("with_next", "without_next")  # pixels with / without a clear observation after the target


def has_next(base_info: np.ndarray) -> np.ndarray:
    """(..., h, w) True where the pixel has a clear observation after the target (from base_info)."""
    return base_info[..., 4, :, :] > 0.5


def fit_by_side(az: np.ndarray, days: np.ndarray, with_next: np.ndarray) -> dict | None:
    """fit_by_days on each side (`with_next`: bool like `az`): {side: table or None}; None if neither
    side has a bin with enough values."""
    out = {side: fit_by_days(az[sel], days[sel]) for side, sel in zip(SIDES, (with_next, ~with_next), strict=True)}
    return out if any(out.values()) else None


def scale_for(base_info: np.ndarray, by_days: dict, by_side: dict | None = None) -> np.ndarray:
    """(..., h, w) the temperature of each pixel: from its side's table of `by_side` where that side
    has one, else from `by_days`."""
    days = nearest_clear_days(base_info)
    scale = scale_map(days, by_days)
    if by_side:
        nxt = has_next(base_info)
        for side, sel in zip(SIDES, (nxt, ~nxt), strict=True):
            if by_side.get(side):
                scale = np.where(sel, scale_map(days, by_side[side]), scale)
    return scale.astype(np.float32)
