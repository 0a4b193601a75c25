"""make-pairs on the real 31UDS series: SEN12MS-CR layout, pairing rules, cloud compositing."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from sentinel_densify.core.cli import main as cli_main
from sentinel_densify.core.curate import FOLDERS, check_triplet
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.pairs import composite_clouds, load_series, make_pairs, read_index


@pytest.fixture(scope="module")
def series(uds_dir):
    return load_series([str(uds_dir / "S2")], [str(uds_dir / "S1")])


def test_make_pairs_cli_writes_layout_that_curate_keeps(uds_dir, tmp_path):
    out = tmp_path / "pairs"
    rc = cli_main(["make-pairs", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--out", str(out),
                   "--patch", "32", "--max-days", "20", "--synthetic-per-clear", "1"])
    assert rc == 0
    rows = read_index(out)
    names = sorted(r["name"] for r in rows)
    assert len(names) == len(set(names)) > 0
    for f in (*FOLDERS, "s2_nearest", "s1_nearest", "s1_target"):
        assert sorted(p.name for p in (out / f).iterdir()) == names
    kinds = {r["kind"] for r in rows}
    assert kinds == {"real", "synthetic"}
    assert all(float(r["days_to_clear"]) <= 20 for r in rows if r["kind"] == "real")
    assert all(float(r["days_to_clear"]) == 0 for r in rows if r["kind"] == "synthetic")
    assert len({(r["row"], r["col"]) for r in rows}) == 4  # 64 px images cut into 32 px patches
    with rasterio.open(out / "s2_cloudy" / names[0]) as ds:
        assert ds.count == 10 and ds.descriptions[2] == "B04" and ds.width == 32 and ds.nodata == 0
    with rasterio.open(out / "s1" / names[0]) as ds:
        assert ds.count == 2 and ds.dtypes[0] == "float32" and np.isfinite(ds.read()).all()
    verdicts = [check_triplet(out, n) for n in names[:12]]
    assert not [v for v in verdicts if v.reason in ("missing", "unreadable", "shape", "nodata")]


def test_real_pairs_follow_the_nearest_rules(series, tmp_path):
    rows = make_pairs(series, tmp_path / "p", patch=64, max_days=15, synthetic_per_clear=0)
    days = series.s2_days
    clear = series.clear.mean(axis=(1, 2)) >= 0.95
    for r in rows:
        assert r.kind == "real" and r.days_to_clear <= 15
        cloudy_day = days[[f"{np.datetime64(int(d), 'D')}" == r.cloudy_date for d in days]][0]
        # no clear acquisition is nearer to the cloudy date than the chosen target
        assert np.abs(days[clear] - cloudy_day).min() >= r.days_to_clear - 1e-6
        assert r.days_to_s1 <= np.abs(series.s1_days - cloudy_day).min() + 1e-6
        clear_day = days[[f"{np.datetime64(int(d), 'D')}" == r.clear_date for d in days]][0]
        target_s1 = np.abs(series.s1_days - clear_day)  # MTcGAN's S1 t2: nearest the target's date
        s1_dates = [f"{np.datetime64(int(d), 'D')}" for d in series.s1_days]
        assert target_s1[s1_dates.index(r.s1_target_date)] <= target_s1.min() + 1e-6
        with rasterio.open(tmp_path / "p" / "s1_target" / r.name) as ds:
            assert ds.tags()["ACQUISITION_DATETIME"].startswith(r.s1_target_date)
        assert r.days_to_nearest >= r.days_to_clear  # the baseline is the next clear one
        assert r.cloud_fraction > 0


def test_composite_keeps_ground_outside_and_clouds_inside(series):
    frac = series.clear.mean(axis=(1, 2))
    c = int(np.argmax(frac))
    t = int(np.flatnonzero((frac > 0.3) & (frac < 0.7))[0])
    cloud = ~series.clear[t]
    out = composite_clouds(series.raw[c], series.raw[t], cloud, soften=1.5)
    np.testing.assert_allclose(out[:, cloud], series.raw[t][:, cloud])
    from scipy import ndimage
    far = ~ndimage.binary_dilation(cloud, np.ones((3, 3)), iterations=7)  # kernel radius 6
    np.testing.assert_allclose(out[:, far], series.raw[c][:, far], atol=1e-6)
    assert not np.allclose(out, series.raw[c])


def test_bad_inputs_raise_input_error(series, uds_dir, tmp_path):
    with pytest.raises(InputError, match="within 0.5 days"):
        make_pairs(series, tmp_path / "none", max_days=0.5, synthetic_per_clear=0)
    with pytest.raises(InputError, match="larger than the images"):
        make_pairs(series, tmp_path / "big", patch=128)
    with pytest.raises(InputError, match="Sentinel-1"):
        load_series([str(uds_dir / "S2")], [])


def test_interrupted_make_pairs_leaves_nothing(series, tmp_path):
    """Written into a hidden folder, renamed at the end: a cancel leaves no partial dataset."""
    from sentinel_densify.core.progress import Cancelled, Feedback

    calls = []

    def cancel_on_third() -> bool:
        calls.append(1)
        return len(calls) >= 3

    out = tmp_path / "ds"
    with pytest.raises(Cancelled):
        make_pairs(series, out, patch=64, max_days=4, synthetic_per_clear=1,
                   feedback=Feedback(is_cancelled=cancel_on_third))
    assert len(calls) >= 3 and list(tmp_path.iterdir()) == []
    rows = make_pairs(series, out, patch=64, max_days=4, synthetic_per_clear=1)
    assert (out / "pairs.csv").is_file() and len(read_index(out)) == len(rows)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no hidden folder left


def test_every_s1_lies_within_max_s1_days_of_its_optical_date(series, tmp_path):
    """He & Yokoya: each S1 within 5 days of the optical image it goes with (S1 t1 with O1, S1 t2 with
    O2, the single-date S1 with the cloudy image); triplets without one are not written."""
    def day(text: str) -> float:
        return float(np.datetime64(text, "D").astype(int))

    s1_days = {f"{np.datetime64(int(d), 'D')}": d for d in series.s1_days}
    counts = {}
    for limit in (5.0, 1.0):
        out = tmp_path / f"p{limit:g}"
        rows = make_pairs(series, out, patch=64, max_days=10, synthetic_per_clear=1, max_s1_days=limit)
        counts[limit] = len(rows)
        for r in rows:
            # whole days in pairs.csv; the check is on acquisition times, so allow the day rounding
            assert abs(day(r.s1_date) - day(r.cloudy_date)) <= limit + 1
            assert abs(day(r.s1_target_date) - day(r.clear_date)) <= limit + 1
            assert r.days_to_s1 <= limit
            with rasterio.open(out / "s1_nearest" / r.name) as ds:
                s1n = ds.tags()["ACQUISITION_DATETIME"][:10]
            assert s1n in s1_days and abs(day(s1n) - day(r.nearest_date)) <= limit + 1
    assert 0 < counts[1.0] < counts[5.0]  # on this series S1 and S2 are a day or more apart at times
    with pytest.raises(InputError, match="S1 acquisition within 0.05 days"):
        make_pairs(series, tmp_path / "none", max_days=10, synthetic_per_clear=1, max_s1_days=0.05)


def test_make_pairs_refuses_an_out_inside_its_inputs(uds_dir, tmp_path, capsys):
    """Triplets written into an input folder would be read as inputs by the next run."""
    s2 = tmp_path / "S2"  # a real folder of links to the files: a broken refusal writes here, not into ../shared
    s2.mkdir()
    for f in (uds_dir / "S2").iterdir():
        (s2 / f.name).symlink_to(f)
    inside = tmp_path / "S2" / "pairs"
    rc = cli_main(["make-pairs", "--s2", str(s2), "--s1", str(uds_dir / "S1"), "--out", str(inside)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "is inside the input folder" in err and "Traceback" not in err
    assert not (uds_dir / "S2" / "pairs").exists() and not (s2 / "pairs").exists()
    from sentinel_densify.core.atomic import under_input_folder

    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # a link to itself: resolving it raises RuntimeError, not OSError
    assert under_input_folder(loop / "x", [s2]) is None and under_input_folder(s2 / "x", [loop, s2]) == str(s2)
