"""Train the temporal S1+S2 generator on a real series (`densify train temporal ...`).

Run alone, or with DDP: `torchrun --nproc_per_node=N -m sentinel_densify.core.temporal.train ...`.
Two kinds of month blocks are kept out of training (neither targets nor inputs): test months
(every 4th month of the series, for `densify evaluate` afterwards, never looked at here) and
validation months (every 8th, another phase), on which the protocol tasks of EVALUATION.md
choose the best checkpoint and fit the std temperature.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..atomic import first_line, new_dirs_removed_on_error
from ..cli import DefaultsHelpFormatter
from ..errors import DensifyError, InputError
from ..evaluate import FORECAST, GAP, inputs_for
from ..haze import from_threshold
from ..metrics import psnr
from ..stack import Stack
from .dataset import (
    GUIDE_BANDS,
    GUIDE_SIGMA,
    Sampler,
    SamplerConfig,
    baselines,
    load_series,
    model_inputs,
    month_block,
    split_dates,
    validation_dates,
)

KIND = "temporal"
VAL_GAPS = (0.0, 10.0, 30.0)  # the protocol's gaps and leads (EVALUATION.md)
VAL_LEADS = (5.0, 15.0, 30.0, 60.0)
VAL_MIN_CLEAR = 0.8  # validation targets: validation-month S2 dates at least this clear
CAL_MIN_CLEAR = 0.95  # the std temperature is fitted on the clearest of them (truth like the protocol's)


RECIPE = ("--epochs 16 --steps 40 --batch 8 --crop 24 --k1 6 --lr 1e-3 --points-steps 300 --points-batch 256 "
          "--points-mix 0.5 --s1-change --cloud-context --target-margin 3 --p-clouds 0.8 --haze-screen 0.04 "
          "--haze-targets --k2 6 --s1-guided 5")  # the bundled model's; scripts/build_default_model.sh reads it here
ARCHITECTURE = {  # option -> (its value in a checkpoint's config, its value in args): fixed for a run
    "--width": (lambda c: c["model"].get("d"), lambda a: a.width),
    "--heads": (lambda c: c["model"].get("heads"), lambda a: a.heads),
    "--layers": (lambda c: c["model"].get("layers"), lambda a: a.layers),
    "--cloud-context": (lambda c: bool(c["model"].get("cloud_context")), lambda a: bool(a.cloud_context)),
    "--s1-change": (lambda c: bool(c["model"].get("s1_change")), lambda a: bool(a.s1_change)),
    "--obs-s1-change": (lambda c: bool(c["model"].get("obs_s1_change")), lambda a: bool(a.obs_s1_change)),
    "--s1-span": (lambda c: bool(c["model"].get("s1_span")), lambda a: bool(a.s1_span)),
    "--s1-guided": (lambda c: int((c["model"].get("s1_guided") or {}).get("radius", 0)),
                    lambda a: int(getattr(a, "s1_guided", 0))),
    "--s1-guided-obs": (lambda c: bool((c["model"].get("s1_guided") or {}).get("obs")),
                        lambda a: bool(getattr(a, "s1_guided_obs", False))),
    "--dropout": (lambda c: float(c["model"].get("dropout", 0.0)), lambda a: float(getattr(a, "dropout", 0.0))),
    "--k2": (lambda c: c.get("k2"), lambda a: a.k2),
    "--k1": (lambda c: c.get("k1"), lambda a: a.k1),
    "--haze-screen": (lambda c: float((c.get("haze_screen") or {}).get("threshold", 0.0)),
                      lambda a: float(a.haze_screen)),
    "--haze-targets": (lambda c: bool(c.get("haze_targets")), lambda a: bool(a.haze_targets)),
}
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")
# training options a resume may change (the config records them under "resumed")
RESUMABLE = ("crop", "batch", "lr", "seed", "steps", "max_gap", "max_lead", "min_target_clear", "p_clouds",
             "target_margin", "doy_jitter", "weight_decay", "ema", "beta_nll", "band_weights")
RESUMABLE_BEFORE = {"band_weights": "equal"}  # what checkpoints saved before an option existed trained with


class _HelpFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown (where there is one), the epilog (the recipe) kept as written."""


