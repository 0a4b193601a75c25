"""`densify demo`: target choice, the run, its three outputs and the quick-look PNG."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from sentinel_densify.core import cli
from sentinel_densify.core.cmd_demo import choose_target, default_data, neighbours, run_demo
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.stack import S2_BANDS


def _check_outputs(demo: dict, width: int) -> None:
    result = demo["result"]
    assert set(result.outputs) == {"synthesized", "uncertainty", "lai"}
    for kind, first in (("synthesized", S2_BANDS), ("uncertainty", [f"{b}_std" for b in S2_BANDS]),
                        ("lai", ["LAI", "LAI_std"])):
        with rasterio.open(result.outputs[kind]) as ds:
            assert list(ds.descriptions[:len(first)]) == first and ds.width == width
            data = ds.read(1, masked=True)
            assert data.count() > 0.5 * data.size and float(data.std()) > 0
    png = np.asarray(Image.open(demo["quicklook"]).convert("RGB"))
    assert png.shape[0] > 200 and png.shape[1] > 3 * png.shape[0] and png.std() > 10
    assert Path(demo["quicklook"]).name == f"quicklook_{result.target_date:%Y%m%d}.png"


def test_demo_simulates_a_scene_without_real_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSIFY_SHARED", str(tmp_path / "no-shared"))
    assert default_data() is None
    demo = run_demo(tmp_path / "out", method="linear", scene_size=128)
    assert Path(demo["data"]) == tmp_path / "out" / "scene"
    assert (tmp_path / "out" / "scene" / "index.json").exists()
    _check_outputs(demo, 128)
    target = demo["result"].target_date
    assert demo["before"] and demo["after"]
    assert Path(demo["before"]).name < f"T31XXX_{target:%Y%m%d}" < Path(demo["after"]).name


def test_demo_on_the_real_series(tmp_path, uds_dir, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--data", str(uds_dir), "--model", "linear"]) == 0
    printed = capsys.readouterr().out
    png = next(tmp_path.glob("quicklook_*.png"))
    target = dt.datetime.strptime(png.stem.split("_")[1], "%Y%m%d").date()
    assert target.month in (6, 7, 8)  # the series has cloudy mid-summer dates
    for kind in ("synthesized", "uncertainty", "lai"):
        assert (tmp_path / f"{kind}_{target:%Y%m%d}.tif").exists() and kind in printed
    assert str(png) in printed


def test_choose_target_prefers_a_cloudy_summer_date_between_clear_ones():
    times = [dt.datetime(2021, m, d, 10, 50, tzinfo=dt.UTC)
             for m, d in ((3, 1), (4, 10), (6, 20), (7, 10), (7, 20), (8, 30), (10, 1))]
    clear = np.array([1.0, 0.0, 0.95, 0.3, 0.0, 0.92, 1.0])
    assert choose_target(times, clear) == dt.date(2021, 7, 20)  # April is as cloudy, not summer
    before, after = neighbours(times, clear, [f"f{i}" for i in range(7)], dt.date(2021, 7, 20))
    assert (before, after) == ("f2", "f5")
    clear[5:] = [0.2, 0.1]  # no clear image after July: the cloudy July dates lose their candidacy
    assert choose_target(times, clear) == dt.date(2021, 4, 10)


def test_demo_rejects_a_missing_data_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_demo(tmp_path / "out", data=tmp_path / "nowhere", method="linear")


def test_the_mean_std_of_pixels_without_any_is_nan_and_silent():
    """The quick-look's and the figure's mean std over bands: NaN where no band has one, without numpy's warning."""
    import warnings

    from sentinel_densify.core.quicklook import nanmean0

    std = np.full((3, 2, 2), np.nan, np.float32)
    std[:, 0, 0] = [1.0, 2.0, 6.0]
    std[1, 0, 1] = 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = nanmean0(std)
    np.testing.assert_array_equal(mean, np.array([[3.0, 4.0], [np.nan, np.nan]], np.float32))
    assert mean.dtype == np.float32
