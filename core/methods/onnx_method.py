"""Learned models exported to ONNX, run with ONNX Runtime over overlapping tiles ("onnx")."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model_contract import open_session, read_contract
from ..same_day import anchored, observation, same_day
from ..stack import S2_BANDS, Stack
from ..tiling import predict_tiled
from . import Method, register

# tiled and fed to the model when it names them as inputs (s1_change: contract version 3 and up, with 6
# channels in version 5; obs_s1_change: version 4)
SPATIAL = ("s2", "s2_valid", "s1", "s1_valid", "base", "near", "base_info", "s1_change", "obs_s1_change")
PER_SAMPLE = ("s2_dt", "s1_dt")
# A model whose graph takes any tile size runs on tiles up to this size, fitted to the window
# (tiling.fit_tile), as many per ONNX Runtime call as hold RUN_PIXELS: the contract's 64 px tiles,
# overlapping by 16, computed a 528 px window nearly twice; 256 px tiles keep ORT's memory small.
RUN_TILE = 256
RUN_PIXELS = RUN_TILE * RUN_TILE


class OnnxTemporalMethod(Method):
    """The temporal S1+S2 generator (core/temporal) from an ONNX file and its contract."""

    uses_sample = False  # calibrated when exported (its contract): nothing to fit on the series at hand

    def __init__(self, path: str | Path, device: str = "auto", batch: int = 4):
        self.path = Path(path)
        self.contract = read_contract(self.path)
        if self.contract.get("kind") != "temporal":
            raise InputError(f"{self.path.name}: a '{self.contract.get('kind')}' model; the onnx method "
                             "runs temporal models (S1+S2 series -> S2 at a date)")
        self._read_contract_fields()  # before the model is loaded: a broken contract costs nothing
        self.session = open_session(self.path, device)
        self.provider = self.session.get_providers()[0]
        self.name = f"onnx:{self.path.stem}"
        self.batch = batch
        self.input_names = [i.name for i in self.session.get_inputs()]
        s2_shape = next((i.shape for i in self.session.get_inputs() if i.name == "s2"), None) or [0, 0]
        # symbolic spatial axes (densify export): tiles up to RUN_TILE, fitted to each window
        self.fit = all(isinstance(d, str) for d in s2_shape[-2:])
        if self.fit:
            self.tile = max(self.tile, RUN_TILE)
        self.haze = self.contract.get("haze_screen")  # the input screen it was trained / calibrated with
        self.span = self._span()
        # (weakref to the last stack predicted, its day, that stack after the screen), until days_to_clear() reads it
        self._seen: tuple | None = None

    def _span(self) -> bool:
        """Whether the model takes s1_change in its 6-channel form (model version 5), as its ONNX input
        says; InputError naming the file when the contract says otherwise (of s1_change or s1_span)."""
        shape = next((i.shape for i in self.session.get_inputs() if i.name == "s1_change"), None)
        span = shape is not None and len(shape) == 4 and shape[1] == 6
        arch = self.contract.get("architecture")
        change = bool(arch.get("s1_change")) if isinstance(arch, dict) else False
        if isinstance(arch, dict) and "s1_change" in arch and change != (shape is not None):
            raise InputError(f"{self.path.name}: its graph {'takes' if shape is not None else 'has no'} an s1_change "
                             f"input but its model contract {'says' if change else 'does not say'} s1_change "
                             "(export the model again with densify export)")
        said = bool(arch.get("s1_span")) if isinstance(arch, dict) else False
        if span != said:
            raise InputError(f"{self.path.name}: its s1_change input has {shape[1] if shape else 'no'} channels but "
                             f"its model contract {'says' if said else 'does not say'} s1_span "
                             "(export the model again with densify export)")
        return span

    def _read_contract_fields(self) -> None:
        """K, tiling and calibration from the contract; InputError naming the file and the field
        when one is missing or malformed (a hand-edited or foreign contract)."""
        c = self.contract
        field = "k2"
        try:
            self.k2 = _positive_int(c["k2"])
            field = "k1"
            self.k1 = _positive_int(c["k1"])
            field = "tile / overlap / halo"
            self.tile, self.overlap, self.halo = (int(c.get("tile", 64)), int(c.get("overlap", 16)),
                                                  int(c.get("halo", 8)))
            if not (self.tile > 0 and 0 <= self.overlap < self.tile and self.halo >= 0):
                raise ValueError(field)
            field = "bands"
            bands = c.get("bands", list(S2_BANDS))
            if not (isinstance(bands, list) and bands and all(b in S2_BANDS for b in bands)):
                raise ValueError(field)
            if bands != list(S2_BANDS):
                raise InputError(f"{self.path.name}: its model contract's bands {', '.join(map(str, bands))} differ "
                                 f"from the temporal model's {', '.join(S2_BANDS)} (export the model again with "
                                 "densify export)")
            field = "calibration"
            cal = c.get("calibration") or {}
            self.std_scale = float(cal.get("std_scale", 1.0))
            self.scale_by_days = cal.get("std_scale_by_days")  # preferred: a temperature per distance to clear
            if not (np.isfinite(self.std_scale) and self.std_scale > 0):
                raise ValueError(field)
            if self.scale_by_days is not None:
                days = np.asarray(self.scale_by_days["days"], dtype=float)
                scale = np.asarray(self.scale_by_days["scale"], dtype=float)
                if not (days.ndim == 1 and days.shape == scale.shape and days.size
                        and np.all(np.diff(days) > 0) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
                    raise ValueError(field)
                self.calibrated_days = float(days[-1])
            field = "architecture's s1_guided"
            arch = c.get("architecture") or {}
            self.guided = arch.get("s1_guided") if isinstance(arch, dict) else None
            if self.guided is not None:  # the field-scale S1 change (model version 6; and S1 observations: 7)
                from ..temporal.dataset import GUIDE_BANDS, GUIDE_SIGMA

                radius, sigma = self.guided["radius"], float(self.guided.get("sigma", GUIDE_SIGMA))
                bands = self.guided.get("guide_bands", GUIDE_BANDS)
                if not (_positive_int(radius) and np.isfinite(sigma) and sigma > 0 and isinstance(bands, list | tuple)
                        and bands and all(b in S2_BANDS for b in bands)
                        and isinstance(self.guided.get("obs", False), bool)):
                    raise ValueError(field)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{self.path.name}: its model contract's {field} is missing or malformed "
                             "(export the model again with densify export)") from None

    def _run(self, tiles: dict[str, np.ndarray], common: dict[str, np.ndarray]) -> np.ndarray:
        n = next(iter(tiles.values())).shape[0]
        feed = dict(tiles)
        for key, value in common.items():
            feed[key] = np.ascontiguousarray(np.broadcast_to(value, (n,) + np.shape(value)), np.float32)
        mean, logvar = self.session.run(["mean", "logvar"], {k: feed[k] for k in self.input_names})
        return np.concatenate([mean, np.exp(0.5 * logvar)], axis=1)

    def predict(self, stack: Stack, target_day: float) -> tuple[np.ndarray, np.ndarray]:
        from ..temporal.dataset import model_inputs

        self._seen = None
        seen = self._screen(stack)
        if self.haze:  # for days_to_clear() (the engine asks right after; evaluate does not)
            self._seen = (weakref.ref(stack), float(target_day), seen)
        same = same_day(seen, float(target_day))  # an acquisition on the date: not an input (see core/same_day.py)
        x = model_inputs(seen, float(target_day), self.k2, self.k1, change="s1_change" in self.input_names,
                         obs_change="obs_s1_change" in self.input_names, span=self.span, guided=self.guided,
                         exclude=same)
        common = {k: x[k] for k in PER_SAMPLE} | {"target_doy": np.float32(x["target_doy"])}
        out = predict_tiled(lambda t: self._run(t, common), {k: x[k] for k in SPATIAL if k in self.input_names},
                            self.tile, self.overlap, self.batch, fit=self.fit,
                            max_pixels=RUN_PIXELS if self.fit else None)
        nb = len(stack.bands)
        if self.scale_by_days:
            from ..temporal.calibration import nearest_clear_days, scale_map

            scale = scale_map(nearest_clear_days(x["base_info"]), self.scale_by_days)[None]
        else:
            scale = self.std_scale
        mean, std = out[:nb].astype(np.float32), (out[nb:] * scale).astype(np.float32)
        return anchored(mean, std, *observation(seen, float(target_day), same)) if same.any() else (mean, std)

    def _screen(self, stack: Stack) -> Stack:
        """The stack as the model sees it: through its haze screen (core/haze.py), if it has one."""
        if not self.haze:
            return stack
        from ..haze import screen_haze

        return screen_haze(stack, self.haze)

    def days_to_clear(self, stack: Stack, target_day: float) -> np.ndarray:
        """As Method.days_to_clear, on the observations left after the haze screen (the distance the
        model's temperatures are keyed on); on predict()'s screened stack when it has just run on this one."""
        last, self._seen = self._seen, None
        fresh = last is not None and last[0]() is stack and last[1] == float(target_day)
        return (last[2] if fresh else self._screen(stack)).days_to_clear(target_day)

    def describe(self) -> dict:
        return {"method": self.name, "provider": self.provider, "model": self.path.name,
                "model_version": self.contract.get("version"), "std_scale": self.std_scale,
                "std_scale_by_days": self.scale_by_days, "haze_screen": self.haze, "s1_guided": self.guided}


@register("onnx")
def _factory(path: str | Path | None = None, device: str = "auto") -> Method:
    if path is None:
        from . import default_model

        path = default_model()
        if path is None:
            raise InputError("no ONNX model given and no models/default.onnx bundled")
    return OnnxTemporalMethod(path, device)


def _positive_int(value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(value)
    return int(value)
