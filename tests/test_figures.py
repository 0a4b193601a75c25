"""The model figure (core/figures.py, `densify figure`) on the real 31UDS series with `linear`."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image
from sentinel_densify.core import cmd_figure, metrics
from sentinel_densify.core.dates import from_days
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.evaluate import GAP, SAME_DAY, inputs_for, target_indices
from sentinel_densify.core.figures import model_figure
from sentinel_densify.core.methods import create
from sentinel_densify.core.temporal.dataset import load_series

STEP = 15.0
BAND = "B08"


@pytest.fixture(scope="module")
def stack(uds_dir):
    return load_series(uds_dir)


@pytest.fixture(scope="module")
def dates(stack):
    return [from_days(stack.s2_days[t]).date().isoformat() for t in target_indices(stack, max_targets=2)]


@pytest.fixture(scope="module")
def figure(stack, dates, tmp_path_factory):
    out = tmp_path_factory.mktemp("figure") / "fig.png"
    return out, model_figure(stack, "linear", out, dates=dates, band=BAND, step_days=STEP)


def test_png_written_atomically_and_readable(figure):
    out, report = figure
    assert report["png"] == str(out)
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG"
        assert img.width > 400 and img.height > 400
    assert [p.name for p in out.parent.iterdir()] == ["fig.png"]  # no temporary file left


def test_psnr_is_the_protocol_score_of_each_date(stack, dates, figure):
    _, report = figure
    assert [t["date"] for t in report["targets"]] == dates
    for target in report["targets"]:
        inputs = inputs_for(stack, target["day"], GAP, 0.0)
        assert target["n_s2"] == len(inputs.s2_days) < len(stack.s2_days)  # the date was hidden
        assert not np.any(np.abs(inputs.s2_days - target["day"]) <= SAME_DAY)
        method = create("linear")
        method.prepare(inputs)
        mean, std = method.predict(inputs, target["day"])
        t = int(np.flatnonzero(stack.s2_days == target["day"])[0])
        expected = metrics.score(mean, std, stack.s2[t], stack.valid[t])
        assert np.isfinite(target["psnr"])
        assert target["psnr"] == pytest.approx(expected["psnr"], rel=1e-9)
        assert target["ssim"] == pytest.approx(expected["ssim"], rel=1e-9)


def test_series_is_a_gap_fill_at_observed_dates(stack, figure):
    _, report = figure
    row, col = report["pixel"]
    assert (row, col) == (stack.shape[0] // 2, stack.shape[1] // 2)
    b = stack.bands.index(BAND)
    clear = stack.valid[:, row, col]
    np.testing.assert_allclose(report["observed"], stack.s2[clear, b, row, col], rtol=1e-6)
    np.testing.assert_array_equal(report["observed_days"], stack.s2_days[clear])
    days = np.array(report["days"])
    assert np.all(np.diff(days) > 0) and set(report["observed_days"]) <= set(report["days"])
    assert days[0] == stack.s2_days.min() and days[-1] <= stack.s2_days.max()
    assert len(report["mean"]) == len(report["std"]) == days.size

    obs = np.array(report["observed"])
    pred = np.array(report["observed_mean"], dtype=float)
    assert np.isfinite(pred).all()
    # the observed date was hidden: the prediction differs from the observation ...
    assert np.mean(np.abs(pred - obs) > 1e-6) > 0.9
    # ... whereas linear with that date in its inputs reproduces it exactly
    method = create("linear")
    method.prepare(stack)
    i = len(obs) // 2
    seen, _ = method.predict(stack.crop(slice(row, row + 1), slice(col, col + 1)), report["observed_days"][i])
    assert seen[b, 0, 0] == pytest.approx(obs[i], abs=1e-6)


def test_two_sigma_band_contains_most_observations(figure):
    _, report = figure
    obs = np.array(report["observed"])
    mean = np.array(report["observed_mean"], dtype=float)
    std = np.array(report["observed_std"], dtype=float)
    assert np.all(std > 0)
    inside = 100.0 * np.mean(np.abs(obs - mean) <= 2 * std)
    assert report["coverage_2s"] == pytest.approx(inside)
    assert 50.0 <= inside <= 100.0
    # a band of one sigma holds fewer observations than the 2-sigma band
    assert np.mean(np.abs(obs - mean) <= std) * 100.0 < inside


@pytest.mark.parametrize("kwargs, words", [
    ({"band": "B99"}, ["B99"]),
    ({"pixel": (64, 0)}, ["outside", "64 x 64"]),
    ({"pixel": (0, -1)}, ["outside"]),
    ({"dates": ["not a date"]}, ["not a date"]),
    ({"gap": -1.0}, ["gap"]),
    ({"step_days": 0.0}, ["step_days"]),
])
def test_bad_inputs_raise_input_error(stack, tmp_path, kwargs, words):
    out = tmp_path / "bad.png"
    with pytest.raises(InputError) as err:
        model_figure(stack, "linear", out, **kwargs)
    for word in words:
        assert word in str(err.value)
    assert not out.exists()


def test_date_without_acquisition_is_named(stack, tmp_path):
    day = stack.s2_days[0] + 1.0
    while np.any(np.abs(stack.s2_days - day) <= SAME_DAY + 0.5):
        day += 1.0
    date = from_days(day).date().isoformat()
    with pytest.raises(InputError, match=f"no S2 acquisition on {date}"):
        model_figure(stack, "linear", tmp_path / "bad.png", dates=[date])


def test_cli_command_with_gap_and_pixel(uds_dir, stack, dates, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cmd_figure.configure(parser)
    out = tmp_path / "cli.png"
    args = parser.parse_args(["--data", str(uds_dir), "--model", "linear", "--out", str(out),
                              "--dates", dates[0], "--gap", "10", "--pixel", "5,7",
                              "--step-days", "60", "--band", "B04"])
    assert cmd_figure.main(args) == 0
    with Image.open(out) as img:
        assert img.format == "PNG"
    text = capsys.readouterr().out
    assert "pixel (5, 7) B04" in text
    day = stack.s2_days[target_indices(stack, max_targets=2)[0]]
    n_s2 = len(inputs_for(stack, day, GAP, 10.0).s2_days)
    assert n_s2 < len(stack.s2_days) - 2  # +/- 10 days hide several acquisitions
    assert f"{dates[0]}: PSNR " in text and f"({n_s2} S2 inputs, gap 10 d)" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x", "--model", "linear", "--out", "y.png", "--pixel", "5"])


def test_out_must_be_a_png_checked_before_any_prediction(stack, dates, tmp_path):
    from sentinel_densify.core.atomic import OutputError

    class Never:  # a method that must not be reached
        def describe(self):
            raise AssertionError("the figure was computed")

    for out, why in ((tmp_path / "fig.jpg", r"\.png"), (tmp_path / "fig", r"\.png")):
        with pytest.raises(OutputError, match=why):
            model_figure(stack, Never(), out, dates=dates)
        assert not out.exists()
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="existing folder"):
        model_figure(stack, Never(), tmp_path / "d.png", dates=dates)
