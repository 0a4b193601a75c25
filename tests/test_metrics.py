"""EVALUATION.md metrics against known values and a straightforward SSIM reference."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sentinel_densify.core import metrics


def _ref_ssim(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> float:
    """Windowed SSIM written out directly: explicit 11x11 Gaussian windows (reflect padding),
    weights restricted to valid neighbours, averaged over valid pixels off the 5-px border."""
    r = 5
    k1 = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * 1.5 ** 2))
    k = np.outer(k1, k1)
    pad = lambda a: np.pad(a, r, mode="symmetric")  # noqa: E731  (== scipy 'reflect')
    wx = sliding_window_view(pad(np.where(valid, x, 0.0)), (11, 11))
    wy = sliding_window_view(pad(np.where(valid, y, 0.0)), (11, 11))
    wm = sliding_window_view(pad(valid.astype(float)), (11, 11)) * k
    vals = []
    h, w = x.shape
    for i in range(r, h - r):
        for j in range(r, w - r):
            if not valid[i, j]:
                continue
            wt = wm[i, j] / wm[i, j].sum()
            a, b = wx[i, j], wy[i, j]
            ux, uy = (wt * a).sum(), (wt * b).sum()
            vx = (wt * (a - ux) ** 2).sum()
            vy = (wt * (b - uy) ** 2).sum()
            cxy = (wt * (a - ux) * (b - uy)).sum()
            c1, c2 = 0.01 ** 2, 0.03 ** 2
            vals.append((2 * ux * uy + c1) * (2 * cxy + c2) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


@pytest.fixture
def images():
    rng = np.random.default_rng(1)
    base = ndimage_smooth(rng.random((3, 32, 40)))
    other = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    return base, other


def ndimage_smooth(a: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.uniform_filter(a, size=(1, 5, 5))


def test_psnr_of_constant_offset_and_clipping():
    truth = np.full((4, 10, 10), 0.3)
    valid = np.ones((10, 10), bool)
    assert metrics.psnr(truth + 0.1, truth, valid) == pytest.approx(20.0)
    assert metrics.rmse(truth + 0.1, truth, valid) == pytest.approx(0.1)
    # clipped to [0, 1]: a prediction of 5.0 against 1.0 is a perfect score... of its clipped value
    assert metrics.psnr(np.full_like(truth, 5.0), np.full_like(truth, 1.0), valid) == float("inf")
    # only valid pixels count
    pred = truth + 0.1
    pred[:, :, :5] = 0.9
    half = np.zeros((10, 10), bool)
    half[:, 5:] = True
    assert metrics.psnr(pred, truth, half) == pytest.approx(20.0)
    assert metrics.psnr(pred, truth, valid) < 10


def test_ssim_identical_is_one(images):
    base, _ = images
    assert metrics.ssim(base, base, np.ones(base.shape[1:], bool)) == pytest.approx(1.0)


def test_ssim_matches_reference_unmasked_and_masked(images):
    base, other = images
    valid = np.ones(base.shape[1:], bool)
    ref = np.mean([_ref_ssim(other[b], base[b], valid) for b in range(3)])
    got = metrics.ssim(other, base, valid)
    assert 0.3 < got < 0.99
    assert got == pytest.approx(ref, abs=1e-9)
    # a cloud: NaN and garbage under the mask must not change the result beyond the reference
    valid[8:20, 10:25] = False
    dirty = other.copy()
    dirty[:, ~valid] = np.nan
    ref_m = np.mean([_ref_ssim(other[b], base[b], valid) for b in range(3)])
    got_m = metrics.ssim(dirty, base, valid)
    assert got_m == pytest.approx(ref_m, abs=1e-9)
    garbage = other.copy()
    garbage[:, ~valid] = 1.0
    assert metrics.ssim(garbage, base, valid) == pytest.approx(got_m, abs=1e-12)


def test_ssim_drops_with_noise(images):
    base, other = images
    valid = np.ones(base.shape[1:], bool)
    noisier = np.clip(base + np.random.default_rng(2).normal(0, 0.2, base.shape), 0, 1)
    assert metrics.ssim(noisier, base, valid) < metrics.ssim(other, base, valid)


def test_sam_identical_orthogonal_and_scaled():
    valid = np.ones((1, 2), bool)
    a = np.zeros((3, 1, 2))
    a[0, 0, 0] = 0.5
    a[1, 0, 1] = 0.5
    b = np.zeros((3, 1, 2))
    b[1, 0, 0] = 0.2  # orthogonal to a at pixel 0
    b[1, 0, 1] = 0.2  # parallel (scaled) to a at pixel 1
    assert metrics.sam(a, a, valid) == pytest.approx(0.0, abs=1e-6)
    assert metrics.sam(b, a, valid) == pytest.approx(45.0)  # mean of 90 and 0
    assert metrics.sam(b, a, np.array([[True, False]])) == pytest.approx(90.0)


def test_coverage_and_uce_on_gaussian_errors():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.01, 0.1, size=(4, 100, 100))
    err = rng.normal(0, 1, s.shape) * s
    truth = np.full(s.shape, 0.5)
    valid = np.ones(s.shape[1:], bool)
    out = metrics.score(truth + err, s, truth, valid)
    assert out["coverage_1s"] == pytest.approx(68.27, abs=1.0)
    assert out["coverage_2s"] == pytest.approx(95.45, abs=0.6)
    assert out["uce"] < 0.002
    assert out["spearman"] > 0.3  # larger s, larger |error|
    # twice too confident: coverage collapses and UCE grows to about the mean RMS(s)
    bad = metrics.score(truth + err, s / 2, truth, valid)
    assert bad["coverage_1s"] == pytest.approx(38.3, abs=1.5)
    assert bad["uce"] > 10 * out["uce"]
    assert bad["uce"] == pytest.approx(metrics.uce(err, s) + 0.5 * np.sqrt(np.mean(s ** 2)), rel=0.2)
    # uninformative std: no rank correlation
    flat = metrics.score(truth + err, rng.uniform(0.01, 0.1, s.shape), truth, valid)
    assert abs(flat["spearman"]) < 0.05


def test_uce_by_hand():
    err = np.array([0.1, -0.1, 0.3, -0.3])
    std = np.array([0.1, 0.1, 0.1, 0.1])
    # 2 bins of two: |0.1 - 0.1| * 0.5 + |0.3 - 0.1| * 0.5 (ties keep input order)
    assert metrics.uce(err, std, bins=2) == pytest.approx(0.1)


def test_score_masks_nan_prediction_and_truth():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 0.5, (10, 20, 20))
    pred = truth + 0.01
    pred[:, :2, :] = np.nan  # method could not fill 40 pixels
    truth[:, -1, :] = np.nan  # not clear in the truth
    valid = np.isfinite(truth).all(0)
    out = metrics.score(pred, rng.uniform(0.005, 0.02, pred.shape), truth, valid)
    assert set(metrics.METRICS) <= set(out)
    assert all(np.isfinite(out[k]) for k in metrics.METRICS)
    assert out["psnr"] == pytest.approx(40.0)
    assert out["filled"] == pytest.approx(340 / 380)
    assert out["n_pixels"] == 340
    assert metrics.score(pred, None, truth, valid)["uce"] != metrics.score(pred, None, truth, valid)["uce"]
    with pytest.raises(ValueError):
        metrics.score(pred[:3], None, truth, valid)
