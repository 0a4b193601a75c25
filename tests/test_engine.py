"""core.engine.run on a slice of the real 31UDS series: outputs, modes, cancel, tiles, inputs untouched."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import read_array
from sentinel_densify.core import dates, engine
from sentinel_densify.core.errors import Cancelled, InputError
from sentinel_densify.core.progress import Feedback
from sentinel_densify.core.request import DensifyRequest
from sentinel_densify.core.stack import S2_BANDS

KINDS = ("synthesized", "uncertainty", "lai")


def _sha(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _req(sub, out, date, **kw) -> DensifyRequest:
    return DensifyRequest(s2=[str(p) for p in sub["s2"]], s1=[str(p) for p in sub["s1"]],
                          masks=[str(p) for p in sub["masks"]], target_date=date, out_dir=str(out),
                          method=kw.pop("method", "linear"), **kw)


@pytest.fixture(scope="module")
def first_last(uds_subset):
    days = [dates.date_from_name(p) for p in uds_subset["s2"]]
    return days[0].date(), days[-1].date()


@pytest.fixture(scope="module")
def gap_run(uds_subset, first_last, tmp_path_factory):
    """One gap-filling run (one 512 px tile) with checksums of the inputs before and after."""
    out = tmp_path_factory.mktemp("gap")
    inputs = uds_subset["s2"] + uds_subset["s1"] + uds_subset["masks"]
    before = _sha(inputs)
    target = first_last[0] + dt.timedelta(days=40)
    result = engine.run(_req(uds_subset, out, target))
    return result, out, target, before, _sha(inputs)


def test_outputs_on_the_s2_grid(gap_run, uds_subset):
    result, out, target, _, _ = gap_run
    assert result.mode == "gap-filling" and result.method == "linear"
    assert set(result.outputs) == set(KINDS)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{k}_{target:%Y%m%d}.tif" for k in KINDS)
    with rasterio.open(uds_subset["s2"][0]) as ref:
        crs, transform, shape = ref.crs, ref.transform, ref.shape
    expected_desc = {"synthesized": tuple(S2_BANDS), "uncertainty": tuple(f"{b}_std" for b in S2_BANDS) + ("mean_std",),
                     "lai": ("LAI", "LAI_std", "flags")}
    for kind in KINDS:
        with rasterio.open(result.outputs[kind]) as ds:
            assert ds.crs == crs and ds.transform == transform and ds.shape == shape
            assert ds.descriptions == expected_desc[kind]
            assert set(ds.dtypes) == {"float32"} and np.isnan(ds.nodata)
            tags = ds.tags()
            assert tags["TARGET_DATE"] == f"{target:%Y-%m-%d}"
            assert tags["METHOD"] == "linear" and tags["MODE"] == "gap-filling"
            data = ds.read()
        assert np.isfinite(data).all(axis=0).mean() > 0.99, kind
    syn = read_array(result.outputs["synthesized"]) * 1e-4
    std = read_array(result.outputs["uncertainty"]) * 1e-4
    assert 0 <= np.nanpercentile(syn, 1) and np.nanpercentile(syn, 99) < 1
    assert (std[np.isfinite(std)] > 0).all() and np.nanmedian(std) < 0.2
    np.testing.assert_allclose(std[-1], std[:-1].mean(axis=0), rtol=1e-5)  # the mean_std band
    lai = read_array(result.outputs["lai"])
    assert 0 <= np.nanmin(lai[0]) and np.nanmax(lai[0]) < 10 and (lai[1][np.isfinite(lai[1])] >= 0).all()
    with rasterio.open(result.outputs["synthesized"]) as ds:
        assert ds.tags()["ACQUISITION_DATETIME"].startswith(f"{target:%Y-%m-%d}")


def test_inputs_unchanged(gap_run):
    _, _, _, before, after = gap_run
    assert before == after


def test_synthesis_between_neighbours(gap_run, uds_subset):
    """The linear result lies between the clear values that bracket the target (per pixel, band B08)."""
    from sentinel_densify.core.reader import load_stack

    result, _, target, _, _ = gap_run
    stack = load_stack([str(p) for p in uds_subset["s2"]], [], [str(p) for p in uds_subset["masks"]])
    syn = read_array(result.outputs["synthesized"])[6] * 1e-4
    day = dates.to_days(target)
    past = stack.s2[stack.s2_days <= day][:, 6]
    fut = stack.s2[stack.s2_days > day][:, 6]
    ok_p, ok_f = np.isfinite(past), np.isfinite(fut)
    last = np.take_along_axis(past, (len(past) - 1 - np.argmax(ok_p[::-1], 0))[None], 0)[0]
    nxt = np.take_along_axis(fut, np.argmax(ok_f, 0)[None], 0)[0]
    both = ok_p.any(0) & ok_f.any(0)
    lo, hi = np.fmin(last, nxt), np.fmax(last, nxt)
    assert both.mean() > 0.9
    assert ((syn[both] >= lo[both] - 1e-4) & (syn[both] <= hi[both] + 1e-4)).all()


def test_small_tiles_give_the_same_result(gap_run, uds_subset, tmp_path):
    result, _, target, _, _ = gap_run
    tiled = engine.run(_req(uds_subset, tmp_path, target, tile_size=16))
    for kind in KINDS:
        np.testing.assert_allclose(read_array(tiled.outputs[kind]), read_array(result.outputs[kind]), rtol=1e-6,
                                   atol=1e-6, equal_nan=True, err_msg=kind)


@pytest.mark.parametrize("offset, mode", [(-30, "backcasting"), (30, "forecasting")])
def test_modes_by_date(uds_subset, first_last, tmp_path, offset, mode):
    target = (first_last[0] if offset < 0 else first_last[1]) + dt.timedelta(days=offset)
    result = engine.run(_req(uds_subset, tmp_path, target, lai=False))
    assert result.mode == mode and any(mode in w for w in result.warnings)
    assert set(result.outputs) == {"synthesized", "uncertainty"}
    with rasterio.open(result.outputs["synthesized"]) as ds:
        assert ds.tags()["MODE"] == mode
    assert not (tmp_path / f"lai_{target:%Y%m%d}.tif").exists()


def test_cancel_leaves_no_file(uds_subset, first_last, tmp_path):
    calls: list[float] = []
    seen_partial: list[bool] = []

    def progress(pct: float, msg: str) -> None:
        calls.append(pct)
        seen_partial.append(any(p.name.endswith(".partial.tif") for p in tmp_path.iterdir()))

    fb = Feedback(progress, is_cancelled=lambda: len(calls) >= 5)
    with pytest.raises(Cancelled):
        engine.run(_req(uds_subset, tmp_path, first_last[0] + dt.timedelta(days=40), tile_size=16), fb)
    assert any(seen_partial)  # outputs were being written when the cancel came
    assert max(calls) < 95
    assert list(tmp_path.iterdir()) == []  # not even temporaries


def test_explicit_output_paths(uds_subset, first_last, tmp_path):
    paths = {k: str(tmp_path / "elsewhere" / f"my_{k}.tif") for k in KINDS}
    req = _req(uds_subset, tmp_path / "out_dir", first_last[0] + dt.timedelta(days=40), output_paths=paths)
    result = engine.run(req)
    assert result.outputs == paths
    assert all(Path(p).exists() for p in paths.values())
    assert not (tmp_path / "out_dir").exists() or not any((tmp_path / "out_dir").iterdir())


def test_larger_case_has_overviews(uds_subset, tmp_path):
    """A 192 x 192 series (real images tiled 3 x 3) gets overviews and processes in several tiles."""
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    for p in uds_subset["s2"][:8]:
        with rasterio.open(p) as ds:
            prof, data, tags, descs = ds.profile, ds.read(), ds.tags(), ds.descriptions
        prof.update(width=192, height=192)
        with rasterio.open(src_dir / p.name, "w", **prof) as out:
            out.write(np.tile(data, (1, 3, 3)))
            out.update_tags(**tags)
            for i, d in enumerate(descs, 1):
                out.set_band_description(i, d)
    days = sorted(dates.date_from_name(p) for p in src_dir.iterdir())
    req = DensifyRequest(s2=[str(src_dir)], target_date=(days[3] + dt.timedelta(days=1)).date(),
                         out_dir=str(tmp_path / "out"), method="linear", tile_size=64)
    result = engine.run(req)
    for kind in KINDS:
        with rasterio.open(result.outputs[kind]) as ds:
            assert ds.shape == (192, 192) and ds.overviews(1) == [2]
    syn = read_array(result.outputs["synthesized"])
    np.testing.assert_allclose(syn[:, :64, :64], syn[:, 64:128, 128:], rtol=1e-5, equal_nan=True)


# --- the audit of `densify run` ---------------------------------------------------------------------------------


def test_outputs_inside_the_input_folder_are_skipped_next_time(uds_subset, first_last, tmp_path):
    """`--out` inside the S2 folder, run twice: the first run's outputs are not taken as observations."""
    import shutil

    from sentinel_densify.core.errors import InputError

    folder = tmp_path / "S2"
    folder.mkdir()
    for p in uds_subset["s2"][:8] + uds_subset["masks"][:8]:
        shutil.copy(p, folder)
    target = first_last[0] + dt.timedelta(days=20)
    req = DensifyRequest(s2=[str(folder)], target_date=target, out_dir=str(folder / "out"), method="linear")
    first = engine.run(req)
    again = engine.run(DensifyRequest(s2=[str(folder)], target_date=target + dt.timedelta(days=1),
                                      out_dir=str(folder / "out"), method="linear"))
    assert again.inputs_used["s2"] == first.inputs_used["s2"] == 8
    skipped = [w for w in again.warnings if w.startswith("skipped 3 Densify output(s)")]
    assert len(skipped) == 1 and all(Path(p).name in skipped[0] for p in first.outputs.values())
    with pytest.raises(InputError) as err:
        engine.run(DensifyRequest(s2=[str(folder), first.outputs["lai"]], target_date=target,
                                  out_dir=str(tmp_path / "o"), method="linear"))
    assert str(err.value) == (f"Bad input: {Path(first.outputs['lai']).name}: is a Densify output (lai), "
                              "not an acquisition: give the images it was made from")


