"""Acquisition dates from GDAL tags and product names; undated files reported together."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import rasterio
from sentinel_densify.core import dates, inventory
from sentinel_densify.core.errors import InputError

UTC = dt.UTC


def _strip_date_copy(src, dst) -> None:
    """A copy of a real raster without its date tag (the name given by dst carries no date)."""
    with rasterio.open(src) as ds:
        profile, data, descs = ds.profile, ds.read(), ds.descriptions
        tags = {k: v for k, v in ds.tags().items() if k != "ACQUISITION_DATETIME"}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.update_tags(**tags)
        for i, d in enumerate(descs, 1):
            out.set_band_description(i, d or "")


def test_metadata_tag_of_real_file(uds_dir):
    path = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[0]
    with rasterio.open(path) as ds:
        when = dates.date_from_metadata(ds.tags())
    assert when == dt.datetime(2017, 8, 4, 10, 53, 28, tzinfo=UTC)
    assert dates.date_from_metadata({"acquisition_datetime": "2018-03-15T10:00:00Z"}) == \
        dt.datetime(2018, 3, 15, 10, tzinfo=UTC)
    assert dates.date_from_metadata({"OTHER": "2018-03-15"}) is None


@pytest.mark.parametrize("name, expected", [
    ("S2A_MSIL2A_20170804T105031_N0205_R051_T31UDS_20170804T105328.SAFE", (2017, 8, 4, 10, 50, 31)),
    ("T31UDS_20170804T105328_B04_10m.jp2", (2017, 8, 4, 10, 53, 28)),
    ("S1A_IW_GRDH_1SDV_20170801T173236_20170801T173301_017722_01DA9A_6F5C", (2017, 8, 1, 17, 32, 36)),
    ("S1_IW_GRDH_ASC_20170801T173236_VV_VH_dB.tif", (2017, 8, 1, 17, 32, 36)),
    ("field_20180315.tif", (2018, 3, 15, 0, 0, 0)),
    ("field_20180315T101112.tif", (2018, 3, 15, 10, 11, 12)),
    ("/some/dir_19990101/scene_2018-03-15.tif", (2018, 3, 15, 0, 0, 0)),
])
def test_date_from_name(name, expected):
    assert dates.date_from_name(name) == dt.datetime(*expected, tzinfo=UTC)


@pytest.mark.parametrize("name", ["scene.tif", "S2_B04.tif", "tile_123456.tif", "x_20181345.tif"])
def test_no_date_in_name(name):
    assert dates.date_from_name(name) is None


def test_days_round_trip_and_parse_date():
    when = dt.datetime(2017, 8, 4, 10, 53, 28, tzinfo=UTC)
    days = dates.to_days(when)
    assert days == pytest.approx(17382.4538, abs=1e-4)
    assert abs((dates.from_days(days) - when).total_seconds()) < 1e-3
    assert dates.to_days(dt.date(2017, 8, 4)) == pytest.approx(17382.5)  # a date counts as noon
    assert dates.parse_date("2018-03-15") == dt.date(2018, 3, 15)
    assert dates.parse_date("20180315") == dt.date(2018, 3, 15)
    with pytest.raises(ValueError, match="not a date"):
        dates.parse_date("next tuesday")
    with pytest.raises(ValueError, match="'9999-12-31' is not a date .*years 1900 to 2099"):
        dates.parse_date("9999-12-31")  # a calendar date, outside what file names and the tool take


def test_twelve_digits_are_a_typed_time_except_in_metadata():
    """YYYYMMDDHHMM[SS] typed by a user (the dialog's date column) is that time; 12-13 digits are milliseconds
    since 1970 only in metadata (Earth Engine's system:time_start), so a typed 201802181030 is not 1976."""
    assert dates.parse_datetime("201802181030") == dt.datetime(2018, 2, 18, 10, 30, tzinfo=UTC)
    assert dates.parse_datetime("20180218103012") == dt.datetime(2018, 2, 18, 10, 30, 12, tzinfo=UTC)
    assert dates.parse_datetime("201813181030") is None  # month 13
    assert dates.parse_datetime("1514764800000") is None
    assert dates.date_from_metadata({"system:time_start": "1514764800000"}) == dt.datetime(2018, 1, 1, tzinfo=UTC)
    assert dates.parse_date("201802181030") == dt.date(2018, 2, 18)


def test_real_series_dates_come_from_tags_and_agree_with_names(uds_dir):
    for path in sorted((uds_dir / "S1").glob("*.tif"))[:10] + sorted((uds_dir / "S2").glob("*_SCL_20m.tif"))[:10]:
        info = inventory.describe(path)
        assert info.when == dates.date_from_metadata(info.tags) is not None, path.name  # read from the tags
        assert info.when == dates.date_from_name(path), path.name


def test_undated_files_reported_together_by_name(uds_dir, tmp_path):
    s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))
    good = tmp_path / s2[10].name
    shutil.copy(s2[10], good)
    for i, name in enumerate(["field_a.tif", "field_b.tif"]):
        _strip_date_copy(s2[11 + i], tmp_path / name)
    with pytest.raises(InputError) as err:
        inventory.build([str(tmp_path)])
    undated = [p for p in err.value.problems if "no acquisition date" in p.message]
    assert len(undated) == 1, err.value.problems
    assert "field_a.tif" in undated[0].message and "field_b.tif" in undated[0].message
    assert good.name not in str(err.value)
    # a per-file date (e.g. from QGIS temporal properties) resolves it
    inv = inventory.build([str(tmp_path)], dates_override={
        "field_a.tif": dt.datetime(2018, 5, 1, tzinfo=UTC), "field_b.tif": dt.datetime(2018, 5, 2, tzinfo=UTC)},
        check_clear=False)
    assert len(inv.s2) == 3


