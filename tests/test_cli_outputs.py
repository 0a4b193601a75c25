"""Output safety of the CLI on real rasters: failed writes, inputs as outputs, bad output paths,
SIGTERM, warnings on stderr, argument checks (tile size, gaps, leads, device)."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sentinel_densify.core import atomic, cli
from sentinel_densify.core.errors import InputError

DATE, STAMP = "2018-03-01", "20180301"


def _file_size_limit(nbytes: int):
    """preexec_fn: files may not grow past `nbytes` and SIGXFSZ is ignored, so writes fail with EFBIG
    as on a full disk (what `trap "" XFSZ; ulimit -f N` does in a shell)."""
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return preexec


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".partial" in p.name] if folder.exists() else []


def _subset_args(uds_subset) -> list[str]:
    return (["--s2", *map(str, uds_subset["s2"]), "--mask", *map(str, uds_subset["masks"]),
             "--s1", *map(str, uds_subset["s1"])])


@pytest.fixture()
def s2_copy(uds_subset, tmp_path) -> Path:
    """One real S2 L2A image copied where a test may (wrongly) be asked to write."""
    src = uds_subset["s2"][10]
    return Path(shutil.copy(src, tmp_path / src.name))


@pytest.fixture()
def no_computation(monkeypatch):
    """Any computation fails the test: the output checks must come first."""
    from sentinel_densify.core import engine, lai, reader

    def computed(*_a, **_k):
        raise AssertionError("computation started before the output path was checked")

    monkeypatch.setattr(engine, "run", computed)
    monkeypatch.setattr(reader, "load_stack", computed)
    monkeypatch.setattr(lai, "lai_file", computed)


def _one_line_error(capsys, command: str, text: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"densify {command}: --out") and text in err, err
    return err


def test_failed_write_exits_non_zero_and_keeps_the_older_output(densify, uds_subset, tmp_path):
    """A file size limit (as a full disk) cuts the 10-band synthesized file short: the run must fail
    naming it, leave the previous output intact and no partial file; a folder it made is removed."""
    out = tmp_path / "out"
    args = [*_subset_args(uds_subset), "--date", DATE, "--model", "linear"]
    first = densify("run", *args, "--out", str(out))
    assert first.returncode == 0, first.stderr
    synthesized = out / f"synthesized_{STAMP}.tif"
    before = {p.name: _sha(p) for p in out.iterdir()}
    assert synthesized.stat().st_size > 70_000  # larger than the limit below

    proc = densify("run", *args, "--out", str(out), preexec=_file_size_limit(60 * 1024))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("densify run: could not write") and str(synthesized) in message
    assert {p.name: _sha(p) for p in out.iterdir()} == before  # older outputs untouched, nothing added
    assert not _partials(out)

    fresh = tmp_path / "new" / "out"
    proc = densify("run", *args, "--out", str(fresh), preexec=_file_size_limit(60 * 1024))
    assert proc.returncode == 1 and f"synthesized_{STAMP}.tif" in proc.stderr
    assert not (tmp_path / "new").exists()  # the folders the failed run created are gone


def _signal_while_writing(command: list[str], uds_dir: Path, out: Path, signum: int) -> tuple[int, str, str]:
    """Run `command run ...` (full series, small tiles) and send it `signum` once its outputs are being written:
    (exit status, stdout, stderr)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO")
    proc = subprocess.Popen(command + ["run", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"),
                                       "--date", "2018-07-20", "--out", str(out), "--model", "linear",
                                       "--tile-size", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not _partials(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _partials(out), "the run never started writing"
        time.sleep(0.3)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout, stderr


def test_sigterm_removes_partial_outputs(densify, uds_dir, tmp_path):
    """SIGTERM while the outputs are being written (full series, small tiles): exit 143, a message,
    no hidden partial file and no output folder left."""
    out = tmp_path / "out"
    returncode, stdout, stderr = _signal_while_writing(densify.command, uds_dir, out, signal.SIGTERM)
    assert returncode == 143, stdout + stderr
    assert stderr.strip().splitlines()[-1] == "densify run: terminated (SIGTERM); no output was written."
    assert "Traceback" not in stderr
    assert not _partials(out) and not out.exists()


def test_sigbreak_is_handled_like_sigterm(uds_dir, tmp_path):
    """Windows's Ctrl-Break (and closing the console window) sends SIGBREAK, whose default ends the process at
    once, leaving partial files. Here SIGBREAK is SIGUSR1 (Linux has none): the run ends as on SIGTERM."""
    code = ("import signal, sys; signal.SIGBREAK = signal.SIGUSR1; from sentinel_densify.core.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "out"
    returncode, stdout, stderr = _signal_while_writing([sys.executable, "-c", code], uds_dir, out, signal.SIGUSR1)
    assert returncode == 143, stdout + stderr
    assert stderr.strip().splitlines()[-1] == "densify run: terminated (SIGTERM); no output was written."
    assert "Traceback" not in stderr
    assert not _partials(out) and not out.exists()


def test_an_interrupt_a_c_extension_turned_into_another_error_is_still_an_interrupt(monkeypatch, capsys):
    """rasterio's Cython code can swallow Ctrl-C's KeyboardInterrupt and raise a ValueError instead
    (seen 2 times in 45 SIGINTs on a real run). That race cannot be provoked on demand, so a stand-in
    command does what rasterio does: the real SIGINT goes to the real handler, and the interrupt is
    replaced by a ValueError. Any other error stays an error with its traceback."""
    import types

    from sentinel_densify.core import cli

    def swallowing(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise replacement[0] from None
        return 0

    from sentinel_densify.core.errors import InputError

    replacement: list[Exception] = []

    fake = types.SimpleNamespace(configure=lambda p: None, main=swallowing)
    monkeypatch.setattr(cli, "_module", lambda name: fake)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh `densify` process
    try:
        for swallowed_as in (ValueError("src_nodata must be in valid range for source dtype"),
                             InputError("x.tif: cannot read its pixels (Read or write failed)")):
            replacement[:] = [swallowed_as]
            assert cli.main(["lai"]) == 130
            assert capsys.readouterr().err.strip() == "densify lai: interrupted; no output was written."
    finally:
        restored = signal.signal(signal.SIGINT, previous)  # (an earlier test's QGIS may have set another)
    assert restored is signal.default_int_handler  # main() put the handler back after the command

    def broken(args):
        raise ValueError("a real bug")

    monkeypatch.setattr(cli, "_module", lambda name: types.SimpleNamespace(configure=lambda p: None, main=broken))
    with pytest.raises(ValueError, match="a real bug"):
        cli.main(["lai"])


def test_lai_refuses_to_overwrite_its_input(s2_copy, tmp_path, capsys, no_computation):
    before = _sha(s2_copy)
    link = tmp_path / "link.tif"
    link.symlink_to(s2_copy)
    for out in (s2_copy, tmp_path / "." / s2_copy.name, link):
        assert cli.main(["lai", "--s2", str(s2_copy), "--out", str(out)]) == 1
        _one_line_error(capsys, "lai", "is the input --s2")
    assert _sha(s2_copy) == before


def test_run_refuses_to_replace_an_input_in_its_folder(s2_copy, tmp_path, capsys, no_computation):
    """--out is the S2 folder, which holds an acquisition named like an output."""
    clash = s2_copy.rename(s2_copy.with_name(f"synthesized_{STAMP}.tif"))
    before = _sha(clash)
    assert cli.main(["run", "--s2", str(tmp_path), "--date", DATE, "--out", str(tmp_path)]) == 1
    _one_line_error(capsys, "run", f"would replace the input {clash}")
    assert _sha(clash) == before


@pytest.mark.parametrize("case", ["file", "under-file", "empty", "output-is-folder"])
def test_run_bad_out(case, s2_copy, tmp_path, capsys, no_computation):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"file": str(afile), "under-file": str(afile / "sub"), "empty": "",
           "output-is-folder": str(tmp_path / "res")}[case]
    (tmp_path / "res" / f"synthesized_{STAMP}.tif").mkdir(parents=True)
    assert cli.main(["run", "--s2", str(s2_copy), "--date", DATE, "--out", out]) == 1
    _one_line_error(capsys, "run", {"file": "is an existing file", "under-file": f"is under {afile}",
                                    "empty": "empty path", "output-is-folder": "is an existing folder"}[case])
    assert afile.read_text() == "x"


@pytest.mark.parametrize("case", ["folder", "under-file", "empty", "png"])
def test_lai_bad_out(case, s2_copy, tmp_path, capsys, no_computation):
    """The LAI is a GeoTIFF: a .png name is refused like the other outputs' (it was written as GeoTIFF)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"folder": str(tmp_path), "under-file": str(afile / "lai.tif"), "empty": "",
           "png": str(tmp_path / "lai.png")}[case]
    assert cli.main(["lai", "--s2", str(s2_copy), "--out", out]) == 1
    _one_line_error(capsys, "lai", {"folder": "is an existing folder", "under-file": f"is under {afile}",
                                    "empty": "empty path", "png": "must be a .tif or .tiff file"}[case])


@pytest.mark.parametrize("case", ["file", "empty"])
def test_evaluate_bad_out_before_evaluating(case, uds_subset, tmp_path, capsys, no_computation):
    afile = tmp_path / "report"
    afile.write_text("x")
    out = str(afile) if case == "file" else ""
    assert cli.main(["evaluate", *_subset_args(uds_subset), "--out", out]) == 1
    _one_line_error(capsys, "evaluate", "is an existing file" if case == "file" else "empty path")


def test_not_writable_folder(tmp_path, monkeypatch):
    """The one thing mocked: os.access says the folder is not writable (the tests run as root,
    who may write anywhere); the check itself is real."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: Path(p) != ro and real(p, mode))
    assert atomic.output_dir_problem(ro) == "is not writable"
    assert atomic.output_dir_problem(ro / "new" / "out") == f"{ro} is not writable"
    assert atomic.output_file_problem(ro / "lai.tif") == f"{ro} is not writable"
    assert atomic.output_dir_problem(tmp_path) is None


def test_warnings_go_to_stderr(densify, uds_subset, tmp_path):
    """S2 files without their masks: the 'no cloud masks given' warning is on stderr, results on stdout."""
    proc = densify("run", "--s2", *map(str, uds_subset["s2"]), "--date", DATE, "--out", str(tmp_path),
                    "--model", "linear", "--no-lai")
    assert proc.returncode == 0, proc.stderr
    assert "no cloud masks given" in proc.stderr and "no cloud masks" not in proc.stdout
    assert "warning:" not in proc.stdout
    assert f"synthesized: {tmp_path / f'synthesized_{STAMP}.tif'}" in proc.stdout


@pytest.mark.parametrize("value", ["0", "-32", "15", "abc", "2049", "100000"])
def test_tile_size_out_of_range_is_refused(value, s2_copy, tmp_path, capsys, no_computation):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--s2", str(s2_copy), "--date", DATE, "--out", str(tmp_path), "--tile-size", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--tile-size" in err
    if value.isdigit() and int(value) > 2048:
        assert "above the maximum of 2048 pixels" in err


@pytest.mark.parametrize("args", [["--gaps", "-10"], ["--leads", "0"], ["--leads", "0.5"], ["--gaps", "nan"],
                                  ["--device", "gpu"]])
def test_evaluate_refuses_leaking_settings_and_unknown_devices(args, uds_subset, tmp_path, capsys, no_computation):
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", *_subset_args(uds_subset), "--out", str(tmp_path), *args])
    assert exc.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_evaluate_api_refuses_leaking_settings(uds_subset):
    from sentinel_densify.core.evaluate import evaluate
    from sentinel_densify.core.reader import load_stack

    stack = load_stack(s2=[str(p) for p in uds_subset["s2"][:4]])
    with pytest.raises(InputError, match="gap -10"):
        evaluate(stack, ["linear"], gaps=[-10], leads=[5])
    with pytest.raises(InputError, match="lead 0"):
        evaluate(stack, ["linear"], gaps=[0], leads=[0])


def test_a_later_output_failing_replaces_none_of_the_earlier_ones(densify, uds_subset, tmp_path):
    """The three outputs are checked before any is renamed: when the uncertainty file (11 bands) is
    cut short but the synthesized one (10 bands) fits, the older synthesized file stays too."""
    out = tmp_path / "out"
    args = [*_subset_args(uds_subset), "--date", DATE, "--model", "linear"]
    assert densify("run", *args, "--out", str(out)).returncode == 0
    before = {p.name: _sha(p) for p in out.iterdir()}
    synth, unc = (out / f"{k}_{STAMP}.tif" for k in ("synthesized", "uncertainty"))
    assert unc.stat().st_size > synth.stat().st_size + 4096
    limit = (synth.stat().st_size + unc.stat().st_size) // 2
    proc = densify("run", *args, "--out", str(out), preexec=_file_size_limit(limit))
    assert proc.returncode == 1 and str(unc) in proc.stderr, proc.stderr
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert not _partials(out)


def test_a_name_too_long_for_the_file_system_is_one_line(uds_dir, tmp_path, capsys):
    """A path component over 255 bytes made Path.exists raise inside the output checks (a traceback)."""
    from sentinel_densify.core.atomic import output_dir_problem, output_file_problem

    long = tmp_path / ("a" * 300)
    for problem in (output_dir_problem(long), output_dir_problem(long / "sub"), output_file_problem(long),
                    output_file_problem(long / "x.png", suffix=".png")):
        assert problem is not None and problem.startswith("cannot be used (File name too long"), problem
    assert cli.main(["evaluate", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--out", str(long)]) == 1
    _one_line_error(capsys, "evaluate", "File name too long")
    assert cli.main(["figure", "--data", str(uds_dir), "--model", "linear", "--out", str(long / "f.png")]) == 1
    _one_line_error(capsys, "figure", "File name too long")


def test_a_command_in_another_thread_leaves_the_main_thread_s_handlers(monkeypatch):
    """Second audit: cli.main called in another thread (not the main one, so it installs no signal handler) cleared
    the list of handlers the main thread's call had installed, which then stayed installed after it returned."""
    import signal
    import threading

    from sentinel_densify.core import cli

    monkeypatch.setattr(cli, "_installed", [signal.SIGTERM])  # as the main thread's running call left it
    done = []
    worker = threading.Thread(target=lambda: done.append(cli._handle_sigterm()))
    worker.start()
    worker.join()
    assert done == [False] and cli._installed == [signal.SIGTERM]
