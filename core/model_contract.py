"""Model contracts: what an ONNX model expects and gives, stored in its metadata_props.

The contract (band order, scaling, time encoding, tile size/overlap, inputs/outputs, version,
training data, metrics...) is a dict; each top-level key is one metadata entry whose value is
JSON. `read_contract` is the one loader of contracts in the project.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_path
from .errors import InputError

CONTRACT_VERSION = 1
REQUIRED = ("kind", "inputs", "outputs")


def write_contract(onnx_path_or_model: str | Path | Any, contract: dict) -> Any:
    """Store `contract` in the model's metadata_props (JSON values).

    Given a path, the file is rewritten atomically and the path returned; given an
    onnx.ModelProto, it is updated in place and returned.
    """
    import onnx

    contract = {"contract_version": CONTRACT_VERSION, **contract}
    missing = [k for k in REQUIRED if k not in contract]
    if missing:
        raise ValueError(f"model contract lacks {', '.join(missing)}")
    is_path = isinstance(onnx_path_or_model, str | Path)
    model = onnx.load(str(onnx_path_or_model)) if is_path else onnx_path_or_model
    keep = [p for p in model.metadata_props if p.key not in contract]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in contract.items():
        model.metadata_props.add(key=str(key), value=json.dumps(value))
    if not is_path:
        return model
    path = Path(onnx_path_or_model)
    with atomic_path(path) as tmp:
        onnx.save(model, tmp)
    return path


def _decode(props: dict[str, str]) -> dict:
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value  # metadata written by other tools: keep the raw string
    return out


def read_contract(onnx_path: str | Path) -> dict:
    """The contract stored in an ONNX model file; InputError if the file has none, or one of a format newer
    than CONTRACT_VERSION (made by a newer Sentinel Densify)."""
    path = Path(onnx_path)
    if not path.exists():
        raise InputError(f"model file {path} does not exist")
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
    except ImportError:  # onnx not installed: onnxruntime can read metadata too
        props = dict(open_session(path, "cpu").get_modelmeta().custom_metadata_map)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
        raise InputError(f"{path.name}: not a readable ONNX model ({exc})") from None
    contract = _decode(props)
    missing = [k for k in REQUIRED if k not in contract]
    if missing:
        raise InputError(f"{path.name}: no Sentinel Densify model contract in its metadata "
                         f"(missing {', '.join(missing)})")
    version = contract.get("contract_version", CONTRACT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > CONTRACT_VERSION:
        raise InputError(f"{path.name}: its contract format {version!r} was made by a newer Sentinel Densify "
                         f"(this one reads format {CONTRACT_VERSION} and older): update the plugin to run it")
    return contract


def gpu_present() -> bool:
    """Whether an NVIDIA driver is there for the CUDA provider to load (always tried on Windows)."""
    return os.name == "nt" or Path("/dev/nvidiactl").exists()


def cuda_wanted(device: str | None) -> str | None:
    """How a device option asks for CUDA: "required" (cuda, cuda:N, gpu), "optional" (auto, the
    default) or None (cpu). The one reading of it for inference and its warnings."""
    dev = (device or "auto").lower()
    if dev.startswith("cuda") or dev == "gpu":
        return "required"
    return "optional" if dev == "auto" else None


# full float32 on the GPU: with TF32 (ONNX Runtime's default on Ampere and later) the bundled model's
# outputs on an H200 were up to 1.3 DN from the CPU's, without it 0.002 DN; the model is a small share of
# a run's time there
CUDA_OPTIONS = {"use_tf32": "0"}
_PRELOADED: list[bool] = []


def preload_cuda_libraries(ort) -> None:
    """Load CUDA's and cuDNN's libraries from NVIDIA's pip packages (`onnxruntime.preload_dlls`), where
    the CUDA provider would not find them on the library path; once per process, and silently: where
    they are missing the provider fails to start and the CPU runs (open_session)."""
    if _PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _PRELOADED.append(True)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        ort.preload_dlls()


def open_session(path: str | Path, device: str = "auto"):
    """An ONNX Runtime session on CUDA when a GPU is present and `device` allows it, else on the CPU.

    The one place models are opened for inference; `session.get_providers()[0]` says what runs.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(f"{Path(path).name}: running ONNX models needs the onnxruntime package "
                         "(pip install onnxruntime), which this Python does not have") from None

    providers = ["CPUExecutionProvider"]
    if cuda_wanted(device) and gpu_present() and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", CUDA_OPTIONS))
        preload_cuda_libraries(ort)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no warning when CUDA is listed but no GPU is present
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - a corrupt model or a failing provider
        if len(providers) > 1:
            try:
                return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001
                pass
        raise InputError(f"{Path(path).name}: ONNX Runtime cannot load this model ({exc})") from None
