"""Baselines of EVALUATION.md (linear, nearest, persistence) with honest, calibrated uncertainty.

The standard deviation is fitted from the series itself: clear observations are hidden one at a
time (with extra gaps around them, so long gaps are represented), predicted from the rest, and the
squared errors are regressed on the distance in days to the nearest clear observation used (and,
for interpolation, on the change between the two observations bracketing the target). So the
uncertainty grows with the gap and is calibrated on the data at hand.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..dates import SAME_DAY
from ..haze import DEFAULTS, screen_haze
from ..stack import Stack, all_finite
from . import Method, register


def bracket(s2: np.ndarray, days: np.ndarray, target_day: float, valid: np.ndarray | None = None
            ) -> dict[str, np.ndarray]:
    """Per pixel: the last clear observation at or before the target and the first after it.

    s2 (T, B, h, w) with NaN where not clear, days (T,). Returns values (B, h, w) and days (h, w)
    for each side ("before", "after"), NaN where none. `valid`: s2's clear pixels (T, h, w), when known.
    """
    valid = all_finite(s2) if valid is None else valid
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


def interpolate(b: dict[str, np.ndarray], target_day: float) -> np.ndarray:
    """The `linear` baseline from a `bracket`: linear in time between both sides, else the one side; an
    observation on the target date (within SAME_DAY: dates count as noon) is the estimate itself."""
    span = b["after_day"] - b["before_day"]
    w = np.where(span > 0, (target_day - b["before_day"]) / np.where(span > 0, span, 1), 0.0)
    interp = b["before"] + w[None] * (b["after"] - b["before"])
    mean = np.where(np.isfinite(interp), interp, np.where(np.isfinite(b["before"]), b["before"], b["after"]))
    db, da = target_day - b["before_day"], b["after_day"] - target_day
    with np.errstate(invalid="ignore"):
        mean = np.where((db <= SAME_DAY) & ~(da < db), b["before"], np.where(da <= SAME_DAY, b["after"], mean))
    return mean.astype("float32")


def _features(b: dict[str, np.ndarray], target_day: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance to the nearest clear observation (h, w), whether both sides exist, squared change (B,h,w)."""
    db = target_day - b["before_day"]
    da = b["after_day"] - target_day
    dist = np.fmin(db, da)
    both = np.isfinite(db) & np.isfinite(da)
    # on an observed date (dist <= SAME_DAY) the observation is the estimate: neither the hours to it nor the
    # change to the next one play a part in it, so its variance is the noise floor
    observed = dist <= SAME_DAY
    change2 = np.where((both & ~observed)[None], (b["after"] - b["before"]) ** 2, 0.0)
    return np.where(observed, 0.0, dist), both, change2


