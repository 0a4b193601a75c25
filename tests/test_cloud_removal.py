"""remove-clouds on the real SEN12MS-CR sample with a (tiny) Pix2Pix trained on real 31UDS pairs:
CLI, mask, bad input, and the Processing algorithm inside a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from sentinel_densify.core import cloud_removal  # noqa: E402
from sentinel_densify.core.cli import main as cli_main  # noqa: E402
from sentinel_densify.core.errors import InputError  # noqa: E402

SAMPLE = "ROIs2017_winter_112_p797.tif"


@pytest.fixture(scope="module")
def model(uds_dir, tmp_path_factory) -> Path:
    """A tiny Pix2Pix trained one epoch on real triplets, exported to ONNX."""
    from sentinel_densify.core.gan.export import export_onnx
    from sentinel_densify.core.gan.train import TrainConfig, train
    from sentinel_densify.core.pairs import load_series, make_pairs

    root = tmp_path_factory.mktemp("p2p")
    series = load_series([str(uds_dir / "S2")], [str(uds_dir / "S1")])
    make_pairs(series, root / "pairs", patch=32, max_days=3, synthetic_per_clear=0)
    train(TrainConfig(kind="pix2pix", data=[str(root / "pairs")], out=str(root / "run"), epochs=1, ngf=4, ndf=4,
                      batch=8, val_fraction=0, device="cpu", threads=1))
    return export_onnx(root / "run" / "best.pt", root / "pix2pix.onnx")


def _files(sen12_dir: Path) -> tuple[str, str]:
    return str(sen12_dir / "s1" / SAMPLE), str(sen12_dir / "s2_cloudy" / SAMPLE)


def test_cli_on_real_sample(model, sen12_dir, tmp_path):
    s1, s2 = _files(sen12_dir)
    out = tmp_path / "out" / "clear.tif"
    assert cli_main(["remove-clouds", "--s1", s1, "--s2", s2, "--out", str(out), "--model", str(model),
                     "--device", "cpu"]) == 0
    with rasterio.open(out) as ds, rasterio.open(s2) as src:
        data = ds.read()
        assert ds.descriptions == ("B04", "B03", "B02")
        assert (ds.width, ds.height) == (256, 256) and ds.transform == src.transform and ds.crs == src.crs
        assert ds.tags()["MODEL"] == model.name
    assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
    assert data.std() > 0  # not a constant image
    assert [p.name for p in out.parent.iterdir()] == ["clear.tif"]  # no temporary left behind


def test_mask_keeps_clear_pixels(model, sen12_dir, tmp_path):
    s1, s2 = _files(sen12_dir)
    with rasterio.open(s2) as ds:
        profile = dict(ds.profile, count=1, dtype="uint8", nodata=None)
        cloudy = ds.read([4, 3, 2]).astype("float32") * 1e-4
    mask = np.zeros((256, 256), np.uint8)
    mask[:, 128:] = 1  # binary mask: 1 cloud, 0 clear
    with rasterio.open(tmp_path / "mask.tif", "w", **profile) as ds:
        ds.write(mask, 1)
    r = cloud_removal.remove_clouds(s1, s2, tmp_path / "o.tif", model=model, mask=str(tmp_path / "mask.tif"),
                                    device="cpu")
    assert r.kept_clear == pytest.approx(0.5)
    with rasterio.open(r.output) as ds:
        out = ds.read()
    np.testing.assert_allclose(out[:, :, :128], cloudy[:, :, :128], atol=1e-6)
    assert not np.allclose(out[:, :, 128:], cloudy[:, :, 128:], atol=1e-3)


def test_bad_input_names_the_file(model, sen12_dir, tmp_path, monkeypatch):
    s1, s2 = _files(sen12_dir)
    with pytest.raises(InputError, match="missing.tif: does not exist"):
        cloud_removal.remove_clouds(s1, str(tmp_path / "missing.tif"), tmp_path / "o.tif", model=model)
    with pytest.raises(InputError, match="13 bands; Sentinel-1 needs VV and VH"):
        cloud_removal.remove_clouds(s2, s2, tmp_path / "o.tif", model=model)
    with rasterio.open(s1) as ds:  # the same S1 moved 100 km east: no overlap
        prof, data = ds.profile, ds.read()
        prof["transform"] = ds.transform * ds.transform.translation(10000, 0)
    with rasterio.open(tmp_path / "far_s1.tif", "w", **prof) as ds:
        ds.write(data)
    with pytest.raises(InputError, match="far_s1.tif: does not overlap"):
        cloud_removal.remove_clouds(str(tmp_path / "far_s1.tif"), s2, tmp_path / "o.tif", model=model)
    assert not (tmp_path / "o.tif").exists()
    # no bundled model (the bundled file location pointed elsewhere): --model is required
    monkeypatch.setattr(cloud_removal, "BUNDLED", tmp_path / "none.onnx")
    assert cli_main(["remove-clouds", "--s1", s1, "--s2", s2, "--out", str(tmp_path / "o.tif")]) == 1
    with pytest.raises(InputError, match="no trained Pix2Pix model is bundled.*--model on the command line, "
                                           "MODEL in Processing"):
        cloud_removal.remove_clouds(s1, s2, tmp_path / "o.tif")


def test_a_checkpoint_as_model_says_export_it_first_as_run_does(sen12_dir, tmp_path, capsys):
    """A .pt given as the model gets the words `run` and `evaluate` give it, not ONNX's "Wire format was corrupt"."""
    from sentinel_densify.core.methods import create

    s1, s2 = _files(sen12_dir)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"PK\x03\x04 not an ONNX model")
    with pytest.raises(InputError) as run_says:
        create(str(checkpoint))
    assert "export it first with `densify export --checkpoint" in str(run_says.value)
    assert cli_main(["remove-clouds", "--s1", s1, "--s2", s2, "--out", str(tmp_path / "o.tif"),
                     "--model", str(checkpoint)]) == 1
    assert capsys.readouterr().err == f"densify remove-clouds: {run_says.value}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


