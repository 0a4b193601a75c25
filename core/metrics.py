"""The metrics of EVALUATION.md for one target date (numpy + scipy only).

All image metrics work on surface reflectance clipped to [0, 1] (data range 1). Arrays are
(B, h, w); `valid` (h, w) marks the pixels to evaluate (clear in the truth). Pixels where the
prediction is not finite are left out too and reported through `filled` (fraction of the
valid pixels the method predicted).

SSIM with masked pixels: local statistics are Gaussian-weighted means over the *valid*
neighbours only (normalised convolution: filter(x*m) / filter(m)), which amounts to filling
invalid pixels with the weighted mean of their valid neighbours and never lets a cloud or a
NaN leak into a window. The SSIM map is then averaged over the valid pixels away from the
5-pixel border (skimage crops the same border). With no invalid pixel this is exactly
skimage's `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

SIGMA = 1.5
TRUNCATE = 3.5  # window 2 * int(3.5 * 1.5 + 0.5) + 1 = 11, as skimage
K1, K2 = 0.01, 0.03
UCE_BINS = 20
METRICS = ["psnr", "ssim", "sam", "rmse", "coverage_1s", "coverage_2s", "uce", "spearman"]
_MAX_RANK_SAMPLES = 500_000  # Spearman on a fixed subsample beyond this many values


def _clip(a: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(a, dtype=np.float64), 0.0, 1.0)


def psnr(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """PSNR (dB, data range 1) from the MSE over all valid pixels and bands; inf if identical."""
    err = _clip(pred)[:, valid] - _clip(truth)[:, valid]
    if err.size == 0:
        return float("nan")
    mse = float(np.mean(err ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def rmse(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Root mean square error in reflectance over valid pixels and bands."""
    err = _clip(pred)[:, valid] - _clip(truth)[:, valid]
    return float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan")


def _gauss(a: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(a, sigma=SIGMA, truncate=TRUNCATE, mode="reflect")


def ssim_map(x: np.ndarray, y: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """SSIM map of two (h, w) images in [0, 1]; masked local statistics (see module doc)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if valid is None:
        valid = np.isfinite(x) & np.isfinite(y)
    m = valid.astype(np.float64)
    x = np.where(valid, x, 0.0)
    y = np.where(valid, y, 0.0)
    w = _gauss(m)
    w = np.where(w > 1e-12, w, np.inf)  # no valid neighbour: statistics 0, pixel not averaged anyway

    def mean(a: np.ndarray) -> np.ndarray:
        return _gauss(a * m) / w

    ux, uy = mean(x), mean(y)
    vx = mean(x * x) - ux * ux
    vy = mean(y * y) - uy * uy
    vxy = mean(x * y) - ux * uy
    c1, c2 = K1 ** 2, K2 ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _interior(valid: np.ndarray) -> np.ndarray:
    pad = int(TRUNCATE * SIGMA + 0.5)
    inner = np.zeros_like(valid)
    inner[pad:-pad or None, pad:-pad or None] = True
    sel = valid & inner
    return sel if sel.any() else valid  # tiny areas: use every valid pixel


def ssim(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Mean over bands of the per-band SSIM averaged over valid interior pixels."""
    p, t = _clip(pred), _clip(truth)
    ok = valid & np.isfinite(p).all(0) & np.isfinite(t).all(0)
    if not ok.any():
        return float("nan")
    sel = _interior(ok)
    return float(np.mean([ssim_map(p[b], t[b], ok)[sel].mean() for b in range(p.shape[0])]))


def sam(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Mean spectral angle (degrees) between predicted and true spectra over valid pixels.

    Pixels where either spectrum is all zero (angle undefined) are left out.
    """
    p, t = _clip(pred)[:, valid], _clip(truth)[:, valid]
    norm = np.linalg.norm(p, axis=0) * np.linalg.norm(t, axis=0)
    ok = norm > 0
    if not ok.any():
        return float("nan")
    cos = np.clip((p * t).sum(0)[ok] / norm[ok], -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def coverage(err: np.ndarray, std: np.ndarray, k: float) -> float:
    """Percentage of values with |err| <= k * std."""
    return float(100.0 * np.mean(np.abs(err) <= k * std)) if err.size else float("nan")


def uce(err: np.ndarray, std: np.ndarray, bins: int = UCE_BINS) -> float:
    """Uncertainty calibration error: values sorted by std into `bins` equal-count bins,
    sum over bins of n_bin / n * |RMSE_bin - RMS(std)_bin| (reflectance units)."""
    err, std = np.ravel(err), np.ravel(std)
    n = err.size
    if n == 0:
        return float("nan")
    order = np.argsort(std, kind="stable")
    total = 0.0
    for idx in np.array_split(order, min(bins, n)):
        if idx.size:
            total += idx.size / n * abs(np.sqrt(np.mean(err[idx] ** 2)) - np.sqrt(np.mean(std[idx] ** 2)))
    return float(total)


def spearman(err: np.ndarray, std: np.ndarray) -> float:
    """Spearman rank correlation between std and |err| (NaN when either is constant)."""
    a, s = np.abs(np.ravel(err)), np.ravel(std)
    if a.size > _MAX_RANK_SAMPLES:
        pick = np.random.default_rng(0).choice(a.size, _MAX_RANK_SAMPLES, replace=False)
        a, s = a[pick], s[pick]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(s) == 0:
        return float("nan")
    return float(stats.spearmanr(s, a).statistic)


def score(pred: np.ndarray, std: np.ndarray | None, truth: np.ndarray, valid: np.ndarray) -> dict:
    """Every EVALUATION.md metric of one target date.

    pred, std, truth: (B, h, w) reflectance (std may be None: uncertainty metrics are NaN);
    valid: (h, w) bool, pixels clear in the truth. Returns floats keyed by METRICS plus
    `filled` (fraction of valid pixels predicted) and `n_pixels` (pixels evaluated).
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 3 or valid.shape != pred.shape[1:]:
        raise ValueError(f"shape mismatch: pred {pred.shape}, truth {truth.shape}, valid {valid.shape}")
    valid = np.asarray(valid, dtype=bool) & np.isfinite(truth).all(0)
    ok = valid & np.isfinite(pred).all(0)
    out = {"psnr": psnr(pred, truth, ok), "ssim": ssim(pred, truth, ok), "sam": sam(pred, truth, ok),
           "rmse": rmse(pred, truth, ok)}
    unc = dict.fromkeys(["coverage_1s", "coverage_2s", "uce", "spearman"], float("nan"))
    if std is not None:
        s = np.asarray(std, dtype=np.float64)[:, ok]
        e = (_clip(pred)[:, ok] - _clip(truth)[:, ok])
        fin = np.isfinite(s)
        if fin.any():
            e, s = e[fin], s[fin]
            unc = {"coverage_1s": coverage(e, s, 1.0), "coverage_2s": coverage(e, s, 2.0),
                   "uce": uce(e, s), "spearman": spearman(e, s)}
    out.update(unc)
    n_valid = int(valid.sum())
    out["filled"] = float(ok.sum() / n_valid) if n_valid else float("nan")
    out["n_pixels"] = int(ok.sum())
    return out
