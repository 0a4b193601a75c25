"""Held-out evaluation of a cloud-removal ONNX model (pix2pix, mtcgan, cnn), as in models/pix2pix.md
and models/mtcgan.md: ONNX Runtime on the CPU, `core.gan.train.evaluate` on the validation split
by target date of a make-pairs dataset (with the cloudy-input and nearest-clear baselines), per
triplet kind; for pix2pix, optionally one SEN12MS-CR sample triplet through `densify remove-clouds`.

    python scripts/eval_cloud_removal.py MODEL.onnx PAIRS_DIR KIND OUT_DIR [--sen12 DIR]

Writes OUT_DIR/<model stem>_eval.json and prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEN12_NAME = "ROIs2017_winter_112_p797.tif"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("kind", choices=["pix2pix", "mtcgan", "cnn"])
    p.add_argument("out")
    p.add_argument("--sen12", default=None, help="SEN12MS-CR sample folder (pix2pix only)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    args = p.parse_args(argv)

    import onnxruntime as ort
    from sentinel_densify.core.curate import RGB
    from sentinel_densify.core.gan.data import list_samples, split
    from sentinel_densify.core.gan.train import evaluate
    from sentinel_densify.core.pairs import read_index

    model, data, out = Path(args.model), Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])

    def predict(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {"input": x[None]})[0][0]

    _, val = split(list_samples([data], args.kind), args.val_fraction)
    _, val_p2p = split(list_samples([data], "pix2pix"), args.val_fraction)
    if [s.name for s in val] != [s.name for s in val_p2p]:
        raise SystemExit("the held-out triplets differ from pix2pix's: the models would not compare")
    kinds = {r["name"]: r.get("kind", "?") for r in read_index(data)}
    res: dict = {"all": evaluate(predict, val, args.kind, list(RGB))}
    for k in sorted({kinds.get(s.name, "?") for s in val}):
        res[k] = evaluate(predict, [s for s in val if kinds.get(s.name, "?") == k], args.kind, list(RGB))
    res["dates"] = sorted({s.group for s in val})
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
    (out / f"{model.stem}_eval.json").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
