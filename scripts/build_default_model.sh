#!/usr/bin/env bash
# Rebuild the bundled temporal model from the shared data (`make model`, ~40 min on 2 CPU cores).
# The recipe is trained with SEEDS on 3 month folds (test months: month index % 4 = 3, 2, 0;
# validation months % 8 = 1 in each); per fold the seed with the best validation score is kept
# (`densify export` of several checkpoints). models/default.onnx = fold 3 (its test months hold
# 4 of the 8 protocol targets). Then: its held-out evaluation, the 3-fold cross-validation, the
# figure and the model card (models/default.md, .json, .png).
# FROM_CHECKPOINTS=1: no training; export, evaluate and describe the checkpoints already in OUT (after a
# change to the export or the calibration).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/worldcereal-31UDS-2017}
POINTS=${POINTS:-../shared/data/worldcereal-points-FRA-2023/2023_FRA_LPIS_POLY_110.geoparquet}
OUT=${OUT:-runs/default}
SEEDS=${SEEDS:-0 1 2}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}  # trainings at once, one thread each: one per core (the same weights for any JOBS)
DENSIFY=${DENSIFY:-.venv/bin/densify}
# the recipe lives in one place, core/temporal/train.py (RECIPE; also shown by `densify train temporal --help`)
RECIPE=$("${PYTHON:-.venv/bin/python}" -c "from sentinel_densify.core.temporal.train import RECIPE; print(RECIPE)")
if [ "${FROM_CHECKPOINTS:-0}" = 1 ]; then
  for fold in 3 2 0; do for seed in $SEEDS; do
    [ -f "$OUT/fold$fold/seed$seed/best.pt" ] || { echo "FROM_CHECKPOINTS: $OUT/fold$fold/seed$seed/best.pt is missing" >&2; exit 1; }
  done; done
else
  if compgen -G "$OUT/fold*/seed*/last.pt" >/dev/null; then
    echo "$OUT holds a previous build: move it away (e.g. to runs/old/), set OUT=another/folder, or FROM_CHECKPOINTS=1" >&2
    exit 1
  fi
  mkdir -p "$OUT"
  export DATA POINTS OUT DENSIFY RECIPE
  for fold in 3 2 0; do for seed in $SEEDS; do echo "$fold $seed"; done; done |
    OMP_NUM_THREADS=1 xargs -P "$JOBS" -L 1 bash -c '
      "$DENSIFY" train temporal --data "$DATA" --points "$POINTS" --out "$OUT/fold$0/seed$1" --holdout-offset "$0" \
        --seed "$1" --no-progress $RECIPE > "$OUT/fold$0-seed$1.log" 2>&1 || { cat "$OUT/fold$0-seed$1.log"; exit 255; }' \
    || { echo "training failed" >&2; exit 1; }
fi
for fold in 3 2 0; do
  "$DENSIFY" export --checkpoint "$OUT"/fold$fold/seed*/best.pt --out "$OUT/fold$fold.onnx" --recalibrate
done
BASE=linear,nearest,persistence
"$DENSIFY" evaluate --s2 "$DATA/S2" --s1 "$DATA/S1" --heldout --label "temporal (default)" \
  --methods "$BASE,$OUT/fold3.onnx" --out "$OUT/heldout"
"$DENSIFY" evaluate --s2 "$DATA/S2" --s1 "$DATA/S1" --heldout --label "temporal (3-fold CV)" \
  --methods "$BASE,$OUT/fold3.onnx,$OUT/fold2.onnx,$OUT/fold0.onnx" --out "$OUT/cv"
cp "$OUT/fold3.onnx" models/default.onnx
DATES=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['targets']; print(','.join([t[0], t[len(t)//2], t[-1]]))" \
        "$OUT/heldout/report.json")
"$DENSIFY" figure --data "$DATA" --model models/default.onnx --dates "$DATES" --out models/default.png \
  --title "models/default.onnx on held-out dates (gap-filling, G = 0)"
"$DENSIFY" card --model models/default.onnx --heldout "$OUT/heldout/report.json" --cv "$OUT/cv/report.json" \
  --figure default.png --out models/default.md --reproduce "make model   # = scripts/build_default_model.sh, i.e. per fold F in 3 2 0 and seed S in $SEEDS:
densify train temporal --data $DATA --points $POINTS --out runs/default/foldF/seedS --holdout-offset F --seed S $RECIPE
densify export --checkpoint runs/default/foldF/seed*/best.pt --out runs/default/foldF.onnx --recalibrate   # best validation score"
