#!/usr/bin/env bash
# One-call check of a machine with an NVIDIA GPU (no network needed): builds the kernels ahead
# of time for the GPU found, runs the GPU tests, then measures and summarises (bench/gpu_check.py).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/gpu_check.sh OUTDIR [--python PYTHON] [--skip-build] [--baseline DIR]

On a machine with an NVIDIA GPU, within about 9 minutes:
  1. builds stylegan2_ops._C in place for the GPU's architecture only (SG2_BUILD_CUDA=1);
  2. runs the GPU tests (pytest -m gpu: kernels against the reference path, gradients);
  3. measures upfirdn2d/bias_act kernel vs PyTorch-path ratios at 256 px training shapes,
     generation images/s, the paper256 G+D step and generation against the reference
     stand-in on the same GPU (bench.speed; ratios, target 1.3x for the step), paper256
     training s/kimg at batch 64 (kernels on/off, mixed precision on/off), and start-up to
     first step and SIGTERM to exit with a paper256 checkpoint;
  4. prints one summary next to the reference's published paper256 figures and writes it,
     with every step's log, as JSON to OUTDIR (created if missing).

Refuses (exit 3) on a machine without a usable NVIDIA GPU.
  --python PYTHON   interpreter with torch and this project's dependencies (default: python3)
  --skip-build      use the kernels already built or installed
  --baseline DIR    the reference stand-in to compare with: a tree holding its sg2_container/
                    and stylegan2_ops/ (copied to OUTDIR/baseline, never changed). Default:
                    commit 5a745d7 from this checkout's git history, when it has one (main at
                    5a745d7 computes exactly what the reference computes). Where the stand-in's
                    CUDA sources are ours, it gets the kernels built here.
USAGE
}

# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh"

outdir=""
python="python3"
build=1
baseline=""
# The reference stand-in: main at this commit computes exactly what the reference computes.
stand_in_commit="5a745d7"
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --python) need_value "$@"; python="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        --baseline) need_value "$@"; baseline="$2"; shift 2 ;;
        -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
        *)
            if [ -n "$outdir" ]; then
                echo "error: one OUTDIR expected, got '$outdir' and '$1' (see --help)" >&2
                exit 2
            fi
            outdir="$1"; shift ;;
    esac
done
if [ -z "$outdir" ]; then
    echo "error: OUTDIR is required: the folder for the JSON results (see --help)" >&2
    exit 2
fi
if [ -n "$baseline" ] && { [ ! -f "$baseline/sg2_container/__init__.py" ] \
        || [ ! -f "$baseline/stylegan2_ops/__init__.py" ]; }; then
    echo "error: --baseline $baseline holds no sg2_container/ and stylegan2_ops/ packages:" \
        "give the root of a checkout of the reference stand-in (see --help)" >&2
    exit 2
fi

refuse() {
    echo "error: no usable NVIDIA GPU: $1. gpu_check.sh measures GPU kernels and training;" \
        "on a CPU use python -m bench.speed / bench.models / bench.train instead." >&2
    exit 3
}
command -v nvidia-smi >/dev/null 2>&1 || refuse "nvidia-smi is not on PATH (no NVIDIA driver)"
gpus="$(nvidia-smi -L 2>/dev/null || true)"
case "$gpus" in
    GPU\ *) ;;
    *) refuse "nvidia-smi lists no GPU" ;;
esac
arch="$("$python" -c 'import torch; assert torch.cuda.is_available(); print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)" \
    || refuse "torch (via $python) cannot use CUDA"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
started="$(date +%s)"

if [ "$build" = 1 ]; then
    echo "== building stylegan2_ops._C for sm_${arch/./} (log: $outdir/build.log)"
    # The CPU kernels are not measured here: compiling them would only take the build's time.
    if ! SG2_BUILD_CUDA=1 SG2_BUILD_CPU=0 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)" \
        timeout 240 "$python" setup.py build_ext --inplace >"$outdir/build.log" 2>&1; then
        echo "warning: the kernel build failed (tail of build.log below); measuring the PyTorch path only" >&2
        tail -n 20 "$outdir/build.log" >&2
    fi
fi

echo "== GPU tests (log: $outdir/pytest-gpu.log)"
# About 1600 small kernel checks: four worker processes share the GPU (pytest-xdist, in the
# test extras) so that they fit the time left; one process where xdist is missing.
workers=()
if "$python" -c 'import xdist' >/dev/null 2>&1; then
    workers=(-n 4)
fi
tests_rc=0
timeout 150 "$python" -m pytest tests -m gpu -q -p no:cacheprovider ${workers[@]+"${workers[@]}"} \
    --junitxml="$outdir/pytest-gpu.xml" >"$outdir/pytest-gpu.log" 2>&1 || tests_rc=$?
tail -n 3 "$outdir/pytest-gpu.log"

# The reference stand-in, as a copy with the kernels this run built (when its CUDA sources are
# ours; otherwise whatever it builds or loads itself).
stand_in="$outdir/baseline"
rm -rf "$stand_in"
mkdir -p "$stand_in"
if [ -n "$baseline" ]; then
    cp -R "$baseline/sg2_container" "$baseline/stylegan2_ops" "$stand_in/"
    stand_in_from="$baseline"
elif git -C "$root" cat-file -e "$stand_in_commit^{commit}" 2>/dev/null; then
    git -C "$root" archive "$stand_in_commit" sg2_container stylegan2_ops | tar -x -C "$stand_in"
    stand_in_from="commit $stand_in_commit"
else
    rm -rf "$stand_in"
    stand_in=""
    echo "== no reference stand-in: no --baseline, and commit $stand_in_commit is not in this" \
        "checkout's history; the comparison with the reference is skipped"
fi
if [ -n "$stand_in" ]; then
    kernels="$("$python" -c 'import stylegan2_ops._C as m; print(m.__file__)' 2>/dev/null || true)"
    if compgen -G "$stand_in/stylegan2_ops/_C*.so" >/dev/null; then
        echo "== reference stand-in from $stand_in_from, with the kernels built there"
    elif [ -n "$kernels" ] \
            && diff -rq "$stand_in/stylegan2_ops/csrc" stylegan2_ops/csrc >/dev/null 2>&1; then
        cp "$kernels" "$stand_in/stylegan2_ops/"
        echo "== reference stand-in from $stand_in_from, with this run's kernels" \
            "(its CUDA sources are ours)"
    else
        echo "warning: the reference stand-in ($stand_in_from) has no kernels built and its CUDA" \
            "sources differ from ours (or none were built here): it runs its PyTorch path" >&2
    fi
fi

budget=$((540 - ($(date +%s) - started)))
exec "$python" -m bench.gpu_check --outdir "$outdir" --tests-rc "$tests_rc" --budget "$budget" \
    ${stand_in:+--baseline "$stand_in"}