class CalibratedBaseline(Method):
    """A per-pixel baseline whose std is regressed from leave-out errors on the series.

    variance = c0 + c1 * dist + c2 * change^2 between two observations (interpolation), and
    c0 + c1 * dist + c2 * dist^2 from one side only (extrapolation); per band, non-negative.
    """

    halo = 0
    uses_s1 = False  # optical only: the engine skips reading S1 for it
    provider = "numpy"
    gaps = (0.0, 10.0, 30.0, 60.0)  # days hidden around a left-out date (gap-filling examples)
    leads = (5.0, 15.0, 30.0, 60.0)  # days hidden before it, and everything after (forecast examples)
    max_dates = 16
    max_pixels = 1024
    min_pixels = 20

    def __init__(self, device: str = "auto"):
        self.coef_interp: np.ndarray | None = None  # (B, 3)
        self.coef_extrap: np.ndarray | None = None  # (B, 3)

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
        var_e = ce[:, 0] + ce[:, 1] * dist[None] + ce[:, 2] * dist[None] ** 2
        var = np.where(both[None], var_i, var_e)
        return np.sqrt(np.maximum(var, 1e-10)).astype("float32")

    @classmethod
    def _pixel_sample(cls, sample: Stack) -> Stack:
        """Up to max_pixels pixels that have clear observations, as a (T, B, 1, n) stack."""
        valid = sample.valid.reshape(len(sample.s2), -1)
        idx = np.flatnonzero(valid.sum(axis=0) >= 2)
        if len(idx) > cls.max_pixels:
            idx = np.sort(np.random.default_rng(0).choice(idx, cls.max_pixels, replace=False))
        flat = sample.s2.reshape(*sample.s2.shape[:2], -1)[..., idx][:, :, None, :]
        return Stack(flat, sample.s2_days, sample.s1[..., :0, :0], sample.s1_days, sample.bands, sample.angles)

    def _scenarios(self, days: np.ndarray, day: float):
        """S2 kept for each leave-out example around `day`: gaps, forecasts and backcasts."""
        for gap in self.gaps:
            yield np.abs(days - day) > max(gap, 0.5)
        for lead in self.leads:
            yield days < day - lead
            yield days > day + lead

    def prepare(self, sample: Stack) -> None:
        """Fit the variance model from leave-out errors on `sample` (the series given to the run)."""
        px = self._pixel_sample(sample)
        valid = px.valid[:, 0]  # (T, n)
        frac = valid.mean(axis=1) if valid.size else np.zeros(len(px.s2))
        candidates = np.flatnonzero(frac > 0.2)
        if len(candidates) > self.max_dates:  # evenly spread over the series
            candidates = candidates[np.linspace(0, len(candidates) - 1, self.max_dates).round().astype(int)]
        feats: dict[bool, list[np.ndarray]] = {True: [], False: []}
        errs: dict[bool, list[np.ndarray]] = {True: [], False: []}
        for t in candidates:
            day = px.s2_days[t]
            for keep in self._scenarios(px.s2_days, day):
                if not keep.any():
                    continue
                mean, b = self.estimate(px.select_s2(keep), day)
                ok = valid[t] & np.isfinite(mean[:, 0]).all(axis=0)
                if ok.sum() < self.min_pixels:
                    continue
                dist, both, change2 = _features(b, day)
                d, two = dist[0, ok], both[0, ok]
                err2 = (mean[:, 0, ok] - px.s2[t, :, 0, ok].T) ** 2  # (B, n)
                c2 = change2[:, 0, ok]
                for interp, sel in ((True, two), (False, ~two)):
                    if sel.any():
                        third = c2[:, sel] if interp else np.broadcast_to(d[sel] ** 2, c2[:, sel].shape)
                        feats[interp].append(np.concatenate([np.ones((1, sel.sum())), d[None, sel], third]))
                        errs[interp].append(err2[:, sel])
        nb = sample.s2.shape[1]
        self.coef_interp = self._fit(feats[True], errs[True], nb)
        self.coef_extrap = self._fit(feats[False], errs[False], nb)
        if self.coef_interp is None:
            self.coef_interp = self.coef_extrap
        if self.coef_extrap is None:
            self.coef_extrap = self.coef_interp
        self.guessed = self.coef_interp is None
        if self.guessed:  # nothing to learn from: a generic, wide guess
            self.coef_interp = self.coef_extrap = np.tile([0.02 ** 2, 0.01 ** 2, 0.0], (nb, 1))

    def notes(self) -> list[str]:
        if getattr(self, "guessed", False):
            return super().notes() + [f"{self.name}: too few clear observations to calibrate its uncertainty "
                                      "(it needs clear dates to leave out and predict): the std is a generic "
                                      "guess, the same in every band"]
        return super().notes()

    @staticmethod
    def _fit(feats: list[np.ndarray], errs: list[np.ndarray], nb: int) -> np.ndarray | None:
        """Per band, non-negative least squares of squared errors on [1, dist, third feature]."""
        from scipy.optimize import nnls

        if not feats:
            return None
        F = np.concatenate(feats, axis=1)  # (2 + B, n): 1, dist, per-band third feature
        E = np.concatenate(errs, axis=1)  # (B, n)
        coef = np.zeros((nb, 3))
        for band in range(nb):
            A = np.stack([F[0], F[1], F[2 + band]], axis=1)
            scale = np.maximum(A.std(axis=0), 1e-12)
            scale[0] = 1.0
            c, _ = nnls(A / scale, E[band])
            coef[band] = c / scale
            coef[band, 0] = max(coef[band, 0], 1e-8)
        return coef


@register("linear")
class LinearMethod(CalibratedBaseline):
    """Per pixel and band, linear in time between the nearest clear observations around the target."""

    name = "linear"

    def estimate(self, stack: Stack, target_day: float) -> tuple[np.ndarray, dict]:
        b = bracket(stack.s2, stack.s2_days, target_day)
        return interpolate(b, target_day), b


@register("nearest")
class NearestMethod(CalibratedBaseline):
    """The clear observation nearest in time, per pixel."""

    name = "nearest"

    def estimate(self, stack: Stack, target_day: float) -> tuple[np.ndarray, dict]:
        b = bracket(stack.s2, stack.s2_days, target_day)
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
        b = bracket(stack.s2, stack.s2_days, target_day)
        nan = np.full_like(b["after"], np.nan)
        only_before = dict(b, after=nan, after_day=np.full_like(b["after_day"], np.nan))
        return b["before"].astype("float32"), only_before


@register("linear-haze")
class LinearHazeMethod(LinearMethod):
    """`linear` on the series through the bundled model's haze screen (core/haze.py, its DEFAULTS): hazy pixels that
    the masks call clear are left out, as the model's inputs are. Beside the model in an evaluation it shows what
    the screen alone adds (models/README.md)."""

    name = "linear-haze"
    halo = DEFAULTS["size"] // 2 + DEFAULTS["grow"]  # the screen smooths over size x size px: a window's edge needs it

    def __init__(self, device: str = "auto"):
        super().__init__(device)
        self._seen: tuple | None = None  # (weakref to the stack predict() screened, its screen) until days_to_clear

    def prepare(self, sample: Stack) -> None:
        super().prepare(screen_haze(sample))

    def predict(self, stack: Stack, target_day: float) -> tuple[np.ndarray, np.ndarray]:
        if self.coef_interp is None:
            self.prepare(stack)
        self._seen = None  # the previous window's screen is not kept while this one's is made
        screened = screen_haze(stack)
        self._seen = (weakref.ref(stack), screened)
        return super().predict(screened, target_day)

    def days_to_clear(self, stack: Stack, target_day: float) -> np.ndarray:
        """As `linear`'s, on the screened stack (predict()'s, when it has just run on this one)."""
        last, self._seen = self._seen, None
        return super().days_to_clear(last[1] if last is not None and last[0]() is stack else screen_haze(stack),
                                     target_day)