@pytest.fixture(scope="module")
def small(uds_subset) -> dict[str, list[Path]]:
    return {"s2": uds_subset["s2"][:8], "masks": uds_subset["masks"][:8], "s1": uds_subset["s1"][:10]}


@pytest.mark.parametrize("device, wanted", [("cuda", "required"), ("CUDA:1", "required"), ("gpu", "required"),
                                            ("auto", "optional"), (None, "optional"), ("", "optional"),
                                            ("cpu", None)])
def test_one_reading_of_the_device_option(device, wanted):
    """open_session asks ONNX Runtime for CUDA unless the option says cpu (the run's warning is tested
    in test_cuda_asked_for_without_a_gpu_is_said)."""
    from sentinel_densify.core.model_contract import cuda_wanted

    assert cuda_wanted(device) == wanted


def test_cuda_asked_for_without_a_gpu_is_said(small, first_last, tmp_path):
    """No GPU on this machine: `--device cuda` runs on the CPU and the result says so."""
    from sentinel_densify.core import model_contract
    from sentinel_densify.core.methods import default_model

    if model_contract.gpu_present():
        pytest.skip("a GPU is present: CUDA may run")
    target = first_last[0] + dt.timedelta(days=20)
    res = engine.run(_req(small, tmp_path / "a", target, device="cuda", lai=False))
    assert "CUDA was asked for but linear ran on numpy (linear is a CPU method)" in res.warnings
    if default_model() is not None:
        res = engine.run(_req(small, tmp_path / "b", target, device="cuda", lai=False, method="default"))
        assert res.provider == "CPUExecutionProvider"
        assert any(w.startswith(f"CUDA was asked for but {res.method} ran on CPUExecutionProvider")
                   for w in res.warnings), res.warnings
    for device in ("cpu", "auto"):
        res = engine.run(_req(small, tmp_path / device, target, device=device, lai=False))
        assert not any("CUDA" in w for w in res.warnings)


