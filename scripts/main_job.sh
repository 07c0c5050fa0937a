#!/usr/bin/env bash
# The main job, end to end on this machine (CPU is fine), as the SageMaker pipeline runs it:
#   1. uploads: a procedural set of "designer uploads" (JPEGs of mixed sizes, no downloads)
#   2. prepare: the container's processing job (`sg2 local process`, the article's arguments)
#               turns them into the training zip
#   3. train:   `sg2 local train` runs the container's training job against a local /opt/ml
#               tree with the article's hyperparameters, sized for a CPU (kimg, channels)
#   4. infer:   `sg2 generate` renders images from the trained model
#   5. project: `sg2 local process ... -- infer` runs the container's batch-inference job (the
#               article's last step): one prepared image projected into the trained model (CPU,
#               20 steps) plus a style-mixing grid. Without VGG16 weights ($SG2_VGG16_WEIGHTS)
#               the projection is a rehearsal with a random distance network, and says so.
# Everything lands in ./demo. Re-running continues/reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
sg2=.venv/bin/sg2
demo=demo
mkdir -p "$demo"

if [ ! -d "$demo/uploads" ]; then
    "$sg2" dataset synthetic "$demo/uploads" --count 256 --resolution 32
fi
"$sg2" local process --base-dir "$demo/opt_ml_processing" \
    --input input="$demo/uploads" --output train="$demo/data" -- \
    --source /opt/ml/processing/input/ --dest /opt/ml/processing/train/animeface.zip \
    --width 32 --height 32
cp "$demo/data/animeface.zip" "$demo/animeface.zip"
"$sg2" dataset info "$demo/animeface.zip" --grid "$demo/dataset-grid.png"

# The article's hyperparameters; batch, channel sizes and kimg are cut down for a CPU.
cat > "$demo/hyperparameters.json" <<'JSON'
{"data": "/opt/ml/input/data/train/animeface.zip", "gpus": 1, "augpipe": "bg", "gamma": 10,
 "cfg": "paper256", "mirror": 1, "snap": 10, "kimg": 0.2, "metrics": "none",
 "outdir": "/opt/ml/checkpoints",
 "batch": 8, "cbase": 2048, "cmax": 64, "map": 2, "kimg_per_tick": 0.04, "workers": 1}
JSON
"$sg2" local train --hyperparameters "$demo/hyperparameters.json" \
    --channel train="$demo/animeface.zip" --base-dir "$demo/opt_ml"

"$sg2" generate --network "$demo/opt_ml/model/model.pt" --seeds 0-7 --outdir "$demo/generated"

# Batch inference as the article's processing step: the model folder as the job's model input,
# one prepared image (the first of the training zip) and a requests.jsonl as its data input.
rm -rf "$demo/infer-data" && mkdir -p "$demo/infer-data"
.venv/bin/python - "$demo/animeface.zip" "$demo/infer-data/target.png" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    name = sorted(n for n in archive.namelist() if n.endswith(".png"))[0]
    open(sys.argv[2], "wb").write(archive.read(name))
PY
echo '{"style_mix": {"rows": [1, 2, 3], "cols": [4, 5], "styles": "0-3", "truncation_psi": 0.7}}' \
    > "$demo/infer-data/requests.jsonl"
rehearsal=()
if [ -z "${SG2_VGG16_WEIGHTS:-}" ]; then
    echo "no SG2_VGG16_WEIGHTS set: the projection is a rehearsal (random distance network)"
    rehearsal=(--allow-random-vgg16)
fi
"$sg2" local process --base-dir "$demo/opt_ml_infer" \
    --input model="$demo/opt_ml/model" --input data="$demo/infer-data" \
    --output output="$demo/inference" -- \
    infer --device cpu --num-steps 20 "${rehearsal[@]}"
echo "main job done: model in $demo/opt_ml/model, images in $demo/generated,"
echo "  projection in $demo/inference/test/001-project/target/ (proj.png, projected_w.npz),"
echo "  style mix in $demo/inference/test/000-style_mix/grid.png, list in $demo/inference/test/manifest.json"
