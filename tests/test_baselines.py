"""Baselines on the real 31UDS series with the EVALUATION.md protocol (targets >= 99 % clear by SCL)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from sentinel_densify.core import metrics
from sentinel_densify.core.evaluate import GAP, evaluate, inputs_for, target_indices
from sentinel_densify.core.methods import create
from sentinel_densify.core.reader import load_stack


@pytest.fixture(scope="module")
def stack(uds_dir):
    s2 = sorted(str(p) for p in (uds_dir / "S2").glob("*_L2A_10m.tif"))
    scl = sorted(str(p) for p in (uds_dir / "S2").glob("*_SCL_20m.tif"))
    return load_stack(s2, [], scl)  # the baselines use S2 only


@pytest.fixture(scope="module")
def linear_report(stack):
    """The protocol for `linear` (calibrated per target on the reduced inputs) at G = 0, 10, 30."""
    return evaluate(stack, ["linear"], gaps=(0, 10, 30), leads=())


@pytest.fixture(scope="module")
def summer(stack):
    """The S2 dates within 60 days of the targets: enough for checks that need not the whole year."""
    days = stack.s2_days[target_indices(stack)]
    return stack.select_s2((stack.s2_days > days.min() - 60) & (stack.s2_days < days.max() + 60))


def _mean_psnr(stack, name: str, gap: float) -> float:
    method = create(name)
    scores = []
    for t in target_indices(stack):
        day = float(stack.s2_days[t])
        mean, _ = method.estimate(inputs_for(stack, day, GAP, gap), day)
        scores.append(metrics.psnr(mean, stack.s2[t], stack.valid[t] & np.isfinite(mean).all(0)))
    return float(np.mean(scores))


def test_targets_are_clear_dates(stack):
    idx = target_indices(stack)
    assert len(idx) >= 5
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
    assert (clear[idx] >= 0.99).all() and (np.delete(clear, idx) < 0.99).all()


@pytest.mark.parametrize("gap", [10, 30])
def test_linear_beats_nearest(stack, gap):
    lin, near = _mean_psnr(stack, "linear", gap), _mean_psnr(stack, "nearest", gap)
    assert lin > near + 0.5, (lin, near)
    assert 20 < near < lin < 40


def test_psnr_falls_with_the_gap(stack):
    assert _mean_psnr(stack, "linear", 30) < _mean_psnr(stack, "linear", 10)


@pytest.mark.parametrize("gap", [0, 10, 30])
def test_coverage_is_calibrated(linear_report, gap):
    row = next(s for s in linear_report["summary"] if s["task"] == GAP and s["days"] == gap)
    assert row["n_targets"] == len(linear_report["targets"])
    assert 50 <= row["coverage_1s"] <= 85, row
    assert 85 <= row["coverage_2s"] <= 99, row
    assert row["coverage_1s"] < row["coverage_2s"]


def test_std_grows_with_distance_to_clear(summer):
    stack = summer
    method = create("linear")
    method.prepare(stack)
    # variance = c0 + c1 * days to the nearest clear observation (+ c2 * change^2 when interpolating)
    assert (method.coef_interp >= 0).all() and (method.coef_extrap >= 0).all()
    assert method.coef_extrap[:, 1].mean() > 0 and method.coef_interp[:, 1].mean() > 0
    last = float(stack.s2_days.max())
    stds = [np.nanmean(method.predict(stack, last + lead)[1]) for lead in (5, 30, 90, 200)]
    assert all(a < b for a, b in zip(stds, stds[1:], strict=False)), stds
    # inside the series: hiding 30 days around a clear date gives a larger std than hiding it alone
    t = int(target_indices(stack)[0])
    day = float(stack.s2_days[t])
    std0 = method.predict(inputs_for(stack, day, GAP, 0), day)[1]
    std30 = method.predict(inputs_for(stack, day, GAP, 30), day)[1]
    assert np.nanmean(std30) > np.nanmean(std0)


def test_on_an_observed_date_linear_is_the_observation_with_its_noise_floor(summer):
    """Asked for a clear acquisition's own date, linear returns that observation, and its std is the
    noise floor: not the change to the next observation, which plays no part in the estimate."""
    method = create("linear")
    method.prepare(summer)
    t = int(target_indices(summer)[0])
    day = float(summer.s2_days[t])
    mean, std = method.predict(summer, day)
    clear = summer.valid[t]
    np.testing.assert_allclose(mean[:, clear], summer.s2[t][:, clear], atol=1e-6)
    np.testing.assert_allclose(std[:, clear], np.sqrt(method.coef_interp[:, :1]).repeat(clear.sum(), 1),
                               rtol=1e-5)  # clear dates on both sides in this summer: the fit's c0
    hidden = method.predict(inputs_for(summer, day, GAP, 0), day)[1]  # the date itself hidden
    assert np.nanmean(hidden[:, clear]) > np.nanmean(std[:, clear])


@pytest.mark.parametrize("midnight", [False, True])
def test_asked_for_the_calendar_date_of_an_acquisition_linear_returns_it(summer, midnight):
    """A date counts as noon. An acquisition that day, at 10:5x (or at 00:00: a file dated by its date only), is
    the estimate itself: linear used to interpolate the 0.05 (0.5) days towards the next acquisition, 6 (78) DN
    off on average."""
    from sentinel_densify.core.dates import from_days, to_days
    from sentinel_densify.core.stack import Stack

    t = int(target_indices(summer)[0])
    days = summer.s2_days.copy()
    if midnight:
        days[t] = np.floor(days[t])
    stack = Stack(summer.s2, days, summer.s1, summer.s1_days, summer.bands, summer.angles)
    method = create("linear")
    method.prepare(stack)
    mean, std = method.predict(stack, to_days(from_days(days[t]).date()))
    clear = summer.valid[t]
    np.testing.assert_array_equal(mean[:, clear], summer.s2[t][:, clear])
    np.testing.assert_allclose(std[:, clear], np.sqrt(method.coef_interp[:, :1]).repeat(clear.sum(), 1), rtol=1e-5)


def test_calibration_uses_only_the_stack_given(summer):
    """Hiding a date (removing it, or masking it all-cloudy) gives the same calibration and prediction,
    and a previous `prepare` on the full series leaves no trace."""
    stack = summer
    t = int(target_indices(stack)[1])
    day = float(stack.s2_days[t])
    keep = np.ones(len(stack.s2_days), bool)
    keep[t] = False
    removed = stack.select_s2(keep)
    masked = stack.select_s2(np.ones(len(keep), bool))
    masked.s2 = masked.s2.copy()
    masked.s2[t] = np.nan
    before = stack.s2.copy()

    fresh = create("linear")
    fresh.prepare(removed)
    reused = create("linear")
    reused.prepare(stack)
    assert not np.allclose(reused.coef_interp, fresh.coef_interp)  # the full series calibrates differently
    reused.prepare(removed)
    np.testing.assert_array_equal(reused.coef_interp, fresh.coef_interp)
    np.testing.assert_array_equal(reused.coef_extrap, fresh.coef_extrap)
    other = create("linear")
    other.prepare(masked)
    np.testing.assert_allclose(other.coef_interp, fresh.coef_interp, rtol=1e-6)
    m1, s1 = fresh.predict(removed, day)
    m2, s2 = other.predict(masked, day)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5)
    np.testing.assert_array_equal(stack.s2, before)  # the stack is not modified


def test_persistence_uses_only_the_past(summer):
    stack = summer
    t = int(target_indices(stack)[2])
    day = float(stack.s2_days[t])
    method = create("persistence")
    method.prepare(stack)
    mean, std = method.predict(stack.select_s2(stack.s2_days < day - 0.5), day)
    future_only = stack.select_s2(stack.s2_days > day + 0.5)
    assert np.isnan(method.estimate(future_only, day)[0]).all()
    last = np.full_like(mean, np.nan)
    for k in np.flatnonzero(stack.s2_days < day - 0.5):  # the last clear past value, pixel by pixel
        ok = stack.valid[k]
        last[:, ok] = stack.s2[k][:, ok]
    np.testing.assert_array_equal(mean, last)
    assert np.isfinite(mean).all(0).mean() > 0.9
    np.testing.assert_array_equal(np.isfinite(std), np.isfinite(mean))  # a std wherever a mean


def test_all_finite_is_isfinite_all():
    """stack.all_finite (from a sum) marks exactly the pixels whose bands are all finite: NaN, +inf, -inf,
    and +inf with -inf in one pixel (whose sum is NaN) included."""
    from sentinel_densify.core.stack import all_finite

    rng = np.random.default_rng(3)
    x = rng.normal(0, 30, (5, 10, 16, 16)).astype(np.float32)
    x[rng.random(x.shape) < 0.02] = np.nan
    x[rng.random(x.shape) < 0.01] = np.inf
    x[rng.random(x.shape) < 0.01] = -np.inf
    x[0, 0, 0, 0], x[0, 1, 0, 0] = np.inf, -np.inf
    np.testing.assert_array_equal(all_finite(x), np.isfinite(x).all(axis=1))
    assert not all_finite(x)[0, 0, 0] and all_finite(x).any() and not all_finite(x).all()


def test_linear_haze_is_linear_on_the_haze_screened_series(stack, summer):
    """`linear-haze`, the ablation beside the model (what its haze screen alone adds): exactly `linear` on the
    series through core/haze.py's screen with the bundled model's parameters, mean, std and days to clear; the
    screen leaves real hazy pixels out of the inputs, and at G = 0 the mean PSNR over the protocol targets rises."""
    from sentinel_densify.core.haze import DEFAULTS, screen_haze
    from sentinel_densify.core.methods import bundled_model
    from sentinel_densify.core.model_contract import read_contract

    if bundled_model() is not None:  # the screen the bundled model runs is the one this baseline applies
        screen = read_contract(bundled_model())["haze_screen"]
        assert {k: screen[k] for k in DEFAULTS} == DEFAULTS
    day = float(summer.s2_days[len(summer.s2_days) // 2]) + 3.0
    screened = screen_haze(summer)
    assert screened is not summer and (screened.valid != summer.valid).any()  # hazy pixels there
    haze, plain = create("linear-haze"), create("linear")
    got, want = haze.predict(summer, day), plain.predict(screened, day)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(haze.days_to_clear(summer, day), plain.days_to_clear(screened, day))
    assert not np.array_equal(got[0], create("linear").predict(summer, day)[0])
    gains = []
    for t in target_indices(stack):
        target = float(stack.s2_days[t])
        inputs = inputs_for(stack, target, GAP, 0)
        means = [create("linear").estimate(x, target)[0] for x in (inputs, screen_haze(inputs))]
        ok = stack.valid[t] & np.isfinite(means[0]).all(0) & np.isfinite(means[1]).all(0)
        scores = [metrics.psnr(m, stack.s2[t], ok) for m in means]
        gains.append(scores[1] - scores[0])
    assert np.mean(gains) > 0, gains


def test_linear_haze_does_not_depend_on_the_tiling(uds_dir, tmp_path):
    """Second audit: the haze screen smooths over 5 x 5 px, so with no halo a window's two edge pixels were screened
    from copied edge values and `linear-haze` differed by up to 732 DN between --tile-size 16 and 64. Its halo is
    the screen's reach: the outputs are the same for any tiling, as `linear`'s are."""
    import datetime as dt

    from sentinel_densify.core import engine
    from sentinel_densify.core.request import DensifyRequest

    s2 = sorted(str(p) for p in (uds_dir / "S2").glob("*_L2A_10m.tif"))
    scl = sorted(str(p) for p in (uds_dir / "S2").glob("*_SCL_20m.tif"))
    out = {}
    for size in (16, 64):
        res = engine.run(DensifyRequest(s2=s2, masks=scl, target_date=dt.date(2018, 6, 20), method="linear-haze",
                                        tile_size=size, out_dir=str(tmp_path / str(size)), lai=False))
        with rasterio.open(res.outputs["synthesized"]) as ds:
            out[size] = ds.read()
    assert np.isfinite(out[16]).mean() > 0.9
    np.testing.assert_allclose(out[16], out[64], atol=0.01)


def test_linear_haze_keeps_no_earlier_window_while_it_screens_the_next(summer, monkeypatch):
    """Second audit: its screen cache held the previous window and its screened copy until the next window's screen
    was made (about four windows at the peak, the model two). The cache is dropped before each screen."""
    import weakref

    from sentinel_densify.core.methods import baselines

    haze = create("linear-haze")
    day = float(summer.s2_days[len(summer.s2_days) // 2]) + 3.0
    haze.predict(summer, day)
    earlier = weakref.ref(haze._seen[1])
    assert earlier() is not summer  # a screened copy (the series has hazy pixels)
    alive, screen = [], baselines.screen_haze

    def spy(stack):
        alive.append(earlier() is not None)
        return screen(stack)

    monkeypatch.setattr(baselines, "screen_haze", spy)
    haze.predict(summer.select_s2(np.arange(len(summer.s2_days)) != 0), day)  # the next window
    assert alive == [False]
