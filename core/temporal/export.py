"""Export a temporal checkpoint to ONNX (opset 17, dynamic batch, K and tile size) with its contract; the
attention in its inference form (model.FusedCrossAttention: the same outputs, faster)."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..atomic import OutputError, atomic_path, output_file_problem
from ..model_contract import write_contract
from ..stack import S2_BANDS

OPSET = 17
TILE, OVERLAP = 64, 16


def contract_for(ckpt: dict) -> dict:
    """The model contract of a temporal checkpoint (see core/model_contract.py)."""
    from .dataset import GAP_SCALE, MIN_USABLE, S1_SIGMA
    from .model import N_TIME, OUTPUTS, PERIODS, input_names

    cfg, met = ckpt["config"], ckpt.get("metrics", {})
    change = bool(cfg["model"].get("s1_change", False))
    obs = bool(cfg["model"].get("obs_s1_change", False))
    span = bool(cfg["model"].get("s1_span", False))
    guided = cfg["model"].get("s1_guided")
    inputs = input_names(change, obs)
    haze = cfg.get("haze_screen")
    how = ("before the inputs are built, S2 pixels whose B02, smoothed over size x size px, rose more than "
           "threshold (reflectance) above the lowest clear B02 of the other dates within window_days, and more "
           "than B04 rose or more than bright, are masked like clouds (sentinel_densify.core.haze)")
    screen = {"haze_screen": haze | {"how": how}} if haze else {}
    pooled = ("; the VV, VH change averaged over a window of {w} px a side, each known neighbour weighted by "
              "exp(-|g_i - g_j|^2 / (2 sigma^2)), g the previous and next clear {g}, sigma {s:g} "
              "(sentinel_densify.core.temporal.dataset.guided_change)")
    extra = {"s1_change": f"(n, {6 if span else 3}, h, w) float32: S1 VV, VH (dB) at the target minus S1 interpolated "
                          "between the per-pixel dates of the previous / next clear S2 (S1 read as a Gaussian-weighted "
                          f"mean, sigma {S1_SIGMA:g} d), 0 where unknown; known (0/1)"
                          + ("; then S1 VV, VH (dB) at the next clear date minus at the previous one, 0 where "
                             "unknown; known (0/1)" if span else "")
                          + (pooled.format(w=2 * guided["radius"] + 1, g=", ".join(guided["guide_bands"]),
                                           s=guided["sigma"]) if guided else "")} if change else {}
    if guided and guided.get("obs"):
        extra["s1"] = ("(n, K1, 2, h, w) float32 dB, each acquisition averaged like s1_change (window of "
                       f"{2 * guided['radius'] + 1} px a side, weighted by how alike the pixels' previous and next "
                       f"clear {', '.join(guided['guide_bands'])} are; "
                       "sentinel_densify.core.temporal.dataset.guided_s1)")
    if obs:
        extra["obs_s1_change"] = ("(n, K2, 3, h, w) float32: per S2 observation, S1 VV, VH (dB) at the target minus "
                                  "S1 at the observation's date (both Gaussian-weighted means), 0 where unknown; "
                                  "known (0/1); padding slots 0")
    return {
        "kind": "temporal",
        "name": "S1+S2 temporal cross-attention generator",
        "version": (7 if guided and guided.get("obs") else 6 if guided else 5 if span else 4 if obs
                    else 3 if change else 2),
        "bands": list(S2_BANDS),
        "s1_bands": ["VV", "VH"],
        "scaling": {"s2": "surface reflectance (DN * 1e-4 + offset), normalised inside the model",
                    "s1": "backscatter in dB, normalised inside the model",
                    "outputs": "mean reflectance; logvar = log variance of reflectance"},
        "time_encoding": {"dt": "observation day - target day (days)",
                          "periods_days": list(PERIODS), "features": N_TIME,
                          "doy": "day of year of the target (0-based), sin/cos over 365.25 d",
                          "base_info": ["baseline valid", f"days to previous clear / {GAP_SCALE:g}",
                                        f"days to next clear / {GAP_SCALE:g}", "previous clear exists",
                                        "next clear exists"], "cap_days": 3 * GAP_SCALE},
        "k2": int(cfg["k2"]), "k1": int(cfg["k1"]), "min_usable_fraction": MIN_USABLE,
        "tile": TILE, "overlap": OVERLAP, "halo": max(8, int(guided["radius"]) + 3) if guided else 8,
        "inputs": {
            "s2": "(n, K2, 10, h, w) float32 reflectance, 0 where invalid",
            "s2_valid": "(n, K2, h, w) float32 1 clear / 0 masked out of attention",
            "s2_dt": "(n, K2) float32 days", "s1": "(n, K1, 2, h, w) float32 dB",
            "s1_valid": "(n, K1, h, w) float32", "s1_dt": "(n, K1) float32 days",
            "base": "(n, 10, h, w) float32 linear-interpolation baseline (0 where none)",
            "near": "(n, 20, h, w) float32 previous then next clear reflectance per pixel (0 where none)",
            "base_info": "(n, 5, h, w) float32", "target_doy": "(n,) float32", **extra,
            "order": inputs},
        "outputs": {"mean": "(n, 10, h, w) reflectance", "logvar": "(n, 10, h, w)", "order": list(OUTPUTS)},
        "calibration": calibration_for(met),
        "architecture": cfg["model"] | {"type": "TemporalGenerator"},
        "training": {"data": cfg.get("data"), "holdout": cfg.get("holdout"), "seed": cfg.get("seed"),
                     "epochs": int(ckpt["epoch"]) + 1, "steps_per_epoch": cfg.get("steps"),
                     "batch": cfg.get("batch"), "crop": cfg.get("crop"), "lr": cfg.get("lr"),
                     "max_gap": cfg.get("max_gap"), "max_lead": cfg.get("max_lead")},
        "metrics": {k: v for k, v in met.items() if isinstance(v, int | float)},
        **screen,
    }


def calibration_for(met: dict) -> dict:
    """The contract's calibration from a checkpoint's validation metrics: a global std_scale and,
    when the metrics have it, std_scale_by_days (calibration.py), which the ONNX method prefers."""
    cal = {"std_scale": float(met.get("temperature", 1.0)),
           "how": "std = exp(logvar / 2) * std_scale; std_scale fitted on held-out dates "
                  "so that 68.3 % of |error| <= std"}
    if met.get("temperature_by_days"):
        cal["std_scale_by_days"] = {"days": [float(d) for d in met["temperature_days"]],
                                    "scale": [float(v) for v in met["temperature_by_days"]]}
        cal["how"] = ("std = exp(logvar / 2) * s(d), d = days from the target to the pixel's nearest clear "
                      "S2 observation (from base_info), s interpolated linearly between std_scale_by_days "
                      "(constant beyond), fitted per bin of d on held-out dates so that 68.3 % of |error| "
                      "<= std; std_scale: the same with one bin")
    return cal


def example_inputs(k2: int = 8, k1: int = 8, size: int = 32, n: int = 2, s1_change: bool = False,
                   obs_s1_change: bool = False, s1_span: bool = False):
    import torch

    g = torch.Generator().manual_seed(0)
    change = (torch.cat([torch.randn(n, 2, size, size, generator=g), torch.ones(n, 1, size, size)]
                        * (2 if s1_span else 1), 1),)
    return (torch.rand(n, k2, 10, size, size, generator=g) * 0.4,
            (torch.rand(n, k2, size, size, generator=g) > 0.3).float(),
            torch.linspace(-40, 40, k2).repeat(n, 1),
            torch.randn(n, k1, 2, size, size, generator=g) * 3 - 12,
            torch.ones(n, k1, size, size),
            torch.linspace(-30, 30, k1).repeat(n, 1),
            torch.rand(n, 10, size, size, generator=g) * 0.4,
            torch.rand(n, 20, size, size, generator=g) * 0.4,
            (torch.rand(n, 5, size, size, generator=g) > 0.2).float(),
            torch.full((n,), 180.0)) + (change if s1_change else ()) + (
        (torch.cat([torch.randn(n, k2, 2, size, size, generator=g), torch.ones(n, k2, 1, size, size)], 2),)
        if obs_s1_change else ())


def export_onnx(ckpt_path: str | Path, out: str | Path, recalibrate: bool = False,
                haze: float | None = None) -> Path:
    """Write the checkpoint's model to `out` (.onnx, atomically) with its contract in the metadata;
    `recalibrate`: measure its validation again first (train.revalidate), for the calibration.
    `haze`: the haze screen threshold the exported model's inputs go through instead of the one it
    was trained with (0: none); its validation is then measured again with it (implies recalibrate).
    OutputError, before any work, when `out` cannot be written."""
    import torch

    from ..haze import from_threshold
    from ..training import load_checkpoint
    from .model import OUTPUTS, for_inference, input_names
    from .train import model_from_checkpoint, revalidate

    if problem := output_file_problem(out, suffix=".onnx"):
        raise OutputError(f"{out}: {problem}")
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, Path(ckpt_path).name)
    if haze is not None:
        model.haze = ckpt["config"]["haze_screen"] = from_threshold(haze)
        recalibrate = True
    if recalibrate:
        ckpt["metrics"] = {**ckpt.get("metrics", {}), **revalidate(ckpt, model)}
    names = input_names(model.use_s1_change, model.use_obs_change)
    out = Path(out)
    axes = {"s2": {0: "n", 1: "k2", 3: "h", 4: "w"}, "s2_valid": {0: "n", 1: "k2", 2: "h", 3: "w"},
            "s2_dt": {0: "n", 1: "k2"}, "s1": {0: "n", 1: "k1", 3: "h", 4: "w"},
            "s1_valid": {0: "n", 1: "k1", 2: "h", 3: "w"}, "s1_dt": {0: "n", 1: "k1"},
            "base": {0: "n", 2: "h", 3: "w"}, "near": {0: "n", 2: "h", 3: "w"}, "base_info": {0: "n", 2: "h", 3: "w"},
            "target_doy": {0: "n"}, "s1_change": {0: "n", 2: "h", 3: "w"},
            "obs_s1_change": {0: "n", 1: "k2", 3: "h", 4: "w"},
            "mean": {0: "n", 2: "h", 3: "w"}, "logvar": {0: "n", 2: "h", 3: "w"}}
    with atomic_path(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # return_attn is a constant False
            torch.onnx.export(for_inference(model), example_inputs(ckpt["config"]["k2"], ckpt["config"]["k1"],
                                                    s1_change=model.use_s1_change,
                                                    obs_s1_change=model.use_obs_change,
                                                    s1_span=model.use_s1_span), tmp,
                              input_names=names, output_names=list(OUTPUTS),
                              dynamic_axes={k: v for k, v in axes.items() if k in names or k in OUTPUTS},
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        write_contract(tmp, contract_for(ckpt))
    return out
