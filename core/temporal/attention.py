"""Which observations the temporal model looks at: its attention weights per observation.

Read from the PyTorch model of a checkpoint (the ONNX export returns mean and log-variance only);
`densify attention` prints them for one pixel and sums them per sensor.
"""

from __future__ import annotations

import numpy as np

from ..dates import from_days
from ..stack import Stack
from .calibration import EDGES, nearest_clear_days

SENSORS = ("S2", "S1", "none")  # "none": the null token (attention that goes to no observation)


def attention(model, stack: Stack, day: float, k2: int, k1: int, device=None) -> dict:
    """Run `model` (a TemporalGenerator) on `stack` for the target `day`.

    Returns "observations" (sensor, date, days to the target) of the K2 S2 and K1 S1 slots that
    hold an observation, then the null token; "weights" (layers, observations, h, w), the mean over
    heads of each layer's attention (each pixel's weights sum to 1); "valid" (S2 and S1 slots,
    h, w), 0 where an observation is masked out (cloud, missing); "clear_days" (h, w), the days
    to each pixel's nearest clear S2 observation (calibration.nearest_clear_days)."""
    import torch

    from .train import inputs_of, to_tensors

    x = inputs_of(model, stack, day, k2, k1)
    with torch.no_grad():
        _, _, maps = model(*to_tensors({k: v[None] for k, v in x.items()}, device or "cpu"), return_attn=True)
    weights = np.stack([m[0].float().cpu().numpy().mean(axis=0) for m in maps])
    valid = np.concatenate([x["s2_valid"], x["s1_valid"]])
    sensors = ["S2"] * len(x["s2_dt"]) + ["S1"] * len(x["s1_dt"])
    used = np.flatnonzero(valid.reshape(len(valid), -1).any(axis=1))  # padding slots hold no observation
    dts = np.concatenate([x["s2_dt"], x["s1_dt"]])
    obs = [{"sensor": sensors[i], "date": from_days(day + float(dts[i])).date().isoformat(),
            "days": round(float(dts[i]), 2)} for i in used]
    return {"observations": obs + [{"sensor": "none", "date": None, "days": None}],
            "weights": weights[:, np.append(used, len(valid))], "valid": valid[used],
            "clear_days": nearest_clear_days(x["base_info"])}


def at_pixel(result: dict, row: int, col: int) -> list[dict]:
    """Each observation with its weight at one pixel (one value per layer) and whether it is
    clear there, heaviest in the last layer first."""
    w = result["weights"][:, :, row, col]
    n_obs = len(result["valid"])
    rows = [dict(o, weight=[round(float(v), 4) for v in w[:, i]],
                 clear=bool(result["valid"][i, row, col] > 0.5) if i < n_obs else None)
            for i, o in enumerate(result["observations"])]
    return sorted(rows, key=lambda r: -r["weight"][-1])


def sensor_shares(result: dict) -> list[dict]:
    """The last layer's weight on S2, S1 and the null token (mean over pixels), per bin of the days
    to each pixel's nearest clear S2 observation (calibration.EDGES)."""
    w = result["weights"][-1]
    sensors = np.array([o["sensor"] for o in result["observations"]])
    which = np.digitize(result["clear_days"], EDGES)
    lows = (0.0, *EDGES)
    out = []
    for b in range(len(EDGES) + 1):
        sel = which == b
        if not sel.any():
            continue
        row = {"nearest_clear_days": f"{lows[b]:g}-{EDGES[b]:g}" if b < len(EDGES) else f"> {EDGES[-1]:g}",
               "pixels": int(sel.sum())}
        for s in SENSORS:
            row[s] = round(float(w[sensors == s][:, sel].sum(axis=0).mean()), 4)
        out.append(row)
    return out
