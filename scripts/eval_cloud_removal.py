"""Held-out evaluation of a cloud-removal ONNX model (pix2pix, mtcgan, cnn), as in models/pix2pix.md
and models/mtcgan.md: ONNX Runtime on the CPU, `core.gan.train.evaluate` on the validation split
of the training run (the contract's val_names; older models: the split by target date, --val-fraction)
of a make-pairs dataset (with the cloudy-input and nearest-clear baselines), in the model's bands, per
triplet kind; for pix2pix, optionally one SEN12MS-CR sample triplet through `densify remove-clouds`.

    python scripts/eval_cloud_removal.py MODEL.onnx PAIRS_DIR KIND OUT_DIR [--sen12 DIR]

Writes OUT_DIR/<model stem>_eval.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sentinel_densify.core.atomic import ensure_folder, write_text
from sentinel_densify.core.curate import RGB
from sentinel_densify.core.errors import DensifyError, InputError
from sentinel_densify.core.stack import S2_BANDS

SEN12_NAME = "ROIs2017_winter_112_p797.tif"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="the cloud-removal .onnx model (densify export of a pix2pix / mtcgan / cnn run)")
    p.add_argument("data", help="the make-pairs dataset folder it is scored on")
    p.add_argument("kind", choices=["pix2pix", "mtcgan", "cnn"], help="the model's kind (checked against its contract)")
    p.add_argument("out", help="folder for <model stem>_eval.json (created if needed)")
    p.add_argument("--sen12", default=None, help="SEN12MS-CR sample folder (pix2pix only)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="the held-out share of target dates, for models whose contract records no held-out "
                        "triplets (val_names) (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        return _main(args)
    except DensifyError as exc:
        print(f"eval_cloud_removal: {exc}", file=sys.stderr)
        return 1


def _main(args: argparse.Namespace) -> int:
    from sentinel_densify.core.gan.data import list_samples, split
    from sentinel_densify.core.gan.train import evaluate
    from sentinel_densify.core.model_contract import open_session, read_contract
    from sentinel_densify.core.pairs import read_index

    model, data, out = Path(args.model), Path(args.data), Path(args.out)
    contract = read_contract(model)
    if contract.get("kind") != args.kind:
        raise InputError(f"{model.name}: a '{contract.get('kind')}' model (its contract), not {args.kind}")
    bands = contract.get("bands")
    if not (isinstance(bands, list) and bands and all(b in S2_BANDS for b in bands)
            and all(b in bands for b in RGB)):
        raise InputError(f"{model.name}: its contract's bands {bands} are not S2 bands with R, G and B")
    samples = list_samples([data], args.kind)
    val_names = (contract.get("training") or {}).get("val_names")
    if val_names is not None:  # the training run's own held-out triplets
        val = [s for s in samples if s.name in set(val_names)]
        if not val_names:
            raise InputError(f"{model.name}: its training run held no triplet out (its contract's val_names is "
                             "empty): there is nothing it was not trained on to score it on")
        if not val:
            raise InputError(f"{data}: holds none of the {len(val_names)} triplets {model.name} was validated on "
                             "(its contract's val_names): not the dataset it was trained on")
    else:
        _, val = split(samples, args.val_fraction)
        _, val_p2p = split(list_samples([data], "pix2pix"), args.val_fraction)
        if [s.name for s in val] != [s.name for s in val_p2p]:
            raise InputError("the held-out triplets differ from pix2pix's: the models would not compare")
    sess = open_session(model, "cpu")

    def predict(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {"input": x[None]})[0][0]

    ensure_folder(out, out / f"{model.stem}_eval.json")
    kinds = {r["name"]: r.get("kind", "?") for r in read_index(data)}
    res: dict = {"all": evaluate(predict, val, args.kind, bands)}
    for k in sorted({kinds.get(s.name, "?") for s in val}):
        res[k] = evaluate(predict, [s for s in val if kinds.get(s.name, "?") == k], args.kind, bands)
    res["dates"] = sorted({s.group for s in val})
    res["held_out"] = "the training run's val_names" if val_names is not None else f"split {args.val_fraction}"
    if args.sen12 and args.kind == "pix2pix":
        import rasterio
        from sentinel_densify.core.cloud_removal import remove_clouds
        from sentinel_densify.core.curate import read_s2_refl
        from sentinel_densify.core.gan.train import score_rgb

        sen = Path(args.sen12)
        pred_path = out / "sen12_clear.tif"
        remove_clouds(str(sen / "s1" / SEN12_NAME), str(sen / "s2_cloudy" / SEN12_NAME), pred_path,
                      model=model, device="cpu")
        truth, _, _ = read_s2_refl(sen / "s2_cloudfree" / SEN12_NAME, list(RGB))
        cloudy, _, _ = read_s2_refl(sen / "s2_cloudy" / SEN12_NAME, list(RGB))
        with rasterio.open(pred_path) as ds:
            pred = ds.read().astype("float32")
        res["sen12"] = {"model": score_rgb(pred, truth, list(RGB)),
                        "cloudy": score_rgb(np.nan_to_num(cloudy), truth, list(RGB))}
    text = json.dumps(res, indent=1)
    print(text)
    write_text(out / f"{model.stem}_eval.json", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
