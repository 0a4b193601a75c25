"""An acquisition on the target date (core/same_day.py): its clear pixels are the observation, and the model's
miss there corrects its pixels near them."""

from __future__ import annotations

import numpy as np
from sentinel_densify.core.same_day import SIGMA, anchored, observation, same_day
from sentinel_densify.core.stack import Stack


def _stack(values: list[np.ndarray], days: list[float]) -> Stack:
    s2 = np.stack(values).astype(np.float32)  # (T, B, h, w)
    return Stack(s2, np.array(days), np.zeros((0, 2, *s2.shape[2:]), np.float32), np.zeros(0), ["B02", "B03"], None)


def test_the_observation_is_taken_where_clear_the_nearest_in_time_first():
    a, b = np.full((2, 4, 4), 0.1), np.full((2, 4, 4), 0.2)
    a[:, 0] = np.nan  # row 0: only b is clear
    b[:, 3] = np.nan  # row 3: only a is clear
    stack = _stack([a, b, np.full((2, 4, 4), 0.9)], [100.45, 100.2, 103.0])
    same = same_day(stack, 100.0)
    assert same.tolist() == [True, True, False]
    assert same_day(stack, 100.95).tolist() == [True, False, False]  # 0.5 days: a file dated 00:00, a noon date
    obs, observed = observation(stack, 100.0, same)
    assert observed.all()
    np.testing.assert_allclose(obs[:, 0], 0.2)
    np.testing.assert_allclose(obs[:, 1:3], 0.2)  # both clear: b, 0.2 days away, not a, 0.45
    np.testing.assert_allclose(obs[:, 3], 0.1)


def test_observed_pixels_are_the_observation_and_the_miss_spreads_near_them_only():
    h = w = 96
    mean = np.full((2, h, w), 0.30, np.float32)
    std = np.full((2, h, w), 0.02, np.float32)
    obs = np.full((2, h, w), np.nan, np.float32)
    observed = np.zeros((h, w), bool)
    observed[:, :24] = True  # the left quarter is clear; the model missed it by +0.05 there
    obs[:, observed] = 0.35
    out, out_std = anchored(mean, std, obs, observed)
    np.testing.assert_array_equal(out[:, observed], obs[:, observed])
    assert (out_std[:, observed] == 0).all() and (out_std[:, ~observed] == std[:, ~observed]).all()
    correction = out[0, 48] - 0.30  # along a row: falls from the clear edge to nothing
    assert 0.01 < correction[24] < 0.05 and np.all(np.diff(correction[24:]) <= 1e-7)
    assert np.abs(correction[24 + int(4 * SIGMA) + 1:]).max() == 0  # beyond the Gaussian's reach: the model
    np.testing.assert_array_equal(mean, 0.30)  # the inputs are not changed


def test_without_a_clear_observed_pixel_nothing_changes():
    mean, std = np.full((2, 8, 8), 0.3, np.float32), np.full((2, 8, 8), 0.02, np.float32)
    obs = np.full((2, 8, 8), np.nan, np.float32)
    out, out_std = anchored(mean, std, obs, np.zeros((8, 8), bool))
    assert out is mean and out_std is std


def test_model_inputs_without_the_target_dates_acquisition_are_those_of_the_stack_without_it(uds_dir):
    """model_inputs(..., exclude=same) (what the ONNX method runs, no copy of the series) gives every input exactly
    as model_inputs on the stack without those dates, on the real series at its first acquisition more
    than half clear, with the bundled model's field-scale S1 change."""
    from sentinel_densify.core.stack import zero_invalid
    from sentinel_densify.core.temporal import dataset as D

    series = D.load_series(uds_dir)
    t = int(np.argmax(series.valid.reshape(len(series.s2_days), -1).mean(axis=1) > 0.5))
    day = float(series.s2_days[t])
    same = same_day(series, day)
    assert same.sum() == 1
    guided = {"radius": 5, "sigma": 0.04, "guide_bands": ["B04", "B08", "B11"]}
    x = D.model_inputs(series, day, 6, 6, guided=guided, exclude=same)
    y = D.model_inputs(series.select_s2(~same), day, 6, 6, guided=guided)
    assert x.keys() == y.keys()
    for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    z = np.array([[np.nan, np.inf, -np.inf, 1.5]], np.float32)
    assert zero_invalid(z).tolist() == [[0, 0, 0, 1.5]] and np.isnan(z[0, 0])  # a copy; in place with copy=False
