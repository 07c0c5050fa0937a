#!/usr/bin/env bash
# Builds the Dockerfile without a Docker daemon (buildah: vfs storage, chroot isolation) on a
# local Debian base made with debootstrap, for machines that can neither run Docker nor pull
# base images. Builds a pure-Python variant (no nvcc in that base), then runs the image's
# ENTRYPOINT with --help, a processing-job `prepare` and a tiny CPU training job inside it.
# Not part of CI: needs root, ~20 GB of free disk (7 GB in use after the build) and ~6 minutes.
# Results: docs/docker.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/buildah_check.sh [options]

Daemonless build of the image's Python and entrypoint layers, then runs inside the result:
  1. debootstrap a minimal Debian (with ca-certificates) and import it as a local base image
  2. buildah bud the Dockerfile with that base for both stages, SG2_BUILD_CUDA=0 and torch
     from --torch-index-url (the image's CUDA devel/base images cannot be pulled here)
  3. buildah run: the ENTRYPOINT with --help, a `prepare` processing job and a tiny CPU
     training job against an /opt/ml tree mounted from the work folder
Everything (storage included) lives under the work folder; the storage is deleted after a
successful run unless --keep, and kept after a failure.

Options:
  --workdir DIR          work folder (default /tmp/sg2-buildah)
  --suite SUITE          Debian suite for the base (default bookworm)
  --mirror URL           Debian mirror (default http://deb.debian.org/debian)
  --torch-index-url URL  index for torch in the build (default https://pypi.org/simple)
  --ca-bundle FILE       CA bundle mounted read-only into RUN steps for pip
                         (default /etc/ssl/certs/ca-certificates.crt)
  --keep                 keep the storage (base and image) after a successful run
  --reuse-image          skip the build when an earlier kept run left the image
  -h, --help             show this help and exit

Needs root, buildah and debootstrap (Debian packages).
EOF
}

workdir=/tmp/sg2-buildah
suite=bookworm
mirror=http://deb.debian.org/debian
torch_index=https://pypi.org/simple
ca_bundle=/etc/ssl/certs/ca-certificates.crt
keep=0
reuse_image=0

# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh"

while [ "$#" -gt 0 ]; do
    case "$1" in
        --workdir) need_value "$@"; workdir=$2; shift 2 ;;
        --suite) need_value "$@"; suite=$2; shift 2 ;;
        --mirror) need_value "$@"; mirror=$2; shift 2 ;;
        --torch-index-url) need_value "$@"; torch_index=$2; shift 2 ;;
        --ca-bundle) need_value "$@"; ca_bundle=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --reuse-image) reuse_image=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap, chroot isolation)" >&2; exit 2; }
