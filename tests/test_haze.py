"""The multi-temporal haze screen (core/haze.py) on the real 31UDS series, and its use by the
temporal model's inputs and training sampler."""

from __future__ import annotations

import numpy as np
import pytest
from sentinel_densify.core.haze import DEFAULTS, haze_mask, parameters, screen_haze
from sentinel_densify.core.stack import Stack
from sentinel_densify.core.temporal import dataset as D

B = {b: i for i, b in enumerate(D.S2_BANDS)}


@pytest.fixture(scope="module")
def series(uds_dir):
    return D.load_series(uds_dir)


def _clear_date_with_neighbours(series) -> int:
    """A >= 95 % clear date with another clear date within the screen's window, that the screen
    (nearly) leaves alone as it is."""
    clear = series.valid.reshape(len(series.s2_days), -1).mean(axis=1)
    mask = haze_mask(series)
    for t in np.flatnonzero(clear >= 0.95):
        near = (np.abs(series.s2_days - series.s2_days[t]) <= DEFAULTS["window_days"]) & (clear >= 0.9)
        if near.sum() >= 2 and mask[t].mean() < 0.02:
            return int(t)
    raise AssertionError("no clean clear date with clear neighbours in the series")


def _with(series, t: int, rows: slice, cols: slice, rise: dict[str, float]) -> Stack:
    s2 = series.s2.copy()
    for band, value in rise.items():
        s2[t, B[band], rows, cols] += value
    return Stack(s2, series.s2_days, series.s1, series.s1_days, series.bands, series.angles)


def test_added_haze_is_screened_and_a_ploughed_field_is_not(series):
    t = _clear_date_with_neighbours(series)
    before = haze_mask(series)[t]
    haze = {"B02": 0.08, "B03": 0.06, "B04": 0.045, "B05": 0.04, "B08": 0.03, "B11": 0.01}  # blue rises most
    soil = {"B02": 0.05, "B03": 0.06, "B04": 0.10, "B08": -0.15, "B11": 0.12}  # ploughed: red rises more
    hazy = _with(series, t, slice(8, 32), slice(8, 32), haze)
    kept = hazy.s2.copy()
    mask = haze_mask(hazy)
    assert mask[t, 10:30, 10:30].mean() > 0.95  # the haze (away from the smoothing window's edge)
    outside = np.ones(series.shape, bool)
    outside[4:36, 4:36] = False
    np.testing.assert_array_equal(mask[t][outside], before[outside])  # nothing else at that date
    np.testing.assert_array_equal(hazy.s2, kept)  # the input is not modified
    ploughed = haze_mask(_with(series, t, slice(8, 32), slice(8, 32), soil))
    assert ploughed[t, 8:32, 8:32].mean() < 0.05
    weak = haze_mask(_with(series, t, slice(8, 32), slice(8, 32), {"B02": 0.02}))  # under the threshold
    assert weak[t, 10:30, 10:30].mean() < 0.2
    cloud = _with(series, t, slice(8, 32), slice(8, 32), {"B02": 0.13, "B03": 0.15, "B04": 0.18, "B08": 0.2})
    assert haze_mask(cloud)[t, 10:30, 10:30].mean() > 0.95  # thin cloud, red rising more: over `bright`
    assert haze_mask(cloud, bright=np.inf)[t, 10:30, 10:30].mean() < 0.05  # ... which is what screens it
    grown = haze_mask(hazy, grow=2)  # the rim of a hazy patch too, clear pixels only
    assert (grown >= mask).all() and grown[t].sum() > mask[t].sum() and not (grown & ~hazy.valid).any()
    screened = screen_haze(hazy)
    np.testing.assert_array_equal(screened.valid, hazy.valid & ~mask)


def test_nothing_is_screened_without_a_neighbour_or_cloud_free_value(series):
    t = _clear_date_with_neighbours(series)
    alone = series.select_s2(np.arange(len(series.s2_days)) == t)
    hazy = _with(alone, 0, slice(0, 64), slice(0, 64), {"B02": 0.2})
    assert not haze_mask(hazy).any()
    assert screen_haze(hazy) is hazy  # nothing screened: the same stack, no copy
    empty = series.select_s2(np.zeros(len(series.s2_days), bool))
    assert haze_mask(empty).shape == (0, 64, 64)
    assert parameters({"threshold": 0.05, "how": "a description"}) == {**DEFAULTS, "threshold": 0.05}


