"""AtomicRaster: temp name then rename, nothing left on error, tags/descriptions/nodata, tiling, overviews."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from sentinel_densify.core.atomic import OutputError, place_together
from sentinel_densify.core.grid import Grid
from sentinel_densify.core.writer import AtomicRaster, write_array


@pytest.fixture(scope="module")
def real_grid(uds_dir) -> Grid:
    path = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[0]
    with rasterio.open(path) as ds:
        return Grid(ds.crs.to_wkt(), ds.transform, ds.width, ds.height)


def _big(grid: Grid, size: int) -> Grid:
    return Grid(grid.crs_wkt, grid.transform, size, size)


def test_nothing_left_when_the_block_fails(real_grid, tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicRaster(target, real_grid, 2) as out:
            out.write(np.ones((2, 64, 64), "float32"))
            assert out.tmp.exists() and out.tmp.name.startswith(".")
            assert not target.exists()  # nothing at the final name while writing
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_nothing_left_without_commit(real_grid, tmp_path):
    with AtomicRaster(tmp_path / "out.tif", real_grid, 1) as out:
        out.write(np.zeros((64, 64), "float32"))
    assert list(tmp_path.iterdir()) == []


def test_commit_renames_with_metadata(real_grid, tmp_path):
    target = tmp_path / "sub" / "out.tif"
    data = np.arange(2 * 64 * 64, dtype="float32").reshape(2, 64, 64)
    data[1, :4, :4] = np.nan
    with AtomicRaster(target, real_grid, 2, descriptions=["B04", "B08"], tags={"TARGET_DATE": "2018-03-15"},
                      band_tags=[{"UNIT": "dn"}, {"UNIT": "dn"}]) as out:
        out.write(data[:, :32], 0, 0)
        out.write(data[:, 32:], 32, 0)
        assert out.commit() == target
    assert [p.name for p in target.parent.iterdir()] == ["out.tif"]
    with rasterio.open(target) as ds:
        assert ds.descriptions == ("B04", "B08")
        assert ds.tags()["TARGET_DATE"] == "2018-03-15" and ds.tags(1)["UNIT"] == "dn"
        assert np.isnan(ds.nodata) and ds.dtypes == ("float32", "float32")
        assert ds.crs == CRS.from_wkt(real_grid.crs_wkt) and ds.transform == real_grid.transform
        back = ds.read()
    np.testing.assert_array_equal(back, data)


def test_large_raster_tiled_compressed_with_overviews(real_grid, tmp_path):
    grid = _big(real_grid, 600)
    yy, xx = np.mgrid[0:600, 0:600]
    data = np.stack([np.sin(yy / 40.0) + np.cos(xx / 30.0), (yy + xx) / 1200.0]).astype("float32")
    path = write_array(tmp_path / "big.tif", grid, data, descriptions=["a", "b"])
    with rasterio.open(path) as ds:
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.compression is not None and ds.compression.value.lower() == "deflate"
        assert ds.overviews(1) == [2, 4, 8] and ds.overviews(2) == [2, 4, 8]
        np.testing.assert_array_equal(ds.read(), data)
        ov = ds.read(1, out_shape=(300, 300))
    np.testing.assert_allclose(ov, data[0].reshape(300, 2, 300, 2).mean(axis=(1, 3)), atol=1e-5)
    assert path.stat().st_size < data.nbytes / 2  # compressed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def test_replaces_an_existing_file_atomically(real_grid, tmp_path):
    target = tmp_path / "out.tif"
    write_array(target, real_grid, np.zeros((64, 64), "float32"))
    with pytest.raises(ValueError):
        with AtomicRaster(target, real_grid, 1) as out:
            out.write(np.ones((64, 64), "float32"))
            raise ValueError("cancelled half way")
    with rasterio.open(target) as ds:
        assert (ds.read(1) == 0).all()  # the previous output is intact
    write_array(target, real_grid, np.ones((64, 64), "float32"))
    with rasterio.open(target) as ds:
        assert (ds.read(1) == 1).all()
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_small_raster_is_striped_without_overviews(tmp_path):
    grid = Grid(CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 500000, 0, -10, 5600000), 100, 100)
    path = write_array(tmp_path / "small.tif", grid, np.ones((100, 100), "uint16"), nodata=0)
    with rasterio.open(path) as ds:
        assert ds.overviews(1) == [] and ds.nodata == 0 and ds.dtypes[0] == "uint16"


def test_atomic_path_renames_on_success_and_leaves_nothing_on_error(tmp_path):
    from sentinel_densify.core.atomic import atomic_path, write_text

    target = tmp_path / "sub" / "report.json"
    write_text(target, "{}")
    assert target.read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "{}"  # the previous file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temporary left


def _pattern(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([np.sin(yy / 40.0) + np.cos(xx / 30.0), (yy * xx % 97) / 97.0]).astype("float32")


def test_verify_catches_a_file_cut_anywhere(real_grid, uds_subset, tmp_path):
    """A GeoTIFF cut short anywhere (header, blocks, overviews, the directory and tags at its end) is
    refused; complete files, the writer's and the real inputs, pass."""
    from sentinel_densify.core.writer import tiff_problem, verify_raster

    path = write_array(tmp_path / "big.tif", _big(real_grid, 600), _pattern(600), descriptions=["a", "b"])
    verify_raster(path)
    for real in uds_subset["s2"][:3] + uds_subset["masks"][:2] + uds_subset["s1"][:2]:
        assert tiff_problem(real) is None, real
    data = path.read_bytes()
    cut = tmp_path / "cut.tif"
    for n in (0, 7, 100, len(data) // 3, len(data) - 5000, len(data) - 600, len(data) - 100, len(data) - 1):
        cut.write_bytes(data[:n])
        with pytest.raises((ValueError, OSError)):
            verify_raster(cut)
    # atomic_path with the same check: a cut copy never replaces the file
    from sentinel_densify.core.atomic import OutputError, atomic_path

    with pytest.raises(OutputError, match="big.tif: the file is incomplete"), \
            atomic_path(path, verify=verify_raster) as tmp:
        tmp.write_bytes(data[:-1])
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "cut.tif"]


