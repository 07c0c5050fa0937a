#!/usr/bin/env bash
# Runs the Dockerfile's install of our package in a fresh venv on this machine (no Docker):
# the same build context files, the same `pip wheel` and `pip install` commands, then imports
# the installed wheel. Compiles the kernels when stylegan2_ops/csrc exists and nvcc is here.
# Not part of CI (it installs torch: about a minute and 6 GB). Results: docs/docker.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/check_install.sh [--workdir DIR] [--arch-list LIST] [--pure-python]

Creates DIR/venv (DIR: a new folder under /tmp by default), installs the pinned torch into it,
then builds and installs sg2-container exactly as the Dockerfile does, from a copy of the files
the Dockerfile copies, and checks that the wheel imports and its commands start.

Options:
  --workdir DIR     where the venv, the context copy and the wheel go (must not exist yet)
  --arch-list LIST  TORCH_CUDA_ARCH_LIST for the kernel build (default "8.0": one
                    architecture keeps the check short; the image builds six)
  --pure-python     skip the kernels even if stylegan2_ops/csrc exists (SG2_BUILD_CUDA=0)
  -h, --help        show this help and exit

Environment: PYTHON (default python3), CUDA_HOME (default /usr/local/cuda when that has
bin/nvcc), MAX_JOBS (default 2).
EOF
}

needs_value() {
    echo "error: $1 needs a value (see --help)" >&2
    exit 2
}

workdir=""
arch_list=8.0
pure_python=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --workdir) [ -n "${2:-}" ] || needs_value "$1"; workdir=$2; shift 2 ;;
        --arch-list) [ -n "${2:-}" ] || needs_value "$1"; arch_list=$2; shift 2 ;;
        --pure-python) pure_python=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "$workdir" ]; then
    workdir=$(mktemp -d /tmp/sg2-check-install.XXXXXX)
elif [ -e "$workdir" ]; then
    echo "error: $workdir exists; give a new folder" >&2
    exit 2
fi
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
say() { echo "[check_install] $*"; }

# 1. A fresh venv (the Dockerfile: python3 -m venv /opt/venv).
"${PYTHON:-python3}" -m venv "$workdir/venv"
export VIRTUAL_ENV=$workdir/venv PATH=$workdir/venv/bin:$PATH
export PIP_DISABLE_PIP_VERSION_CHECK=1
say "python: $(python3 --version) in $VIRTUAL_ENV"

# 2. torch (the Dockerfile takes it from the variant's PyTorch index; here the default index,
#    whose torch 2.14.1 is the CUDA 13.0 build, as in the cu130 image).
start=$SECONDS
pip install --quiet torch==2.14.1 torchvision==0.29.1
say "torch installed in $((SECONDS - start)) s: $(python3 -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"

# 3. Build tools and the SageMaker toolkit, as the Dockerfile's next RUN.
start=$SECONDS
pip install --quiet setuptools==84.2.1 wheel==0.46.3 sagemaker-training==5.1.4
say "setuptools, wheel, sagemaker-training installed in $((SECONDS - start)) s"

# 4. The build context: the files the Dockerfile COPYs, nothing else.
src=$workdir/src
mkdir -p "$src"
cp "$repo_root/setup.py" "$repo_root/pyproject.toml" "$repo_root/README.md" "$src/"
cp -r "$repo_root/stylegan2_ops" "$repo_root/sg2_container" "$src/"
find "$src" \( -name __pycache__ -o -name '*.so' \) -prune -exec rm -rf {} +

SG2_BUILD_CUDA=1
if [ "$pure_python" = 1 ]; then
    SG2_BUILD_CUDA=0
    say "kernels: skipped (--pure-python)"
elif [ ! -d "$src/stylegan2_ops/csrc" ]; then
    SG2_BUILD_CUDA=0
    say "kernels: stylegan2_ops/csrc does not exist yet; checking the pure-Python install"
else
    if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
        export CUDA_HOME=/usr/local/cuda
    fi
    [ -n "${CUDA_HOME:-}" ] || { echo "error: set CUDA_HOME to the CUDA toolkit folder" >&2; exit 1; }
    say "kernels: building for TORCH_CUDA_ARCH_LIST=$arch_list with CUDA_HOME=$CUDA_HOME"
fi

# 5. The Dockerfile's build-and-install RUN, with /wheels under the work folder.
start=$SECONDS
(
    cd "$src"
    export SG2_BUILD_CUDA MAX_JOBS=${MAX_JOBS:-2} TORCH_CUDA_ARCH_LIST="$arch_list"
    pip wheel --no-build-isolation --no-deps --wheel-dir "$workdir/wheels" . \
        > "$workdir/wheel-build.log" 2>&1
) || { tail -n 40 "$workdir/wheel-build.log" >&2; echo "error: the wheel build failed" >&2; exit 1; }
wheel=$(echo "$workdir"/wheels/sg2_container-*.whl)
say "wheel built in $((SECONDS - start)) s: $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
if [ "$SG2_BUILD_CUDA" = 1 ]; then
    if ! python3 -m zipfile -l "$wheel" | grep -E 'stylegan2_ops/_C[^/]*\.so'; then
        echo "error: SG2_BUILD_CUDA=1 but the wheel holds no compiled kernels" >&2
        exit 1
    fi
fi
pip install --quiet "${wheel}[serve]"
pip check

# 6. The installed wheel (not the checkout) imports, and its commands start.
cd "$workdir"
python3 - <<'EOF'
import importlib.util
import sg2_container, stylegan2_ops
print("[check_install] imported sg2_container from", sg2_container.__file__)
spec = importlib.util.find_spec("stylegan2_ops._C")
print("[check_install] stylegan2_ops._C:", spec.origin if spec else "absent (pure-Python install)")
if spec:
    import torch, stylegan2_ops._C  # noqa: F401  (imports without a GPU)
    print("[check_install] stylegan2_ops._C imports")
EOF
sg2 --help > /dev/null && say "sg2 --help: ok"
if command -v sg2-sagemaker >/dev/null; then
    sg2-sagemaker --help > /dev/null && say "sg2-sagemaker --help: ok"
else
    say "sg2-sagemaker: NOT installed (setup.py lacks its console_scripts entry); the image's" \
        "ENTRYPOINT needs it: the Docker build would fail at its 'sg2-sagemaker --help' step"
    python3 -m sg2_container.sagemaker.entrypoint --help > /dev/null \
        && say "python -m sg2_container.sagemaker.entrypoint --help: ok"
fi
say "venv size: $(du -sh "$VIRTUAL_ENV" | cut -f1); everything is in $workdir"
