#!/usr/bin/env bash
# Rebuild the bundled temporal model from the shared data (`make model`, ~15 min on 2 CPU cores):
# the training recipe on 3 month folds (test months: month index % 4 = 3, 2, 0; validation months
# % 8 = 1 in each), models/default.onnx = fold 3 (whose test months hold 4 of the 8 protocol
# targets), its held-out evaluation, the 3-fold cross-validation, the figure and the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/worldcereal-31UDS-2017}
POINTS=${POINTS:-../shared/data/worldcereal-points-FRA-2023/2023_FRA_LPIS_POLY_110.geoparquet}
OUT=${OUT:-runs/default}
DENSIFY=${DENSIFY:-.venv/bin/densify}
RECIPE=(--epochs 16 --steps 40 --batch 8 --crop 24 --k1 6 --lr 1e-3 --seed 0
        --points "$POINTS" --points-steps 300 --points-batch 256)
for fold in 3 2 0; do
  "$DENSIFY" train temporal --data "$DATA" --out "$OUT/fold$fold" --holdout-offset "$fold" --no-progress "${RECIPE[@]}"
  "$DENSIFY" export --checkpoint "$OUT/fold$fold/best.pt" --out "$OUT/fold$fold/model.onnx"
done
BASE=linear,nearest,persistence
"$DENSIFY" evaluate --s2 "$DATA/S2" --s1 "$DATA/S1" --heldout --label "temporal (default)" \
  --methods "$BASE,$OUT/fold3/model.onnx" --out "$OUT/heldout"
"$DENSIFY" evaluate --s2 "$DATA/S2" --s1 "$DATA/S1" --heldout --label "temporal (3-fold CV)" \
  --methods "$BASE,$OUT/fold3/model.onnx,$OUT/fold2/model.onnx,$OUT/fold0/model.onnx" --out "$OUT/cv"
cp "$OUT/fold3/model.onnx" models/default.onnx
DATES=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['targets']; print(','.join([t[0], t[len(t)//2], t[-1]]))" \
        "$OUT/heldout/report.json")
"$DENSIFY" figure --data "$DATA" --model models/default.onnx --dates "$DATES" --out models/default.png \
  --title "models/default.onnx on held-out dates (gap-filling, G = 0)"
"$DENSIFY" card --model models/default.onnx --heldout "$OUT/heldout/report.json" --cv "$OUT/cv/report.json" \
  --figure default.png --reproduce "make model   # scripts/build_default_model.sh: ${RECIPE[*]//$POINTS/POINTS}" \
  --out models/default.md