_FULL_DISK = """
import sys, numpy as np, rasterio
from sentinel_densify.core.atomic import OutputError, write_text
from sentinel_densify.core.grid import Grid
from sentinel_densify.core.writer import write_array
with rasterio.open(sys.argv[1]) as ds:
    grid = Grid(ds.crs.to_wkt(), ds.transform, 600, 600)
failed = []
try:
    write_array(sys.argv[2], grid, np.random.default_rng(0).random((2, 600, 600), dtype="float32"))
except OutputError as exc:
    failed.append(str(exc))
try:
    write_text(sys.argv[3], "x" * 3_000_000)
except OutputError as exc:
    failed.append(str(exc))
print("\\n".join(failed))
"""


def test_writes_past_a_file_size_limit_fail_and_keep_the_older_file(uds_subset, tmp_path):
    """As on a full disk: files may not grow past 1 MB and SIGXFSZ is ignored, so writes fail with
    EFBIG. Both writers raise OutputError naming the file; the older files and the folder stay as they were."""
    import resource
    import signal
    import subprocess
    import sys

    from sentinel_densify.core.atomic import write_text

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    raster, report = tmp_path / "out.tif", tmp_path / "report.json"
    with rasterio.open(uds_subset["s2"][0]) as ds:
        grid = Grid(ds.crs.to_wkt(), ds.transform, ds.width, ds.height)
    write_array(raster, grid, np.zeros((64, 64), "float32"))
    write_text(report, "{}")
    before = raster.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(uds_subset["s2"][0]), str(raster), str(report)],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr
    messages = proc.stdout.strip().splitlines()
    assert len(messages) == 2, proc.stdout + proc.stderr
    assert messages[0].startswith(f"could not write {raster}")
    assert messages[1].startswith(f"could not write {report}")
    assert raster.read_bytes() == before and report.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "report.json"]


