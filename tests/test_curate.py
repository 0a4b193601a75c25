"""Curation of SEN12MS-CR triplets: crafted good/bad triplets derived from the real sample."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sentinel_densify.core.cli import main as cli_main
from sentinel_densify.core.curate import FOLDERS, CurateConfig, check_triplet, curate, season_of
from sentinel_densify.core.errors import InputError

SAMPLE = "ROIs2017_winter_112_p797.tif"


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile.copy()


def _write(path: Path, data: np.ndarray, profile: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(profile, count=data.shape[0], height=data.shape[1], width=data.shape[2])
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(data.astype(prof["dtype"]))


@pytest.fixture()
def crafted(sen12_dir, tmp_path) -> Path:
    """A dataset of one good triplet and one of each defect, all derived from the real sample."""
    real = {f: _read(sen12_dir / f / SAMPLE) for f in FOLDERS}
    root = tmp_path / "data"

    def triplet(name: str, **override: np.ndarray) -> None:
        for f in FOLDERS:
            data, prof = real[f]
            _write(root / f / name, override.get(f, data), prof)

    s1 = real["s1"][0]
    triplet("ROIs2017_winter_1_p1.tif")  # the real sample unchanged: kept
    triplet("ROIs1868_summer_1_p2.tif")  # same texture, but summer needs RGB std >= 10: rejected
    triplet("ROIs2017_winter_1_p3.tif", s1=np.full_like(s1, -12.0))  # constant SAR
    rng = np.random.default_rng(0)  # backscatter at the noise floor (< -24.975 dB) with variance
    triplet("ROIs2017_winter_1_p4.tif", s1=(-25.0 + 0.02 * rng.random(s1.shape)).astype(np.float32))
    flat = np.full_like(real["s2_cloudfree"][0], 1500)
    triplet("ROIs2017_winter_1_p5.tif", s2_cloudfree=flat)  # flat optical target
    triplet("ROIs2017_winter_1_p6.tif", s1=s1[:, :128, :128])  # wrong shape
    triplet("ROIs2017_winter_1_p7.tif", s2_cloudfree=np.zeros_like(flat))  # all nodata (DN 0)
    triplet("ROIs2017_winter_1_p8.tif")
    p8 = root / "s2_cloudy" / "ROIs2017_winter_1_p8.tif"
    p8.write_bytes(p8.read_bytes()[: p8.stat().st_size // 3])  # truncated file
    _write(root / "s1" / "ROIs2017_winter_1_p9.tif", *real["s1"])  # only in s1
    triplet("ROIs2017_winter_1_p10.tif")
    data, prof = real["s1"]  # S1 moved 10 km east: the same size, another place
    _write(root / "s1" / "ROIs2017_winter_1_p10.tif", data,
           dict(prof, transform=prof["transform"] * prof["transform"].translation(1000, 0)))
    triplet("ROIs2017_winter_1_p11.tif")
    data, prof = real["s2_cloudy"]  # the cloudy image labelled with another CRS
    _write(root / "s2_cloudy" / "ROIs2017_winter_1_p11.tif", data, dict(prof, crs="EPSG:3857"))
    dead_vh = s1.copy()  # real VV, VH at the noise floor: pooled with VV it would pass
    dead_vh[1] = (-25.0 + 0.02 * rng.random(s1.shape[1:])).astype(np.float32)
    triplet("ROIs2017_winter_1_p12.tif", s1=dead_vh)
    flat_vv = s1.copy()
    flat_vv[0] = -12.0  # constant VV, real VH
    triplet("ROIs2017_winter_1_p13.tif", s1=flat_vv)
    no_vh = s1.copy()
    no_vh[1] = np.nan  # VH missing altogether
    triplet("ROIs2017_winter_1_p14.tif", s1=no_vh)
    return root


EXPECTED = {
    "ROIs2017_winter_1_p1.tif": "",
    "ROIs1868_summer_1_p2.tif": "optical_flat",
    "ROIs2017_winter_1_p3.tif": "sar_flat",
    "ROIs2017_winter_1_p4.tif": "sar_dead",
    "ROIs2017_winter_1_p5.tif": "optical_flat",
    "ROIs2017_winter_1_p6.tif": "shape",
    "ROIs2017_winter_1_p7.tif": "nodata",
    "ROIs2017_winter_1_p8.tif": "unreadable",
    "ROIs2017_winter_1_p9.tif": "missing",
    "ROIs2017_winter_1_p10.tif": "grid",
    "ROIs2017_winter_1_p11.tif": "grid",
    "ROIs2017_winter_1_p12.tif": "sar_dead",
    "ROIs2017_winter_1_p13.tif": "sar_flat",
    "ROIs2017_winter_1_p14.tif": "nodata",
}


def test_real_sample_is_kept_as_winter(sen12_dir):
    v = check_triplet(sen12_dir, SAMPLE)
    assert v.kept, v
    assert v.season == "winter" and v.hemisphere == "N"
    assert 3.0 <= v.rgb_std  # textured enough for the winter threshold
    assert v.sar_std > 1e-4 and v.sar_max > 1e-3


def test_each_defect_rejected_for_its_reason(crafted):
    for name, reason in EXPECTED.items():
        v = check_triplet(crafted, name)
        assert v.reason == reason, (name, v)
        assert v.kept == (reason == "")
    assert check_triplet(crafted, "ROIs2017_winter_1_p12.tif").detail.startswith("SAR VH max ")
    assert check_triplet(crafted, "ROIs2017_winter_1_p13.tif").detail.startswith("SAR VV std ")
    assert check_triplet(crafted, "ROIs2017_winter_1_p14.tif").detail == "all nodata: s1 VH"


def test_thresholds_are_configurable(crafted):
    lax = CurateConfig(summer_threshold=5.0)
    assert check_triplet(crafted, "ROIs1868_summer_1_p2.tif", lax).kept
    strict = CurateConfig(winter_threshold=50.0)
    assert check_triplet(crafted, "ROIs2017_winter_1_p1.tif", strict).reason == "optical_flat"
    assert check_triplet(crafted, "ROIs2017_winter_1_p1.tif", CurateConfig(size=128)).reason == "shape"


def test_season_from_name_date_and_hemisphere():
    assert season_of("ROIs1158_spring_3_p1.tif", {}, 45.0) == "spring"
    assert season_of("ROIs2017_winter_3_p1.tif", {}, -33.0) == "summer"  # Dec-Feb, southern
    assert season_of("x.tif", {"ACQUISITION_DATETIME": "2017-07-10T10:00:00Z"}, 50.0) == "summer"
    assert season_of("x.tif", {"ACQUISITION_DATETIME": "2017-07-10T10:00:00Z"}, -20.0) == "winter"
    assert season_of("T31UDS_20171205T105000_p1.tif", {}, 50.0) == "winter"
    assert season_of("nothing.tif", {}, None) == "unknown"


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_curate_cli_reports_links_and_leaves_sources(crafted, tmp_path):
    before = _digest(crafted)
    out = tmp_path / "curated"
    rc = cli_main(["curate", "--data", str(crafted), "--out", str(out), "--workers", "2", "--link"])
    assert rc == 0
    assert _digest(crafted) == before  # sources never touched
    with (out / "report.csv").open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert {n: r["reason"] for n, r in rows.items()} == EXPECTED
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"] == len(EXPECTED) and summary["kept"] == 1
    assert summary["rejected"]["optical_flat"] == 2 and summary["rejected"]["grid"] == 2
    assert summary["per_season"]["summer"] == {"rejected": 1, "optical_flat": 1}
    assert (out / "kept.txt").read_text().split() == ["ROIs2017_winter_1_p1.tif"]
    assert "optical_flat" in (out / "summary.md").read_text()
    for f in FOLDERS:
        links = list((out / f).iterdir())
        assert [p.name for p in links] == ["ROIs2017_winter_1_p1.tif"]
        assert links[0].is_symlink() and links[0].resolve() == (crafted / f / links[0].name).resolve()


def test_curate_refuses_a_file_as_out(crafted, tmp_path):
    from sentinel_densify.core.atomic import OutputError

    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputError, match="existing file"):
        curate(crafted, f)


def test_parallel_matches_serial(crafted, tmp_path):
    from sentinel_densify.core.curate import CurateConfig, iter_verdicts, triplet_names

    a = curate(crafted, tmp_path / "a", workers=1)
    b = curate(crafted, tmp_path / "b", workers=2)
    assert a.rejected == b.rejected and a.per_season == b.per_season
    assert (tmp_path / "a" / "report.csv").read_text() == (tmp_path / "b" / "report.csv").read_text()
    names = triplet_names(crafted)
    def rows(**kw) -> list[str]:
        return [repr(v) for v in iter_verdicts(crafted, names, CurateConfig(), chunk=2, **kw)]  # NaN-safe

    serial = rows(workers=1)
    assert len(serial) == len(EXPECTED)
    for threads in (False, True):  # small chunks: the pools really run (processes for the CLI, threads in QGIS)
        assert rows(workers=2, threads=threads) == serial


def test_a_cancelled_curate_leaves_the_earlier_links(crafted, tmp_path):
    from sentinel_densify.core.progress import Cancelled, Feedback

    out = tmp_path / "o"
    curate(crafted, out, link=True)
    before = sorted(p.name for p in (out / "s1").iterdir())
    assert before == ["ROIs2017_winter_1_p1.tif"]
    with pytest.raises(Cancelled):  # cancelled while checking (before: the old links were already gone)
        curate(crafted, out, CurateConfig(summer_threshold=5.0), link=True,
               feedback=Feedback(is_cancelled=lambda: True))
    assert sorted(p.name for p in (out / "s1").iterdir()) == before  # neither removed nor half-made
    assert (out / "kept.txt").read_text().split() == before


def test_bad_dataset_folder_names_the_problem(tmp_path, sen12_dir):
    with pytest.raises(InputError, match="s2_cloudy"):
        curate(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="must not be the dataset"):
        curate(sen12_dir, sen12_dir / "s1")


def test_processing_curate_algorithm(densify_provider, crafted, tmp_path):
    import processing
    from qgis.core import QgsApplication

    assert QgsApplication.processingRegistry().algorithmById("densify:curate") is not None
    res = processing.run("densify:curate", {"DATA": str(crafted), "OUTPUT": str(tmp_path / "o"), "WORKERS": 2,
                                            "SUMMER_THRESHOLD": 5.0})
    assert res["KEPT"] == 2 and res["REJECTED"] == len(EXPECTED) - 2  # the summer copy passes a threshold of 5
    for key, name in (("REPORT", "report.csv"), ("KEPT_LIST", "kept.txt"), ("SUMMARY", "summary.json"),
                      ("SUMMARY_MD", "summary.md")):
        assert Path(res[key]) == tmp_path / "o" / name and Path(res[key]).is_file()
    assert len(Path(res["KEPT_LIST"]).read_text().split()) == 2


def test_links_never_replace_the_files_of_another_dataset(crafted, tmp_path):
    """--link into a folder that holds a real dataset (its files, not links) is refused before any work."""
    import shutil

    from sentinel_densify.core.atomic import OutputError

    other = tmp_path / "other"
    shutil.copytree(crafted, other)
    before = _digest(other)
    with pytest.raises(OutputError, match="s1 holds files that are not links"):
        curate(crafted, other, link=True)
    assert _digest(other) == before and not (other / "report.csv").exists()
    curate(crafted, other)  # a report alone is fine there: nothing is replaced
    after = _digest(other)
    assert {k: v for k, v in after.items() if k in before} == before and (other / "report.csv").is_file()


def test_an_unreadable_image_is_a_report_row_without_gdal_lines(densify, sen12_dir, corrupt_copy, tmp_path):
    """Error audit: a damaged s2_cloudy file printed GDAL's "ERROR 1: ..." lines on stderr; the triplet's row in
    report.csv says why it was left out, and stderr has no raw GDAL line."""
    name = "ROIs2017_winter_112_p797.tif"
    data = tmp_path / "data"
    for folder in FOLDERS:
        (data / folder).mkdir(parents=True)
        if folder == "s2_cloudy":
            corrupt_copy(sen12_dir / folder / name, data / folder / name)
        else:
            shutil.copy(sen12_dir / folder / name, data / folder / name)
    proc = densify("curate", "--data", str(data), "--out", str(tmp_path / "out"))
    assert not [line for line in proc.stderr.splitlines() if line.startswith("ERROR ")], proc.stderr
    assert "Traceback" not in proc.stderr
    with (tmp_path / "out" / "report.csv").open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert (rows[name]["kept"], rows[name]["reason"]) == ("False", "unreadable"), rows


APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4050)  # what macOS writes as ._NAME


def test_hidden_files_are_not_triplets(sen12_dir, tmp_path):
    """Portability finding 5: macOS's ._NAME.tif AppleDouble files (exFAT, FAT, SMB drives) and hidden partial files
    are not triplets (each was an "unreadable" one), and hidden files in the link folders (.DS_Store) are not taken
    for another dataset's files."""
    data = tmp_path / "data"
    shutil.copytree(sen12_dir, data)
    for f in FOLDERS:
        (data / f / f"._{SAMPLE}").write_bytes(APPLEDOUBLE)
        (data / f / f".{Path(SAMPLE).stem}.1a2b3c4d.partial.tif").write_bytes(b"")
    out = tmp_path / "out"
    assert curate(data, out, link=True).total == 1
    with (out / "report.csv").open() as f:
        assert [r["name"] for r in csv.DictReader(f)] == [SAMPLE]
    (out / "s1" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # Finder, on browsing the link folder
    assert curate(data, out, link=True).kept == 1
    assert sorted(p.name for p in (out / "s1").iterdir()) == [".DS_Store", SAMPLE]


def _no_symlinks(monkeypatch) -> None:
    """os.symlink as on Windows without Developer Mode (or on FAT/exFAT)."""
    import os

    def refused(src, dst, target_is_directory=False, *, dir_fd=None):
        raise OSError(22, "A required privilege is not held by the client", str(src), 1314, str(dst))

    monkeypatch.setattr(os, "symlink", refused)


def test_links_that_cannot_be_made_are_refused_before_any_work(crafted, tmp_path, monkeypatch, capsys):
    """Portability finding 4: where no symbolic link can be made, `curate --link` says so and how, before it checks
    anything: no traceback, and no report.csv beside a missing kept.txt (a new --out folder is not even left)."""
    out = tmp_path / "new" / "curated"
    _no_symlinks(monkeypatch)
    assert cli_main(["curate", "--data", str(crafted), "--out", str(out), "--workers", "1", "--link"]) == 1
    err = capsys.readouterr().err
    assert "symbolic links cannot be made there (A required privilege is not held by the client)" in err, err
    assert "Developer Mode" in err and "Traceback" not in err, err
    assert not (tmp_path / "new").exists()
    assert cli_main(["curate", "--data", str(crafted), "--out", str(out), "--workers", "1"]) == 0  # unchanged
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt", "report.csv", "summary.json", "summary.md"]


def test_a_link_failing_midway_leaves_the_earlier_report_and_no_links(crafted, tmp_path, monkeypatch):
    """A link that fails after the probe (a full disk, a quota): OutputError naming it; the earlier report, list and
    summaries as they were, matching each other, and no half-made link folder."""
    import os

    from sentinel_densify.core.atomic import OutputError

    out = tmp_path / "o"
    curate(crafted, out)
    before = _digest(out)
    symlink = os.symlink

    def probe_only(src, dst, *args, **kwargs):
        if not Path(dst).name.endswith(".link-probe"):
            raise OSError(28, "No space left on device")
        symlink(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "symlink", probe_only)
    with pytest.raises(OutputError, match="cannot link the kept triplet ROIs2017_winter_1_p1.tif there"):
        curate(crafted, out, link=True)
    assert _digest(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)


def test_the_report_list_and_summaries_are_placed_together(crafted, tmp_path, monkeypatch):
    """Second audit: report.csv was put in place before kept.txt and the summaries, so a failure on the last left a
    new report beside an earlier list. The four are placed as one transaction: a failure leaves the earlier ones."""
    import errno
    import os

    out = tmp_path / "curated"
    assert cli_main(["curate", "--data", str(crafted), "--out", str(out), "--workers", "1"]) == 0
    before = _digest(out)
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == "summary.md" and ".partial" in Path(src).name:
            raise PermissionError(errno.EACCES, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert cli_main(["curate", "--data", str(crafted), "--out", str(out), "--workers", "1",
                     "--summer-threshold", "100"]) == 1  # another threshold: another report
    monkeypatch.undo()
    assert _digest(out) == before  # the earlier four, and no temporary file