def configure(parser: argparse.ArgumentParser) -> None:
    from ..cli import fraction, nonnegative_float, nonnegative_int, positive_float, positive_int

    parser.formatter_class = _HelpFormatter
    parser.epilog = ("The bundled default model (scripts/build_default_model.sh) was trained per fold F and "
                     f"seed S with --holdout-offset F --seed S and:\n  {RECIPE}")
    parser.add_argument("--data", required=True, help="series folder with S2/ (L2A + SCL) and S1/")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, metrics.jsonl)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="epochs (each ends with validation "
                        "and a checkpoint)")
    parser.add_argument("--steps", type=positive_int, default=40, help="optimiser steps per epoch")
    parser.add_argument("--batch", type=positive_int, default=8, help="samples per step")
    parser.add_argument("--crop", type=positive_int, default=32, help="side of the training crops (px)")
    parser.add_argument("--lr", type=positive_float, default=2e-3,
                        help="initial learning rate (cosine decay to 5 %% of it)")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=0.0,
                        help="decoupled weight decay (AdamW) when > 0, else Adam")
    parser.add_argument("--seed", type=int, default=0, help="random seed (sampling, initial weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/last.pt with the same architecture, data and held-out months; "
                             "other training options may change (the config records them under 'resumed'); "
                             "a larger --epochs stretches the learning-rate schedule")
    parser.add_argument("--width", type=positive_int, default=32, help="feature width d (a multiple of --heads)")
    parser.add_argument("--heads", type=positive_int, default=2, help="attention heads")
    parser.add_argument("--layers", type=positive_int, default=2, help="cross-attention layers")
    parser.add_argument("--dropout", type=fraction, default=0.0,
                        help="dropout on each layer's attention and MLP branches while training (0: none)")
    parser.add_argument("--cloud-context", action="store_true",
                        help="each S2 observation is encoded with the clear fraction around each pixel (haze cue)")
    parser.add_argument("--s1-change", action="store_true",
                        help="the query also sees what S1 saw change since the dates the linear baseline "
                             "interpolates between (input s1_change, contract version 3)")
    parser.add_argument("--obs-s1-change", action="store_true",
                        help="with --s1-change: each S2 observation also carries S1 at the target minus S1 at its "
                             "own date (input obs_s1_change, contract version 4)")
    parser.add_argument("--s1-span", action="store_true",
                        help="with --s1-change: the query also sees S1 at each pixel's next clear S2 date minus S1 "
                             "at its previous one (s1_change with 6 channels, contract version 5)")
    parser.add_argument("--s1-guided", type=nonnegative_int, default=0, metavar="RADIUS",
                        help="with --s1-change: its VV / VH change averaged over a (2 RADIUS + 1)^2 px window, "
                             "weighted by how alike the pixels' clear B04, B08, B11 are (a field pools its radar); "
                             "0: per pixel")
    parser.add_argument("--s1-guided-obs", action="store_true",
                        help="with --s1-guided: the S1 observations the query attends to are averaged the same way "
                             "(each acquisition's speckle pooled over its field; contract version 7)")
    parser.add_argument("--k2", type=positive_int, default=8, help="S2 observations used (nearest in time)")
    parser.add_argument("--k1", type=positive_int, default=8, help="S1 observations used (nearest in time)")
    parser.add_argument("--max-gap", type=nonnegative_float, default=60.0, help="largest random gap hidden (days)")
    parser.add_argument("--max-lead", type=nonnegative_float, default=60.0, help="largest forecast lead (days)")
    parser.add_argument("--holdout-every", type=positive_int, default=4, help="test: hold out every Nth month block")
    parser.add_argument("--holdout-offset", type=nonnegative_int, default=None,
                        help="test months: month index %% N == this, 0..N-1 (None: N - 1)")
    parser.add_argument("--val-every", type=positive_int, default=8, help="validation: every Nth month block")
    parser.add_argument("--val-offset", type=nonnegative_int, default=1,
                        help="validation months: month index %% N == this, 0..N-1")
    parser.add_argument("--min-target-clear", type=fraction, default=0.5,
                        help="training targets: S2 dates at least this clear")
    parser.add_argument("--target-margin", type=nonnegative_int, default=0,
                        help="training loss only on target pixels at least this many px from a non-clear pixel")
    parser.add_argument("--doy-jitter", type=nonnegative_float, default=0.0,
                        help="shift each training sample's day of year by up to +/- this many days (the season "
                             "cue stays approximate, so the model cannot memorise the one training year by date)")
    parser.add_argument("--p-clouds", type=fraction, default=0.5,
                        help="probability of borrowing cloud masks from other dates in a sample")
    parser.add_argument("--points", default=None,
                        help="point-series parquet (WorldCereal dekads) to pre-train the per-pixel "
                             "temporal part on before the series epochs")
    parser.add_argument("--points-steps", type=nonnegative_int, default=200, help="pre-training steps on --points")
    parser.add_argument("--points-batch", type=positive_int, default=256, help="points (1 x 1 px) per step")
    parser.add_argument("--points-mix", type=nonnegative_float, default=0.0,
                        help="weight of a points-batch loss added to every series step (0: pre-training only); "
                             "keeps the model close to the many point series while it fits the one scene")
    parser.add_argument("--ema", type=float, default=0.99,
                        help="decay of the exponential moving average of the weights that is validated, "
                             "saved and exported (0: the raw weights)")
    parser.add_argument("--beta-nll", type=nonnegative_float, default=0.0,
                        help="beta-NLL loss (Seitzer et al. 2022): weight each pixel's NLL by its variance ** beta "
                             "(0: plain Gaussian NLL, 0.5 usual)")
    parser.add_argument("--band-weights", choices=("equal", "variance"), default="equal",
                        help="the loss's weight per band: equal (in per-band normalised units), or each band's "
                             "variance (as the reflectance MSE and PSNR weigh them: red-edge / NIR most)")
    parser.add_argument("--haze-screen", type=nonnegative_float, default=0.0, metavar="THRESHOLD",
                        help="screen out S2 pixels whose blue reflectance rose more than THRESHOLD above the other "
                             "clear observations within 20 d (haze SCL calls clear; core/haze.py) from the model's "
                             "inputs, in training and in the exported model (0: off)")
    parser.add_argument("--haze-targets", action="store_true",
                        help="with --haze-screen: the loss also leaves out target pixels the screen calls hazy")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (never drawn when stderr is not a terminal)")