def test_blocks_that_the_tiles_fill_whole_are_written_once(real_grid, tmp_path):
    """block_size_for: 256 px blocks for 512 px tiles, 192 for 384 (80 for 400, 160 for 320: multiples of 16
    px; 256 when none from 64 up divides the tile). Written in 384 px windows with a small GDAL cache (as in a
    run, where reading the series evicts the outputs' blocks), 256 px blocks straddle the windows: blocks
    written twice leave a larger file than the same pixels written at once; blocks of block_size_for(384) do
    not."""
    from sentinel_densify.core.writer import block_size_for

    tiles = (512, 1024, 384, 128, 320, 400, 300, 16)
    assert [block_size_for(t) for t in tiles] == [256, 256, 192, 128, 160, 80, 256, 256]
    grid = _big(real_grid, 768)
    data = (np.random.default_rng(0).random((3, 768, 768), dtype=np.float32) * 3000).round()

    def size(block: int, window: int) -> int:
        path = tmp_path / f"b{block}_w{window}.tif"
        with rasterio.Env(GDAL_CACHEMAX=1), AtomicRaster(path, grid, 3, blocksize=block) as out:
            for r in range(0, 768, window):
                for c in range(0, 768, window):
                    out.write(data[:, r:r + window, c:c + window], r, c)
            out.commit()
        return path.stat().st_size

    assert size(256, 384) > 1.1 * size(256, 768)
    assert size(block_size_for(384), 384) == size(block_size_for(384), 768)


_SMALL = Grid(CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 500000, 0, -10, 5600000), 64, 64)


@pytest.mark.parametrize("error, raised", [(KeyboardInterrupt(), KeyboardInterrupt),
                                           (RasterioError("no space left"), OutputError)])
def test_a_failure_while_opening_leaves_no_partial_file(tmp_path, monkeypatch, error, raised):
    """A Ctrl-C (or a write error) while __init__ sets the tags, after the temporary file exists but before the
    caller's ExitStack has the object, removes that file."""
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(rasterio.io.DatasetWriter, "update_tags", fail)
    with pytest.raises(raised):
        AtomicRaster(tmp_path / "out.tif", _SMALL, 2, descriptions=["a", "b"], tags={"TARGET_DATE": "2018-03-15"})
    assert list(tmp_path.iterdir()) == []  # no hidden .out.ID.partial.tif


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


_NAMES = ("a.tif", "b.tif", "c.tif")  # a, b exist (b with an .aux.xml beside it), c does not
_OPEN_HINT = "it may be open in another program (a layer loaded in QGIS?) or read-only"  # after a PermissionError


def _earlier_outputs(folder: Path) -> dict[str, bytes]:
    write_array(folder / "a.tif", _SMALL, np.zeros((64, 64), "float32"))
    write_array(folder / "b.tif", _SMALL, np.full((64, 64), 2, "float32"))
    (folder / "b.tif.aux.xml").write_text("<PAMDataset/>")  # stale statistics: left as `place` leaves it
    return _files(folder)


def _place_failing(folder: Path, monkeypatch, k: int, phase: str, error: BaseException,
                   after: bool) -> tuple[BaseException | None, dict[str, bytes]]:
    """place_together of new a, b, c where keeping target k's earlier file (phase "aside": its hard link, and the
    rename aside tried after a failed link) or placing the new file onto it ("place") raises `error`, before the
    link or rename or `after` it; what it raised and the folder's files just after (the new rasters not yet
    discarded by the ExitStack)."""
    target, real, real_link = folder / _NAMES[k], os.replace, os.link

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        hit = src == target if phase == "aside" else dst == target and src.name.endswith(".partial.tif")
        if hit and after:
            real(src, dst)
        if hit:
            raise error
        real(src, dst)

    def link(src, dst):
        if phase == "aside" and Path(src) == target:
            if after:
                real_link(src, dst)
            raise error
        real_link(src, dst)

    raised = None
    with contextlib.ExitStack() as outputs:
        outs = [outputs.enter_context(AtomicRaster(folder / name, _SMALL, 1)) for name in _NAMES]
        for out in outs:
            out.write(np.ones((64, 64), "float32"))
            out.finish()
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "link", link)
        try:
            place_together(outs)
        except BaseException as exc:  # KeyboardInterrupt too
            raised = exc
        finally:
            monkeypatch.undo()
        left = _files(folder)
    return raised, left


