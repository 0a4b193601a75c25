"""Baselines of EVALUATION.md (linear, nearest, persistence) with honest, calibrated uncertainty.

The standard deviation is fitted from the series itself: clear observations are hidden one at a
time (with extra gaps around them, so long gaps are represented), predicted from the rest, and the
squared errors are regressed on the distance in days to the nearest clear observation used (and,
for interpolation, on the change between the two observations bracketing the target). So the
uncertainty grows with the gap and is calibrated on the data at hand.
"""

from __future__ import annotations

import numpy as np

from ..stack import Stack
from . import Method, register


def bracket(stack: Stack, target_day: float) -> dict[str, np.ndarray]:
    """Per pixel: the last clear observation at or before the target and the first after it.

    Returns values (B, h, w) and days (h, w) for each side ("before", "after"), NaN where none.
    """
    s2, days = stack.s2, stack.s2_days
    valid = np.isfinite(s2).all(axis=1)  # (T, h, w)
    T = len(days)
    out: dict[str, np.ndarray] = {}
    for side, sel in (("before", days <= target_day), ("after", days > target_day)):
        v = valid & sel[:, None, None]
        has = v.any(axis=0)
        if side == "before":
            idx = T - 1 - np.argmax(v[::-1], axis=0) if T else np.zeros(has.shape, int)
        else:
            idx = np.argmax(v, axis=0) if T else np.zeros(has.shape, int)
        if T:
            val = np.take_along_axis(s2, idx[None, None], axis=0)[0]
            day = days[idx]
        else:
            val = np.full(s2.shape[1:], np.nan, "float32")
            day = np.zeros(has.shape)
        val = np.where(has[None], val, np.nan).astype("float32")
        out[side] = val
        out[side + "_day"] = np.where(has, day, np.nan)
    return out


