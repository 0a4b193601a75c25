"""The one entry point every shell calls: `run(request, feedback) -> DensifyResult`."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__, dates, inventory, lai
from .atomic import GEOTIFF_SUFFIXES, new_dirs_removed_on_error, output_file_problem, place_together, same_file
from .errors import InputError, Problem, short_list
from .grid import MAX_TILE_SIZE, MIN_TILE_SIZE, Grid, auto_tile_size, covering_grid, tiles
from .methods import bundled_model, create
from .progress import Feedback
from .reader import SeriesReader, sample_stack, strip_cache_mb
from .request import OUTPUT_KINDS, DensifyRequest, DensifyResult
from .window_blend import WindowBlender
from .writer import AtomicRaster, block_size_for

DN_SCALE = 1e-4  # outputs are written as DN = reflectance / DN_SCALE (no offset)


def build_inventory(request: DensifyRequest, check_clear: bool = True, describer=None) -> inventory.Inventory:
    return inventory.build(request.s2, request.s1, request.masks, band_order=request.band_order,
                           dates_override=request.dates, sensors_override=request.sensors,
                           check_clear=check_clear, describer=describer, extent=request.extent,
                           extent_crs=request.extent_crs)


def _case_key(path: Path) -> str:
    """`path` as a case-insensitive file system compares it: each character upper-cased where that stays one
    character, as NTFS's and APFS's tables do ("ß" stays "ß": Straße.tif and Strasse.tif are two files)."""
    return "".join(up if len(up := c.upper()) == 1 else c for c in str(path))


def _request_problems(request: DensifyRequest) -> list[Problem]:
    """Problems of the request itself (not of its files)."""
    problems = []
    if request.tile_size is not None:  # None: automatic (grid.auto_tile_size)
        try:
            size = int(request.tile_size)
        except (TypeError, ValueError):
            size = 0
        if size < MIN_TILE_SIZE:
            problems.append(Problem(None, f"tile size {request.tile_size} is too small: at least {MIN_TILE_SIZE} "
                                          "pixels"))
        elif size > MAX_TILE_SIZE:
            problems.append(Problem(None, f"tile size {size} is too large: at most {MAX_TILE_SIZE} pixels (memory "
                                          "grows with the square of the tile size)"))
    seen: dict[Path, str] = {}
    folded: dict[str, tuple[Path, str]] = {}  # the paths by _case_key: one file where case is ignored
    for kind in request.kinds():
        path = request.output_path(kind)
        if path.suffix.lower() not in GEOTIFF_SUFFIXES:
            problems.append(Problem(str(path), f"the {kind} output must be a GeoTIFF file (.tif or .tiff): "
                                               "outputs are written as GeoTIFF"))
        elif why := output_file_problem(path):  # found before computing, not when the files are put in place
            problems.append(Problem(str(path), f"the {kind} output {why}"))
        key = path.absolute()
        if key in seen:  # e.g. one file chosen for two Processing destinations
            problems.append(Problem(str(path), f"the {seen[key]} and {kind} outputs are the same file: "
                                               "choose a different file for each"))
        elif (other := folded.get(_case_key(key))) is not None:  # macOS's and Windows' usual file systems
            problems.append(Problem(str(path), f"the {other[1]} and {kind} outputs are the same file where case is "
                                               f"ignored (Windows, macOS): {other[0]} and {path} differ only by "
                                               "case; choose a different file for each"))
        seen.setdefault(key, kind)
        folded.setdefault(_case_key(key), (path, kind))
    return problems


def _required_bands(method) -> list[str] | None:
    """The S2 bands, in order, a method needs (temporal ONNX models: their contract's); None when any do."""
    contract = getattr(method, "contract", None) or {}
    if contract.get("kind") != "temporal":
        return None
    from .stack import S2_BANDS

    return list(contract.get("bands") or S2_BANDS)


def _fit_bands(inv: inventory.Inventory, method, band_order: list[str] | None) -> list[str]:
    """Put the inventory's bands in the order the method needs; InputError naming what is missing."""
    needed = _required_bands(method)
    if not needed:
        return []
    lacking = [b for b in needed if b not in inv.bands]
    if lacking:
        how = " (as named by the band order given)" if band_order else ""
        raise InputError(Problem(None, f"{method.name} needs the S2 bands {', '.join(needed)}: the S2 inputs"
                                       f"{how} lack {', '.join(lacking)}"))
    unused = [b for b in inv.bands if b not in needed]
    inv.bands = needed
    return [f"S2 band(s) {', '.join(unused)} not used by {method.name}"] if unused else []


def _replaced_inputs(inv: inventory.Inventory, out_paths: dict[str, Path]) -> list[Problem]:
    """A problem for each output that would be written over one of the run's inputs."""
    inputs = [f for i in (*inv.s2, *inv.s1, *inv.masks.values()) for f in (i.files or [i.path])]
    return [Problem(str(path), f"the {kind} output would replace this input: choose another output")
            for kind, path in out_paths.items() if path.exists() and any(same_file(path, i) for i in inputs)]


# warn this far past a model's calibrated distance (on the validation months the default model's std still
# put 63-65 % within 1σ at a 90-day forecast, 58-62 % at 120 days)
BEYOND_CALIBRATION_DAYS = 30.0


class BeyondCalibration:
    """Counts the output pixels farther from a clear S2 observation than the method's std was calibrated
    for (by more than BEYOND_CALIBRATION_DAYS): a forecast far ahead, or a long cloudy stretch."""

    def __init__(self, method):
        self.method, self.cal = method, method.calibrated_days
        self.far = self.total = 0
        self.farthest = 0.0

    def add(self, days_to_clear: np.ndarray) -> None:
        """Count one tile's output pixels ((h, w) days to their nearest clear observation; inf: none,
        which the no-value warning counts instead)."""
        if self.cal is None:
            return
        known = days_to_clear[np.isfinite(days_to_clear)]
        far = known[known > self.cal + BEYOND_CALIBRATION_DAYS]
        self.total += days_to_clear.size
        self.far += far.size
        self.farthest = max(self.farthest, float(far.max()) if far.size else 0.0)

    def add_tile(self, stack, target_day: float, rows: slice, cols: slice) -> None:
        """add() for the output pixels [rows, cols] of a tile, measured by the method (after its own input
        screening) only when it has a calibrated distance: other methods pay nothing per tile."""
        if self.cal is not None:
            self.add(self.method.days_to_clear(stack, target_day)[rows, cols])

    def warning(self) -> str | None:
        """The warning when more than 1 % of the output pixels are that far; None otherwise."""
        if not self.far or self.far <= 0.01 * self.total:
            return None
        limit = self.cal + BEYOND_CALIBRATION_DAYS
        return (f"{self.far / self.total:.0%} of the output pixels lie more than {limit:.0f} days from a clear S2 "
                f"observation (up to {self.farthest:.0f} days); {self.method.name}'s uncertainty is calibrated up "
                f"to about {self.cal:.0f} days from a clear observation, so its std may be too narrow there")


def device_warning(device: str, method) -> str | None:
    """A warning when CUDA was asked for but something else ran the method; None otherwise."""
    from .model_contract import cuda_wanted, gpu_present

    if cuda_wanted(device) != "required" or "CUDA" in str(method.provider).upper():
        return None
    if method.provider == "numpy":
        why = f"{method.name} is a CPU method"
    else:
        try:
            import onnxruntime as ort

            has_provider = "CUDAExecutionProvider" in ort.get_available_providers()
        except ImportError:
            has_provider = False
        why = ("no NVIDIA GPU or driver found" if not gpu_present() else
               "this ONNX Runtime has no CUDA provider" if not has_provider else "the CUDA provider failed to start")
    return f"CUDA was asked for but {method.name} ran on {method.provider} ({why})"


def _nearest_s2(inv: inventory.Inventory, target_day: float) -> inventory.RasterInfo:
    """The S2 acquisition nearest the target (whose sun / view angles the outputs take; documented
    defaults where it has none)."""
    return inv.s2[int(np.argmin(np.abs(inv.s2_days - target_day)))]


def _angle_tags(nearest: inventory.RasterInfo) -> dict[str, str]:
    """The nearest acquisition's angles, as tags of the synthesized image: LAI estimated from that
    file later (densify lai, Processing) uses the angles this run's LAI used."""
    found = lai.angle_tags(nearest.tags)
    return {**found, "ANGLES_FROM": nearest.name} if found else {}


LEVEL_1C = "Level-1C"


def _method_tags(method, inv: inventory.Inventory) -> dict[str, str]:
    """Tags on what the run read and ran: INPUTS_S1 only for a method that reads S1 (the baselines do not);
    MODEL_BUNDLED (1 for the bundled models/default.onnx, 0 for another model file); PROCESSING_LEVEL=Level-1C when
    an S2 input is Level-1C (the outputs are then top-of-atmosphere reflectance); FALLBACK, why this method ran
    instead of the one asked for."""
    tags = {"INPUTS_S1": ";".join(i.name for i in inv.s1)} if method.uses_s1 else {}
    if method.fallback_note:
        tags["FALLBACK"] = method.fallback_note
    path, bundled = getattr(method, "path", None), bundled_model()
    if path is not None:
        tags["MODEL_BUNDLED"] = "1" if bundled is not None and same_file(path, bundled) else "0"
    if any(inventory.is_level_1c(i) for i in inv.s2):
        tags["PROCESSING_LEVEL"] = LEVEL_1C
    return tags


def run(request: DensifyRequest, feedback: Feedback | None = None) -> DensifyResult:
    """Synthesize S2, its uncertainty and LAI at request.target_date; write them atomically."""
    return run_series([request], feedback)[0]


SHARED_FIELDS = ("s2", "s1", "masks", "method", "device", "lai", "band_order", "dates", "sensors", "tile_size",
                 "extent", "extent_crs")


def series_requests(request: DensifyRequest, target_dates: list) -> list[DensifyRequest]:
    """One request per target date (its default output names), the rest as `request`; dates sorted, each
    once."""
    if request.output_paths and len(set(target_dates)) > 1:
        raise InputError(Problem(None, "output files are named for one target date: give an output folder for "
                                       "several dates"))
    return [replace(request, target_date=d) for d in sorted(set(target_dates))]


def _series_problems(requests: list[DensifyRequest]) -> list[Problem]:
    """Problems of the requests of a series: each request's own, inputs that differ, outputs shared."""
    if not requests:
        return [Problem(None, "no target date")]
    first = requests[0]
    problems = [p for r in requests for p in _request_problems(r)]
    differ = [f for f in SHARED_FIELDS if any(getattr(r, f) != getattr(first, f) for r in requests[1:])]
    if differ:
        problems.append(Problem(None, f"the dates of one run share their inputs and settings ({', '.join(differ)} "
                                      "differ)"))
    owner: dict[Path, str] = {}
    for r in requests:
        for kind in r.kinds():
            key = r.output_path(kind).absolute()
            if key in owner and owner[key] != f"{r.target_date}":
                problems.append(Problem(str(key), f"the outputs of {owner[key]} and {r.target_date} are the same file"))
            owner.setdefault(key, f"{r.target_date}")
    return problems


class _DateOutputs:
    """One target date of a run: its mode, warnings and the output rasters being written."""

    def __init__(self, request: DensifyRequest, inv: inventory.Inventory, method, want_lai: bool):
        self.request = request
        self.mode, self.warnings = inventory.check_target(inv, request.target_date)
        self.day = dates.to_days(request.target_date)
        self.nearest = _nearest_s2(inv, self.day)
        self.beyond = BeyondCalibration(method)
        self.angles, angle_warnings = lai.Angles.from_tags(self.nearest.tags) if want_lai else (None, [])
        self.warnings += angle_warnings
        self.out_paths = {k: request.output_path(k) for k in OUTPUT_KINDS}
        self.rasters: dict[str, AtomicRaster] = {}
        self.empty = 0  # output pixels without a value (no clear observation there, or outside the S2 images)

    def open(self, outputs: contextlib.ExitStack, inv: inventory.Inventory, tags: dict[str, str], tile_size: int,
             blend: int, computed: Grid) -> None:
        """Start the output rasters (temporary files until `place`; blocks that the tiles of `tile_size` px fill
        whole), and the blending of the windows' predictions over `blend` px either side of their common edges, on
        the `computed` grid (the outputs' own, or with an extent the whole tiles around it: grid.covering_grid)."""
        grid, bands, date = inv.grid, inv.bands, self.request.target_date
        self.blender = WindowBlender(computed.height, computed.width, blend)
        self.at = grid.offset_in(computed)  # the outputs' first pixel in the computed grid
        self.shape = grid.height, grid.width
        block = block_size_for(tile_size)
        tags = {"TARGET_DATE": f"{date:%Y-%m-%d}", "MODE": self.mode, **tags}
        observed = [i.name for i in inv.s2 if abs(dates.to_days(i.when) - self.day) <= dates.SAME_DAY]
        if observed:  # an acquisition on the date: its clear pixels are its own values (core/same_day.py)
            tags["OBSERVED"] = ";".join(observed)
        level = "top-of-atmosphere" if tags.get("PROCESSING_LEVEL") == LEVEL_1C else "surface"
        self.rasters["synthesized"] = outputs.enter_context(AtomicRaster(
            self.out_paths["synthesized"], grid, len(bands), descriptions=bands,
            tags={**tags, "REFLECTANCE_SCALE": DN_SCALE, "BOA_ADD_OFFSET": 0,
                  "ACQUISITION_DATETIME": f"{date:%Y-%m-%d}T12:00:00Z",
                  "CONTENT": f"synthesized Sentinel-2 {level} reflectance (DN)",
                  **_angle_tags(self.nearest)}, blocksize=block))
        self.rasters["uncertainty"] = outputs.enter_context(AtomicRaster(
            self.out_paths["uncertainty"], grid, len(bands) + 1,
            descriptions=[f"{b}_std" for b in bands] + ["mean_std"],
            tags={**tags, "REFLECTANCE_SCALE": DN_SCALE,
                  "CONTENT": "per-band standard deviation of the synthesized reflectance (DN); "
                             "last band: their mean"}, blocksize=block))
        if self.angles is not None:
            self.rasters["lai"] = outputs.enter_context(AtomicRaster(
                self.out_paths["lai"], grid, 3, descriptions=["LAI", "LAI_std", "flags"],
                tags={**tags, "LAI_METHOD": lai.METHOD, "FLAGS": lai.FLAGS_DOC, "ANGLES": str(self.angles)},
                blocksize=block))

    def write_tile(self, method, stack, tile, bands: list[str]) -> None:
        """Predict this date on one window of the series and write the pixels it completes (blended with the
        windows before it) to every output."""
        mean, std = method.predict(stack, self.day)
        if inner := self._output_part(tile.row, tile.col, tile.height, tile.width):  # the tile's output pixels
            (r0, r1), (c0, c1) = inner
            self.beyond.add_tile(stack, self.day, slice(r0 - tile.row0, r1 - tile.row0),
                                 slice(c0 - tile.col0, c1 - tile.col0))
        row, col, done = self.blender.add(tile, np.concatenate([mean, std]))
        if not (part := self._output_part(row, col, *done.shape[1:])):
            return
        (r0, r1), (c0, c1) = part
        done = done[:, r0 - row:r1 - row, c0 - col:c1 - col]
        row, col = r0 - self.at[0], c0 - self.at[1]  # in the outputs' grid
        nb = len(bands)
        mean, std = np.maximum(done[:nb], 0), done[nb:]  # no negative reflectance (NaN stays NaN)
        self.empty += int(np.isnan(mean).all(axis=0).sum())
        self.rasters["synthesized"].write(mean / DN_SCALE, row, col)
        mean_std = sum(std) / np.float32(len(std))  # band by band, as in any block (numpy's mean of a 1 x 1 block
        self.rasters["uncertainty"].write(np.concatenate([std, mean_std[None]]) / DN_SCALE, row, col)  # adds pairwise)
        if "lai" in self.rasters:
            res = lai.estimate(mean, bands, self.angles, std=std)
            self.rasters["lai"].write(np.stack([res.lai, res.lai_std, res.flags.astype("float32")]), row, col)

    def _output_part(self, row: int, col: int, height: int, width: int) -> tuple[tuple[int, int], ...] | None:
        """((row0, row1), (col0, col1)) of the computed grid's box at (row, col) that lies in the outputs' grid;
        None where none does."""
        (r, c), (h, w) = self.at, self.shape
        rows, cols = (max(row, r), min(row + height, r + h)), (max(col, c), min(col + width, c + w))
        return (rows, cols) if rows[0] < rows[1] and cols[0] < cols[1] else None

    def finish_warnings(self, size: int) -> None:
        if self.empty > 0.01 * size:
            self.warnings.append(f"{self.empty / size:.0%} of the output pixels have no value: no clear S2 "
                                 "observation (or no S2 data) covers them in the inputs")
        if far := self.beyond.warning():
            self.warnings.append(far)


def run_series(requests: list[DensifyRequest], feedback: Feedback | None = None) -> list[DensifyResult]:
    """`run` for several target dates of the same inputs (requests that differ only in target date and
    output files; see series_requests): the inputs are checked, the method calibrated and each tile of the
    series read once for all the dates. Every date is checked before any is computed, and the outputs of
    all dates are put in place together when all are complete: a cancel or crash leaves none."""
    fb = feedback or Feedback()
    start = time.perf_counter()
    fb.report(0, "checking inputs")
    problems = _series_problems(requests)
    request = requests[0] if requests else None
    if request is None:
        raise InputError(problems)
    try:
        inv = build_inventory(request)
    except InputError as exc:
        raise InputError(problems + exc.problems) from None
    if problems:
        raise InputError(problems)
    fb.check()

    method = create(request.method, request.device)
    warnings = list(inv.warnings) + _fit_bands(inv, method, request.band_order)
    if cuda := device_warning(request.device, method):
        warnings.append(cuda)
    want_lai = request.lai
    if want_lai and any(b not in inv.bands for b in lai.LAI_BANDS):
        missing = [b for b in lai.LAI_BANDS if b not in inv.bands]
        warnings.append(f"LAI skipped: the S2 inputs lack band(s) {', '.join(missing)}")
        want_lai = False
    per_date = []
    for r in requests:
        try:
            per_date.append(_DateOutputs(r, inv, method, want_lai))
        except InputError as exc:  # a date out of range: named with every other before anything is computed
            problems += exc.problems
    problems += [q for d in per_date for q in _replaced_inputs(inv, d.out_paths)]
    if problems:  # e.g. a Processing destination chosen on an input raster: inputs are never modified
        raise InputError(problems)

    # A model's neighbouring windows are blended across their common edges over its halo's width (window_blend),
    # each window read with that much more context: every blended pixel is predicted with the model's full halo.
    blend = method.halo
    tile_size = request.tile_size or auto_tile_size(
        len(inv.s2) * len(inv.bands) + (2 * len(inv.s1) if method.uses_s1 else 0), method.halo + blend)
    blend = min(blend, tile_size // 2)
    # blended windows (a learned model's: it chooses its dates per window) depend on where the windows lie, so an
    # extent is computed on the whole run's windows around it; a method without a halo is per pixel
    computed = covering_grid(inv.grid, inv.s2_grid, tile_size, blend) if inv.s2_grid and blend else inv.grid
    tags = {
        "METHOD": method.name,
        "TILE_SIZE": str(tile_size),  # a model's pixels depend a little on it (each window's choice of dates)
        "WINDOW_BLEND": str(blend),  # px either side of the windows' common edges
        "SOFTWARE": f"Sentinel Densify {__version__}",
        "INPUTS_S2": ";".join(i.name for i in inv.s2),
        "INPUTS_MASKS": ";".join(m.name for m in inv.masks.values()),
        **_method_tags(method, inv),
    }
    with contextlib.ExitStack() as made:  # a failure or cancel also leaves no empty folder the run made
        for folder in sorted({d.out_paths[k].absolute().parent for d in per_date for k in d.out_paths}):
            made.enter_context(new_dirs_removed_on_error(folder))
        window = tile_size + 2 * (method.halo + blend)
        cache_mb, wanted, striped = strip_cache_mb(inv, window, across=-(-computed.width // tile_size),
                                                   s1=method.uses_s1)
        if wanted > cache_mb:
            warnings.append(f"{len(striped)} inputs stored in strips, not tiles ({short_list(striped)}), need {wanted} "
                            f"MB of GDAL's block cache for a row of windows, more than the {cache_mb} MB allowed (a "
                            "quarter of the memory): their strips are decoded again for every window, which is much "
                            "slower; tile them (gdal_translate -co TILED=YES -co COMPRESS=DEFLATE IN OUT)"
                            + ("" if inv.s2_grid else " or give an extent"))
        for warning in warnings + [w for d in per_date for w in d.warnings]:  # before the work: a user may stop a
            fb.warn(warning)  # long run and mend the inputs
        written = _compute(per_date, inv, method, tags, tile_size, blend, fb, cache_mb, computed)
    warnings += method.notes()
    for d, w in zip(per_date, written, strict=True):
        stale = d.out_paths["lai"]  # DIR/lai_YYYYMMDD.tif beside the outputs just replaced
        if "lai" not in w and not d.request.output_paths.get("lai") and stale.exists():
            d.warnings.append(f"{stale.name} in {stale.parent} is an earlier run's LAI, left as it was: this run "
                              f"wrote no LAI, so it does not match {Path(w['synthesized']).name}")
    fb.report(100, "done")
    seconds = time.perf_counter() - start
    return [DensifyResult(
        target_date=d.request.target_date, outputs=w, method=method.name, mode=d.mode, provider=method.provider,
        inputs_used={"s2": len(inv.s2), "s1": len(inv.s1), "masks": len(inv.masks)},
        warnings=warnings + d.warnings, seconds=seconds) for d, w in zip(per_date, written, strict=True)]


def _compute(per_date: list[_DateOutputs], inv: inventory.Inventory, method, tags: dict[str, str], tile_size: int,
             blend: int, fb: Feedback, cache_mb: int, computed: Grid) -> list[dict[str, str]]:
    """run_series' work: each window of the `computed` grid read once (a GDAL block cache of `cache_mb`), every
    date's outputs written, checked and put in place together; their paths per date."""
    with SeriesReader(inv, cache_mb=cache_mb, s1=method.uses_s1) as reader, contextlib.ExitStack() as outputs:
        if method.uses_sample:
            fb.report(2, f"calibrating {method.name}")
            method.prepare(sample_stack(inv, reader, inv.s2_grid or inv.grid))  # an extent's: the whole run's
        tags.update({k.upper(): str(v) for k, v in method.describe().items()})
        fb.check()
        for d in per_date:
            d.open(outputs, inv, tags, tile_size, blend, computed)
        all_tiles = list(tiles(computed, tile_size, halo=method.halo + blend, within=inv.s2_grid, shift=blend))
        for n, (tile, stack) in enumerate(reader.read_tiles(all_tiles, computed)):
            fb.check()
            for d in per_date:
                fb.check()
                d.write_tile(method, stack, tile, inv.bands)
            fb.report(5 + 90 * (n + 1) / len(all_tiles), f"tile {n + 1}/{len(all_tiles)}")
        fb.check()
        fb.report(96, "writing overviews")
        for d in per_date:
            d.finish_warnings(inv.grid.width * inv.grid.height)
        finished = [out for d in per_date for out in d.rasters.values()]
        for out in finished:  # all checked before any is renamed: a failure replaces none
            out.finish()
        left: list[Path] = []
        place_together(finished, left)  # all or none: a failure or Ctrl-C while placing puts every earlier output back
        if left:
            per_date[0].warnings.append(f"the earlier outputs' copies {short_list([p.name for p in left])} in "
                                        f"{left[0].parent} could not be deleted: delete them")
        return [{kind: str(out.path) for kind, out in d.rasters.items()} for d in per_date]


def describe_outputs(result: DensifyResult, warnings: bool = True, seconds: bool = True) -> str:
    """A short human summary of a result (with its warnings unless the caller shows them itself, and the
    run's time unless it is the time of several dates)."""
    lines = [f"{result.mode} at {result.target_date:%Y-%m-%d} with {result.method} ({result.provider}), "
             f"{result.inputs_used.get('s2', 0)} S2 + {result.inputs_used.get('s1', 0)} S1 inputs"
             + (f", {result.seconds:.1f} s" if seconds else "")]
    lines += [f"  {kind}: {Path(path)}" for kind, path in result.outputs.items()]
    lines += [f"  warning: {w}" for w in result.warnings] if warnings else []
    return "\n".join(lines)