@pytest.mark.parametrize("phase, k", [("place", 0), ("place", 1), ("place", 2), ("aside", 0), ("aside", 1)])
def test_place_together_a_failed_rename_leaves_every_target_as_it_was(tmp_path, monkeypatch, phase, k):
    """A rename that fails part-way (an earlier output open on Windows, a sticky folder) replaces none of the
    outputs: the earlier files are byte-identical, the absent one still absent, and no temporary or set-aside
    file is left; OutputError names the file."""
    before = _earlier_outputs(tmp_path)
    raised, left = _place_failing(tmp_path, monkeypatch, k, phase, PermissionError(errno.EACCES, "Permission denied"),
                                  after=False)
    assert isinstance(raised, OutputError), raised
    assert str(raised) == f"could not write {tmp_path / _NAMES[k]}: Permission denied; {_OPEN_HINT}"
    assert left == before and _files(tmp_path) == before


@pytest.mark.parametrize("phase, k, after", [("place", 0, False), ("place", 1, True), ("place", 2, False),
                                             ("place", 2, True), ("aside", 0, True), ("aside", 1, False)])
def test_place_together_interrupted_leaves_every_target_as_it_was(tmp_path, monkeypatch, phase, k, after):
    """Ctrl-C during the renames (before or just after one) puts every earlier file back as it was."""
    before = _earlier_outputs(tmp_path)
    raised, left = _place_failing(tmp_path, monkeypatch, k, phase, KeyboardInterrupt(), after)
    assert isinstance(raised, KeyboardInterrupt), raised
    assert left == before and _files(tmp_path) == before


def test_place_together_places_all_and_leaves_no_temporary(tmp_path):
    """Every new file in place, the earlier ones (set aside) deleted, the rasters done (their ExitStack keeps them)."""
    _earlier_outputs(tmp_path)
    with contextlib.ExitStack() as outputs:
        outs = [outputs.enter_context(AtomicRaster(tmp_path / name, _SMALL, 1)) for name in _NAMES]
        for value, out in enumerate(outs, start=5):
            out.write(np.full((64, 64), value, "float32"))
            out.finish()
        assert place_together(outs) == [tmp_path / name for name in _NAMES]
        assert sorted(_files(tmp_path)) == ["a.tif", "b.tif", "b.tif.aux.xml", "c.tif"]  # the stale one stays
    assert sorted(_files(tmp_path)) == ["a.tif", "b.tif", "b.tif.aux.xml", "c.tif"]
    for value, name in enumerate(_NAMES, start=5):
        with rasterio.open(tmp_path / name) as ds:
            assert (ds.read(1) == value).all()


def _new_outputs(outputs: contextlib.ExitStack, folder: Path) -> list[AtomicRaster]:
    outs = [outputs.enter_context(AtomicRaster(folder / name, _SMALL, 1)) for name in _NAMES]
    for value, out in enumerate(outs, start=5):
        out.write(np.full((64, 64), value, "float32"))
        out.finish()
    return outs


def test_place_together_keeps_a_whole_file_at_every_path_at_every_moment(tmp_path, monkeypatch):
    """Second audit: the earlier files were renamed aside before the new ones came, so a crash (kill -9, power) in
    between left paths with no file. They are kept as hard links now: each path holds its earlier file until the
    new one replaces it in one rename. Where there are no hard links, they are renamed aside (and still all put
    in place)."""
    _earlier_outputs(tmp_path)
    real, seen = os.replace, []

    def replace(src, dst):
        if Path(src).name.endswith(".partial.tif"):  # a new file onto its path: the earlier ones all still there
            seen.append(all((tmp_path / name).is_file() for name in ("a.tif", "b.tif")))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with contextlib.ExitStack() as outputs:
        place_together(_new_outputs(outputs, tmp_path))
    assert seen == [True, True, True]
    assert sorted(_files(tmp_path)) == ["a.tif", "b.tif", "b.tif.aux.xml", "c.tif"]

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with contextlib.ExitStack() as outputs:
        place_together(_new_outputs(outputs, tmp_path / ".." / tmp_path.name))
    assert sorted(_files(tmp_path)) == ["a.tif", "b.tif", "b.tif.aux.xml", "c.tif"]


