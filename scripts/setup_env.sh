#!/usr/bin/env bash
# Creates .venv in the repository (idempotent) with the pinned torch and sg2-container installed
# in editable mode. Usage: scripts/setup_env.sh [extra, e.g. test]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    -h|--help)
        echo "Usage: scripts/setup_env.sh [EXTRAS]"
        echo "Creates .venv here (pinned torch, sg2-container in editable mode); EXTRAS are"
        echo "setup.py extras, comma-separated: test, pipeline, serve, sagemaker"
        echo "(e.g. serve,pipeline)."
        exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
if [ "$#" -gt 1 ]; then
    echo "error: one EXTRAS argument expected, got $# (see --help)" >&2
    exit 2
fi
extras="${1:-}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# torch first and pinned: an unpinned resolution would pull a different multi-GB build.
if ! .venv/bin/python -c 'import torch, torchvision' >/dev/null 2>&1; then
    .venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
# An in-place upgrade from the SageMaker SDK V2 to V3 deletes files V3's sub-packages share
# with V2 (half an SDK): uninstall an old V2 first.
if .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("sagemaker")[:2] != "2.")' 2>/dev/null; then
    .venv/bin/pip uninstall --quiet --yes sagemaker
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# No build isolation: setup.py must see the venv's torch to decide on the CUDA build.
.venv/bin/pip install --quiet --no-build-isolation -e "$spec"