def test_model_inputs_and_training_targets_leave_hazy_pixels_out(series):
    t = _clear_date_with_neighbours(series)
    hazy = _with(series, t, slice(8, 32), slice(8, 32), {"B02": 0.08, "B03": 0.06, "B04": 0.045})
    day = float(series.s2_days[t]) + 1.0  # the hazy date is the nearest observation of this target
    params = {**DEFAULTS}
    plain = D.model_inputs(hazy, day, 4, 3)
    screened = D.model_inputs(hazy, day, 4, 3, haze=params)
    k = int(np.argmin(np.abs(plain["s2_dt"] + 1.0)))
    np.testing.assert_array_equal(plain["s2_valid"][k], hazy.valid[t])
    np.testing.assert_array_equal(screened["s2_valid"][k], hazy.valid[t] & ~haze_mask(hazy)[t])
    assert plain["s2_valid"][k, 10:30, 10:30].mean() > 0.9 > 0.05 > screened["s2_valid"][k, 10:30, 10:30].mean()
    assert not np.allclose(plain["base"][:, 10:30, 10:30], screened["base"][:, 10:30, 10:30])
    np.testing.assert_array_equal(plain["s1"], screened["s1"])
    held = D.split_dates(series)
    held[t] = False
    cfg = D.SamplerConfig(crop=16, haze=params)
    inputs_only = D.Sampler(hazy, held, cfg, seed=0)
    both = D.Sampler(hazy, held, D.SamplerConfig(crop=16, haze=params, haze_targets=True), seed=0)
    np.testing.assert_array_equal(inputs_only.target_valid, hazy.valid)
    assert both.target_valid[t, 10:30, 10:30].mean() < 0.05 < hazy.valid[t, 10:30, 10:30].mean()
    assert not (both.target_valid & ~hazy.valid).any()
    np.testing.assert_array_equal(both.target_valid[held], hazy.valid[held])  # never screened against test dates


def _haze_mask_by_definition(stack: Stack, threshold: float, window_days: float, size: int, bright: float
                             ) -> np.ndarray:
    """haze_mask as its docstring defines it, date by date with a boolean mask of the other dates (the form
    the screen had before it read the neighbours as slices), to check the faster form against."""
    from scipy import ndimage

    blue, red = stack.s2[:, B["B02"]], stack.s2[:, B["B04"]]
    valid = np.isfinite(stack.s2).all(axis=1)
    out = np.zeros(valid.shape, bool)
    for t in range(len(stack.s2_days)):
        near = np.abs(stack.s2_days - stack.s2_days[t]) <= window_days
        near[t] = False
        if not (near.any() and valid[t].any()):
            continue
        rise_b = blue[t] - np.fmin.reduce(blue[near], axis=0)
        rise_r = red[t] - np.fmin.reduce(red[near], axis=0)
        ok = np.isfinite(rise_b) & np.isfinite(rise_r)
        den = ndimage.uniform_filter(ok.astype(np.float64), size, mode="nearest")
        b, r = (np.where(den > 1e-9, ndimage.uniform_filter(np.where(ok, v, 0.0), size, mode="nearest")
                         / np.maximum(den, 1e-9), np.nan) for v in (rise_b, rise_r))
        out[t] = ok & (b > threshold) & ((b > r) | (b > bright))
    return out


@pytest.mark.parametrize("window_days", [DEFAULTS["window_days"], 7.0])
def test_screen_is_its_definition_on_the_real_series(series, window_days):
    """The screen reads each date's neighbours as slices of the series (no copy): the same mask, pixel for
    pixel, as the definition, on all 118 dates of the real series (first and last dates included)."""
    params = {**DEFAULTS, "window_days": window_days}
    expected = _haze_mask_by_definition(series, params["threshold"], window_days, params["size"], params["bright"])
    assert expected.sum() > 1000  # the real series has hazy pixels to find
    np.testing.assert_array_equal(haze_mask(series, **params), expected)


def test_screened_stack_knows_its_clear_pixels(series):
    """screen_haze hands on the clear pixels it already knows (the input's, less the screened ones): they are
    exactly the screened stack's finite pixels, also after selecting dates or cropping."""
    from sentinel_densify.core.stack import all_finite

    screened = screen_haze(series, DEFAULTS)
    assert screened.clear is not None and screened.valid.sum() < series.valid.sum()
    np.testing.assert_array_equal(screened.valid, all_finite(screened.s2))
    keep = np.arange(len(series.s2_days)) % 3 == 0
    part = screened.select_s2(keep).crop(slice(5, 40), slice(10, 30))
    np.testing.assert_array_equal(part.valid, all_finite(part.s2))