def test_place_together_names_an_earlier_file_it_cannot_put_back_and_one_it_cannot_delete(tmp_path, monkeypatch):
    """Second audit: a failure while putting an earlier file back, or deleting it after success, was silent (a path
    left empty with its file under a hidden name; hidden files left over)."""
    before = _earlier_outputs(tmp_path)
    real = os.replace

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        if src.name.endswith(".partial.tif") and dst.name == "c.tif":
            raise PermissionError(errno.EACCES, "Permission denied")  # c cannot be placed: a and b are put back
        if src.name.startswith(".a.tif.") and dst.name == "a.tif":
            raise PermissionError(errno.EACCES, "Permission denied")  # ... and a's earlier file stays hidden
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError) as err, contextlib.ExitStack() as outputs:
        place_together(_new_outputs(outputs, tmp_path))
    monkeypatch.undo()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".a.tif.")]
    assert len(kept) == 1 and kept[0].read_bytes() == before["a.tif"]
    assert str(err.value) == (f"could not write {tmp_path / 'c.tif'}: Permission denied; {_OPEN_HINT}; the earlier "
                              f"{tmp_path / 'a.tif'} is kept as {kept[0].name}: rename it back")
    assert _files(tmp_path)["b.tif"] == before["b.tif"] and not (tmp_path / "c.tif").exists()  # a.tif: the new one

    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.endswith(".old"):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    left: list[Path] = []
    with contextlib.ExitStack() as outputs:
        placed = place_together(_new_outputs(outputs, tmp_path), left)
    monkeypatch.undo()
    assert placed == [tmp_path / name for name in _NAMES]
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".old"))
    assert len(left) == 3 and sorted(p.name for p in left) == hidden  # this run's a and b copies, and the one the
    # failed run left (obsolete once the new a.tif is in place), all named


def test_files_that_belong_together_are_written_together(tmp_path, monkeypatch):
    """Second audit: a report's .json and .md (evaluate, card) and curate's list and summaries were placed one by
    one, so a failure part-way left a new .json beside an older .md. write_texts places them as one transaction."""
    from sentinel_densify.core.atomic import write_texts

    old = {tmp_path / "report.json": '{"old": 1}', tmp_path / "report.md": "# old"}
    assert write_texts(old) == list(old)
    real = os.replace

    def replace(src, dst):
        if Path(src).name.endswith(".partial.md"):
            raise PermissionError(errno.EACCES, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match="report.md: Permission denied"):
        write_texts({tmp_path / "report.json": '{"new": 1}', tmp_path / "report.md": "# new"})
    monkeypatch.undo()
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"report.json": '{"old": 1}', "report.md": "# old"}
    write_texts({tmp_path / "report.json": '{"new": 1}', tmp_path / "report.md": "# new"})
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"report.json": '{"new": 1}', "report.md": "# new"}


def _open_on_windows(monkeypatch, *paths: Path) -> None:
    """Windows semantics for files held open as QGIS layers (GDAL opens them without FILE_SHARE_DELETE): renaming onto
    or away from them fails ("Access is denied"), and so does deleting any of their names, hard links included."""
    held = {os.stat(path).st_ino for path in paths}
    real_replace, real_unlink = os.replace, os.unlink

    def ino(path) -> int | None:
        try:
            return os.lstat(path).st_ino
        except OSError:
            return None

    def replace(src, dst):
        if ino(src) in held or ino(dst) in held:
            raise PermissionError(errno.EACCES, "Access is denied", str(src), None, str(dst))
        real_replace(src, dst)

    def unlink(path, *, dir_fd=None):
        if ino(path) in held:
            raise PermissionError(errno.EACCES, "The process cannot access the file because it is being used by "
                                  "another process", str(path))
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)


