"""The synthetic scene: files laid out and tagged like the real 31UDS series, plausible content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sentinel_densify.core import simulate as sim
from sentinel_densify.core.dates import date_from_metadata, date_from_name
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.stack import S1_BANDS, S2_BANDS


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("scene")
    return sim.simulate_scene(out, size=192, n_s2=14, n_s1=10, seed=5)


def _read(path: str) -> tuple[np.ndarray, dict, rasterio.profiles.Profile, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.tags(), ds.profile, ds.descriptions


def test_layout_and_tags_match_the_real_series(scene, uds_dir: Path):
    real_s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[0]
    real_s1 = sorted((uds_dir / "S1").glob("*.tif"))[0]
    _, real_tags, real_prof, real_desc = _read(str(real_s2))
    _, real_s1_tags, real_s1_prof, _ = _read(str(real_s1))

    assert len(scene["s2"]) == len(scene["scl"]) == 14 and len(scene["s1"]) == 10
    for s2, scl, when in zip(scene["s2"], scene["scl"], scene["s2_dates"], strict=True):
        assert Path(s2).parent.name == "S2" and Path(s2).name.endswith("_L2A_10m.tif")
        data, tags, prof, desc = _read(s2)
        assert set(real_tags) <= set(tags)  # every tag the real files carry
        assert desc == real_desc == tuple(S2_BANDS)
        assert prof["dtype"] == real_prof["dtype"] == "uint16" and prof["nodata"] == real_prof["nodata"]
        assert prof["crs"] == real_prof["crs"] and prof["transform"].a == 10.0
        assert date_from_metadata(tags) == date_from_name(s2) == when
        assert float(tags["REFLECTANCE_SCALE"]) == 1e-4 and float(tags["BOA_ADD_OFFSET"]) == 0
        assert 15 < float(tags["MEAN_SUN_ZENITH_ANGLE"]) < 80
        assert data.min() >= 1  # no accidental nodata
        sdata, stags, sprof, sdesc = _read(scl)
        assert sprof["dtype"] == "uint8" and sdata.shape == (1, 96, 96)
        assert sprof["transform"].a == 20.0 and sprof["transform"].c == prof["transform"].c
        assert date_from_metadata(stags) == when
        assert set(np.unique(sdata)) <= {3, 4, 5, 6, 7, 8, 9, 10}
    for s1, when in zip(scene["s1"], scene["s1_dates"], strict=True):
        data, tags, prof, desc = _read(s1)
        assert desc == tuple(S1_BANDS) and prof["dtype"] == "float32" and np.isnan(prof["nodata"])
        assert set(real_s1_tags) <= set(tags) and prof["crs"] == real_s1_prof["crs"]
        assert data.shape == (2, 96, 96) and date_from_name(s1) == when
        vv, vh = np.nanmedian(data[0]), np.nanmedian(data[1])
        assert -20 < vv < -3 and -28 < vh < -8 and vh < vv  # like real C-band over farmland
    assert not {w.date() for w in scene["s1_dates"]} & {w.date() for w in scene["s2_dates"]}
    index = json.loads(Path(scene["index"]).read_text())
    assert index["epsg"] == 32631 and len(index["observations"]) == 24
    assert all((Path(scene["index"]).parent / o["file"]).exists() for o in index["observations"])


def test_clouds_are_bright_and_flagged_in_scl(scene):
    covers = np.array(scene["cloud_cover"])
    assert (covers == 0).sum() >= 2 and (covers == 1).sum() >= 1 and ((covers > 0) & (covers < 1)).any()
    checked = 0
    for s2, scl, cover in zip(scene["s2"], scene["scl"], covers, strict=True):
        blue = _read(s2)[0][0].astype(np.float32) * 1e-4
        blue20 = blue.reshape(96, 2, 96, 2).mean(axis=(1, 3))
        cls = _read(scl)[0][0]
        cloudy = np.isin(cls, [8, 9])
        if cover == 0:
            assert cloudy.mean() < 0.01
        if cover == 1:
            assert cloudy.mean() > 0.99
        if cloudy.any() and (cls == 4).any():
            assert np.median(blue20[cls == 9]) > 0.3 > np.median(blue20[cls == 4]) + 0.2
            checked += 1
    assert checked >= 1


def test_ndvi_of_vegetated_fields_follows_phenology(scene):
    land = sim._landscape(0, 192, 192, 5)
    inner = ~land["border"]

    def mean_ndvi(classes: list[int], months: tuple[int, ...]) -> list[float]:
        out = []
        for when, s2, scl in zip(scene["s2_dates"], scene["s2"], scene["scl"], strict=True):
            if when.month not in months:
                continue
            clear = np.repeat(np.repeat(np.isin(_read(scl)[0][0], [4, 5]), 2, 0), 2, 1)
            ok = clear & inner & np.isin(land["cls_px"], classes)
            if ok.sum() > 300:
                d = _read(s2)[0].astype(np.float32)
                out.append(float(((d[6] - d[2]) / (d[6] + d[2]))[ok].mean()))
        return out

    # winter cereals green up in spring and are harvested in summer; maize/beet peak in July-August
    march = mean_ndvi([sim.CEREAL, sim.MAIZE, sim.BEET], (3,))
    cereal_may_june = mean_ndvi([sim.CEREAL], (5, 6))
    summer_crops = mean_ndvi([sim.MAIZE, sim.BEET], (7, 8))
    assert march and cereal_may_june and summer_crops
    assert max(march) < 0.45
    assert min(cereal_may_june) > max(march) + 0.25
    assert min(summer_crops) > max(march) + 0.25


def test_deterministic_and_independent_of_block_size(tmp_path):
    a = sim.simulate_scene(tmp_path / "a", size=128, n_s2=6, n_s1=3, seed=7, block_rows=32)
    b = sim.simulate_scene(tmp_path / "b", size=128, n_s2=6, n_s1=3, seed=7, block_rows=128)
    c = sim.simulate_scene(tmp_path / "c", size=128, n_s2=6, n_s1=3, seed=8)
    for kind in ("s2", "scl", "s1"):
        for pa, pb in zip(a[kind], b[kind], strict=True):
            np.testing.assert_array_equal(_read(pa)[0], _read(pb)[0])
    assert not np.array_equal(_read(a["s2"][0])[0], _read(c["s2"][0])[0])


def test_bad_arguments_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="even"):
        sim.simulate_scene(tmp_path, size=101)
    with pytest.raises(InputError, match="not a date"):
        sim.simulate_scene(tmp_path, size=64, start="March")
    with pytest.raises(InputError, match="400 dates of one sensor do not fit between 2021-03-01 and 2021-03-05"):
        sim.simulate_scene(tmp_path, size=32, n_s2=400, start="2021-03-01", end="2021-03-05")
    assert not list(tmp_path.rglob("*.tif"))


def test_every_date_gets_its_own_file(tmp_path):
    """Two acquisitions planned in the same second (seed 3 with 150 S1 dates) must not overwrite each
    other while index.json lists both."""
    res = sim.simulate_scene(tmp_path, size=32, n_s2=20, n_s1=150, seed=3)
    assert len(set(res["s1"])) == len(res["s1"]) == 150 and len(list((tmp_path / "S1").glob("*.tif"))) == 150
    assert len(list((tmp_path / "S2").glob("*_L2A_10m.tif"))) == 20
    listed = json.loads(Path(res["index"]).read_text())["observations"]
    assert len(listed) == 20 + 150 and len({o["file"] for o in listed}) == 170


def test_output_folder_problems_are_refused_before_writing(tmp_path, capsys):
    from sentinel_densify.core.atomic import OutputError
    from sentinel_densify.core.cli import main as cli_main

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputError, match="afile: is an existing file, not a folder"):
        sim.simulate_scene(afile, size=32, n_s2=2, n_s1=1)
    assert cli_main(["simulate", "--out", str(afile / "sub"), "--size", "32", "--s2-dates", "2"]) == 1
    err = capsys.readouterr().err
    assert "which is a file, not a folder" in err and "Traceback" not in err
    first = sim.simulate_scene(tmp_path / "scene", size=32, n_s2=3, n_s1=2, seed=1)
    again = sim.simulate_scene(tmp_path / "scene", size=32, n_s2=3, n_s1=2, seed=1)  # the same files: fine
    assert again["s2"] == first["s2"]
    before = sorted(p.name for p in (tmp_path / "scene").rglob("*"))
    with pytest.raises(OutputError, match="already holds other rasters .*choose an empty folder"):
        sim.simulate_scene(tmp_path / "scene", size=32, n_s2=4, n_s1=2, seed=2)  # other dates: a mixed series
    assert sorted(p.name for p in (tmp_path / "scene").rglob("*")) == before
    for name in first["s2"][:1] + first["s1"][:1]:  # macOS's AppleDouble files on a FAT/exFAT/SMB drive: not inputs
        apple = Path(name).with_name("._" + Path(name).name)
        apple.write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert sim.simulate_scene(tmp_path / "scene", size=32, n_s2=3, n_s1=2, seed=1)["s2"] == first["s2"]


def test_a_cancelled_simulation_leaves_no_file_and_no_folder(tmp_path):
    """Cancelled part-way (the CLI's Ctrl-C or SIGTERM end the same way): neither its files nor the folders it
    made (S2/, S1/ and the output folder) are left."""
    from sentinel_densify.core.errors import Cancelled
    from sentinel_densify.core.progress import Feedback

    calls: list[float] = []
    feedback = Feedback(lambda pct, msg: calls.append(pct), is_cancelled=lambda: len(calls) >= 1)
    with pytest.raises(Cancelled):
        sim.simulate_scene(tmp_path / "new" / "scene", size=64, n_s2=3, n_s1=2, seed=1, feedback=feedback,
                           block_rows=16)
    assert calls and list(tmp_path.iterdir()) == []