def test_warnings_about_the_inputs_are_shown_before_the_work_once(small, first_last, tmp_path):
    """A shell's warn callback gets the warnings about the inputs and the method before the first tile (a user may
    stop a long run), each once; the result still lists them (the API's), and `unshown` leaves them out."""
    from sentinel_densify.core.progress import Feedback

    events = []
    fb = Feedback(progress=lambda pct, msg: events.append(("progress", msg)),
                  warn=lambda w: events.append(("warn", w)))
    target = first_last[0] + dt.timedelta(days=20)
    res = engine.run(_req(small, tmp_path / "a", target, device="cuda", lai=False), fb)
    said = "CUDA was asked for but linear ran on numpy (linear is a CPU method)"
    assert said in res.warnings
    assert [e for e in events if e[0] == "warn"] == [("warn", said)]
    first_tile = next(i for i, e in enumerate(events) if e[0] == "progress" and e[1].startswith("tile"))
    assert events.index(("warn", said)) < first_tile
    assert fb.unshown(res.warnings) == [w for w in res.warnings if w != said]  # e.g. the pixels without a value


def test_a_rename_failing_while_placing_leaves_every_earlier_output(small, first_last, tmp_path, monkeypatch):
    """Error audit: the outputs were renamed into place one by one, so a rename failing part-way (a file another
    user owns in a shared folder; on Windows one open in QGIS) left a new synthesized image beside the earlier run's
    uncertainty. They are placed as one transaction (writer.place_together): all, or none."""
    import os

    from sentinel_densify.core import writer
    from sentinel_densify.core.atomic import OutputError

    target = first_last[0] + dt.timedelta(days=20)
    first = engine.run(_req(small, tmp_path / "out", target, method="linear"))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "out").iterdir()}
    unc = Path(first.outputs["uncertainty"])
    real = os.replace

    def replace(src, dst):
        if Path(dst) == unc and Path(src).name.endswith(".partial.tif"):  # the new uncertainty into place
            raise PermissionError(13, "Operation not permitted", str(dst))
        return real(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace)
    with pytest.raises(OutputError, match="uncertainty"):
        engine.run(_req(small, tmp_path / "out", target, method="nearest"))
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "out").iterdir()}
    assert after == before  # the linear run's three files, untouched; nothing else (no temporary, nothing aside)
    monkeypatch.undo()
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):  # the earlier files' copies cannot be deleted: the run says so
        if self.name.endswith(".old"):
            raise PermissionError(13, "Operation not permitted", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    res = engine.run(_req(small, tmp_path / "out", target, method="nearest"))
    monkeypatch.undo()
    left = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".old"))
    assert len(left) == 3 and any(w.startswith("the earlier outputs' copies ") and left[0] in w
                                  for w in res.warnings), res.warnings