@pytest.mark.parametrize("stuck", [False, True])
def test_place_together_onto_an_output_open_in_qgis_names_the_leftover_copy(tmp_path, monkeypatch, stuck):
    """Portability audit: on Windows, b.tif loaded in QGIS can be neither replaced nor have its hard link deleted.
    The rollback leaves every path with its earlier bytes; the error said "b.tif is kept as .b.tif.ID.old: rename
    it back" (wrong: b.tif holds it) and left that link unnamed. It names the link as a leftover to delete, says why
    the rename failed, and still asks to rename back a copy whose path does not hold it (`stuck`: a's)."""
    before = _earlier_outputs(tmp_path)
    b = tmp_path / "b.tif"
    _open_on_windows(monkeypatch, b)
    if stuck:
        windows_replace = os.replace

        def replace(src, dst):
            if Path(src).name.startswith(".a.tif.") and Path(dst).name == "a.tif":
                raise PermissionError(errno.EACCES, "Access is denied")  # a's earlier file cannot be put back
            windows_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError) as err, contextlib.ExitStack() as outputs:
        place_together(_new_outputs(outputs, tmp_path))
    monkeypatch.undo()
    spare = [p for p in tmp_path.iterdir() if p.name.startswith(".b.tif.") and p.name.endswith(".old")]
    assert len(spare) == 1 and os.path.samefile(spare[0], b)  # the hard link QGIS's open file kept alive
    leftover = f"delete the leftover copy {spare[0]} once no program has it open"
    files = {name: data for name, data in _files(tmp_path).items() if name != spare[0].name}
    if stuck:
        kept = [p for p in tmp_path.iterdir() if p.name.startswith(".a.tif.")]
        assert len(kept) == 1 and kept[0].read_bytes() == before["a.tif"]
        assert str(err.value) == (f"could not write {b}: Access is denied; {_OPEN_HINT}; the earlier "
                                  f"{tmp_path / 'a.tif'} is kept as {kept[0].name}: rename it back; {leftover}")
        assert {name: data for name, data in files.items() if name != kept[0].name} == {
            **before, "a.tif": files["a.tif"]}  # a.tif: the new one
    else:
        assert str(err.value) == (f"could not write {b}: Access is denied; {_OPEN_HINT}; "
                                  f"the outputs were left as they were; {leftover}")
        assert "rename it back" not in str(err.value)
        assert files == before  # every path: its earlier bytes; c.tif still absent; nothing else left


@pytest.mark.parametrize("error, says", [(PermissionError(errno.EACCES, "Access is denied"), f"; {_OPEN_HINT}"),
                                         (OSError(errno.EIO, "Input/output error"), "")], ids=["denied", "other"])
def test_a_single_output_that_cannot_be_replaced_says_it_may_be_open(tmp_path, monkeypatch, error, says):
    """Portability audit: write_array and write_text onto a file open in QGIS on Windows failed with "Access is
    denied" alone. A PermissionError adds why it may be (the same words as place_together); other errors do not."""
    from sentinel_densify.core.atomic import write_text

    raster, report = tmp_path / "out.tif", tmp_path / "report.json"
    write_array(raster, _SMALL, np.zeros((64, 64), "float32"))
    write_text(report, "{}")
    before, real = _files(tmp_path), os.replace

    def replace(src, dst):
        if Path(dst) in (raster, report):
            raise error
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError) as err:
        write_array(raster, _SMALL, np.ones((64, 64), "float32"))
    assert str(err.value) == f"could not write {raster}: {error.strerror}{says}"
    with pytest.raises(OutputError) as err:
        write_text(report, "{}")
    assert str(err.value) == f"could not write {report}: {error.strerror}{says}"
    monkeypatch.undo()
    assert _files(tmp_path) == before


def test_a_successful_placing_deletes_the_copies_earlier_failed_runs_left(tmp_path):
    """Second audit, Windows: each retry onto an output QGIS held open left one more hidden `.NAME.ID.old` copy (it
    could not be deleted while open). Once new outputs are in place, the earlier runs' copies of them are obsolete
    and deleted too; other hidden files are not touched."""
    _earlier_outputs(tmp_path)
    stale = [tmp_path / ".a.tif.0123abcd.old", tmp_path / ".b.tif.89abcdef.old"]
    others = [tmp_path / ".a.tif.notours.old", tmp_path / ".c.tif.partial.keep"]
    for path in stale + others:
        path.write_bytes(b"an earlier output")
    with contextlib.ExitStack() as outputs:
        place_together(_new_outputs(outputs, tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(p.name for p in others)
