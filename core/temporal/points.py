"""Point series (WorldCereal ten-day composites) as 1 x 1 px stacks, to pre-train the per-pixel
temporal part of the generator (`densify train temporal --points FILE`).

The file has one row per point and dekad: S2 DN columns `S2-L2A-B02` .. `S2-L2A-B12` (9 bands,
no B8A; reflectance = DN / 10000), S1 `S1-SIGMA0-VV` / `-VH` encoded as uint16 (dB = 20 log10(DN)
- 83), `timestamp`, `sample_id`. 65535, 0 or missing marks a period without an observation. B8A
is filled from B08 in the inputs and left out of the loss (`B8A_INDEX`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dates import to_days
from ..errors import InputError
from ..stack import S2_BANDS, Stack
from .dataset import Sampler, SamplerConfig

S2_COLUMNS = {b: f"S2-L2A-{b}" for b in S2_BANDS if b != "B8A"}
S1_COLUMNS = {"VV": "S1-SIGMA0-VV", "VH": "S1-SIGMA0-VH"}
NODATA = 65535
B8A_INDEX = S2_BANDS.index("B8A")


def decode_s1(dn: np.ndarray) -> np.ndarray:
    """uint16 S1 encoding -> dB (20 log10(DN) - 83); NaN for 0 / 65535 / missing."""
    x = np.asarray(dn, np.float64)
    ok = np.isfinite(x) & (x > 0) & (x < NODATA)
    return np.where(ok, 20.0 * np.log10(np.where(ok, x, 1.0)) - 83.0, np.nan).astype(np.float32)


def decode_s2(dn: np.ndarray) -> np.ndarray:
    """(N, 9) S2 DN -> (N, 10) reflectance in S2_BANDS order, B8A copied from B08; a row is NaN
    unless all 9 bands are observed (neither 0, 65535 nor missing)."""
    x = np.asarray(dn, np.float64)
    ok = (np.isfinite(x) & (x > 0) & (x < NODATA)).all(axis=1)
    refl = np.where(ok[:, None], x / 10000.0, np.nan)
    i8 = list(S2_COLUMNS).index("B08")
    return np.insert(refl, B8A_INDEX, refl[:, i8], axis=1).astype(np.float32)


def load_points(path: str | Path) -> list[Stack]:
    """One 1 x 1 px Stack per point (dates ascending), S1 at the same dekads as S2."""
    import pandas as pd

    path = Path(path)
    cols = ["sample_id", "timestamp", *S2_COLUMNS.values(), *S1_COLUMNS.values()]
    try:
        df = pd.read_parquet(path, columns=cols)
    except FileNotFoundError:
        raise InputError(f"{path}: no such points file") from None
    except Exception as exc:  # noqa: BLE001 - missing columns, not parquet...
        raise InputError(f"{path}: cannot read the point series ({exc}); expected columns {cols}") from None
    out = []
    for _, g in df.sort_values(["sample_id", "timestamp"]).groupby("sample_id", sort=True):
        days = np.array([to_days(t.to_pydatetime()) for t in g["timestamp"]], np.float64)
        s2 = decode_s2(g[list(S2_COLUMNS.values())].to_numpy(np.float64))
        s1 = np.stack([decode_s1(g[S1_COLUMNS["VV"]].to_numpy(np.float64)),
                       decode_s1(g[S1_COLUMNS["VH"]].to_numpy(np.float64))], axis=1)
        s1_ok = np.isfinite(s1).all(axis=1)
        out.append(Stack(s2[:, :, None, None], days, s1[s1_ok][:, :, None, None], days[s1_ok], list(S2_BANDS)))
    if not out:
        raise InputError(f"{path}: no point series")
    return out


class PointsSampler:
    """Random training samples (1 x 1 px) from the point series: a random point, then the
    same hiding of the target, gaps and forecast cut-offs as `Sampler`."""

    def __init__(self, points: list[Stack], cfg: SamplerConfig, seed: int):
        self.rng = np.random.default_rng(seed)
        pcfg = SamplerConfig(**{**cfg.__dict__, "crop": 1, "min_target_clear": 0.5, "target_margin": 0})
        self.samplers = []
        for i, st in enumerate(points):
            if st.valid.sum() >= 3:
                self.samplers.append(Sampler(st, np.zeros(len(st.s2_days), bool), pcfg, seed * 7 + i))
        if not self.samplers:
            raise InputError("no point series with at least 3 clear S2 dekads")

    def state(self) -> dict:
        """The random generators' states (plain values), so a resumed run draws what it would have."""
        return {"rng": self.rng.bit_generator.state, "samplers": [s.rng.bit_generator.state for s in self.samplers]}

    def set_state(self, state: dict) -> None:
        if len(state["samplers"]) != len(self.samplers):
            raise ValueError(f"{len(state['samplers'])} point series saved, {len(self.samplers)} loaded")
        self.rng.bit_generator.state = state["rng"]
        for sampler, saved in zip(self.samplers, state["samplers"], strict=True):
            sampler.rng.bit_generator.state = saved

    def batch(self, n: int) -> dict[str, np.ndarray]:
        pick = self.rng.integers(0, len(self.samplers), n)
        items = [self.samplers[i].sample() for i in pick]
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
