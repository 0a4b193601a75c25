"""The request object every shell (CLI, dialog, Processing) builds and passes to `engine.run`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT_KINDS = ("synthesized", "uncertainty", "lai")


@dataclass
class DensifyRequest:
    """What to synthesize, from which inputs, where to write.

    s2/s1/masks: files or folders (folders are searched recursively for rasters).
    dates/sensors: per-file overrides (absolute or as-given paths), e.g. from QGIS
    temporal properties or a user's edit in the dialog.
    method: a registered method name ("default", "linear", "nearest", ...) or a model file.
    """

    s2: list[str]
    target_date: dt.date
    out_dir: str
    s1: list[str] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    method: str = "default"
    device: str = "auto"  # auto | cpu | cuda
    lai: bool = True
    band_order: list[str] | None = None
    dates: dict[str, dt.datetime] = field(default_factory=dict)
    sensors: dict[str, str] = field(default_factory=dict)
    # processing tile size in pixels; None: grid.auto_tile_size (512, smaller when a window of the whole series
    # would hold more than grid.WINDOW_BYTES)
    tile_size: int | None = None
    # an area to compute: (xmin, ymin, xmax, ymax) in extent_crs ("" or None: the output grid's CRS, that of
    # the earliest S2 image); the outputs are the whole pixels of the S2 grid within it. None: the whole grid
    extent: tuple[float, float, float, float] | None = None
    extent_crs: str | None = None
    # explicit output files (Processing destinations); default DIR/<kind>_YYYYMMDD.tif
    output_paths: dict[str, str] = field(default_factory=dict)

    def output_path(self, kind: str) -> Path:
        """Where output `kind` (synthesized | uncertainty | lai) is written."""
        if kind in self.output_paths and self.output_paths[kind]:
            return Path(self.output_paths[kind])
        return self._default_path(kind)

    def kinds(self) -> list[str]:
        """The outputs this request writes: synthesized, uncertainty and, when asked for, lai."""
        return [k for k in OUTPUT_KINDS if k != "lai" or self.lai]

    def output_folder_problem(self) -> str | None:
        """Why out_dir cannot receive this request's outputs (None when it can): a file, under a file,
        not writable, or an output name that is an existing folder (see atomic.output_dir_problem)."""
        from .atomic import output_dir_problem

        return output_dir_problem(self.out_dir, [self.output_path(k).name for k in self.kinds()])

    def _default_path(self, kind: str, suffix: str = "") -> Path:
        """DIR/<kind>_YYYYMMDD<suffix>.tif: the one pattern of output names in out_dir."""
        return Path(self.out_dir) / f"{kind}_{self.target_date:%Y%m%d}{suffix}.tif"

    def unused_output_paths(self, taken: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
        """Output files in out_dir that overwrite nothing: `<kind>_YYYYMMDD.tif`, else the first free
        `<kind>_YYYYMMDD_N.tif` (N = 2, 3, ...) for all kinds together (the dialog never replaces a
        result that may be loaded in the project). `taken`: paths of runs not finished yet."""
        for n in range(1, 10_000):
            paths = {k: self._default_path(k, "" if n == 1 else f"_{n}") for k in OUTPUT_KINDS}
            if not any(p.exists() or Path(f"{p}.aux.xml").exists() or str(p) in taken for p in paths.values()):
                return {k: str(p) for k, p in paths.items()}
        raise FileExistsError(f"no free output name for {self.target_date:%Y%m%d} in {self.out_dir}")


@dataclass
class DensifyResult:
    """What a run produced."""

    target_date: dt.date
    outputs: dict[str, str]  # kind -> written path
    method: str
    mode: str  # gap-filling | forecasting | backcasting
    provider: str = "numpy"
    inputs_used: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
