"""Datasets of the cloud-removal models, read from SEN12MS-CR layout folders (made by make-pairs or
SEN12MS-CR itself, optionally curated).

Scaling (stored in the model contract): S1 dB clipped to [-25, 0] -> [-1, 1]; S2 reflectance
clipped to [0, 1] -> [-1, 1]; NaN (nodata) -> 0 after scaling.

- pix2pix: x = VV, VH, cloudy S2 bands (R, G, B; R, G, B, NIR; or 10 bands) -> y = cloud-free bands.
- mtcgan / cnn (He & Yokoya task B): x = S1 t1 (`s1_nearest`), clear S2 t1 (`s2_nearest`),
  S1 t2 (`s1_target`, the S1 nearest to the target's date) -> y = S2 t2 (`s2_cloudfree`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import first_line
from ..curate import FOLDERS, RGB, read_s1_db, read_s2_refl, triplet_names
from ..dates import date_from_metadata, date_from_name
from ..errors import InputError
from ..pairs import read_index
from ..stack import S2_BANDS

S1_RANGE = (-25.0, 0.0)
S2_RANGE = (0.0, 1.0)
# rgbn: He & Yokoya's four bands (R, G, B, NIR)
BAND_SETS = {"rgb": list(RGB), "rgbn": [*RGB, "B08"], "all": list(S2_BANDS)}
TEMPORAL_FOLDERS = ("s1_nearest", "s2_nearest", "s1_target")


def scale_s1(db: np.ndarray) -> np.ndarray:
    lo, hi = S1_RANGE
    return np.nan_to_num(np.clip((db - lo) / (hi - lo), 0, 1) * 2 - 1, nan=0.0).astype(np.float32)


def scale_s2(refl: np.ndarray) -> np.ndarray:
    lo, hi = S2_RANGE
    return np.nan_to_num(np.clip((refl - lo) / (hi - lo), 0, 1) * 2 - 1, nan=0.0).astype(np.float32)


def unscale_s2(y: np.ndarray) -> np.ndarray:
    """Model output in [-1, 1] back to reflectance."""
    lo, hi = S2_RANGE
    return ((np.asarray(y, dtype=np.float32) + 1) / 2 * (hi - lo) + lo).astype(np.float32)


@dataclass(frozen=True)
class Sample:
    root: Path
    name: str
    group: str  # what the train/validation split keeps together (the target date)


def folders_for(kind: str) -> tuple[str, ...]:
    return FOLDERS + TEMPORAL_FOLDERS if kind in ("mtcgan", "cnn") else FOLDERS


def list_samples(data: list[str | Path], kind: str, names_file: str | Path | None = None) -> list[Sample]:
    """Every triplet of the dataset folders that has all the files `kind` needs (only those `names_file` lists, one
    per line in UTF-8 as curate's kept.txt, with or without the byte order mark Windows' Notepad may add)."""
    keep = None
    if names_file:
        try:
            keep = {ln.strip() for ln in Path(names_file).read_text(encoding="utf-8-sig").splitlines() if ln.strip()}
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{names_file}: cannot be read as a list of triplet names "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
    out: list[Sample] = []
    for root in map(Path, data):
        need = folders_for(kind)
        absent = [f for f in need if not (root / f).is_dir()]
        if absent:
            raise InputError(f"{root}: lacks {', '.join(absent)} (a {kind} dataset needs {', '.join(need)}; "
                             f"{_make_hint(root)})")
        index = {r["name"]: r for r in read_index(root)}
        for name in triplet_names(root):
            if keep is not None and name not in keep:
                continue
            if not all((root / f / name).is_file() for f in need):
                continue
            row = index.get(name)
            group = row["clear_date"] if row else _target_date(root / "s2_cloudfree" / name) or name
            out.append(Sample(root, name, group))
    if not out:
        raise InputError(f"no usable triplet in {', '.join(map(str, data))}")
    return out


def _make_hint(root: Path) -> str:
    """How to get a dataset `root` is not: from make-pairs, or for a `curate --link` folder (kept.txt beside
    links to s1, s2_cloudy, s2_cloudfree only) the make-pairs folder it links to with its kept.txt."""
    kept = root / "kept.txt"
    if not kept.is_file():
        return "make it with `densify make-pairs`"
    try:
        source = json.loads((root / "summary.json").read_text(encoding="utf-8"))["config"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        source = "<make-pairs folder>"
    return (f"a `densify curate --link` folder links {', '.join(FOLDERS)} only: train on the make-pairs folder "
            f"with `--data {source} --names {kept}`")


def _target_date(path: Path) -> str | None:
    import rasterio

    try:
        with rasterio.open(path) as ds:
            when = date_from_metadata(ds.tags())
    except Exception:  # noqa: BLE001 - unreadable: grouped by name, rejected when read
        when = None
    when = when or date_from_name(path)
    return f"{when:%Y-%m-%d}" if when else None


def split(samples: list[Sample], val_fraction: float = 0.2) -> tuple[list[Sample], list[Sample]]:
    """Train / validation split keeping each target date (group) on one side (no leakage of truths).

    Groups are ordered by a hash of their name, so the split is deterministic and spread in time.
    """
    if val_fraction <= 0:
        return list(samples), []
    groups = sorted({s.group for s in samples}, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    n_val = max(1, int(round(len(groups) * val_fraction))) if len(groups) > 1 else 0
    val_groups = set(groups[:n_val])
    return [s for s in samples if s.group not in val_groups], [s for s in samples if s.group in val_groups]


def load_sample(s: Sample, kind: str, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) scaled float32 arrays (C, h, w) of one triplet."""
    try:
        y, _, _ = read_s2_refl(s.root / "s2_cloudfree" / s.name, bands)
        if kind == "pix2pix":
            s1, _ = read_s1_db(s.root / "s1" / s.name)
            cloudy, _, _ = read_s2_refl(s.root / "s2_cloudy" / s.name, bands)
            x = np.concatenate([scale_s1(s1), scale_s2(cloudy)])
        else:
            s1_t1, _ = read_s1_db(s.root / "s1_nearest" / s.name)
            o1, _, _ = read_s2_refl(s.root / "s2_nearest" / s.name, bands)
            s1_t2, _ = read_s1_db(s.root / "s1_target" / s.name)
            x = np.concatenate([scale_s1(s1_t1), scale_s2(o1), scale_s1(s1_t2)])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt file names itself
        raise InputError(f"{s.root / s.name}: cannot read triplet ({first_line(exc)[:160]})") from None
    if x.shape[1:] != y.shape[1:]:
        raise InputError(f"{s.name}: input {x.shape[1:]} and target {y.shape[1:]} sizes differ")
    return x, scale_s2(y)