def holdout_offset(args: argparse.Namespace) -> int:
    """The test months' offset: --holdout-offset, by default the last of each --holdout-every months."""
    return args.holdout_every - 1 if args.holdout_offset is None else args.holdout_offset


def check_args(args: argparse.Namespace) -> dict | None:
    """Refuse (InputError / OutputError) option values and OUT folders training would fail on or
    misuse, before any data is read; returns OUT/last.pt's checkpoint when resuming."""
    from ..training import check_run_folder, load_checkpoint

    if args.width % args.heads:
        raise InputError(f"--width {args.width} must be divisible by --heads {args.heads}")
    offset = holdout_offset(args)
    if not 0 <= offset < args.holdout_every:
        raise InputError(f"--holdout-offset {offset} must be in 0..{args.holdout_every - 1} (--holdout-every - 1): "
                         "no month would be held out for testing")
    if not 0 <= args.val_offset < args.val_every:
        raise InputError(f"--val-offset {args.val_offset} must be in 0..{args.val_every - 1} (--val-every - 1)")
    if not 0 <= getattr(args, "ema", 0.0) < 1:
        raise InputError(f"--ema {args.ema} must be in [0, 1)")
    if not 0 <= getattr(args, "dropout", 0.0) < 1:
        raise InputError(f"--dropout {args.dropout} must be in [0, 1)")
    if getattr(args, "haze_targets", False) and not getattr(args, "haze_screen", 0.0):
        raise InputError("--haze-targets needs --haze-screen THRESHOLD (it leaves out the pixels the screen "
                         "calls hazy)")
    from_threshold(getattr(args, "haze_screen", 0.0))
    for option in ("obs_s1_change", "s1_span", "s1_guided"):
        if getattr(args, option, False) and not getattr(args, "s1_change", False):
            raise InputError(f"--{option.replace('_', '-')} needs --s1-change (it adds to or averages that input)")
    if getattr(args, "s1_guided_obs", False) and not getattr(args, "s1_guided", 0):
        raise InputError("--s1-guided-obs needs --s1-guided RADIUS (it averages the S1 observations with its window)")
    out = Path(args.out)
    check_run_folder(out, RUN_FILES, args.resume, "--resume")
    last = out / "last.pt"
    if not args.resume:
        return None
    if not last.is_file():
        raise InputError(f"--resume: {last} does not exist (nothing to continue; leave out --resume to start)")
    ckpt = load_checkpoint(last)
    if ckpt.get("kind") != KIND:
        raise InputError(f"{last}: a '{ckpt.get('kind')}' checkpoint, not '{KIND}'")
    try:
        differ = [f"{opt} {mine!r} (checkpoint: {theirs!r})" for opt, (cfg_value, arg_value) in ARCHITECTURE.items()
                  if (mine := arg_value(args)) != (theirs := cfg_value(ckpt["config"]))]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{last}: its config lacks {first_line(exc)}: cannot resume from it") from None
    cfg = ckpt["config"]
    if cfg.get("data") and cfg["data"] != str(Path(args.data).resolve()):
        differ.append(f"--data {args.data} (checkpoint: {cfg['data']})")
    rule = (cfg.get("holdout") or {}).get("rule")
    if rule and rule != holdout_rule(args):  # other held-out months: test months could end up in training
        differ.append(f"--holdout-every/--holdout-offset/--val-every/--val-offset {args.holdout_every}/"
                      f"{holdout_offset(args)}/{args.val_every}/{args.val_offset} (checkpoint: {rule})")
    points = (cfg.get("points") or {}).get("file")
    if points and getattr(args, "points", None) and points != str(Path(args.points).resolve()):
        differ.append(f"--points {args.points} (checkpoint: {points})")
    elif points and not getattr(args, "points", None):  # else the run would go on without them, its config not
        differ.append(f"no --points (checkpoint: {points})")
    if differ:
        raise InputError(f"--resume: options differ from {last}'s run: {'; '.join(differ)}; give the run's "
                         "values or another --out")
    done = ckpt.get("epoch")  # 0-based
    if isinstance(done, int) and done + 1 >= args.epochs:
        raise InputError(f"--resume: the run in {out} already finished epoch {done + 1} of "
                         f"{cfg.get('epochs', done + 1)}: give a larger --epochs (more than {done + 1}) to train "
                         "it further")
    return ckpt


