"""Single-date cloud removal: S1 + cloudy S2 -> cloud-free S2 bands with a Pix2Pix ONNX model.

S1 is resampled onto the S2 grid (in linear power, by the project's reader), both are scaled as
the model contract says, the model runs over overlapping tiles blended smoothly
(core/tiling.py), and the result is written atomically (core/writer.py). With a cloud mask,
pixels the mask calls clear keep their observed values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import GEOTIFF_SUFFIXES, check_output_file
from .errors import InputError, Problem
from .methods import MODELS_DIR, model_file_problem
from .progress import Feedback

BUNDLED = MODELS_DIR / "pix2pix.onnx"


@dataclass
class CloudRemovalResult:
    output: str
    model: str
    bands: list[str]
    provider: str
    kept_clear: float  # fraction of pixels kept from the input (mask says clear)


def resolve_model(model: str | Path | None) -> Path:
    """The model file to use: the one given, else the bundled models/pix2pix.onnx."""
    if model:
        if problem := model_file_problem(model):
            raise InputError(problem)
        return Path(model)
    if BUNDLED.is_file():
        return BUNDLED
    raise InputError("no trained Pix2Pix model is bundled with this build: give a model file (.onnx; "
                     "--model on the command line, MODEL in Processing); train one with `densify train "
                     "pix2pix` and export it with `densify export`")


def _not_a_file(path: Path, what: str, missing: str = "does not exist") -> str:
    """Why `path`, which is not a file, cannot be used as `what`."""
    return f"is a folder, not {what}" if path.is_dir() else missing


def read_inputs(s1: str, s2: str, bands: list[str], mask: str | None = None):
    """(S2 image with `bands`, S1 dB (2, h, w) on its grid, clear mask or None); InputError naming files."""
    from .inventory import Inventory, clear_from_mask, describe, is_virtual, overlaps, read_s2
    from .reader import SeriesReader

    problems: list[Problem] = []
    for path in filter(None, (s1, s2, mask)):
        if not is_virtual(path) and not Path(path).is_file():
            problems.append(Problem(str(path), _not_a_file(Path(path), "one image file")))
    if problems:
        raise InputError(problems)
    img = read_s2(s2, bands=bands)
    when = dt.datetime(1970, 1, 1)  # the date does not matter for a single-date model
    s1_info = describe(s1, sensor="S1", when=when)
    mask_info = describe(mask, when=when) if mask else None  # what it looks like: a float S1 would pass as
    if mask_info is not None and mask_info.sensor in ("S1", "S2"):  # cloud probabilities, clear everywhere
        raise InputError(Problem(mask, f"looks like a Sentinel-{mask_info.sensor[1]} image, not a cloud mask (SCL, "
                                       "a binary mask or cloud probabilities)"))
    if mask_info is not None and mask_info.sensor != "MASK":
        mask_info = describe(mask, sensor="MASK", when=when)
    for info in filter(None, (s1_info, mask_info)):
        if info is s1_info and len(info.bands) > 3:
            info.problems.append(f"has {len(info.bands)} bands; Sentinel-1 needs VV and VH")
        if info.problems:
            problems.append(Problem(info.path, "; ".join(info.problems)))
        elif not overlaps(info.grid, img.grid):
            problems.append(Problem(info.path, f"does not overlap {Path(s2).name}"))
    if problems:
        raise InputError(problems)
    inv = Inventory(s2=[], s1=[s1_info], masks={}, grid=img.grid, bands=bands)
    with SeriesReader(inv) as reader:
        sar = reader.read_s1(s1_info, img.grid)
        clear = None
        if mask_info is not None:
            from rasterio.enums import Resampling

            m = reader.read_onto(mask_info, img.grid, [1], Resampling.nearest)[0]
            clear = clear_from_mask(mask_info.mask_kind, m)
    if not np.isfinite(sar).any():
        raise InputError(Problem(s1, "no valid backscatter over the S2 image"))
    if not np.isfinite(img.refl).any():
        raise InputError(Problem(s2, "all nodata"))
    return img, sar, clear


def _pad_to(a: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = h - a.shape[-2], w - a.shape[-1]
    if ph == 0 and pw == 0:
        return a
    mode = "reflect" if ph < a.shape[-2] and pw < a.shape[-1] else "edge"
    return np.pad(a, ((0, 0), (0, ph), (0, pw)), mode=mode)


def remove_clouds(s1: str, s2: str, out: str | Path, model: str | Path | None = None, mask: str | None = None,
                  device: str = "auto", batch: int = 4, feedback: Feedback | None = None) -> CloudRemovalResult:
    """Write the cloud-free bands of `s2` predicted from it and `s1` to `out` (GeoTIFF, reflectance)."""
    from .gan.data import scale_s1, scale_s2, unscale_s2
    from .model_contract import open_session, read_contract
    from .tiling import predict_tiled
    from .writer import write_array

    feedback = feedback or Feedback()
    check_output_file(out, {"S1": s1, "S2": s2, "cloud mask": mask}, suffix=GEOTIFF_SUFFIXES)
    path = resolve_model(model)
    contract = read_contract(path)
    if contract.get("kind") != "pix2pix":
        raise InputError(Problem(str(path), f"a '{contract.get('kind')}' model; remove-clouds needs pix2pix"))
    try:
        bands = contract["bands"]
        tile, div = int(contract["tile"]["size"]), int(contract["tile"].get("divisor", 1))
        overlap = int(contract["tile"].get("overlap", tile // 4))
        if not (isinstance(bands, list) and bands and all(isinstance(b, str) for b in bands) and tile > 0 and div > 0
                and 0 <= overlap < tile):
            raise ValueError("bands / tile")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(Problem(str(path), "its model contract's bands or tile are missing or malformed (export the "
                                            "model again with densify export)")) from None
    img, sar, clear = read_inputs(s1, s2, bands, mask)
    feedback.report(5, "inputs read")
    sess = open_session(path, device)
    x = np.concatenate([scale_s1(sar), scale_s2(img.refl)])
    h, w = x.shape[-2:]
    H, W = max(tile, -(-h // div) * div), max(tile, -(-w // div) * div)  # the U-Net needs multiples of div
    xp = _pad_to(x, H, W)
    name = sess.get_inputs()[0].name

    def run(chunk: dict[str, np.ndarray]) -> np.ndarray:
        return sess.run(None, {name: chunk["x"].astype(np.float32)})[0]

    pred = predict_tiled(run, {"x": xp}, tile=tile, overlap=overlap,
                         batch=batch, feedback=feedback.sub(5, 90))[:, :h, :w]
    refl = unscale_s2(pred)
    nodata = ~np.isfinite(img.refl).any(axis=0)
    kept = 0.0
    if clear is not None:
        keep = clear & np.isfinite(img.refl).all(axis=0)
        refl = np.where(keep[None], img.refl, refl)
        kept = float(keep.mean())
    refl[:, nodata] = np.nan
    feedback.check()
    tags = {"MODEL": path.name, "MODEL_KIND": "pix2pix", "S1": Path(s1).name, "S2": Path(s2).name,
            "PRODUCT": "cloud-removed S2 reflectance"}
    written = write_array(out, img.grid, refl.astype(np.float32), descriptions=bands, tags=tags)
    feedback.report(100, "written")
    provider = sess.get_providers()[0]
    return CloudRemovalResult(str(written), str(path), bands, provider, kept)
