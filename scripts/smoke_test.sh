#!/usr/bin/env bash
# Tries the image locally the way SageMaker runs it, before paying for a job: a processing-job
# `prepare`, a tiny training job, and a SIGTERM-then-resume of a training job, each against an
# /opt/ml tree laid out like SageMaker's. Exits non-zero if any step fails. See docs/docker.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/smoke_test.sh [options]

Runs the image with `docker run` against local /opt/ml trees laid out like SageMaker's:
  prepare  processing job: IMAGE --source /opt/ml/processing/input/
           --dest /opt/ml/processing/train/animeface.zip --width 64 --height 64
  train    training job: IMAGE train, the article's hyperparameters (JSON-encoded per
           value) with a tiny kimg; expects a model in model/ and a checkpoint in checkpoints/
  resume   training job stopped with `docker kill --signal TERM` some seconds after its
           first status line (tick=0 ...), then started again: it must stop cleanly and
           leave a checkpoint, and the second run must continue from it (log line
           "continuing from checkpoint-...") and save a newer one
Each step gets its own tree under the work folder, left there for inspection.

Options:
  --image IMAGE       image to test (default sg2-container:latest-cu130)
  --cpu               run without GPUs (no --gpus all) with a tiny network and batch
  --steps LIST        comma-separated steps to run (default prepare,train,resume)
  --workdir DIR       where the /opt/ml trees go (default: a new folder under /tmp)
  --hp KEY=JSON       add or override a training hyperparameter, value as JSON
                      (e.g. --hp kimg=2 --hp 'cfg="auto"'); repeatable
  --kill-after SEC    seconds between the first status line and SIGTERM (default 10)
  --stop-timeout SEC  how long a stopped job may take to exit (default 120, as SageMaker
                      waits before SIGKILL)
  --start-timeout SEC how long to wait for a training job's first status line (default 900)
  -h, --help          show this help and exit

Needs docker (and the NVIDIA container toolkit unless --cpu). The files the container writes
are owned by root, as on SageMaker.
EOF
}

image=sg2-container:latest-cu130
cpu=0
steps=prepare,train,resume
workdir=""
kill_after=10
stop_timeout=120
start_timeout=900
extra_hps=()

# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh"

while [ "$#" -gt 0 ]; do
    case "$1" in
        --image) need_value "$@"; image=$2; shift 2 ;;
        --cpu) cpu=1; shift ;;
        --steps) need_value "$@"; steps=$2; shift 2 ;;
        --workdir) need_value "$@"; workdir=$2; shift 2 ;;
        --hp) need_value "$@"; extra_hps+=("$2"); shift 2 ;;
        --kill-after) need_value "$@"; kill_after=$2; shift 2 ;;
        --stop-timeout) need_value "$@"; stop_timeout=$2; shift 2 ;;
        --start-timeout) need_value "$@"; start_timeout=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

for step in ${steps//,/ }; do
    case "$step" in
        prepare|train|resume) ;;
        *) echo "error: unknown step '$step' (steps: prepare, train, resume)" >&2; exit 2 ;;
    esac
done
# The waits are whole seconds, checked here rather than when the job they time has started.
for pair in "kill-after=$kill_after" "stop-timeout=$stop_timeout" "start-timeout=$start_timeout"; do
    case "${pair#*=}" in
        ''|*[!0-9]*) echo "error: --${pair%%=*} '${pair#*=}': expected whole seconds" >&2; exit 2 ;;
    esac
done
for hp in ${extra_hps[@]+"${extra_hps[@]}"}; do
    case "$hp" in
        *=*) ;;
        *) echo "error: --hp $hp: expected KEY=JSON" >&2; exit 2 ;;
    esac
done

command -v docker >/dev/null || { echo "error: docker is not installed" >&2; exit 2; }
docker image inspect "$image" >/dev/null 2>&1 || {
    echo "error: no local image $image (build it: scripts/build_and_push.sh --local)" >&2
    exit 2
}

workdir=${workdir:-$(mktemp -d /tmp/sg2-smoke.XXXXXX)}
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
gpu_args=(--gpus all)
[ "$cpu" = 1 ] && gpu_args=()
container=""
trap 'if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi' EXIT

failures=()
log() { echo "[smoke] $*"; }
fail() { echo "[smoke] FAIL: $*" >&2; failures+=("$*"); }

# Python inside the image (the host needs no Python); $1 is the /opt/ml tree to mount.
image_python() {
    local ml=$1
    shift
    docker run --rm --entrypoint python -v "$ml:/opt/ml" "$image" "$@"
}