@pytest.mark.parametrize("kind", ["folder", "folder.onnx", "missing.onnx"])
def test_a_model_that_is_no_file_is_said_alike_by_run_and_remove_clouds(sen12_dir, kind, tmp_path, capsys):
    """Second audit: `densify run` called a folder an "unknown method or model", a folder named x.onnx an
    "[Errno 21] Is a directory", and a missing file in words of its own; run (methods.create) and remove-clouds now
    say the same (methods.model_file_problem)."""
    from sentinel_densify.core.methods import create

    path = tmp_path / kind
    if "folder" in kind:
        path.mkdir()
    with pytest.raises(InputError) as run_says:
        create(str(path))
    said = "is a folder, not a model file (.onnx)" if "folder" in kind else "model file does not exist"
    assert str(run_says.value).endswith(f"{kind}: {said}"), str(run_says.value)
    s1, s2 = _files(sen12_dir)
    assert cli_main(["remove-clouds", "--s1", s1, "--s2", s2, "--out", str(tmp_path / "o.tif"),
                     "--model", str(path)]) == 1
    assert capsys.readouterr().err == f"densify remove-clouds: {run_says.value}\n"


def test_folders_a_radar_mask_and_a_broken_contract_are_named(model, sen12_dir, tmp_path):
    """A folder given for an image or the model is said to be a folder (it exists); an S1 image given as the cloud
    mask is refused (its negative dB would read as clear probabilities everywhere: the cloudy input unchanged); a
    contract whose bands or tile are malformed is named, not a traceback."""
    from sentinel_densify.core.model_contract import read_contract, write_contract

    s1, s2 = _files(sen12_dir)
    folder = str(sen12_dir / "s2_cloudy")
    with pytest.raises(InputError, match="s2_cloudy: is a folder, not one image file"):
        cloud_removal.remove_clouds(s1, folder, tmp_path / "o.tif", model=model)
    with pytest.raises(InputError, match="p2p.*: is a folder, not a model file"):
        cloud_removal.remove_clouds(s1, s2, tmp_path / "o.tif", model=model.parent)
    with pytest.raises(InputError, match=f"{SAMPLE}: looks like a Sentinel-1 image, not a cloud mask"):
        cloud_removal.remove_clouds(s1, s2, tmp_path / "o.tif", model=model, mask=s1)
    contract = read_contract(model)
    for key, value in (("bands", 7), ("tile", {"size": "x"})):
        edited = tmp_path / f"{key}.onnx"
        edited.write_bytes(model.read_bytes())
        write_contract(edited, {**contract, key: value})
        with pytest.raises(InputError, match=f"{key}.onnx: its model contract's bands or tile are missing or "
                                             "malformed"):
            cloud_removal.remove_clouds(s1, s2, tmp_path / "o.tif", model=edited)
    assert not (tmp_path / "o.tif").exists()