for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
[ -f "$ca_bundle" ] || { echo "error: no CA bundle at $ca_bundle (--ca-bundle)" >&2; exit 2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
say() { echo "[buildah_check] $*"; }
bah() { buildah --root "$workdir/storage" --runroot "$workdir/run" --storage-driver vfs "$@"; }
# On success the storage goes (unless --keep); after a failure it stays for inspection. The
# debootstrap tree (about 220 MB) stays either way and makes a rerun faster.
cleanup() {
    local code=$?
    if [ "$code" != 0 ]; then
        say "kept $workdir for inspection (buildah --root $workdir/storage --storage-driver vfs ...)"
    elif [ "$keep" = 0 ]; then
        bah rm --all >/dev/null 2>&1 || true
        rm -rf "$workdir/storage" "$workdir/run"
    fi
}
trap cleanup EXIT

base=localhost/sg2-debian-base:$suite
image=localhost/sg2-container:buildah

# 1. The base: minimal Debian with ca-certificates (so the build's apt-get leaves the bundle
#    alone while the host's is mounted over it).
start=$SECONDS
if [ ! -e "$workdir/rootfs/.complete" ]; then
    rm -rf "$workdir/rootfs"
    debootstrap --variant=minbase --include=ca-certificates "$suite" "$workdir/rootfs" "$mirror" \
        > "$workdir/debootstrap.log" 2>&1 \
        || { tail -n 20 "$workdir/debootstrap.log" >&2; exit 1; }
    touch "$workdir/rootfs/.complete"
fi
if ! bah inspect --type image "$base" >/dev/null 2>&1; then
    container=$(bah from scratch)
    mount=$(bah mount "$container")
    cp -a "$workdir/rootfs/." "$mount/"
    rm -f "$mount/.complete"
    bah umount "$container" >/dev/null
    bah config --cmd /bin/bash "$container"
    bah commit --quiet --rm "$container" "$base" >/dev/null
fi
say "base $base ready in $((SECONDS - start)) s ($(du -sh "$workdir/rootfs" | cut -f1) rootfs)"

# 2. The image, from the repository's Dockerfile, both stages on the local base. Docker format:
#    OCI images drop SHELL (our RUNs use bash with pipefail). CUDA_VARIANT is passed although it
#    is the default: buildah 1.28 resolves `FROM devel-${CUDA_VARIANT}` only from --build-arg.
if [ "$reuse_image" = 1 ] && bah inspect --type image "$image" >/dev/null 2>&1; then
    say "reusing $image from an earlier run (--reuse-image)"
else
    start=$SECONDS
    bah bud --isolation chroot --format docker \
        --build-arg CUDA_VARIANT=cu130 \
        --build-arg CU130_DEVEL_IMAGE="$base" \
        --build-arg CU130_RUNTIME_IMAGE="$base" \
        --build-arg SG2_BUILD_CUDA=0 \
        --build-arg TORCH_INDEX_URL="$torch_index" \
        --build-arg VCS_REF="$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
        --volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" \
        --file "$repo_root/Dockerfile" --tag "$image" "$repo_root" > "$workdir/bud.log" 2>&1 \
        || { tail -n 30 "$workdir/bud.log" >&2; say "FAIL: buildah bud (log: $workdir/bud.log)"; exit 1; }
    say "built $image in $((SECONDS - start)) s"
fi
bah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | sed 's/^/[buildah_check] image /'
# (buildah 1.28's templates have no `json`: Go's list printing, [sg2-sagemaker], it is.)
entrypoint=$(bah inspect --type image --format '{{.Docker.Config.Entrypoint}}' "$image")
say "config: ENTRYPOINT $entrypoint, $(bah inspect --type image --format \
    'SHELL {{.Docker.Config.Shell}}, EXPOSE {{.Docker.Config.ExposedPorts}}, ENV {{.Docker.Config.Env}}' "$image")"
[ "$entrypoint" = '[sg2-sagemaker]' ] || { say "FAIL: ENTRYPOINT is $entrypoint"; exit 1; }

# 3. Inside the image: the entrypoint's help, then a processing job and a tiny training job.
ml=$workdir/ml
rm -rf "$ml"
mkdir -p "$ml/processing/input" "$ml/processing/train" "$ml/input/config" "$ml/input/data/train" \
    "$ml/checkpoints" "$ml/model" "$ml/output"
container=$(bah from "$image")
in_image() { bah run --isolation chroot --volume "$ml:/opt/ml" "$container" -- "$@"; }

in_image sg2-sagemaker --help > "$workdir/help.txt"
say "sg2-sagemaker --help: $(grep -m 1 '^Usage' "$workdir/help.txt")"

in_image python -c 'from sg2_container.data.synthetic import synthetic_image, write_synthetic_dataset
for i in range(16):
    synthetic_image(i, 40)[0].save(f"/opt/ml/processing/input/img{i:02d}.png")
write_synthetic_dataset("/opt/ml/input/data/train/animeface.zip", count=32, resolution=16)'
start=$SECONDS
in_image sg2-sagemaker --source /opt/ml/processing/input/ \
    --dest /opt/ml/processing/train/animeface.zip --width 32 --height 32 > "$workdir/prepare.log" 2>&1 \
    || { tail -n 20 "$workdir/prepare.log" >&2; say "FAIL: prepare"; exit 1; }
say "prepare: ok in $((SECONDS - start)) s ($(tail -n 1 "$workdir/prepare.log" | cut -c 1-160))"

# The article's hyperparameters (JSON-encoded per value), shrunk for a CPU.
cat > "$ml/input/config/hyperparameters.json" <<'EOF'
{"data": "\"/opt/ml/input/data/train/animeface.zip\"", "gpus": "1", "augpipe": "\"bg\"",
 "gamma": "10", "cfg": "\"paper256\"", "mirror": "1", "snap": "10", "kimg": "0.008",
 "metrics": "\"none\"", "outdir": "\"/opt/ml/checkpoints\"", "batch": "4", "cbase": "128",
 "cmax": "16", "map": "2", "workers": "0", "kimg-per-tick": "0.008"}
EOF
echo '{"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}' \
    > "$ml/input/config/resourceconfig.json"
echo '{"train": {"TrainingInputMode": "File", "ContentType": "application/x-image"}}' \
    > "$ml/input/config/inputdataconfig.json"
start=$SECONDS
in_image sg2-sagemaker train > "$workdir/train.log" 2>&1 \
    || { tail -n 20 "$workdir/train.log" >&2; say "FAIL: train"; exit 1; }
say "train: ok in $((SECONDS - start)) s; model/: $(cd "$ml/model" && echo *)"
bah rm "$container" >/dev/null
say "all checks passed; logs in $workdir"
