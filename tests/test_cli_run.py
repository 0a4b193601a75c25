"""`densify run` as a user runs it: a subprocess on the real series and on bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import rasterio


def _sha(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_run_on_the_real_series(densify, uds_dir, tmp_path):
    """S2 folder (with its SCL files) and S1 folder as given by a user; the three outputs written."""
    inputs = sorted((uds_dir / "S2").glob("*.tif")) + sorted((uds_dir / "S1").glob("*.tif"))
    before = _sha(inputs)
    out = tmp_path / "out"
    proc = densify("run", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--date", "2018-07-01",
                    "--out", str(out), "--model", "linear")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["lai_20180701.tif", "synthesized_20180701.tif", "uncertainty_20180701.tif"]
    assert "gap-filling" in proc.stdout and "118 S2 + 159 S1" in proc.stdout
    with rasterio.open(out / "synthesized_20180701.tif") as ds:
        assert ds.shape == (64, 64) and ds.count == 10 and ds.tags()["TARGET_DATE"] == "2018-07-01"
        assert np.isfinite(ds.read()).all()
    assert _sha(inputs) == before
    assert not list((uds_dir / "S2").glob("*.partial.tif"))


def test_bad_input_is_one_paragraph_naming_the_file(densify, uds_dir, tmp_path):
    good = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[40]
    broken = tmp_path / "T31UDS_20180301T105000_L2A_10m.tif"
    broken.write_bytes(good.read_bytes()[:2000])  # a truncated download
    out = tmp_path / "out"
    proc = densify("run", "--s2", str(good), str(broken), "--date", "2018-03-01", "--out", str(out),
                    "--model", "linear")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    message = proc.stderr.strip()
    assert broken.name in message and "\n\n" not in message
    assert message.startswith("densify run: Bad input")
    assert not out.exists() or not any(out.iterdir())


def test_a_warning_is_printed_before_the_work_and_once(densify, uds_dir, tmp_path):
    """A warning about the run's inputs or method is printed when it is known (before the work), and not again
    with the results at the end (stdout and stderr as one unbuffered stream, as a terminal shows them)."""
    import os
    import subprocess

    s2 = [str(p) for p in sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[40:46]]
    args = ["run", "--s2", *s2, "--date", "2018-03-01", "--out", str(tmp_path / "out"), "--model", "linear",
            "--device", "cuda", "--no-lai"]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO", PYTHONUNBUFFERED="1")
    proc = subprocess.run(densify.command + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    said = "densify run: warning: CUDA was asked for but linear ran on numpy (linear is a CPU method)"
    backcasting = "densify run: warning: target is 19 days before the first S2 image: backcasting"  # the date's
    summary = next(i for i, line in enumerate(lines) if " at 2018-03-01 with " in line)
    for warning in (said, backcasting):
        assert lines.count(warning) == 1 and lines.index(warning) < summary, lines


def test_bad_date_and_out_of_range(densify, uds_dir, tmp_path):
    s2 = str(sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[40])
    proc = densify("run", "--s2", s2, "--date", "someday", "--out", str(tmp_path))
    assert proc.returncode != 0 and "someday" in proc.stderr and "Traceback" not in proc.stderr
    proc = densify("run", "--s2", s2, "--date", "2030-01-01", "--out", str(tmp_path))
    assert proc.returncode != 0 and "out of range" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_series_of_dates(densify, uds_dir, tmp_path):
    """--date A B --every N: every N days from A to B, in one run; the outputs of each date as a run for it
    alone names them."""
    out = tmp_path / "out"
    proc = densify("run", "--s2", str(uds_dir / "S2"), "--date", "2018-07-01", "2018-07-25", "--every", "8",
                   "--out", str(out), "--model", "linear", "--no-lai")
    assert proc.returncode == 0, proc.stderr
    days = ["20180701", "20180709", "20180717", "20180725"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{k}_{d}.tif" for d in days
                                                           for k in ("synthesized", "uncertainty"))
    assert proc.stdout.count("gap-filling at 2018-07") == 4 and "4 dates in " in proc.stdout
    for d in days:
        with rasterio.open(out / f"synthesized_{d}.tif") as ds:
            assert ds.tags()["TARGET_DATE"] == f"{d[:4]}-{d[4:6]}-{d[6:]}"

    for args, said in ((["2018-07-01", "--every", "5"], "--every needs two --date values"),
                       (["2018-07-01", "2018-06-01", "--every", "5"], "--every needs two --date values"),
                       (["2018-07-01", "2018-08-01", "--every", "0"], "the step is at least 1 day")):
        proc = densify("run", "--s2", str(uds_dir / "S2"), "--date", *args, "--out", str(tmp_path / "bad"),
                       "--model", "linear")
        assert proc.returncode != 0 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "bad").exists()
