"""Synthetic S1/S2 scene: fields with crop phenology, clouds and shadows with SCL, SAR with speckle.

The files are laid out and tagged like the real series in ``shared/data/worldcereal-31UDS-2017``:
``S2/T31XXX_<stamp>_L2A_10m.tif`` (10 bands uint16 DN, nodata 0), ``S2/T31XXX_<stamp>_SCL_20m.tif``
(uint8 Sen2Cor classes, half size) and ``S1/S1_IW_GRDH_ASC_<stamp>_VV_VH_dB.tif`` (float32 dB, 20 m),
plus an ``index.json`` like the real one.

Everything is computed in row blocks with bounded memory. Every random quantity is a function
of global pixel coordinates (hashed lattices) or of fixed row chunks (seeded generators), so a
scene is the same whatever the block size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from .atomic import OutputError, atomic_path, ensure_folder, new_dirs_removed_on_error, output_dir_problem, write_text
from .errors import InputError
from .inventory import RASTER_SUFFIXES
from .progress import Feedback
from .stack import S1_BANDS, S2_BANDS
from .writer import verify_raster

EPSG = 32631
TILE = "31XXX"
ORIGIN = (600000.0, 5600000.0)  # upper-left corner (x, y) in EPSG:32631, metres
CHUNK = 32  # rows (10 m) of one seeded noise chunk; processing blocks are multiples of it
TILE_ROWS = 256  # tile size (px) of the 10 m files; 20 m files use half of it
GDAL_CACHE_MB = 256  # bounded write cache while simulating
FIELD = 30.0  # mean field size, 10 m pixels (Voronoi cells of a jittered grid)

# endmember reflectances, bands B02 B03 B04 B05 B06 B07 B08 B8A B11 B12
GREEN = np.array([0.030, 0.060, 0.030, 0.090, 0.290, 0.400, 0.460, 0.470, 0.230, 0.110], np.float32)
BROWN = np.array([0.080, 0.110, 0.150, 0.180, 0.210, 0.230, 0.250, 0.265, 0.340, 0.250], np.float32)
SOIL = np.array([0.070, 0.100, 0.140, 0.170, 0.190, 0.200, 0.210, 0.220, 0.300, 0.260], np.float32)
WATER = np.array([0.050, 0.060, 0.040, 0.030, 0.020, 0.015, 0.012, 0.010, 0.005, 0.003], np.float32)
BUILT = np.array([0.100, 0.110, 0.120, 0.130, 0.150, 0.160, 0.170, 0.180, 0.200, 0.180], np.float32)
CLOUD = np.array([0.520, 0.510, 0.520, 0.530, 0.540, 0.540, 0.550, 0.550, 0.420, 0.320], np.float32)
CIRRUS = np.array([0.110, 0.100, 0.100, 0.095, 0.090, 0.090, 0.090, 0.090, 0.060, 0.040], np.float32)
BANDS_20M = [3, 4, 5, 7, 8, 9]  # B05 B06 B07 B8A B11 B12: 20 m bands, upsampled by repetition

# land-cover classes of fields
CEREAL, MAIZE, BEET, GRASS, FOREST, BARE, WATER_C, BUILT_C = range(8)
CLASS_NAMES = ["winter cereal", "maize", "beet/potato", "grassland", "forest", "bare", "water", "built"]
CLASS_P = np.cumsum([0.30, 0.20, 0.15, 0.20, 0.10, 0.05])  # crop fields; water/built from landscape noise
# phenology per class: f0, fmax, sos, rate_s, eos, rate_e, harvest (days of year)
PHENO = np.array([
    [0.25, 0.92, 95, 9, 180, 7, 205],
    [0.00, 0.93, 170, 7, 258, 8, 285],
    [0.00, 0.90, 150, 8, 275, 10, 295],
    [0.55, 0.88, 95, 12, 330, 15, 999],
    [0.25, 0.92, 118, 6, 292, 9, 330],
    [0.03, 0.03, 150, 10, 250, 10, 999],
    [0.00, 0.00, 150, 10, 250, 10, 999],
    [0.55, 0.88, 95, 12, 330, 15, 999],
], np.float64)
# vegetation backscatter (dB) per class: VV, VH (water-cloud model with the soil underneath)
VEG_DB = np.array([[-9.5, -14.5], [-7.0, -12.5], [-7.5, -13.0], [-9.0, -16.0], [-6.5, -12.0],
                   [-9.0, -16.0], [-9.0, -16.0], [-9.0, -16.0]], np.float32)
SOIL_DB = (-11.0, -20.0)
WATER_DB = (-22.0, -28.0)
BUILT_DB = (-3.0, -10.0)
LOOKS = 4.5  # equivalent number of looks of the speckle
VERSION = 1  # bump when the content of a scene for given parameters changes


# --- deterministic noise -------------------------------------------------------------------

def _key(seed: int, name: str) -> np.uint64:
    return np.uint64(((int(seed) & 0xFFFFFFFF) << 32) | zlib.crc32(name.encode()))


def _hash01(a: np.ndarray, b: np.ndarray, key: np.uint64) -> np.ndarray:
    """Uniform [0, 1) from integer coordinates (splitmix64 of a mixed key)."""
    x = (np.asarray(a, np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ \
        (np.asarray(b, np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)) ^ key
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


def _value_noise(ys: np.ndarray, xs: np.ndarray, scale: float, key: np.uint64) -> np.ndarray:
    """Smooth value noise in [-1, 1] on the grid ys x xs (1-D coordinates, 10 m pixel units)."""
    fy, fx = np.asarray(ys, np.float64) / scale, np.asarray(xs, np.float64) / scale
    iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
    ty, tx = (fy - iy).astype(np.float32), (fx - ix).astype(np.float32)
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
    y0, x0 = iy.min(), ix.min()
    ly = np.arange(y0, iy.max() + 2)[:, None]
    lx = np.arange(x0, ix.max() + 2)[None, :]
    lat = (_hash01(ly, lx, key) * 2 - 1).astype(np.float32)
    ry = iy - y0
    a = lat[ry] * (1 - ty)[:, None] + lat[ry + 1] * ty[:, None]
    rx = ix - x0
    return a[:, rx] * (1 - tx) + a[:, rx + 1] * tx


def _fbm(ys: np.ndarray, xs: np.ndarray, scales: list[float], key: np.uint64,
         gain: float = 0.5) -> np.ndarray:
    """Fractal sum of value-noise octaves (largest scale first), roughly in [-1, 1]."""
    total = np.zeros((len(ys), len(xs)), np.float32)
    amp, norm = 1.0, 0.0
    for k, s in enumerate(scales):
        total += np.float32(amp) * _value_noise(ys, xs, s, key + np.uint64(k + 1))
        norm += amp
        amp *= gain
    return total / np.float32(norm)


def _chunk_noise(seed: int, tag: int, date: int, r0: int, r1: int, width: int, chunk: int,
                 kind: str = "normal", shape: float = 1.0, count: int = 1) -> np.ndarray:
    """Per-pixel random numbers for rows [r0, r1) from generators seeded per fixed row chunk."""
    parts = []
    for c in range(r0 // chunk, (r1 - 1) // chunk + 1):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, tag, date, c])
        size = (count, chunk, width)
        if kind == "normal":
            block = rng.standard_normal(size, dtype=np.float32)
        else:
            block = rng.standard_gamma(shape, size, dtype=np.float32) / np.float32(shape)
        lo, hi = max(r0, c * chunk) - c * chunk, min(r1, (c + 1) * chunk) - c * chunk
        parts.append(block[:, lo:hi])
    return np.concatenate(parts, axis=1)


# --- the scene plan (dates, cloud cover, per-date constants) ----------------------------------

def _parse_day(text: str | dt.date) -> dt.date:
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError as exc:
        raise InputError(f"'{text}' is not a date (expected YYYY-MM-DD)") from exc


def _doy(when: dt.datetime) -> float:
    start = dt.datetime(when.year, 1, 1, tzinfo=dt.UTC)
    return (when - start).total_seconds() / 86400.0 + 1.0


def _sun_zenith(when: dt.datetime, lat: float = 50.5) -> float:
    decl = 23.44 * math.sin(2 * math.pi * (284 + _doy(when)) / 365.0)
    return float(np.clip(lat - decl + 8.0, 20.0, 80.0))  # ~10:50 local solar time


def _plan(n_s2: int, n_s1: int, start: dt.date, end: dt.date, seed: int) -> dict:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 11])
    t0 = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
    span = (end - start).days
    s2_days = np.round(np.linspace(0, span, n_s2) + rng.uniform(-2, 2, n_s2) * (n_s2 > 2))
    s2_days = np.clip(np.sort(s2_days), 0, span)
    s2_days = np.maximum.accumulate(s2_days + np.arange(n_s2) * 1e-3)  # strictly increasing
    s2_times = [t0 + dt.timedelta(days=int(d), hours=10, minutes=50 + int(rng.integers(0, 8)),
                                  seconds=int(rng.integers(0, 60))) for d in s2_days]
    s2_times = _distinct(s2_times)
    s2_set = {t.date() for t in s2_times}
    s1_times = []
    for d in np.linspace(0, span, n_s1) if n_s1 else []:
        day = t0 + dt.timedelta(days=int(round(d)))
        for shift in (0, 1, -1, 2, -2):  # S1 and S2 are acquired on different days
            moved = day + dt.timedelta(days=shift)
            if moved.date() not in s2_set and start <= moved.date() <= end:
                day = moved
                break
        s1_times.append(day + dt.timedelta(hours=17, minutes=32, seconds=int(rng.integers(0, 60))))
    # cloud cover: ~38 % clear, ~50 % partly, ~12 % overcast; first and last clear, one overcast
    u = rng.uniform(size=n_s2)
    cover = np.where(u < 0.38, 0.0, np.where(u < 0.88, rng.uniform(0.08, 0.8, n_s2),
                                             rng.uniform(0.93, 1.0, n_s2)))
    cover[cover > 0.97] = 1.0
    if n_s2 >= 2:
        cover[0] = cover[-1] = 0.0
    if n_s2 >= 6:
        mid = n_s2 // 2 + int(rng.integers(-(n_s2 // 6), n_s2 // 6 + 1))
        cover[mid] = 1.0
    cirrus = (rng.uniform(size=n_s2) < 0.25) & (cover > 0) & (cover < 1)
    s2 = []
    for i, when in enumerate(s2_times):
        zen = _sun_zenith(when)
        az = 155.0 + 10.0 * rng.uniform()
        dist = min(2000.0 * math.tan(math.radians(zen)), 2500.0) / 10.0  # shadow offset, px
        s2.append(dict(
            when=when, cover=float(cover[i]), cirrus=bool(cirrus[i]),
            wet=float(rng.uniform()), gain=rng.normal(1.0, 0.015, 10).astype(np.float32),
            sun_zenith=zen, sun_azimuth=az,
            view_zenith=float(rng.uniform(3, 9)), view_azimuth=float(rng.choice([105.0, 285.0])
                                                                      + rng.normal(0, 2)),
            shadow=(-dist * math.cos(math.radians(az)), dist * math.sin(math.radians(az))),
        ))
    s1 = [dict(when=w, wet=float(rng.uniform()), orbit_db=float(0.4 if i % 2 else -0.4),
               wind=float(rng.uniform(0, 4))) for i, w in enumerate(_distinct(s1_times))]
    return dict(s2=s2, s1=s1)


def _distinct(times: list[dt.datetime]) -> list[dt.datetime]:
    """`times` with any repeated second moved on by seconds until free: each acquisition gets its own
    file name (stamped to the second); times that were distinct are unchanged."""
    seen: set[dt.datetime] = set()
    out = []
    for t in times:
        while t in seen:
            t += dt.timedelta(seconds=1)
        seen.add(t)
        out.append(t)
    return out


def _cloud_density(ys20: np.ndarray, xs20: np.ndarray, date: int, seed: int, name: str = "cloud",
                   dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """Cloud fBm of one date at 20 m pixel centres given in 10 m units (shifted by dy, dx)."""
    off = _hash01(np.array([date]), np.array([7]), _key(seed, name + "-offset"))[0] * 1e5
    scales = [384.0, 192.0, 96.0, 48.0, 24.0, 12.0] if name == "cloud" else [600.0, 150.0, 40.0]
    return _fbm(ys20 + dy + off, xs20 + dx - off, scales, _key(seed, f"{name}-{date}"), gain=0.55)


def _thresholds(size: int, plan: dict, seed: int) -> list[tuple[float, float]]:
    """Per date (threshold, width) giving the planned cloud cover over the whole scene."""
    n = 96
    ys = np.linspace(1.0, size - 1.0, n)
    out = []
    for i, d in enumerate(plan["s2"]):
        if d["cover"] <= 0:
            out.append((np.inf, 1.0))
            continue
        dens = _cloud_density(ys, ys, i, seed)
        width = float(dens.std()) * 0.5 + 1e-6
        thr = -np.inf if d["cover"] >= 1 else float(np.quantile(dens, 1 - d["cover"]))
        out.append((thr, width))
    return out


# --- the static landscape ---------------------------------------------------------------------

def _landscape(r0: int, r1: int, width: int, seed: int) -> dict:
    """Field mosaic of rows [r0, r1): per-pixel cell index, border mask, fractions and noise."""
    ys = np.arange(r0, r1) + 0.5
    xs = np.arange(width) + 0.5
    cy0, cy1 = int(r0 // FIELD) - 1, int((r1 - 0.5) // FIELD) + 1
    cx0, cx1 = -1, int((width - 0.5) // FIELD) + 1
    cy = np.arange(cy0, cy1 + 1)[:, None]
    cx = np.arange(cx0, cx1 + 1)[None, :]
    sy = ((cy + 0.15 + 0.7 * _hash01(cy, cx, _key(seed, "seed-y"))) * FIELD).astype(np.float32)
    sx = ((cx + 0.15 + 0.7 * _hash01(cy, cx, _key(seed, "seed-x"))) * FIELD).astype(np.float32)
    by = (ys // FIELD).astype(np.int64) - cy0
    bx = (xs // FIELD).astype(np.int64) - cx0
    yy = ys.astype(np.float32)[:, None]
    xx = xs.astype(np.float32)[None, :]
    best = np.full((len(ys), len(xs)), np.inf, np.float32)
    second = best.copy()
    cell = np.zeros(best.shape, np.int64)
    ncx = sy.shape[1]
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            iy, ix = (by + oy)[:, None], (bx + ox)[None, :]
            d2 = (yy - sy[iy, ix]) ** 2 + (xx - sx[iy, ix]) ** 2
            closer = d2 < best
            second = np.where(closer, best, np.minimum(second, d2))
            best = np.where(closer, d2, best)
            cell = np.where(closer, iy * ncx + ix, cell)
    border = (np.sqrt(second) - np.sqrt(best)) < 1.0

    # field classes: crops by hash, water and built areas from landscape-scale noise
    ccy = (cy[:, 0] + 0.5) * FIELD
    ccx = (cx[0] + 0.5) * FIELD
    wet = _fbm(ccy, ccx, [900.0, 300.0, 100.0], _key(seed, "water"))
    town = _fbm(ccy, ccx, [700.0, 250.0, 90.0], _key(seed, "built"))
    cls = np.searchsorted(CLASS_P, _hash01(cy, cx, _key(seed, "class"))).astype(np.int64)
    cls = np.where(town > 0.45, BUILT_C, cls)
    cls = np.where(wet > 0.55, WATER_C, cls)
    cls_px = cls.ravel()[cell]
    fw = (cls_px == WATER_C).astype(np.float32)
    fine = _fbm(ys, xs, [48.0, 16.0, 6.0], _key(seed, "built-fine"))
    fu = np.where(cls_px == BUILT_C, np.clip(0.65 + 0.5 * fine, 0.2, 1.0), 0.0).astype(np.float32)
    fw = np.where(border & (cls_px != WATER_C), 0.0, fw)
    fu = np.where(border & (cls_px != BUILT_C), 0.0, fu)
    vigour = _fbm(ys, xs, [64.0, 24.0, 8.0], _key(seed, "vigour"))
    soil = 1.0 + 0.35 * _fbm(ys, xs, [96.0, 32.0, 10.0], _key(seed, "soil"))
    return dict(cy=cy, cx=cx, cls=cls, cell=cell, border=border, fw=fw, fu=fu,
                vigour=vigour.astype(np.float32), soil=soil.astype(np.float32), cls_px=cls_px)


def _field_params(land: dict, seed: int) -> np.ndarray:
    """Per-cell phenology parameters (7, ncy, ncx) with per-field timing jitter."""
    cy, cx, cls = land["cy"], land["cx"], land["cls"]
    p = PHENO[cls].transpose(2, 0, 1).copy()

    def jitter(name: str, amp: float) -> np.ndarray:
        return (2 * _hash01(cy, cx, _key(seed, name)) - 1) * amp

    p[1] = np.clip(p[1] + jitter("fmax", 0.05), 0, 0.98)
    p[2] += jitter("sos", 12)
    p[4] += jitter("eos", 10)
    p[6] += jitter("harvest", 10)
    return p


def _logistic(t: float, mid: np.ndarray, rate: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip((t - mid) / rate, -60, 60)))


def _phenology(p: np.ndarray, doy: float) -> tuple[np.ndarray, np.ndarray]:
    """Green and brown (senescent) vegetation cover from a double-logistic curve."""
    f0, fmax, sos, rs, eos, re, harv = p
    peak = f0 + (fmax - f0) * _logistic(doy, sos, rs)
    senesce = _logistic(doy, eos, re)
    green = peak * (1 - senesce)
    brown = 0.85 * peak * senesce * (1 - _logistic(doy, harv, 2.5))
    return green, brown


def _cover(land: dict, params: np.ndarray, grass: np.ndarray, doy: float, seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel green and brown cover at day-of-year `doy`."""
    g, b = _phenology(params, doy)
    cuts = land["cls"] == GRASS
    for k, base in enumerate((145.0, 200.0)):
        cut = base + 20 * (_hash01(land["cy"], land["cx"], _key(seed, f"cut{k}")) - 0.5)
        g = np.where(cuts & (doy >= cut), g * (1 - 0.6 * np.exp(-np.maximum(doy - cut, 0) / 12.0)), g)
    gb, bb = _phenology(grass, doy)
    green = np.where(land["border"], np.float32(gb), g.ravel()[land["cell"]].astype(np.float32))
    brown = np.where(land["border"], np.float32(bb), b.ravel()[land["cell"]].astype(np.float32))
    green = np.clip(green * (1 + 0.18 * land["vigour"]), 0, 1)
    rest = 1 - land["fw"] - land["fu"]
    grass_in_town = land["cls_px"] == BUILT_C
    green = np.where(grass_in_town, np.float32(gb), green) * rest
    brown = np.where(grass_in_town, np.float32(bb), brown) * rest
    return green.astype(np.float32), np.minimum(brown, rest - green).astype(np.float32)


