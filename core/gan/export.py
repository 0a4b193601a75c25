"""ONNX export of the cloud-removal generators (pix2pix, mtcgan, cnn) with their model contract."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..atomic import ensure_folder
from ..errors import InputError
from ..training import load_checkpoint

VERSION = 1  # the model version of the contract (temporal: core/temporal/export.py), bumped when inputs change

INPUT_NAMES = {
    "pix2pix": lambda bands: ["VV", "VH"] + [f"cloudy_{b}" for b in bands],
    "mtcgan": lambda bands: ["VV_t1", "VH_t1"] + [f"clear_t1_{b}" for b in bands] + ["VV_t2", "VH_t2"],
    "cnn": lambda bands: ["VV_t1", "VH_t1"] + [f"clear_t1_{b}" for b in bands] + ["VV_t2", "VH_t2"],
}


def build_from_checkpoint(checkpoint_path: str | Path):
    """(generator in eval mode, checkpoint dict) from a training checkpoint."""
    from .nets import build_generator

    ck = load_checkpoint(checkpoint_path)
    net = (ck.get("config") or {}).get("net")
    if ck["kind"] not in INPUT_NAMES:
        raise InputError(f"{Path(checkpoint_path).name}: a '{ck['kind']}' checkpoint, not pix2pix/mtcgan/cnn")
    if not isinstance(net, dict):
        raise InputError(f"{Path(checkpoint_path).name}: its config lacks the network ('net'): not a checkpoint "
                         f"written by densify train {ck['kind']}")
    try:
        gen = build_generator(net)
        gen.load_state_dict(ck["model_state"])
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
        from ..temporal.train import state_dict_error

        raise InputError(f"{Path(checkpoint_path).name}: its weights do not fit the architecture its config names "
                         f"({state_dict_error(exc)})") from None
    return gen.eval(), ck


def contract_for(ck: dict) -> dict:
    """The model contract of a cloud-removal checkpoint."""
    net, cfg = ck["config"]["net"], ck["config"]
    divisor = 2 ** net["depth"] if net["kind"] == "pix2pix" else 1
    return {
        "kind": net["kind"],
        "version": VERSION,
        "task": "single-date cloud removal" if net["kind"] == "pix2pix" else "multi-temporal S2 simulation",
        "inputs": {"input": {"channels": INPUT_NAMES[net["kind"]](net["bands"]), "layout": "NCHW"}},
        "outputs": {"output": {"channels": list(net["bands"]), "units": "scaled reflectance [-1, 1]"}},
        "bands": list(net["bands"]),
        "scaling": {"s1": {"units": "dB", "clip": net["s1_range"], "to": [-1, 1]},
                    "s2": {"units": "reflectance", "clip": net["s2_range"], "to": [-1, 1]},
                    "nodata_fill": 0.0},
        "tile": {"size": int(net["patch"]), "overlap": int(net["patch"]) // 4, "divisor": divisor},
        "network": {k: net[k] for k in ("ngf", "depth", "n_blocks", "dropout") if k in net},
        "training": {"data": cfg.get("data"), "epochs": ck["epoch"], "n_train": cfg.get("n_train"),
                     "n_val": cfg.get("n_val"), "lambda_l1": cfg.get("lambda_l1"), "seed": cfg.get("seed"),
                     # the held-out triplets (scripts/eval_cloud_removal.py scores the model on these)
                     **({"val_names": list(cfg["val_names"])} if cfg.get("val_names") is not None else {})},
        "metrics": ck.get("metrics", {}),
    }


def export_onnx(checkpoint_path: str | Path, out_path: str | Path) -> Path:
    """Export the generator of a checkpoint to ONNX (dynamic batch and size), contract included;
    OutputError, before any work, when `out_path` cannot be written."""
    import torch

    from ..atomic import OutputError, output_file_problem
    from ..model_contract import write_contract

    if problem := output_file_problem(out_path, suffix=".onnx"):
        raise OutputError(f"{out_path}: {problem}")

    gen, ck = build_from_checkpoint(checkpoint_path)
    net = ck["config"]["net"]
    out_path = Path(out_path)
    ensure_folder(out_path.parent, out_path)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    x = torch.zeros(1, net["in_ch"], net["patch"], net["patch"])
    try:
        with warnings.catch_warnings():  # torch's notes on constant folding (MTcGAN's ResNet): not the user's concern
            warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
            torch.onnx.export(gen, (x,), str(tmp), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}},
                              opset_version=17, dynamo=False)
        write_contract(tmp, contract_for(ck))
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