def test_baselines_do_not_read_s1(small, first_last, tmp_path, corrupt_copy):
    """linear uses no S1, so the run reads none: an S1 file whose pixels cannot be read changes nothing in its
    outputs, while a method that reads S1 (the bundled model) names that file."""
    from sentinel_densify.core.errors import InputError
    from sentinel_densify.core.methods import default_model

    target = first_last[0] + dt.timedelta(days=20)
    bad = corrupt_copy(small["s1"][3], tmp_path / small["s1"][3].name)
    broken = {**small, "s1": [*small["s1"][:3], bad, *small["s1"][4:]]}
    ref = engine.run(_req(small, tmp_path / "ref", target, lai=False))
    res = engine.run(_req(broken, tmp_path / "broken", target, lai=False))
    for kind in ("synthesized", "uncertainty"):
        assert np.array_equal(read_array(res.outputs[kind]), read_array(ref.outputs[kind]), equal_nan=True)
    if default_model() is not None:
        with pytest.raises(InputError, match=f"{bad.name}: cannot read its pixels"):
            engine.run(_req(broken, tmp_path / "model", target, lai=False, method="default"))


def test_only_a_method_that_calibrates_on_the_series_reads_a_sample_of_it(small, first_last, tmp_path, monkeypatch):
    """linear fits its std on a sample of the series, read before the tiles; the bundled model, calibrated when
    it was exported, has no use for one: its run reads the series once (one tile here), and the progress says
    no "calibrating"."""
    from sentinel_densify.core.methods import default_model
    from sentinel_densify.core.reader import SeriesReader

    assert default_model() is not None  # bundled in models/
    windows = []
    read_window = SeriesReader.read_window
    monkeypatch.setattr(SeriesReader, "read_window", lambda self, dst: windows.append(dst) or read_window(self, dst))
    target = first_last[0] + dt.timedelta(days=20)
    said: list[str] = []
    for method, reads in (("linear", 2), ("default", 1)):
        windows.clear()
        said.clear()
        engine.run(_req(small, tmp_path / method, target, lai=False, method=method),
                   Feedback(progress=lambda pct, msg: said.append(msg)))
        assert len(windows) == reads, method
        assert any(m.startswith("calibrating") for m in said) == (method == "linear")


