#!/usr/bin/env bash
# The main job, end to end on this machine (CPU is fine), as the SageMaker pipeline runs it:
#   1. uploads: a procedural set of "designer uploads" (JPEGs of mixed sizes, no downloads)
#   2. prepare: the container's processing job (`sg2 local process`, the article's arguments)
#               turns them into the training zip
#   3. train:   `sg2 local train` runs the container's training job against a local /opt/ml
#               tree with the article's hyperparameters, sized for a CPU (kimg, channels)
#   4. infer:   `sg2 generate` renders images from the trained model
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
echo "main job done: model in $demo/opt_ml/model, images in $demo/generated"
