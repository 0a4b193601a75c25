"""An S2 acquisition on the target date: its clear pixels are the answer, and they correct a model's pixels
around them.

A model that synthesizes a date from the other dates misses it by a few hundred DN, and that miss is
spatially smooth (a field, a haze layer, a phenology step). On a partly cloudy acquisition date its clear
pixels give the observation itself (uncertainty 0: it is what the protocol calls the truth), and the miss
measured there is spread into the cloudy pixels near them: normalized Gaussian convolution of the residual
(SIGMA px), fading to nothing away from clear pixels (weight w / (w + FLOOR), w the Gaussian's clear share).
Chosen on the validation months (models/README.md, twenty-ninth session): +0.23 dB on the hidden pixels
against the model alone, which beat the model given the partial observation itself (never seen in training)
by 0.16 dB.
"""

from __future__ import annotations

import numpy as np

from .dates import SAME_DAY
from .stack import Stack

SIGMA = 8.0  # px: the reach of the correction into the clouds
FLOOR = 0.25  # the local mean miss counts w / (w + FLOOR): 0.8 amid clear pixels (w = 1), half where w = FLOOR


def same_day(stack: Stack, target_day: float) -> np.ndarray:
    """Bool (T2): the S2 acquisitions on the target date (within SAME_DAY of it: a date counts as noon)."""
    return np.abs(np.asarray(stack.s2_days, float) - target_day) <= SAME_DAY


def observation(stack: Stack, target_day: float, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clear values (B, h, w; NaN elsewhere) of the `same` acquisitions, the nearest in time where two
    are clear, and where any is (h, w)."""
    obs = np.full(stack.s2.shape[1:], np.nan, np.float32)
    order = sorted(np.flatnonzero(same), key=lambda t: -abs(float(stack.s2_days[t]) - target_day))
    for t in order:  # the nearest last, so it wins
        clear = np.isfinite(stack.s2[t]).all(axis=0)  # this date's alone (Stack.valid computes every date's)
        obs[:, clear] = stack.s2[t][:, clear]
    return obs, np.isfinite(obs).all(axis=0)


def anchored(mean: np.ndarray, std: np.ndarray, obs: np.ndarray, observed: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """`mean` and `std` (B, h, w) with the observation at the `observed` pixels (std 0) and, elsewhere, the
    model's miss there spread around them (see module doc)."""
    from scipy import ndimage

    known = observed & np.isfinite(mean).all(axis=0)
    if not known.any():
        return mean, std
    weight = ndimage.gaussian_filter(known.astype(np.float64), SIGMA, mode="nearest")
    fade = 1.0 / (weight + FLOOR)
    out = mean.copy()
    for b in range(len(mean)):
        miss = np.where(known, obs[b].astype(np.float64) - mean[b], 0.0)
        out[b] += (ndimage.gaussian_filter(miss, SIGMA, mode="nearest") * fade).astype(np.float32)
    out[:, observed] = obs[:, observed]
    return out, np.where(observed[None], np.float32(0.0), std).astype(np.float32)