def _write_time_copy(src, dst, written: str) -> None:
    """A copy of a real raster without its acquisition tag, with TIFFTAG_DATETIME (when a tool wrote it)."""
    _strip_date_copy(src, dst)
    with rasterio.open(dst, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME=written)


def test_the_file_write_time_never_beats_the_sensing_time_in_the_name(uds_dir, tmp_path):
    """TIFFTAG_DATETIME is when the file was written (ArcGIS, ENVI, gdal_translate -mo): it dated the whole
    series 2024-03-05, one minute apart, and refused the real target as out of range. The name's sensing time
    wins; the write time dates a file only when nothing else does, with a warning saying what it is."""
    s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[40:43]
    for k, src in enumerate(s2):
        _write_time_copy(src, tmp_path / src.name, f"2024:03:05 14:{k:02d}:00")
    inv = inventory.build([str(tmp_path)], check_clear=False)
    assert [i.when for i in inv.s2] == [dates.date_from_name(p) for p in s2]
    assert not any("TIFFTAG_DATETIME" in w for w in inv.warnings), inv.warnings
    with pytest.raises(InputError, match=r"out of range: the S2 series runs from 2018-\S+ to 2018-\S+ \(dates "
                                         r"from file names\)"):
        inventory.check_target(inv, dt.date(2024, 3, 5))
    # nothing but the write time dates this one: used, and said to be the write time
    _write_time_copy(s2[0], tmp_path / "scene.tif", "2018:03:20 09:00:00")
    inv = inventory.build([str(tmp_path / "scene.tif")] + [str(tmp_path / p.name) for p in s2[1:]],
                          check_clear=False)
    assert inv.s2[0].when == dt.datetime(2018, 3, 20, 9, tzinfo=UTC) and inv.s2[0].name == "scene.tif"
    assert any(w.startswith("scene.tif: dated by its TIFFTAG_DATETIME, which is when the file was written")
               for w in inv.warnings), inv.warnings
    assert dates.date_from_metadata({"TIFFTAG_DATETIME": "2024:03:05 14:00:00"}) is None
    assert dates.date_written({"TIFFTAG_DATETIME": "2024:03:05 14:00:00"}) == dt.datetime(2024, 3, 5, 14, tzinfo=UTC)
