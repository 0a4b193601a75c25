"""Pluggable synthesis methods: a registry of names and model-file loaders.

A method turns a `Stack` and a target time into a mean and a standard deviation, both
(B, h, w) float32 surface reflectance. Later models register themselves here.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError, Problem
from ..stack import Stack


class Method:
    """Base class of synthesis methods."""

    name: str = "method"
    fallback_note: str = ""  # set by `create` when this method runs instead of the one asked for
    halo: int = 0  # pixels of context each side a tile needs (0 for per-pixel methods)
    provider: str = "numpy"  # what ran it (numpy, CPUExecutionProvider, CUDAExecutionProvider)
    calibrated_days: float | None = None  # its std is calibrated up to about this many days to clear (None: any)
    uses_s1: bool = True  # False: it never reads stack.s1, so the engine does not read the S1 files
    uses_sample: bool = True  # False: prepare() ignores its sample, so the engine reads none

    def prepare(self, sample: Stack) -> None:
        """Fit whatever depends on the series (e.g. uncertainty calibration) on a pixel sample."""

    def predict(self, stack: Stack, target_day: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (B, h, w) at target_day (days since 1970-01-01)."""
        raise NotImplementedError

    def days_to_clear(self, stack: Stack, target_day: float) -> np.ndarray:
        """(h, w) days from the target to each pixel's nearest observation this method counts as clear
        (inf where none): what its calibrated distance (calibrated_days) is measured by."""
        return stack.days_to_clear(target_day)

    def describe(self) -> dict:
        """Metadata written into output tags."""
        return {"method": self.name, "provider": self.provider}

    def notes(self) -> list[str]:
        """What a user should know about this run of the method (after prepare), as warnings."""
        return [self.fallback_note] if self.fallback_note else []


Factory = Callable[..., Method]
_REGISTRY: dict[str, Factory] = {}
# modules that register methods when imported (lazy, so torch/onnxruntime load only when used)
_PROVIDERS = ["baselines", "onnx_method"]
MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"


def register(name: str) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory
    return deco


def _load_providers() -> None:
    """Import the provider modules: they register their methods. Through __import__, which QGIS's import hook
    watches (importlib.import_module it does not): QGIS then unloads them with the plugin, and a reload (an
    upgrade, or the plugin unticked and ticked) registers them again instead of finding them already imported."""
    for mod in _PROVIDERS:
        name = f"{__name__}.{mod}"
        try:
            __import__(name)
        except ModuleNotFoundError as exc:  # an optional provider not present in this build
            if exc.name != name:
                raise


def available() -> list[str]:
    _load_providers()
    return sorted(_REGISTRY)


def bundled_model() -> Path | None:
    """The default model file shipped in models/, if any."""
    path = MODELS_DIR / "default.onnx"
    return path if path.exists() else None


def default_model() -> Path | None:
    """The model `default` runs: the bundled one, when ONNX Runtime is there to run it."""
    path = bundled_model()
    return path if path is not None and importlib.util.find_spec("onnxruntime") is not None else None


CHECKPOINTS = (".pt", ".pth", ".ckpt")  # PyTorch checkpoints: exported to ONNX before they run


def model_file_problem(model: str | Path) -> Problem | None:
    """Why a model file cannot be run (a PyTorch checkpoint: export it first; a folder; a missing file), or None;
    whether it reads as ONNX is found on loading. One wording for the CLI, the API, Processing and the dialog."""
    path = Path(model)
    if path.suffix.lower() in CHECKPOINTS:
        return Problem(str(path), "a PyTorch checkpoint, not a model to run: export it first with `densify export "
                                  f"--checkpoint {path} --out model.onnx` and give the .onnx file")
    if not path.is_file():
        return Problem(str(path), "is a folder, not a model file (.onnx)" if path.is_dir() else
                       "model file does not exist")
    return None


def create(name: str, device: str = "auto") -> Method:
    """A method by registered name, 'default', or path to a model file (.onnx)."""
    _load_providers()
    if name in ("", "default", None):
        model = default_model()
        if model is not None:
            name = str(model)
        else:
            method = _REGISTRY["linear"](device=device)
            if bundled_model() is not None:
                method.fallback_note = ("the bundled model needs onnxruntime, which is not installed: the "
                                        "linear baseline ran instead (the README says how to install it)")
            return method
    if name in _REGISTRY:
        return _REGISTRY[name](device=device)
    path = Path(name)
    if path.suffix.lower() == ".onnx" or path.suffix.lower() in CHECKPOINTS or path.is_dir():
        if problem := model_file_problem(path):
            raise InputError(problem)
        if "onnx" not in _REGISTRY:
            raise InputError(f"{path.name}: ONNX models need onnxruntime, which is not installed")
        return _REGISTRY["onnx"](path=path, device=device)
    known = ["default", *(m for m in available() if m != "onnx")]  # `onnx` (= default) is not documented
    raise InputError(f"unknown method or model '{name}' (known: {', '.join(known)}, "
                     "or a path to an .onnx file)")
