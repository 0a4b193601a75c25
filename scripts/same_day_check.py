"""The check that chose what the bundled model gives on a partly cloudy acquisition date (core/same_day.py;
models/README.md, twenty-ninth session), on fold 3's validation months only (test months removed).

Targets: the validation dates >= 95 % clear; each is clouded by the masks of the 8 dates nearest it that are
20-80 % cloudy. Scored with the protocol's PSNR on the clouded pixels clear in truth, mean over the cases:
 (b) the model without the date's partial image;
 (c) what a run gives now: (b) corrected by its miss on the date's clear pixels (core/same_day.anchored).
(a), the model given the partial image among its inputs, is what a run gave before: 31.96 dB, measured with the
code of commit 5a84e97.

    python scripts/same_day_check.py [DATA_DIR]   (default ../shared/data/worldcereal-31UDS-2017; ~1 min)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(data: str) -> None:
    from sentinel_densify.core.dates import from_days
    from sentinel_densify.core.methods import create
    from sentinel_densify.core.metrics import psnr
    from sentinel_densify.core.stack import Stack
    from sentinel_densify.core.temporal.dataset import load_series, split_dates, validation_dates

    stack = load_series(data)
    test = split_dates(stack, 4, 3)
    val = validation_dates(stack, test)[~test]
    seen = stack.select_s2(~test)
    clear = seen.valid.reshape(len(seen.s2_days), -1).mean(axis=1)
    model = create("default", "cpu")

    def iso(day: float) -> str:
        return from_days(day).date().isoformat()

    rows = []
    for t in np.flatnonzero(val & (clear >= 0.95)):
        day = float(seen.s2_days[t])
        masks = [j for j in np.argsort(np.abs(seen.s2_days - day)) if j != t and 0.2 <= 1 - clear[j] <= 0.8][:8]
        alone = model.predict(seen.select_s2(np.abs(seen.s2_days - day) > 0.5), day)[0]
        truth = seen.s2[t]
        for j in masks:
            hidden = ~seen.valid[j]
            s2 = seen.s2.copy()
            s2[t][:, hidden] = np.nan
            run = model.predict(Stack(s2, seen.s2_days, seen.s1, seen.s1_days, seen.bands, seen.angles), day)[0]
            scored = hidden & seen.valid[t]
            rows.append({"target": iso(day), "mask": iso(float(seen.s2_days[j])),
                         **{k: psnr(m, truth, scored) for k, m in (("b", alone), ("c", run))}})
            print(rows[-1], flush=True)
    for key in "bc":
        print(f"({key}) {np.mean([r[key] for r in rows]):.2f} dB")
    print(f"(c) > (b) in {sum(r['c'] > r['b'] for r in rows)} of {len(rows)} cases")


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "worldcereal-31UDS-2017"
    main(sys.argv[1] if len(sys.argv) > 1 else str(default))