def test_tile_size_out_of_range_refused(small, first_last, tmp_path):
    from sentinel_densify.core.errors import InputError

    target = first_last[0] + dt.timedelta(days=20)
    with pytest.raises(InputError, match=f"tile size 8 is too small: at least {engine.MIN_TILE_SIZE} pixels"):
        engine.run(_req(small, tmp_path, target, tile_size=8))
    big = engine.MAX_TILE_SIZE + 1
    with pytest.raises(InputError, match=f"tile size {big} is too large: at most {engine.MAX_TILE_SIZE} pixels"):
        engine.run(_req(small, tmp_path, target, tile_size=big))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    at_limits = [engine.run(_req(small, tmp_path / str(size), target, tile_size=size, lai=False))
                 for size in (engine.MIN_TILE_SIZE, engine.MAX_TILE_SIZE)]  # the limits run, to the same result
    low, high = (read_array(r.outputs["synthesized"]) for r in at_limits)
    assert np.isfinite(low).mean() > 0.9
    np.testing.assert_allclose(low, high, rtol=1e-5, equal_nan=True)


def test_the_automatic_tile_bounds_a_window_of_a_long_series():
    """auto_tile_size: 512 px for make bench's 20 S2 and 30 S1 dates and for a year of both satellites (140 S2, 90
    S1); for two years the largest multiple of 64 px whose window (with its halo) holds at most WINDOW_BYTES, so
    that the outputs' blocks divide it (no block written by two windows); never below the floor."""
    from sentinel_densify.core import grid
    from sentinel_densify.core.writer import block_size_for

    def window_bytes(tile: int, values: int, halo: int) -> int:
        return 4 * values * (tile + 2 * halo) ** 2

    for values in (20 * 10 + 30 * 2, 140 * 10 + 90 * 2):
        assert grid.auto_tile_size(values, halo=8) == grid.DEFAULT_TILE_SIZE
    for values, halo in ((280 * 10 + 180 * 2, 8), (280 * 10, 0), (1000 * 10, 8)):
        tile = grid.auto_tile_size(values, halo)
        assert tile % 64 == 0 and grid.MIN_AUTO_TILE_SIZE <= tile < grid.DEFAULT_TILE_SIZE
        assert window_bytes(tile, values, halo) <= grid.WINDOW_BYTES < window_bytes(tile + 64, values, halo)
        assert tile % block_size_for(tile) == 0
    assert grid.auto_tile_size(10 ** 6, 8) == grid.MIN_AUTO_TILE_SIZE


def test_a_run_without_a_tile_size_takes_the_automatic_one(small, first_last, tmp_path, monkeypatch):
    """With no tile size, a run's tiles come from auto_tile_size for its series (S2 dates x bands, and S1 for a
    method that reads it) and the halo its windows are read with, said in the outputs' TILE_SIZE tag; a given tile
    size is kept. linear is per pixel: the same pixels whatever the tiles. (The window budget is lowered here so
    that the real 64 px series needs tiles smaller than its grid with the model.)"""
    from sentinel_densify.core import grid

    monkeypatch.setattr(grid, "WINDOW_BYTES", 4 * 80 * 64 ** 2)  # 8 S2 dates x 10 bands: 64 px windows
    monkeypatch.setattr(grid, "MIN_AUTO_TILE_SIZE", 16)
    target = first_last[0] + dt.timedelta(days=20)
    tagged = {}
    for name, method, size in (("auto", "linear", None), ("given", "linear", 16), ("model", "default", None)):
        res = engine.run(_req(small, tmp_path / name, target, lai=False, method=method, tile_size=size))
        with rasterio.open(res.outputs["synthesized"]) as ds:
            tagged[name] = (int(ds.tags()["TILE_SIZE"]), ds.read())
    assert tagged["auto"][0] == grid.auto_tile_size(8 * 10) == 64 and tagged["given"][0] == 16
    # its 10 S1 dates count, and its windows are read with twice its 8 px halo (the blending's context)
    assert tagged["model"][0] == grid.auto_tile_size(8 * 10 + 10 * 2, halo=2 * 8) == 16
    assert np.array_equal(tagged["auto"][1], tagged["given"][1], equal_nan=True)