def holdout_rule(args: argparse.Namespace) -> str:
    """The held-out months of a run, as its config records them."""
    return (f"test: S2 dates whose month index since the series start % {args.holdout_every} "
            f"== {holdout_offset(args)}; validation: % {args.val_every} == {args.val_offset}; "
            "neither is shown in training")


def _stats(stack: Stack, keep: np.ndarray) -> dict:
    s2 = stack.s2[keep]
    s1 = np.concatenate([stack.s1, stack.s1[:, :1] - stack.s1[:, 1:2]], axis=1)
    return {"s2_mean": np.nanmean(s2, axis=(0, 2, 3)).round(5).tolist(),
            "s2_std": np.nanstd(s2, axis=(0, 2, 3)).round(5).tolist(),
            "s1_mean": np.nanmean(s1, axis=(0, 2, 3)).round(4).tolist(),
            "s1_std": np.nanstd(s1, axis=(0, 2, 3)).round(4).tolist()}


MODEL_KEYS = ("d", "heads", "layers", "s2_mean", "s2_std", "s1_mean", "s1_std")  # config["model"]: the architecture


def build_model(config: dict):
    from .model import TemporalGenerator

    m = config["model"]
    model = TemporalGenerator(m["d"], m["heads"], m["layers"], m["s2_mean"], m["s2_std"],
                              m["s1_mean"], m["s1_std"], m.get("cloud_context", False), m.get("s1_change", False),
                              m.get("obs_s1_change", False), m.get("s1_span", False), m.get("dropout", 0.0))
    model.haze = config.get("haze_screen")  # the haze screen its inputs go through (None: SCL only)
    model.s1_guided = m.get("s1_guided")  # model_inputs()' `guided`: field-scale S1 (None: per pixel)
    return model


def state_dict_error(exc: BaseException, limit: int = 240) -> str:
    """The informative line of torch's load_state_dict error (its first "size mismatch" / "Missing key(s)" /
    "Unexpected key(s)" line, shortened), else its first line."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("size mismatch", "Missing key(s)", "Unexpected key(s)")):
            return line if len(line) <= limit else line[:limit - 1] + "…"
    return first_line(exc)


def model_from_checkpoint(ckpt: dict, name: str = "checkpoint"):
    """The evaluation-mode TemporalGenerator of a loaded checkpoint (`name` for the error when the
    checkpoint holds another kind of model)."""
    if ckpt.get("kind") != KIND:
        raise InputError(f"{name}: a '{ckpt.get('kind')}' checkpoint, not '{KIND}'")
    arch = ckpt["config"].get("model")
    missing = [k for k in MODEL_KEYS if k not in arch] if isinstance(arch, dict) else ["model"]
    if missing:
        raise InputError(f"{name}: its config lacks the architecture ({', '.join(missing)}): not a checkpoint "
                         "written by densify train temporal")
    try:
        model = build_model(ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(f"{name}: its weights do not fit the architecture its config names "
                         f"({state_dict_error(exc)})") from None
    return model.eval()


def to_tensors(batch: dict[str, np.ndarray], device) -> list:
    import torch

    from .model import INPUTS

    return [torch.as_tensor(np.ascontiguousarray(batch[k]), device=device) for k in INPUTS if k in batch]


def inputs_of(model, stack: Stack, day: float, k2: int, k1: int) -> dict[str, np.ndarray]:
    """model_inputs() with what this model takes and the haze screen it was trained / exported with."""
    return model_inputs(stack, day, k2, k1, change=model.use_s1_change, haze=model.haze,
                        obs_change=model.use_obs_change, span=model.use_s1_span, guided=model.s1_guided)


def predict(model, stack: Stack, day: float, k2: int, k1: int, device=None,
            x: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (B, h, w) over the whole window of `stack` with the torch model (`x`: its
    model_inputs when already built)."""
    import torch

    x = inputs_of(model, stack, day, k2, k1) if x is None else x
    batch = {k: v[None] for k, v in x.items()}
    with torch.no_grad():
        mean, logvar = model(*to_tensors(batch, device or "cpu"))
    return mean[0].float().cpu().numpy(), np.exp(0.5 * logvar[0].float().cpu().numpy())