# A training job's /opt/ml: config files, the data channel, empty checkpoints/model/output.
# $2 is the kimg for this job.
make_training_tree() {
    local ml=$1 kimg=$2
    mkdir -p "$ml/input/config" "$ml/input/data/train" "$ml/checkpoints" "$ml/model" "$ml/output"
    # The article's hyperparameters, each value JSON-encoded as its pipeline sends them.
    local -a hps=(
        'data="/opt/ml/input/data/train/animeface.zip"' 'gpus=1' 'augpipe="bg"' 'gamma=10'
        'cfg="paper256"' 'mirror=1' 'snap=10' "kimg=$kimg" 'metrics="none"'
        'outdir="/opt/ml/checkpoints"'
    )
    if [ "$cpu" = 1 ]; then
        # A network small enough for a CPU (channels <= 32, 2 mapping layers, batch 4, a
        # status line every 16 images). No GPU visible: the job picks the CPU itself.
        hps+=('batch=4' 'cbase=1024' 'cmax=32' 'map=2' 'workers=0' 'kimg-per-tick=0.016')
    fi
    hps+=(${extra_hps[@]+"${extra_hps[@]}"})
    write_hyperparameters "$ml/input/config/hyperparameters.json" "${hps[@]}"
    cat > "$ml/input/config/resourceconfig.json" <<'EOF'
{"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0",
 "current_instance_type": "local", "current_group_name": "homogeneousCluster",
 "instance_groups": [{"instance_group_name": "homogeneousCluster",
                      "instance_type": "local", "hosts": ["algo-1"]}]}
EOF
    cat > "$ml/input/config/inputdataconfig.json" <<'EOF'
{"train": {"TrainingInputMode": "File", "ContentType": "application/x-image",
           "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}
EOF
    image_python "$ml" -c 'from sg2_container.data.synthetic import write_synthetic_dataset
write_synthetic_dataset("/opt/ml/input/data/train/animeface.zip", count=64, resolution=64)'
}

# Writes {"key": "<JSON value as a string>", ...}; a later KEY=JSON overrides an earlier one.
# (No associative arrays: macOS ships bash 3.2.)
write_hyperparameters() {
    local path=$1
    shift
    local sep="" pair key value later overridden
    {
        printf '{'
        while [ "$#" -gt 0 ]; do
            pair=$1
            shift
            key=${pair%%=*}
            overridden=0
            for later in "$@"; do
                [ "${later%%=*}" = "$key" ] && overridden=1
            done
            [ "$overridden" = 1 ] && continue
            value=${pair#*=}
            value=${value//\\/\\\\}
            value=${value//\"/\\\"}
            printf '%s\n  "%s": "%s"' "$sep" "$key" "$value"
            sep=","
        done
        printf '\n}\n'
    } > "$path"
}

# Why a job failed: its failure file if it wrote one, else the last line of its log.
reason() {
    if [ -s "$1" ]; then
        head -c 300 "$1"
    else
        echo "$(tail -n 1 "$2" | cut -c 1-300) (log: $2)"
    fi
}

latest_checkpoint() {
    find "$1/checkpoints" -name 'checkpoint-*.pt' 2>/dev/null | sort | tail -n 1
}

# Starts a training job in the background, waits for its first status line, waits
# $kill_after seconds more, sends SIGTERM and waits for the exit; logs go to $2.
# Returns non-zero (with a reason) if the job ended by itself or did not stop in time.
run_and_stop() {
    local ml=$1 logfile=$2 started=0 waited=0
    container=sg2-smoke-$$-$RANDOM
    docker run -d --name "$container" ${gpu_args[@]+"${gpu_args[@]}"} --shm-size 2g -v "$ml:/opt/ml" \
        "$image" train >/dev/null
    while [ "$waited" -lt "$start_timeout" ]; do
        if [ "$(docker inspect -f '{{.State.Running}}' "$container")" != true ]; then
            break
        fi
        # Through a file: `docker logs | grep -q` can fail under pipefail when grep exits first.
        docker logs "$container" > "$logfile" 2>&1 || true
        if grep -qE '(^|[^a-z_])tick[= ]+[0-9]+' "$logfile"; then
            started=1
            break
        fi
        sleep 2
        waited=$((waited + 2))
    done
    if [ "$started" = 1 ]; then
        sleep "$kill_after"
    fi
    local running
    running=$(docker inspect -f '{{.State.Running}}' "$container")
    if [ "$running" = true ]; then
        log "docker kill --signal TERM $container" >&2
        docker kill --signal TERM "$container" >/dev/null
    fi
    local code=""
    waited=0
    while [ "$waited" -lt "$stop_timeout" ]; do
        if [ "$(docker inspect -f '{{.State.Running}}' "$container")" != true ]; then
            code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    docker logs "$container" > "$logfile" 2>&1 || true
    if [ -z "$code" ]; then
        docker rm -f "$container" >/dev/null
        container=""
        echo "still running ${stop_timeout}s after SIGTERM (killed): the signal does not reach training"
        return 1
    fi
    docker rm "$container" >/dev/null
    container=""
    if [ "$running" != true ]; then
        echo "the job ended by itself (exit $code) before it was stopped; see $logfile" \
             "(no status line within ${start_timeout}s, or kimg too small: --hp kimg=...)"
        return 1
    fi
    echo "stopped by SIGTERM, exit code $code"
}

step_prepare() {
    local root=$workdir/prepare ml
    ml=$root/ml
    log "prepare: processing job in $ml"
    mkdir -p "$ml/processing/input" "$ml/processing/train" "$ml/config" "$ml/output"
    echo '{"hosts": ["algo-1"], "current_host": "algo-1"}' > "$ml/config/resourceconfig.json"
    # Raw images as a designer uploads them: a flat folder of PNG files, 80x80 pixels.
    image_python "$ml" -c 'from sg2_container.data.synthetic import synthetic_image
for i in range(24):
    synthetic_image(i, 80)[0].save(f"/opt/ml/processing/input/face{i:03d}.png")'
    local code=0
    docker run --rm -v "$ml:/opt/ml" "$image" \
        --source /opt/ml/processing/input/ --dest /opt/ml/processing/train/animeface.zip \
        --width 64 --height 64 > "$root/prepare.log" 2>&1 || code=$?
    if [ "$code" != 0 ]; then
        fail "prepare exited $code: $(reason "$ml/output/message" "$root/prepare.log")"
        return
    fi
    if ! image_python "$ml" -c 'import json, zipfile
with zipfile.ZipFile("/opt/ml/processing/train/animeface.zip") as z:
    names = z.namelist()
    assert "dataset.json" in names, "no dataset.json"
    assert sum(n.endswith(".png") for n in names) == 24, "expected 24 images"
print("prepare: animeface.zip holds", len(names) - 1, "images")'; then
        fail "prepare: the zip in $ml/processing/train is not a 24-image dataset"
        return
    fi
    log "prepare: ok"
}

step_train() {
    local root=$workdir/train ml kimg=0.5
    ml=$root/ml
    [ "$cpu" = 1 ] && kimg=0.02
    log "train: training job (kimg=$kimg unless --hp sets it) in $ml"
    make_training_tree "$ml" "$kimg"
    local code=0
    docker run --rm ${gpu_args[@]+"${gpu_args[@]}"} --shm-size 2g -v "$ml:/opt/ml" "$image" train \
        > "$root/train.log" 2>&1 || code=$?
    if [ "$code" != 0 ]; then
        fail "train exited $code: $(reason "$ml/output/failure" "$root/train.log")"
        return
    fi
    if [ -z "$(ls -A "$ml/model")" ]; then
        fail "train: nothing in $ml/model (SageMaker would upload an empty model.tar.gz)"
        return
    fi
    if [ -z "$(latest_checkpoint "$ml")" ]; then
        fail "train: no checkpoint-*.pt under $ml/checkpoints"
        return
    fi
    log "train: ok (model/ holds: $(cd "$ml/model" && echo *))"
}

step_resume() {
    local root=$workdir/resume ml kimg=100 reason first second
    ml=$root/ml
    [ "$cpu" = 1 ] && kimg=2
    log "resume: training job (kimg=$kimg unless --hp sets it) stopped with SIGTERM, then started again, in $ml"
    make_training_tree "$ml" "$kimg"
    if ! reason=$(run_and_stop "$ml" "$root/run1.log"); then
        fail "resume, first run: $reason"
        return
    fi
    log "resume, first run: $reason"
    first=$(latest_checkpoint "$ml")
    if [ -z "$first" ]; then
        fail "resume: no checkpoint-*.pt under $ml/checkpoints after SIGTERM (see $root/run1.log)"
        return
    fi
    if [ -s "$ml/output/failure" ]; then
        log "resume: note: the stopped run wrote output/failure: $(head -c 200 "$ml/output/failure")"
        rm -f "$ml/output/failure"
    fi
    if ! reason=$(run_and_stop "$ml" "$root/run2.log"); then
        fail "resume, second run: $reason"
        return
    fi
    if ! grep -q "continuing from $(basename "$first")" "$root/run2.log"; then
        fail "resume: the second run did not continue from $(basename "$first") (see $root/run2.log)"
        return
    fi
    second=$(latest_checkpoint "$ml")
    if [ "$(basename "$second")" \> "$(basename "$first")" ]; then
        log "resume: ok ($(basename "$first") -> $(basename "$second"))"
    else
        fail "resume: no newer checkpoint after the second run ($(basename "$first") is still the latest)"
    fi
}

# ---- Later capabilities add their step here (endpoint: IMAGE serve + /ping + /invocations;
# ---- batch inference: a processing job), and to the step list and the help above.

log "image $image, work folder $workdir$([ "$cpu" = 1 ] && echo ', CPU only')"
for step in ${steps//,/ }; do
    "step_$step"
done

if [ "${#failures[@]}" -gt 0 ]; then
    echo "[smoke] ${#failures[@]} step(s) failed:" >&2
    printf '[smoke]   %s\n' "${failures[@]}" >&2
    exit 1
fi
log "all steps passed ($steps); files in $workdir"