def test_outputs_must_be_distinct_geotiffs(small, first_last, tmp_path):
    """Two destinations on one file (a batch-mode slip) or a non-GeoTIFF name are refused up front."""
    from sentinel_densify.core.errors import InputError

    target = first_last[0] + dt.timedelta(days=20)
    same = str(tmp_path / "o" / "same.tif")
    with pytest.raises(InputError, match="same.tif: the synthesized and uncertainty outputs are the same file"):
        engine.run(_req(small, tmp_path, target, lai=False,
                        output_paths={"synthesized": same, "uncertainty": same}))
    with pytest.raises(InputError, match=r"s.png: the synthesized output must be a GeoTIFF file \(.tif or .tiff\)"):
        engine.run(_req(small, tmp_path, target, lai=False,
                        output_paths={"synthesized": str(tmp_path / "o" / "s.png"),
                                      "uncertainty": str(tmp_path / "o" / "u.tif")}))
    assert not (tmp_path / "o").exists()
    # LAI not asked for: its (default) path may be anything; .tiff is a GeoTIFF name too
    res = engine.run(_req(small, tmp_path, target, lai=False,
                          output_paths={"synthesized": str(tmp_path / "o" / "s.tiff"), "lai": same,
                                        "uncertainty": same}))
    assert sorted(res.outputs) == ["synthesized", "uncertainty"]


def test_outputs_differing_only_by_case_are_refused(small, first_last, tmp_path):
    """Portability finding 7: S2.tif and s2.tif are one file on macOS's and Windows' usual file systems, where one
    output would replace the other: refused up front on every platform, nothing written."""
    target = first_last[0] + dt.timedelta(days=20)
    paths = {"synthesized": str(tmp_path / "o" / "S2.tif"), "uncertainty": str(tmp_path / "O" / "s2.TIF")}
    said = (r"s2.TIF: the synthesized and uncertainty outputs are the same file where case is ignored "
            r"\(Windows, macOS\): .*S2.tif and .*s2.TIF differ only by case")
    with pytest.raises(InputError, match=said):
        engine.run(_req(small, tmp_path, target, lai=False, output_paths=paths))
    assert not any(tmp_path.iterdir())
    # second audit: "ß" folds to "ss", but NTFS and APFS upper-case one character at a time: two files
    paths = {"synthesized": str(tmp_path / "p" / "Straße.tif"), "uncertainty": str(tmp_path / "p" / "Strasse.tif")}
    res = engine.run(_req(small, tmp_path, target, lai=False, output_paths=paths))
    assert sorted(Path(p).name for p in res.outputs.values()) == ["Strasse.tif", "Straße.tif"]


def test_temporal_model_names_the_bands_the_inputs_lack(small, first_last, tmp_path):
    """S2 files all without B8A: the model's needs and what is lacking, not "needs [...] got [...]"."""
    from sentinel_densify.core.errors import InputError
    from sentinel_densify.core.methods import default_model

    if default_model() is None:
        pytest.skip("no bundled model")
    folder = tmp_path / "S2"
    folder.mkdir()
    for p in small["s2"]:
        with rasterio.open(p) as ds:
            prof, data, tags, descs = ds.profile, ds.read(), ds.tags(), list(ds.descriptions)
        keep = [k for k, d in enumerate(descs) if d != "B8A"]
        prof.update(count=len(keep))
        with rasterio.open(folder / p.name, "w", **prof) as out:
            out.write(data[keep])
            out.update_tags(**tags)
            for i, k in enumerate(keep, 1):
                out.set_band_description(i, descs[k])
    with pytest.raises(InputError) as err:
        engine.run(DensifyRequest(s2=[str(folder)], target_date=first_last[0] + dt.timedelta(days=20),
                                  out_dir=str(tmp_path / "out"), method="default"))
    assert str(err.value).endswith(f"needs the S2 bands {', '.join(S2_BANDS)}: the S2 inputs lack B8A")


def test_unused_output_paths_skip_existing_and_queued_results(tmp_path):
    request = DensifyRequest(s2=[], target_date=dt.date(2018, 3, 1), out_dir=str(tmp_path))
    first = request.unused_output_paths()
    assert {Path(p).name for p in first.values()} == {f"{k}_20180301.tif" for k in KINDS}
    Path(first["lai"]).write_bytes(b"x")  # any kind existing moves all three to the next number
    second = request.unused_output_paths()
    assert {Path(p).name for p in second.values()} == {f"{k}_20180301_2.tif" for k in KINDS}
    third = request.unused_output_paths(taken=set(second.values()))  # a run queued with those names
    assert {Path(p).name for p in third.values()} == {f"{k}_20180301_3.tif" for k in KINDS}