def val_targets(stack: Stack, val: np.ndarray) -> np.ndarray:
    """Validation dates clear enough to score (>= VAL_MIN_CLEAR)."""
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
    return np.flatnonzero(val & (clear >= VAL_MIN_CLEAR))


def validation_view(stack: Stack, test: np.ndarray, val: np.ndarray) -> tuple[Stack, np.ndarray]:
    """What validation sees: the series without its test months, and the indices in it of the
    validation dates clear enough to score."""
    seen = stack.select_s2(~test)
    return seen, val_targets(seen, val[~test])


def validate(model, stack: Stack, targets: np.ndarray, k2: int, k1: int, device=None) -> dict:
    """The protocol tasks (gaps VAL_GAPS, leads VAL_LEADS) on `targets` of `stack` (which holds no
    test date): PSNR of the model and of `linear` (= persistence when forecasting) per task, the
    coverage of the raw std, the std temperature that puts 68.3 % of |error| within 1 std on the
    targets at least CAL_MIN_CLEAR clear (all targets if none is), the same per bin of the days to
    the nearest clear observation (temperature_days / temperature_by_days, see calibration.py),
    and val_score = the mean PSNR gain over the baseline across tasks."""
    from .calibration import fit_by_days, nearest_clear_days

    rows, zs, zcal, dcal = [], [], [], []
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
    for t in targets:
        day = float(stack.s2_days[t])
        truth, ok = stack.s2[t], stack.valid[t]
        for task, days in [(GAP, g) for g in VAL_GAPS] + [(FORECAST, lead) for lead in VAL_LEADS]:
            sub = inputs_for(stack, day, task, days)
            if not len(sub.s2_days):
                continue
            x = inputs_of(model, sub, day, k2, k1)
            linear = baselines(sub.s2, sub.s2_days, day)[0] if model.haze else x["base"]  # the protocol's, on SCL
            ok_t = ok & np.isfinite(linear).all(axis=0) & (x["base_info"][0] > 0.5)
            if not ok_t.any():
                continue
            mean, std = predict(model, sub, day, k2, k1, device, x=x)
            rows.append({"task": "gap" if task == GAP else "forecast", "days": days,
                         "psnr": psnr(mean, truth, ok_t), "psnr_linear": psnr(linear, truth, ok_t)})
            zs.append(((mean - truth) / std)[:, ok_t].ravel())
            if clear[t] >= CAL_MIN_CLEAR:
                zcal.append(zs[-1])
                dcal.append(np.tile(nearest_clear_days(x["base_info"])[ok_t], len(mean)))
    out: dict = {}
    for task, days in sorted({(r["task"], r["days"]) for r in rows}):
        sel = [r for r in rows if r["task"] == task and r["days"] == days]
        key = f"{task}{days:g}"
        out[f"psnr_{key}"] = float(np.mean([r["psnr"] for r in sel]))
        out[f"psnr_linear_{key}"] = float(np.mean([r["psnr_linear"] for r in sel]))
    az = np.abs(np.concatenate(zs)) if zs else np.ones(1)
    out["cov1"] = float(np.mean(az <= 1) * 100)
    out["cov2"] = float(np.mean(az <= 2) * 100)
    zc = np.abs(np.concatenate(zcal)) if zcal else None
    out["temperature"] = float(np.quantile(az if zc is None else zc, 0.683))
    table = fit_by_days(zc, np.concatenate(dcal)) if zc is not None else None
    if table is not None:
        out["temperature_days"], out["temperature_by_days"] = table["days"], table["scale"]
    gains = [out[k] - out[k.replace("psnr_", "psnr_linear_")] for k in out
             if k.startswith("psnr_") and "linear" not in k]
    out["val_score"] = float(np.mean(gains)) if gains else -math.inf
    out["val_min_gain"] = float(np.min(gains)) if gains else -math.inf
    return out