def _avg2(a: np.ndarray) -> np.ndarray:
    """2 x 2 mean over the last two axes (even sizes)."""
    return (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]) * 0.25


def _up2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[-2:]
    wide = np.broadcast_to(a[..., :, None, :, None], a.shape[:-2] + (h, 2, w, 2))
    return wide.reshape(a.shape[:-2] + (2 * h, 2 * w))


# --- one block of one date --------------------------------------------------------------------

def _s2_block(land: dict, params: np.ndarray, grass: np.ndarray, d: dict, i: int, thr: tuple,
              r0: int, r1: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """S2 DN (10, h, w) uint16 and SCL (h/2, w/2) uint8 of rows [r0, r1) for date i."""
    green, brown = _cover(land, params, grass, _doy(d["when"]), seed)
    soilf = np.maximum(1 - green - brown - land["fw"] - land["fu"], 0)
    sb = land["soil"] * np.float32(1 - 0.25 * d["wet"])
    refl = (GREEN[:, None, None] * green + BROWN[:, None, None] * brown
            + SOIL[:, None, None] * (soilf * sb) + WATER[:, None, None] * land["fw"]
            + BUILT[:, None, None] * (land["fu"] * (1 + 0.3 * land["vigour"])))
    noise = _chunk_noise(seed, 2, i, r0, r1, width, CHUNK)[0]
    refl = refl * (d["gain"][:, None, None] * (1 + 0.015 * noise)) + 0.002 * noise

    # clouds, shadows and cirrus on the 20 m grid
    ys20 = np.arange(r0 // 2, r1 // 2) * 2 + 1.0
    xs20 = np.arange(width // 2) * 2 + 1.0
    h20, w20 = len(ys20), len(xs20)
    t, wd = thr
    op = sh = ci = np.zeros((h20, w20), np.float32)
    if t != np.inf:
        if t == -np.inf:
            op = np.ones((h20, w20), np.float32)
            dens = np.zeros((h20, w20), np.float32)
        else:
            dens = _cloud_density(ys20, xs20, i, seed)
            op = np.clip((dens - t) / wd + 0.1, 0, 1)
            dy, dx = d["shadow"]
            shifted = _cloud_density(ys20, xs20, i, seed, dy=dy, dx=dx)
            sh = np.clip((shifted - t) / wd + 0.1, 0, 1) * (1 - op)
        if d["cirrus"]:
            veil = _cloud_density(ys20, xs20, i, seed, name="cirrus")
            ci = np.clip((veil - 0.1) * 0.6, 0, 0.15) * (1 - op)
        bright = 0.9 + 0.25 * np.clip((dens - t) / (4 * wd), 0, 1) if np.isfinite(t) else 1.0
        op10, sh10, ci10 = _up2(op), _up2(sh), _up2(ci)
        cloud = CLOUD[:, None, None] * _up2(np.asarray(bright, np.float32) * np.ones_like(op))
        refl = refl * (1 - 0.55 * sh10) * (1 - op10) + cloud * op10 + CIRRUS[:, None, None] * (ci10 / 0.15 * 0.8)
    refl[BANDS_20M] = _up2(_avg2(refl[BANDS_20M]))
    dn = np.clip(np.rint(refl * 10000.0), 1, 65535).astype(np.uint16)

    # scene classification (Sen2Cor classes) at 20 m
    sref = _avg2(refl)
    ndvi = (sref[6] - sref[2]) / np.maximum(sref[6] + sref[2], 1e-6)
    scl = np.where(ndvi > 0.35, 4, 5).astype(np.uint8)
    scl[_avg2(land["fw"]) > 0.5] = 6
    scl[(op > 0.03) & (op <= 0.08)] = 7
    scl[sh > 0.1] = 3
    scl[ci > 0.03] = 10
    scl[op > 0.08] = 8
    scl[op > 0.55] = 9
    return dn, scl


def _s1_block(land: dict, params: np.ndarray, grass: np.ndarray, d: dict, i: int,
              r0: int, r1: int, width: int, seed: int) -> np.ndarray:
    """S1 VV, VH in dB (2, h/2, w/2) of rows [r0, r1) for S1 date i."""
    green, brown = _cover(land, params, grass, _doy(d["when"]), seed)
    biomass = green + 0.6 * brown
    tau2 = np.exp(-2.5 * biomass)
    veg_cls = np.where(land["border"] | (land["cls_px"] == BUILT_C), GRASS, land["cls_px"])
    rough = 1.5 * land["vigour"]
    out = []
    for p in range(2):
        veg = 10 ** (VEG_DB[veg_cls, p] / 10)
        soil = 10 ** ((SOIL_DB[p] + 3.0 * d["wet"] + rough) / 10)
        water = 10 ** ((WATER_DB[p] + d["wind"]) / 10)
        built = 10 ** (BUILT_DB[p] / 10)
        land_sig = veg * (1 - tau2) + soil * tau2
        sig = land["fw"] * water + land["fu"] * built + (1 - land["fw"] - land["fu"]) * land_sig
        out.append(sig)
    sig = _avg2(np.stack(out).astype(np.float32))
    speckle = _chunk_noise(seed, 3, i, r0 // 2, r1 // 2, width // 2, CHUNK // 2, kind="gamma",
                           shape=LOOKS, count=2)
    incidence = np.float32(-0.6) * (np.arange(width // 2, dtype=np.float32) / max(width // 2, 1))
    return (10 * np.log10(np.maximum(sig * speckle, 1e-6)) + d["orbit_db"] + incidence).astype(np.float32)


# --- files ---------------------------------------------------------------------------------------

def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%S")


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _atomic(path: Path, **profile) -> Iterator[rasterio.io.DatasetWriter]:
    """A GeoTIFF written under a temporary name and renamed on success (inputs: no overviews,
    fast deflate; core.writer.AtomicRaster always builds overviews, which inputs do not need), checked
    like AtomicRaster's before the rename (a write cut short by a full disk fails)."""
    with atomic_path(path, verify=verify_raster) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        yield ds


def _profile(size: int, res: float, count: int, dtype: str, nodata: float) -> dict:
    """Tiled deflate GeoTIFF: 256 px tiles at 10 m, 128 px at 20 m, so that a block of 256 rows
    (10 m) completes whole rows of tiles in every file and the GDAL cache never holds partial tiles."""
    prof = dict(driver="GTiff", width=size, height=size, count=count, dtype=dtype, nodata=nodata,
                crs=rasterio.crs.CRS.from_epsg(EPSG), transform=from_origin(*ORIGIN, res, res),
                compress="deflate", zlevel=1, predictor=3 if dtype == "float32" else 2,
                interleave="pixel", BIGTIFF="IF_SAFER")
    tile = (min(int(TILE_ROWS * 10 / res), size) // 16) * 16
    if tile >= 16:
        prof.update(tiled=True, blockxsize=tile, blockysize=tile)
    return prof


def _block_rows(size: int, block_rows: int | None) -> int:
    """Rows per block: about 0.5 Mpx (at least one row of 256 px tiles), a multiple of CHUNK."""
    if block_rows is None:
        block_rows = max(TILE_ROWS, ((2**19 // size) // TILE_ROWS) * TILE_ROWS)
    return int(max(CHUNK, (block_rows // CHUNK) * CHUNK))


def _refuse_other_rasters(out: Path, ours: set[Path]) -> None:
    """OutputError when out/S2 or out/S1 holds rasters this simulation would not write (a real series,
    another simulation): mixed into one folder they would be read as one series (hidden files, e.g. macOS's ._NAME,
    are not read as inputs)."""
    other = sorted(str(p.relative_to(out)) for sub in ("S2", "S1") if (out / sub).is_dir()
                   for p in (out / sub).iterdir()
                   if p.suffix.lower() in RASTER_SUFFIXES and p not in ours and not p.name.startswith("."))
    if other:
        more = f" and {len(other) - 1} more" if len(other) > 1 else ""
        raise OutputError(f"{out}: already holds other rasters ({other[0]}{more}), which would be mixed "
                          "with the simulated series: choose an empty folder")


def simulate_scene(out_dir: str | Path, size: int = 512, n_s2: int = 20, n_s1: int = 30,
                   start: str | dt.date = "2021-03-01", end: str | dt.date = "2021-10-31",
                   seed: int = 0, feedback: Feedback | None = None,
                   block_rows: int | None = None) -> dict:
    """Write a synthetic S1/S2 series of size x size 10 m pixels into out_dir (S2/, S1/, index.json).

    Returns {"s2": [...], "scl": [...], "s1": [...], "s2_dates": [...], "s1_dates": [...],
    "cloud_cover": [...], "index": path}. `block_rows` (multiple of 32) only changes memory use.
    """
    feedback = feedback or Feedback()
    problems = []
    if int(size) != size or size < 32 or size % 2:
        problems.append(f"size must be an even number of pixels >= 32, not {size}")
    if n_s2 < 1 or n_s1 < 0:
        problems.append(f"need at least one S2 date and no negative S1 count (got {n_s2}, {n_s1})")
    d0, d1 = _parse_day(start), _parse_day(end)
    if d1 <= d0:
        problems.append(f"end {d1} is not after start {d0}")
    elif max(n_s2, n_s1) > (d1 - d0).days + 1:  # more than one acquisition a day on average
        problems.append(f"{max(n_s2, n_s1)} dates of one sensor do not fit between {d0} and {d1} "
                        f"({(d1 - d0).days + 1} days): ask for fewer dates or a longer period")
    if problems:
        raise InputError("; ".join(problems))
    if why := output_dir_problem(out_dir):
        raise OutputError(f"{out_dir}: {why}")
    size = int(size)
    out = Path(out_dir)
    plan = _plan(n_s2, n_s1, d0, d1, seed)
    thr = _thresholds(size, plan, seed)
    step = _block_rows(size, block_rows)
    grass = PHENO[GRASS][:, None]

    s2_paths = [out / "S2" / f"T{TILE}_{_stamp(d['when'])}_L2A_10m.tif" for d in plan["s2"]]
    scl_paths = [out / "S2" / f"T{TILE}_{_stamp(d['when'])}_SCL_20m.tif" for d in plan["s2"]]
    s1_paths = [out / "S1" / f"S1_IW_GRDH_ASC_{_stamp(d['when'])}_VV_VH_dB.tif" for d in plan["s1"]]
    _refuse_other_rasters(out, {*s2_paths, *scl_paths, *s1_paths})
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20), contextlib.ExitStack() as files:
        for sub in ("S2", "S1"):  # a failure or cancel leaves no folder made here (nor any file: _atomic)
            files.enter_context(new_dirs_removed_on_error(out / sub))
            ensure_folder(out / sub, out)
        s2_ds, scl_ds, s1_ds = [], [], []
        for d, p, q in zip(plan["s2"], s2_paths, scl_paths, strict=True):
            ds = files.enter_context(_atomic(p, **_profile(size, 10.0, 10, "uint16", 0)))
            ds.update_tags(
                ACQUISITION_DATETIME=_iso(d["when"]), PROCESSING_LEVEL="Level-2A",
                REFLECTANCE_SCALE="0.0001", BOA_ADD_OFFSET="0",
                MEAN_SUN_ZENITH_ANGLE=f"{d['sun_zenith']:.4f}",
                MEAN_SUN_AZIMUTH_ANGLE=f"{d['sun_azimuth']:.4f}",
                MEAN_VIEW_ZENITH_ANGLE=f"{d['view_zenith']:.4f}",
                MEAN_VIEW_AZIMUTH_ANGLE=f"{d['view_azimuth']:.4f}",
                CLOUD_COVER_PLANNED=f"{100 * d['cover']:.1f}",
                SOURCE=f"Synthetic scene (sentinel_densify.core.simulate, seed {seed})")
            for b, name in enumerate(S2_BANDS, start=1):
                ds.set_band_description(b, name)
            s2_ds.append(ds)
            sc = files.enter_context(_atomic(q, **_profile(size // 2, 20.0, 1, "uint8", 0)))
            sc.update_tags(ACQUISITION_DATETIME=_iso(d["when"]))
            sc.set_band_description(1, "SCL")
            scl_ds.append(sc)
        for d, p in zip(plan["s1"], s1_paths, strict=True):
            ds = files.enter_context(_atomic(p, **_profile(size // 2, 20.0, 2, "float32", float("nan"))))
            ds.update_tags(ACQUISITION_DATETIME=_iso(d["when"]), ORBIT_DIRECTION="ASCENDING",
                           POLARISATIONS="VV VH", UNITS="dB",
                           SOURCE=f"Synthetic scene (sentinel_densify.core.simulate, seed {seed})")
            for b, name in enumerate(S1_BANDS, start=1):
                ds.set_band_description(b, name)
            s1_ds.append(ds)

        starts = list(range(0, size, step))
        for k, r0 in enumerate(starts):
            r1 = min(size, r0 + step)
            land = _landscape(r0, r1, size, seed)
            params = _field_params(land, seed)
            for i, d in enumerate(plan["s2"]):
                feedback.check()
                dn, scl = _s2_block(land, params, grass, d, i, thr[i], r0, r1, size, seed)
                s2_ds[i].write(dn, window=Window(0, r0, size, r1 - r0))
                scl_ds[i].write(scl, 1, window=Window(0, r0 // 2, size // 2, (r1 - r0) // 2))
            for i, d in enumerate(plan["s1"]):
                feedback.check()
                db = _s1_block(land, params, grass, d, i, r0, r1, size, seed)
                s1_ds[i].write(db, window=Window(0, r0 // 2, size // 2, (r1 - r0) // 2))
            feedback.report(100.0 * (k + 1) / len(starts), f"rows {r0}-{r1} of {size}")

    params = dict(size=size, n_s2=n_s2, n_s1=n_s1, start=str(d0), end=str(d1), seed=seed)
    index = _write_index(out, size, plan, s2_paths, scl_paths, s1_paths, params)
    return dict(
        s2=[str(p) for p in s2_paths], scl=[str(p) for p in scl_paths], s1=[str(p) for p in s1_paths],
        s2_dates=[d["when"] for d in plan["s2"]], s1_dates=[d["when"] for d in plan["s1"]],
        cloud_cover=[d["cover"] for d in plan["s2"]], index=str(index))


def _write_index(out: Path, size: int, plan: dict, s2: list[Path], scl: list[Path],
                 s1: list[Path], params: dict) -> Path:
    """index.json in the layout of the real series (sensor, datetime, file, scl)."""
    x0, y1 = ORIGIN
    obs = [dict(sensor="S2", datetime=_iso(d["when"]), file=f"S2/{p.name}", scl=f"S2/{q.name}",
                cloud_cover=round(100 * d["cover"], 1)) for d, p, q in zip(plan["s2"], s2, scl, strict=True)]
    obs += [dict(sensor="S1", datetime=_iso(d["when"]), file=f"S1/{p.name}")
            for d, p in zip(plan["s1"], s1, strict=True)]
    obs.sort(key=lambda o: o["datetime"])
    index = dict(epsg=EPSG, bounds=[x0, y1 - 10.0 * size, x0 + 10.0 * size, y1], tile=TILE,
                 synthetic=True, simulator=dict(params, version=VERSION), observations=obs)
    return write_text(out / "index.json", json.dumps(index, indent=1))