def in_channels(kind: str, n_bands: int) -> int:
    return 2 + n_bands if kind == "pix2pix" else 4 + n_bands


class TripletDataset:
    """torch Dataset of triplets, in memory (small datasets) with random crops and flips."""

    def __init__(self, samples: list[Sample], kind: str, bands: list[str], patch: int | None = None,
                 augment: bool = False, seed: int = 0):
        self.samples, self.kind, self.bands = samples, kind, bands
        self.patch, self.augment = patch, augment
        self.rng = np.random.default_rng(seed)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            self._cache[i] = load_sample(self.samples[i], self.kind, self.bands)
        return self._cache[i]

    def __getitem__(self, i: int):
        import torch

        x, y = self.pair(i)
        h, w = x.shape[1:]
        p = self.patch or min(h, w)
        if p > h or p > w:
            raise InputError(f"{self.samples[i].name}: {h}x{w} px, smaller than the patch {p}")
        if self.augment:
            r, c = int(self.rng.integers(0, h - p + 1)), int(self.rng.integers(0, w - p + 1))
        else:
            r, c = (h - p) // 2, (w - p) // 2
        x, y = x[:, r:r + p, c:c + p], y[:, r:r + p, c:c + p]
        if self.augment:
            if self.rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, :, ::-1]
            if self.rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
