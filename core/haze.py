"""Multi-temporal haze screen: S2 pixels that SCL calls clear but whose blue reflectance rose above
the other clear observations of the weeks around them (thin cloud, haze), as the multi-temporal
cloud tests of MACCS/MAJA do.

Haze scatters blue more than red, so a pixel is screened out when, smoothed over a small window,
its B02 exceeds the lowest clear B02 observed within `window_days` (other dates) by more than
`threshold` reflectance and that rise is larger than the rise of B04 (a field ploughed or
harvested brightens red more than blue and is kept). A rise of more than `bright` is screened out
whatever its colour: thin cloud is grey, and no field brightens its blue that much in a few weeks.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .stack import Stack

DEFAULTS = {"threshold": 0.04, "window_days": 20.0, "size": 5, "bright": 0.10, "grow": 0}


def _smooth(ndimage, ok: np.ndarray, size: int, *values: np.ndarray) -> list[np.ndarray]:
    """Mean of each of `values` over the `ok` pixels of a size x size window (NaN where none)."""
    den = ndimage.uniform_filter(ok.astype(np.float64), size, mode="nearest")  # once for all of them
    some = den > 1e-9
    den = np.maximum(den, 1e-9)
    return [np.where(some, ndimage.uniform_filter(np.where(ok, v, 0.0), size, mode="nearest") / den, np.nan)
            for v in values]


def haze_mask(stack: Stack, threshold: float = DEFAULTS["threshold"],
              window_days: float = DEFAULTS["window_days"], size: int = DEFAULTS["size"],
              bright: float = DEFAULTS["bright"], grow: int = DEFAULTS["grow"], valid: np.ndarray | None = None
              ) -> np.ndarray:
    """(T2, h, w) bool: True where a clear S2 pixel is screened out as hazy (then `grow` px around
    it, the rim of a hazy patch); pixels with no other clear observation within window_days are
    never screened. `valid`: the stack's, when the caller has it."""
    bands = list(stack.bands)
    if "B02" not in bands or "B04" not in bands:
        return np.zeros((len(stack.s2_days), *stack.shape), bool)
    valid = stack.valid if valid is None else valid
    if not valid.size:
        return np.zeros(valid.shape, bool)
    from scipy import ndimage

    blue, red = stack.s2[:, bands.index("B02")], stack.s2[:, bands.index("B04")]
    if stack.shape == (1, 1):
        return _haze_of_one_pixel(stack.s2_days, valid[:, 0, 0], blue[:, 0, 0], red[:, 0, 0], threshold,
                                  window_days, bright)[:, None, None]
    out = np.zeros(valid.shape, bool)
    days = stack.s2_days
    for t in np.flatnonzero(valid.reshape(len(valid), -1).any(axis=1)):
        near = np.flatnonzero(np.abs(days - days[t]) <= window_days)  # t and the dates within window_days:
        lo, hi = near[0], near[-1] + 1  # lo..hi (days ascend)
        if hi - lo < 2:
            continue
        rise_b = blue[t] - _lowest(blue, lo, t, hi)  # NaN where t or every other date is not clear
        rise_r = red[t] - _lowest(red, lo, t, hi)
        ok = np.isfinite(rise_b) & np.isfinite(rise_r)
        if not ok.any():
            continue
        b, r = _smooth(ndimage, ok, size, rise_b, rise_r)
        out[t] = ok & (b > threshold) & ((b > r) | (b > bright))
        if grow > 0 and out[t].any():
            out[t] = ndimage.binary_dilation(out[t], iterations=grow) & valid[t]
    return out


def _lowest(x: np.ndarray, lo: int, t: int, hi: int) -> np.ndarray:
    """The lowest of x[lo:hi] but x[t], ignoring NaN (NaN where all are), read from slices without a copy."""
    parts = [np.fmin.reduce(x[a:b], axis=0) for a, b in ((lo, t), (t + 1, hi)) if b > a]
    return parts[0] if len(parts) == 1 else np.fmin(*parts)


def _haze_of_one_pixel(days: np.ndarray, valid: np.ndarray, blue: np.ndarray, red: np.ndarray, threshold: float,
                      window_days: float, bright: float) -> np.ndarray:
    """haze_mask of a 1 x 1 px series (training's point series), all dates at once: the same minima, rises
    and tests (its smoothing window holds the pixel alone), without a loop over dates."""
    near = np.abs(days[:, None] - days[None, :]) <= window_days
    np.fill_diagonal(near, False)

    def rise(x: np.ndarray) -> np.ndarray:  # x minus the lowest clear value of the other dates near it (NaN: none)
        seen = near & np.isfinite(x)[None, :]
        low = np.where(seen, x[None, :], np.inf).min(axis=1)
        return x - np.where(seen.any(axis=1), low, np.nan).astype(x.dtype)

    b, r = rise(blue), rise(red)
    ok = valid & np.isfinite(b) & np.isfinite(r)
    b, r = b.astype(np.float64), r.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return ok & (b > threshold) & ((b > r) | (b > bright))


def from_threshold(threshold: float) -> dict | None:
    """The screen's parameters (DEFAULTS) with this blue-rise threshold; None when it is 0 (no screen)."""
    if threshold < 0:
        raise InputError(f"--haze-screen: the threshold must be >= 0 (reflectance), got {threshold}")
    return {**DEFAULTS, "threshold": float(threshold)} if threshold > 0 else None


def parameters(params: dict | None) -> dict:
    """haze_mask's keyword arguments from a config or contract entry (DEFAULTS for missing keys,
    other keys such as a description ignored)."""
    params = params or {}
    return {key: type(value)(params.get(key, value)) for key, value in DEFAULTS.items()}


def screen_haze(stack: Stack, params: dict | None = None) -> Stack:
    """A copy of `stack` with the hazy pixels (haze_mask with `params`, see parameters()) set to
    NaN like the other non-clear pixels; the stack itself when nothing is screened."""
    valid = stack.valid
    mask = haze_mask(stack, **parameters(params), valid=valid)
    if not mask.any():
        return stack
    s2 = stack.s2.copy()
    s2[np.broadcast_to(mask[:, None], s2.shape)] = np.nan
    return Stack(s2, stack.s2_days, stack.s1, stack.s1_days, stack.bands, stack.angles, clear=valid & ~mask)