def month_name(day: float) -> str:
    """'YYYY-MM' of a day (as the checkpoints list their test and validation months)."""
    m = month_block(day)
    return f"{m // 12}-{m % 12 + 1:02d}"


def revalidate(ckpt: dict, model=None, device=None) -> dict:
    """validate() again for a saved checkpoint (`model`: its model_from_checkpoint when already
    built), on its own validation dates (the data folder and the test / validation months its
    config records): metrics of checkpoints saved before one existed."""
    cfg = ckpt["config"]
    data, hold = cfg.get("data"), cfg.get("holdout", {})
    if not data or not Path(data).is_dir():
        raise InputError(f"the checkpoint's training data {data} is not here: cannot measure its validation again")
    stack = load_series(data)
    names = [month_name(d) for d in stack.s2_days]
    test = np.array([n in hold.get("months", []) for n in names])
    val = np.array([n in hold.get("validation_months", []) for n in names])
    model = model_from_checkpoint(ckpt) if model is None else model
    seen, targets = validation_view(stack, test, val)
    return validate(model, seen, targets, cfg["k2"], cfg["k1"], device)


def points_loss(model, b: dict[str, np.ndarray], device, beta: float = 0.0, weights=None):
    """Gaussian NLL of a points batch, B8A (absent from the point series) left out (`weights`: per band,
    see model.band_weights; the other nine keep theirs, so they weigh as in the scene's loss)."""
    import torch

    from ..training import unwrap
    from .model import N_S2, gaussian_nll
    from .points import B8A_INDEX

    keep = torch.ones(N_S2, dtype=torch.bool, device=device)
    keep[B8A_INDEX] = False
    scale = unwrap(model).s2_std[:, 0]
    mean, logvar = model(*to_tensors(b, device))
    valid = torch.as_tensor(b["target_valid"], device=device) > 0.5
    target = torch.as_tensor(b["target"], device=device)
    return gaussian_nll(mean[:, keep].float(), logvar[:, keep].float(), target[:, keep], valid, scale[:, keep],
                        beta, None if weights is None else weights[keep])


def loss_weights(model, kind: str):
    """The loss's per-band weights for `kind` (model.band_weights), on the model's device; None: equal."""
    from ..training import unwrap
    from .model import band_weights

    return band_weights(kind, unwrap(model).s2_std)