def test_beyond_calibration_counts_far_pixels_over_tiles():
    """The calibration warning counts output pixels more than BEYOND_CALIBRATION_DAYS past the method's
    calibrated distance from a clear observation, over all tiles; more than 1 % of them warns. Pixels with
    no clear observation (inf) are the no-value warning's, not this one's; a method without a calibrated
    distance never warns."""
    from types import SimpleNamespace

    limit = 60.0 + engine.BEYOND_CALIBRATION_DAYS
    def unasked(*_):
        raise AssertionError("a method without a calibrated distance is not measured")

    quiet = engine.BeyondCalibration(SimpleNamespace(name="m", calibrated_days=None, days_to_clear=unasked))
    quiet.add(np.full((10, 10), 500.0))
    quiet.add_tile(None, 0.0, slice(None), slice(None))  # per tile: nothing computed
    assert quiet.warning() is None
    beyond = engine.BeyondCalibration(SimpleNamespace(name="onnx:m", calibrated_days=60.0))
    tile = np.full((10, 10), 10.0)
    tile[0, 0] = limit + 5
    beyond.add(tile)
    beyond.add(np.full((10, 10), np.inf))  # no clear observation: counted in the total only
    assert beyond.warning() is None  # 1 of 200: not more than 1 %
    tile = np.full((10, 10), limit)  # at the limit: not beyond it
    tile[0, :2] = limit + 30
    beyond.add(tile)
    assert beyond.warning() is None  # 3 of 300: exactly 1 %
    beyond.add(np.array([[limit + 0.5]]))
    assert beyond.warning() == (f"1% of the output pixels lie more than {limit:.0f} days from a clear S2 observation "
                                f"(up to {limit + 30:.0f} days); onnx:m's uncertainty is calibrated up to about 60 "
                                "days from a clear observation, so its std may be too narrow there")


def test_a_series_of_dates_equals_the_runs_of_each(small, first_last, tmp_path):
    """One run for several dates (inputs checked, method calibrated and the series read once) writes, for
    each date, what a run for that date alone writes: the same pixels and tags, its own mode."""
    first, last = first_last
    when = [first - dt.timedelta(days=20), first + dt.timedelta(days=30), last + dt.timedelta(days=15)]
    base = _req(small, tmp_path / "series", when[0], method="default", tile_size=32)
    series = engine.run_series(engine.series_requests(base, [when[2], when[0], when[1], when[0]]))
    assert [r.target_date for r in series] == when  # sorted, each once
    assert [r.mode for r in series] == ["backcasting", "gap-filling", "forecasting"]
    for date, res in zip(when, series, strict=True):
        alone = engine.run(_req(small, tmp_path / f"alone_{date:%Y%m%d}", date, method="default", tile_size=32))
        assert sorted(res.warnings) == sorted(alone.warnings)
        for kind in KINDS:
            assert Path(res.outputs[kind]).name == Path(alone.outputs[kind]).name
            with rasterio.open(res.outputs[kind]) as a, rasterio.open(alone.outputs[kind]) as b:
                np.testing.assert_array_equal(a.read(), b.read())
                assert a.tags() == b.tags()


def test_a_series_is_checked_whole_and_written_whole(small, first_last, tmp_path):
    """A date out of range is named before anything is computed; a cancel leaves no output of any date, nor the
    folder the run made for them; an output that cannot be written is named before anything is computed (not
    when the files are put in place, after some are); output files named for one date cannot take several."""
    first, last = first_last
    good, far = first + dt.timedelta(days=30), last + dt.timedelta(days=400)
    base = _req(small, tmp_path / "out", good, lai=False)
    with pytest.raises(InputError, match=f"{far:%Y-%m-%d}.*out of range"):
        engine.run_series(engine.series_requests(base, [good, far]))
    assert not (tmp_path / "out").exists()

    calls: list[float] = []
    fb = Feedback(lambda pct, msg: calls.append(pct), is_cancelled=lambda: len(calls) >= 4)
    with pytest.raises(Cancelled):
        engine.run_series(engine.series_requests(_req(small, tmp_path / "out", good, tile_size=16),
                                                 [good, good + dt.timedelta(days=10)]), fb)
    assert not (tmp_path / "out").exists()

    blocked = {k: str(tmp_path / "kept" / f"{k}.tif") for k in KINDS}
    Path(blocked["uncertainty"]).mkdir(parents=True)  # an existing folder where an output should go
    calls.clear()
    fb = Feedback(lambda pct, msg: calls.append(pct))
    with pytest.raises(InputError, match="uncertainty.tif: the uncertainty output is an existing folder"):
        engine.run(_req(small, tmp_path / "kept", good, output_paths=blocked), fb)
    assert max(calls) == 0 and sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["uncertainty.tif"]

    named = _req(small, tmp_path / "out", good, output_paths={k: str(tmp_path / f"{k}.tif") for k in KINDS})
    with pytest.raises(InputError, match="output files are named for one target date"):
        engine.series_requests(named, [good, good + dt.timedelta(days=10)])


