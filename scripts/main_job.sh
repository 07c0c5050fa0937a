#!/usr/bin/env bash
# The main job: the article's SageMaker Pipeline, rehearsed on this machine (CPU is fine).
# `sg2 pipeline run --local` builds the same pipeline definition that `sg2 pipeline upsert`
# sends to SageMaker and runs ITS four steps, each as the container's entrypoint in a
# subprocess, with folders under demo/s3/ standing in for the S3 locations:
#   stylegan2Process      prepare: the designer's uploads -> the training zip
#   stylegan2train        train: the article's hyperparameters, cut down for a CPU through
#                         pipeline parameters only (Resolution, Kimg, Batch, Cbase, Cfg)
#   stylegan2Inference    infer: the test image projected into the trained model
#   stylegan2Notification notify: the message the designer would get, printed and written to
#                         demo/notifications/
# The uploads and the test image are procedural (no downloads). Projection uses real VGG16
# weights when $SG2_VGG16_WEIGHTS names them, otherwise a labelled rehearsal (random distance
# network). Running the script again retries the same execution: training resumes from its
# checkpoints in demo/s3/.../checkpoints/<execution> (`rm -rf demo` to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    -h|--help)
        echo "Usage: scripts/main_job.sh"
        echo "Sets up .venv and rehearses the article's pipeline locally in demo/ (no GPU, no"
        echo "network); run it again to retry the same execution, rm -rf demo to start over."
        exit 0 ;;
    ?*) echo "error: main_job.sh takes no arguments, got '$1' (see --help)" >&2; exit 2 ;;
esac
scripts/setup_env.sh pipeline
sg2=.venv/bin/sg2
demo=demo
bucket="sg2-demo"
s3="$demo/s3/$bucket/sg2"
mkdir -p "$demo"

# The designer's uploads (InputDataUri) and the image to project (InferenceInputUri).
if [ ! -d "$s3/uploads" ]; then
    "$sg2" dataset synthetic "$s3/uploads" --count 64 --resolution 32 --format uploads
fi
if [ ! -d "$s3/inference-input" ]; then
    mkdir -p "$s3/inference-input"
    .venv/bin/python - "$s3/inference-input/design.png" <<'PY'
import sys
from sg2_container.data.synthetic import synthetic_image
synthetic_image(7, 32, seed=1)[0].save(sys.argv[1])
PY
fi

rehearsal=()
if [ -z "${SG2_VGG16_WEIGHTS:-}" ]; then
    echo "note: no SG2_VGG16_WEIGHTS: the projection is a labelled rehearsal (random VGG16)"
    rehearsal=(--inference-rehearsal)
fi

"$sg2" pipeline run --local --workdir "$demo" --bucket "$bucket" "${rehearsal[@]}" \
    --param Resolution=32 --param Cfg=cifar --param Kimg=0.064 --param Batch=8 \
    --param Cbase=256 --param Snap=1 --param InferenceSteps=20
echo "main job done: the folders under $demo/s3/$bucket/ are the S3 locations; results in"
echo "  $s3/output/<execution>/inference/test (manifest.json), model in .../model/, messages in $demo/notifications/"