def pretrain_points(model, points: list[Stack], args: argparse.Namespace, scfg: SamplerConfig, device,
                    log=None) -> float:
    """`--points-steps` Adam steps on 1 x 1 px samples of the point series (B8A out of the loss);
    returns the mean loss of the last 20 steps."""
    import torch

    from .points import PointsSampler

    sampler = PointsSampler(points, scfg, args.seed + 12_345)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    losses = []
    weights = loss_weights(model, getattr(args, "band_weights", "equal"))  # s2_std is a buffer: fixed
    for step in range(args.points_steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, args.points_steps))))
        loss = points_loss(model, sampler.batch(args.points_batch), device, getattr(args, "beta_nll", 0.0), weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % 50 == 0:
            log.log(phase="points", step=step + 1, loss=float(np.mean(losses[-50:])))
    return float(np.mean(losses[-20:])) if losses else float("nan")


def train(args: argparse.Namespace) -> dict:
    """The training loop; returns the last validation metrics (rank 0) or {}. A run that fails before its first
    epoch leaves no folder it made."""
    with new_dirs_removed_on_error(args.out):
        return _train(args)


def _train(args: argparse.Namespace) -> dict:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from .. import training as T
    from .model import gaussian_nll

    resumed = check_args(args)
    rank, world, device = T.ddp_setup(args.device)
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(1)
    T.seed_everything(args.seed)
    out = Path(args.out)
    stack = load_series(args.data)
    if args.crop > min(stack.shape):  # the sampler crops at most the series' window
        if T.is_main_process():
            print(f"warning: --crop {args.crop} is larger than the series ({stack.shape[1]} x {stack.shape[0]} px): "
                  f"it trains on {min(stack.shape)} px crops, and its config records that", file=sys.stderr, flush=True)
        args.crop = int(min(stack.shape))
    t_off = holdout_offset(args)
    test = split_dates(stack, args.holdout_every, t_off)
    val = validation_dates(stack, test, args.val_every, args.val_offset)
    held = test | val  # never shown in training, neither as targets nor as inputs

    def months(mask: np.ndarray) -> list[str]:
        return sorted({month_name(d) for d in stack.s2_days[mask]})

    config = {
        "model": {"d": args.width, "heads": args.heads, "layers": args.layers, **_stats(stack, ~held),
                  "cloud_context": bool(getattr(args, "cloud_context", False)),
                  "s1_change": bool(getattr(args, "s1_change", False)),
                  "obs_s1_change": bool(getattr(args, "obs_s1_change", False)),
                  **({"s1_span": True} if getattr(args, "s1_span", False) else {}),
                  **({"dropout": float(args.dropout)} if getattr(args, "dropout", 0.0) else {}),
                  **({"s1_guided": {"radius": int(args.s1_guided), "sigma": GUIDE_SIGMA,
                                    "guide_bands": list(GUIDE_BANDS),
                                    **({"obs": True} if getattr(args, "s1_guided_obs", False) else {})}}
                     if getattr(args, "s1_guided", 0) else {})},
        "k2": args.k2, "k1": args.k1, "crop": args.crop, "batch": args.batch, "lr": args.lr,
        "seed": args.seed, "steps": args.steps, "epochs": args.epochs, "world_size": world,
        "max_gap": args.max_gap, "max_lead": args.max_lead, "min_target_clear": args.min_target_clear,
        "p_clouds": args.p_clouds, "target_margin": getattr(args, "target_margin", 0),
        "doy_jitter": getattr(args, "doy_jitter", 0.0), "weight_decay": getattr(args, "weight_decay", 0.0),
        "ema": getattr(args, "ema", 0.0), "beta_nll": getattr(args, "beta_nll", 0.0),
        "band_weights": getattr(args, "band_weights", "equal"),
        "haze_screen": from_threshold(getattr(args, "haze_screen", 0.0)),
        "haze_targets": bool(getattr(args, "haze_targets", False)),
        "data": str(Path(args.data).resolve()),
        "holdout": {"rule": holdout_rule(args),
                    "months": months(test), "n_dates": int(test.sum()),
                    "validation_months": months(val), "n_validation_dates": int(val.sum())},
    }
    model = build_model(config).to(device)
    wd = config["weight_decay"]
    opt = (torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=wd) if wd > 0
           else torch.optim.Adam(model.parameters(), lr=args.lr))
    start = 0
    best = -math.inf
    last = out / "last.pt"
    ckpt = resumed
    if ckpt is not None:
        model.load_state_dict(ckpt.get("train_state") or ckpt["model_state"])
        if ckpt.get("optim_state"):
            opt.load_state_dict(ckpt["optim_state"])
            for group in opt.param_groups:  # the state brings the run's old value back: this run's wins
                group["weight_decay"] = wd
        start = int(ckpt["epoch"]) + 1
        best = float(ckpt.get("metrics", {}).get("best_score", -math.inf))
        before = ckpt["config"]
        changed = {k: config[k] for k in RESUMABLE if before.get(k, RESUMABLE_BEFORE.get(k)) != config[k]}
        config = {**before, **{k: config[k] for k in RESUMABLE}, "epochs": args.epochs}
        if changed:  # what this resume trains with, from its first epoch on
            config["resumed"] = [*before.get("resumed", []), {"epoch": start, **changed}]
    scfg = SamplerConfig(crop=args.crop, k2=args.k2, k1=args.k1, max_gap=args.max_gap, max_lead=args.max_lead,
                         min_target_clear=args.min_target_clear, p_clouds=args.p_clouds,
                         target_margin=getattr(args, "target_margin", 0), s1_change=model.use_s1_change,
                         obs_s1_change=model.use_obs_change, s1_span=model.use_s1_span, s1_guided=model.s1_guided,
                         doy_jitter=getattr(args, "doy_jitter", 0.0), haze=config.get("haze_screen"),
                         haze_targets=bool(config.get("haze_targets")))
    points = None
    if getattr(args, "points", None):
        from .points import PointsSampler, load_points

        points = load_points(args.points)
    if points is not None and start == 0:
        config["points"] = {"file": str(Path(args.points).resolve()), "steps": args.points_steps,
                            "batch": args.points_batch}
        loss = pretrain_points(model, points, args, scfg, device)
        print(json.dumps({"phase": "points", "loss": round(loss, 4)}), flush=True)
    ema = None
    if getattr(args, "ema", 0.0) > 0:
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        if ckpt is not None:
            ema.load_state_dict(ckpt["model_state"])
    beta = config["beta_nll"]
    weights = loss_weights(model, config.get("band_weights", "equal"))
    mix = None
    saved = (ckpt or {}).get("rng_state") or []  # per process: the points stream and torch's generator
    mine = saved[rank] if len(saved) == world and isinstance(saved[rank], dict) else {}  # this process's
    if points is not None and getattr(args, "points_mix", 0.0) > 0:
        mix = PointsSampler(points, scfg, args.seed * 31 + 77_777 + rank)
        config["points"] = {**config.get("points", {}), "mix": args.points_mix}
        if ckpt is not None:  # the points stream goes on where it stopped (the scene's is seeded per epoch)
            if "points" in mine:
                mix.set_state(mine["points"])
            elif T.is_main_process():
                print(f"warning: {last} has no points sampler state for {world} process(es): the points "
                      "batches restart from the seed (the run will not match an uninterrupted one)",
                      file=sys.stderr, flush=True)
    if "torch" in mine:  # dropout's generator, seeded once per run
        torch.set_rng_state(torch.tensor(mine["torch"], dtype=torch.uint8))
    net = DistributedDataParallel(model) if world > 1 else model
    scaler = T.grad_scaler(device)
    log = T.MetricsLog(out / "metrics.jsonl") if T.is_main_process() else None
    if log is not None and ckpt is not None and ckpt["epoch"] not in {r.get("epoch") for r in log.read()}:
        # stopped between its checkpoint and its row: the row from what the checkpoint recorded
        log.log(**{k: v for k, v in ckpt.get("metrics", {}).items() if k != "val_dates"})
    seen, vt = validation_view(stack, test, val)  # validation inputs: everything but the test months
    scale = model.s2_std[:, 0]
    metrics: dict = {}
    total = 0
    for epoch in range(start, args.epochs):
        sampler = Sampler(stack, held, scfg, seed=args.seed * 1_000_003 + epoch * 7919 + rank)
        net.train()
        steps = range(args.steps)
        if T.is_main_process() and not args.no_progress and sys.stderr.isatty():
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        losses = []
        for step in steps:
            progress = (epoch * args.steps + step) / max(1, args.epochs * args.steps)
            for group in opt.param_groups:  # cosine decay to 5 % of the initial rate
                group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
            b = sampler.batch(args.batch)
            x = to_tensors(b, device)
            target = torch.as_tensor(b["target"], device=device)
            valid = torch.as_tensor(b["target_valid"], device=device) > 0.5
            with T.autocast(device):
                mean, logvar = net(*x)
            loss = gaussian_nll(mean.float(), logvar.float(), target, valid, scale, beta, weights)
            if mix is not None:
                with T.autocast(device):
                    loss = loss + args.points_mix * points_loss(net, mix.batch(args.points_batch), device, beta,
                                                                weights)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            total += 1
            if ema is not None:
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                        pe.lerp_(pm, 1.0 - args.ema)
        # every process's: the points stream and torch's generator (dropout), for an exact --resume
        rng_state = T.gather({"torch": torch.get_rng_state().tolist(),  # plain values, as checkpoints keep them
                              **({"points": mix.state()} if mix is not None else {})})
        if T.is_main_process():
            model.eval()
            evaluated = ema if ema is not None else model
            metrics = {"epoch": epoch, "loss": float(np.mean(losses))}
            if vt.size:
                metrics.update(validate(evaluated, seen, vt, config["k2"], config["k1"], device))
            score = metrics.get("val_score", -metrics["loss"])
            improved = score > best
            best = max(best, score)
            metrics["best_score"] = best
            metrics["val_dates"] = [str(x) for x in seen.s2_days[vt].tolist()]
            state = dict(kind=KIND, model_state=evaluated.state_dict(), optim_state=opt.state_dict(),
                         epoch=epoch, config=config, metrics=metrics,
                         train_state=model.state_dict() if ema is not None else None, rng_state=rng_state)
            T.save_checkpoint(last, **state)
            if improved:
                T.save_checkpoint(out / "best.pt", **state)
            log.log(**{k: v for k, v in metrics.items() if k != "val_dates"})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in metrics.items() if k != "val_dates"}), flush=True)
    print(f"rank {rank}/{world}: {total} steps done", flush=True)
    T.ddp_cleanup()
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="densify train temporal", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(argv)
    try:  # as `densify train temporal` says them (python -m ..., torchrun): one line, not a traceback
        train(args)
    except DensifyError as exc:
        print(f"densify train temporal: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