def _features(b: dict[str, np.ndarray], target_day: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance to the nearest clear observation (h, w), whether both sides exist, squared change (B,h,w)."""
    db = target_day - b["before_day"]
    da = b["after_day"] - target_day
    dist = np.fmin(db, da)
    both = np.isfinite(db) & np.isfinite(da)
    change2 = np.where(both[None], (b["after"] - b["before"]) ** 2, 0.0)
    return dist, both, change2


class CalibratedBaseline(Method):
    """A per-pixel baseline whose std is regressed from leave-out errors on the series."""

    halo = 0
    provider = "numpy"
    gaps = (0.0, 10.0, 30.0, 60.0)  # extra days hidden around the left-out date
    max_dates = 24
    min_pixels = 20

    def __init__(self, device: str = "auto"):
        # variance = c0 + c1 * dist [+ c2 * change^2]; per band, for interpolation and extrapolation
        self.coef_interp: np.ndarray | None = None
        self.coef_extrap: np.ndarray | None = None

    def estimate(self, stack: Stack, target_day: float) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def predict(self, stack: Stack, target_day: float) -> tuple[np.ndarray, np.ndarray]:
        mean, b = self.estimate(stack, target_day)
        if self.coef_interp is None:
            self.prepare(stack)
        return mean, self.std(b, target_day)

    def std(self, b: dict, target_day: float) -> np.ndarray:
        dist, both, change2 = _features(b, target_day)
        ci, ce = self.coef_interp[:, :, None, None], self.coef_extrap[:, :, None, None]
        var_i = ci[:, 0] + ci[:, 1] * dist[None] + ci[:, 2] * change2
        var_e = ce[:, 0] + ce[:, 1] * dist[None]
        var = np.where(both[None], var_i, var_e)
        return np.sqrt(np.maximum(var, 1e-10)).astype("float32")

    def prepare(self, sample: Stack) -> None:
        """Fit the variance model from leave-out errors on `sample` (the series given to the run)."""
        rows_i: list[np.ndarray] = []
        rows_e: list[np.ndarray] = []
        errs_i: list[np.ndarray] = []
        errs_e: list[np.ndarray] = []
        valid = sample.valid
        frac = valid.reshape(len(valid), -1).mean(axis=1) if len(valid) else np.zeros(0)
        rng = np.random.default_rng(0)
        candidates = np.flatnonzero(frac > 0.2)
        if len(candidates) > self.max_dates:  # evenly spread over the series
            candidates = candidates[np.linspace(0, len(candidates) - 1, self.max_dates).round().astype(int)]
        max_px = 4000
        for t in candidates:
            day = sample.s2_days[t]
            for gap in self.gaps:
                keep = np.abs(sample.s2_days - day) > max(gap, 0.5)
                reduced = sample.select_s2(keep)
                if not keep.any():
                    continue
                mean, b = self.estimate(reduced, day)
                truth = sample.s2[t]
                ok = valid[t] & np.isfinite(mean).all(axis=0)
                if ok.sum() < self.min_pixels:
                    continue
                ys, xs = np.nonzero(ok)
                if len(ys) > max_px:
                    pick = rng.choice(len(ys), max_px, replace=False)
                    ys, xs = ys[pick], xs[pick]
                dist, both, change2 = _features(b, day)
                err2 = (mean[:, ys, xs] - truth[:, ys, xs]) ** 2  # (B, n)
                d = dist[ys, xs]
                two = both[ys, xs]
                c2 = change2[:, ys, xs]
                if two.any():
                    rows_i.append(np.stack([np.ones(two.sum()), d[two]], 0))
                    errs_i.append(np.concatenate([err2[:, two], c2[:, two]], 0))
                if (~two).any():
                    rows_e.append(np.stack([np.ones((~two).sum()), d[~two]], 0))
                    errs_e.append(err2[:, ~two])
        nb = sample.s2.shape[1]
        self.coef_interp = self._fit(rows_i, errs_i, nb, with_change=True)
        self.coef_extrap = self._fit(rows_e, errs_e, nb, with_change=False)
        if not rows_e and rows_i:  # never saw extrapolation: grow from interpolation, conservatively
            self.coef_extrap = self.coef_interp.copy()
            self.coef_extrap[:, 1] *= 2.0
        if not rows_i and rows_e:
            self.coef_interp = self.coef_extrap.copy()

    @staticmethod
    def _fit(rows: list[np.ndarray], errs: list[np.ndarray], nb: int, with_change: bool) -> np.ndarray:
        """Non-negative least squares of squared errors on [1, dist, (change^2)] per band."""
        from scipy.optimize import nnls

        coef = np.zeros((nb, 3))
        if not rows:
            coef[:, 0] = 0.02 ** 2
            coef[:, 1] = 0.01 ** 2
            return coef
        X = np.concatenate(rows, axis=1)  # (2, n)
        E = np.concatenate(errs, axis=1)  # (B [+B], n)
        for band in range(nb):
            cols = [X[0], X[1]]
            if with_change:
                cols.append(E[nb + band])
            A = np.stack(cols, 1)
            # bin-free NNLS on squared errors; scale columns for conditioning
            scale = np.maximum(A.std(axis=0), 1e-12)
            scale[0] = 1.0
            c, _ = nnls(A / scale, E[band])
            coef[band, : A.shape[1]] = c / scale
            coef[band, 0] = max(coef[band, 0], 1e-8)
        return coef


@register("linear")
class LinearMethod(CalibratedBaseline):
    """Per pixel and band, linear in time between the nearest clear observations around the target."""

    name = "linear"

    def estimate(self, stack: Stack, target_day: float) -> tuple[np.ndarray, dict]:
        b = bracket(stack, target_day)
        span = b["after_day"] - b["before_day"]
        w = np.where(span > 0, (target_day - b["before_day"]) / np.where(span > 0, span, 1), 0.0)
        interp = b["before"] + w[None] * (b["after"] - b["before"])
        mean = np.where(np.isfinite(interp), interp, np.where(np.isfinite(b["before"]), b["before"], b["after"]))
        return mean.astype("float32"), b


@register("nearest")
class NearestMethod(CalibratedBaseline):
    """The clear observation nearest in time, per pixel."""

    name = "nearest"

    def estimate(self, stack: Stack, target_day: float) -> tuple[np.ndarray, dict]:
        b = bracket(stack, target_day)
        db = target_day - b["before_day"]
        da = b["after_day"] - target_day
        use_after = np.isfinite(da) & ~(db <= da)
        mean = np.where(use_after[None], b["after"], b["before"])
        return mean.astype("float32"), b


@register("persistence")
class PersistenceMethod(CalibratedBaseline):
    """The last clear observation before the target (forecasting baseline)."""

    name = "persistence"

    def estimate(self, stack: Stack, target_day: float) -> tuple[np.ndarray, dict]:
        b = bracket(stack, target_day)
        nan = np.full_like(b["after"], np.nan)
        only_before = dict(b, after=nan, after_day=np.full_like(b["after_day"], np.nan))
        return b["before"].astype("float32"), only_before