def test_outputs_never_replace_an_input_and_are_checked_first(model, sen12_dir, tmp_path, corrupt_copy):
    """Checked before the model runs: --out on an input (or a link to it), a non-GeoTIFF name;
    an S2 whose pixels do not read is named, not a traceback."""
    import shutil

    from sentinel_densify.core.atomic import OutputError

    s1, s2 = _files(sen12_dir)
    mine = Path(shutil.copy(s2, tmp_path / "s2.tif"))
    before = mine.read_bytes()
    (tmp_path / "link.tif").symlink_to(mine)
    for out in (mine, tmp_path / "link.tif"):
        with pytest.raises(OutputError, match="is the input S2"):
            cloud_removal.remove_clouds(s1, str(mine), out, model=model)
    assert mine.read_bytes() == before
    assert cli_main(["remove-clouds", "--s1", s1, "--s2", str(mine), "--out", str(mine), "--model", str(model)]) == 1
    assert mine.read_bytes() == before
    with pytest.raises(OutputError, match="o.png: must be a .tif or .tiff file"):
        cloud_removal.remove_clouds(s1, s2, tmp_path / "o.png", model=model)
    (tmp_path / "bad").mkdir()
    bad = corrupt_copy(Path(s2), tmp_path / "bad" / Path(s2).name)
    with pytest.raises(InputError, match=f"{Path(s2).name}: cannot read its pixels"):
        cloud_removal.remove_clouds(s1, str(bad), tmp_path / "o.tif", model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "link.tif", "s2.tif"]


def test_processing_algorithm_in_a_model(densify_provider, model, sen12_dir, tmp_path):
    import processing
    from qgis.core import (
        QgsApplication,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
    )

    registry = QgsApplication.processingRegistry()
    assert registry.algorithmById("densify:remove_clouds") is not None
    assert registry.algorithmById("densify:curate") is not None
    s1, s2 = _files(sen12_dir)
    m = QgsProcessingModelAlgorithm("cloud removal", "test")
    child = QgsProcessingModelChildAlgorithm("densify:remove_clouds")
    child.setChildId("rc")
    for key, value in (("S1", s1), ("S2", s2), ("MODEL", str(model)), ("DEVICE", 1)):
        child.addParameterSources(key, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    output = QgsProcessingModelOutput("clear", "clear")
    output.setChildId("rc")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"clear": output})
    m.addChildAlgorithm(child)
    out = tmp_path / "model_out.tif"
    result = processing.run(m, {"rc:clear": str(out)})
    assert Path(result["rc:clear"]) == out and out.exists()
    with rasterio.open(out) as ds:
        assert ds.count == 3 and np.isfinite(ds.read()).all()


def test_bundled_model_runs_on_real_sample(sen12_dir, tmp_path):
    if not cloud_removal.BUNDLED.is_file():
        pytest.skip("no models/pix2pix.onnx bundled in this build")
    from sentinel_densify.core.model_contract import read_contract

    contract = read_contract(cloud_removal.BUNDLED)
    held = contract["metrics"]["heldout_rgb"]  # the card's qualification, recorded in the contract
    assert held["model"]["psnr"] > max(held["cloudy"]["psnr"], held["nearest"]["psnr"])
    assert held["model"]["ssim"] > max(held["cloudy"]["ssim"], held["nearest"]["ssim"])
    s1, s2 = _files(sen12_dir)
    out = tmp_path / "bundled.tif"
    assert cli_main(["remove-clouds", "--s1", s1, "--s2", s2, "--out", str(out), "--device", "cpu"]) == 0
    with rasterio.open(out) as ds:
        data = ds.read()
    assert data.shape == (3, 256, 256) and np.isfinite(data).all() and 0 <= data.min() and data.max() <= 1