def test_the_outputs_blocks_are_filled_whole_by_the_tiles(tmp_path):
    """A run's outputs are in blocks that its tiles fill whole (writer.block_size_for): 64 px blocks for 64 px
    tiles, 128 for 128 (a simulated 192 px scene; each block written once, none left behind in the file)."""
    from sentinel_densify.core import simulate

    scene = simulate.simulate_scene(tmp_path / "scene", size=192, n_s2=6, n_s1=2, seed=2)
    target = dates.date_from_name(Path(scene["s2"][2])).date()
    for tile in (64, 128):
        res = engine.run(DensifyRequest(s2=[str(tmp_path / "scene" / "S2")], target_date=target, lai=False,
                                        out_dir=str(tmp_path / f"t{tile}"), method="linear", tile_size=tile))
        with rasterio.open(res.outputs["synthesized"]) as ds:
            assert ds.block_shapes[0] == (tile, tile) and ds.tags()["TILE_SIZE"] == str(tile)


def test_an_earlier_runs_lai_left_beside_a_run_without_lai_is_pointed_out(small, first_last, tmp_path):
    """A run without LAI replaces the synthesized and uncertainty files of its date in DIR and leaves an earlier
    run's lai_YYYYMMDD.tif as it was (outputs never delete files): a warning says that it does not match."""
    target = first_last[0] + dt.timedelta(days=20)
    first = engine.run(_req(small, tmp_path, target))
    assert "lai" in first.outputs and not [w for w in first.warnings if "earlier run's LAI" in w]
    again = engine.run(_req(small, tmp_path, target, lai=False))
    assert "lai" not in again.outputs and Path(first.outputs["lai"]).exists()
    assert [w for w in again.warnings if "earlier run's LAI" in w] == [
        f"lai_{target:%Y%m%d}.tif in {tmp_path} is an earlier run's LAI, left as it was: this run wrote no LAI, so "
        f"it does not match synthesized_{target:%Y%m%d}.tif"]


def test_the_tags_say_which_inputs_and_model_a_run_used(small, first_last, tmp_path):
    """INPUTS_S1 only for a method that reads S1 (the bundled model; never a baseline); MODEL_BUNDLED tells the bundled
    models/default.onnx (1) from another model file (0), even a byte copy of it; PROCESSING_LEVEL=Level-1C, with a
    CONTENT of top-of-atmosphere reflectance, when an S2 input is Level-1C."""
    import shutil

    from helpers import craft
    from sentinel_densify.core.methods import default_model

    target = first_last[0] + dt.timedelta(days=20)
    assert default_model() is not None  # bundled in models/
    copy = tmp_path / "m" / "model.onnx"
    copy.parent.mkdir()
    shutil.copy(default_model(), copy)
    l1c = [craft(p, tmp_path / "l1c" / p.name, tags={"PROCESSING_LEVEL": "Level-1C"}) for p in small["s2"]]
    tags = {}
    for name, method, sub in (("linear", "linear", small), ("bundled", "default", small),
                              ("copy", str(copy), small), ("l1c", "linear", {**small, "s2": l1c})):
        res = engine.run(_req(sub, tmp_path / name, target, lai=False, method=method))
        with rasterio.open(res.outputs["synthesized"]) as ds:
            tags[name] = ds.tags()
    assert "INPUTS_S1" not in tags["linear"] and "MODEL_BUNDLED" not in tags["linear"]
    assert tags["bundled"]["INPUTS_S1"].split(";") == [p.name for p in small["s1"]]
    assert (tags["bundled"]["METHOD"], tags["bundled"]["MODEL_BUNDLED"]) == ("onnx:default", "1")
    assert (tags["copy"]["METHOD"], tags["copy"]["MODEL"], tags["copy"]["MODEL_BUNDLED"]) == ("onnx:model",
                                                                                              "model.onnx", "0")
    assert "PROCESSING_LEVEL" not in tags["linear"] and "surface reflectance" in tags["linear"]["CONTENT"]
    assert tags["l1c"]["PROCESSING_LEVEL"] == "Level-1C"
    assert tags["l1c"]["CONTENT"] == "synthesized Sentinel-2 top-of-atmosphere reflectance (DN)"
