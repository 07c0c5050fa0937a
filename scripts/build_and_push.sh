#!/usr/bin/env bash
# Builds the sg2-container image and pushes it to Amazon ECR (creating the repository if missing).
# Run from anywhere; it builds the repository this script lives in. See docs/docker.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build_and_push.sh [options]

Builds the sg2-container image for one CUDA variant, creates the ECR repository if it does not
exist, and pushes the image. Prints the image URI to use as a pipeline's image_uri.

Options:
  --variant cu130|cu126  CUDA variant (default cu130).
                           cu130: CUDA 13.0, T4 and newer (ml.g4dn, p4d, g5, g6, g6e, p5, p6)
                           cu126: CUDA 12.6, adds V100 (ml.p3, the article's training
                                  instance); no B200 (ml.p6)
  --tag TAG              image tag (default latest-<variant>); the image is also tagged
                         <git commit>-<variant> when built from a git checkout
  --repository NAME      ECR repository name (default sg2-container)
  --region REGION        AWS region (default: $AWS_DEFAULT_REGION, else the profile's region)
  --profile PROFILE      AWS CLI profile (default: the CLI's default credentials)
  --account ID           AWS account ID (default: asked from STS)
  --arch-list LIST       override the variant's CUDA architecture list, e.g. "8.0" for a
                         quick build that runs only on A100
  --local                build only, as sg2-container:<tag>; no AWS calls, no push
                         (then: scripts/smoke_test.sh --image sg2-container:<tag>)
  --dry-run              print the commands instead of running them
  -h, --help             show this help and exit

Needs docker (with BuildKit) and, unless --local, the AWS CLI v2.
EOF
}

variant=cu130
tag=""
repository=sg2-container
region=""
profile=""
account=""
arch_list=""
local_only=0
dry_run=0

# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh"

while [ "$#" -gt 0 ]; do
    case "$1" in
        --variant) need_value "$@"; variant=$2; shift 2 ;;
        --tag) need_value "$@"; tag=$2; shift 2 ;;
        --repository) need_value "$@"; repository=$2; shift 2 ;;
        --region) need_value "$@"; region=$2; shift 2 ;;
        --profile) need_value "$@"; profile=$2; shift 2 ;;
        --account) need_value "$@"; account=$2; shift 2 ;;
        --arch-list) need_value "$@"; arch_list=$2; shift 2 ;;
        --local) local_only=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

case "$variant" in
    cu130|cu126) ;;
    cu128)
        echo "error: --variant cu128: torch 2.14.1 has no CUDA 12.8 build, and torch's CUDA 12.8" \
             "builds have no V100 kernels since 2.11; use --variant cu126 for ml.p3" >&2
        exit 2 ;;
    *) echo "error: --variant must be cu130 or cu126, not '$variant'" >&2; exit 2 ;;
esac
tag=${tag:-latest-$variant}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Runs a command, or only prints it with --dry-run.
run() {
    if [ "$dry_run" = 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

aws_cli() {
    local args=()
    [ -n "$profile" ] && args+=(--profile "$profile")
    [ -n "$region" ] && args+=(--region "$region")
    aws ${args[@]+"${args[@]}"} "$@"
}

commit=""
if git -C "$repo_root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    commit=$(git -C "$repo_root" rev-parse --short=12 HEAD)
    if [ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no)" ]; then
        commit="$commit-dirty"
    fi
fi

if [ "$local_only" = 1 ]; then
    image=sg2-container
else
    if [ -z "$region" ]; then
        region=${AWS_DEFAULT_REGION:-${AWS_REGION:-}}
    fi
    if [ -z "$region" ] && [ "$dry_run" = 0 ]; then
        region=$(aws_cli configure get region || true)
    fi
    if [ -z "$region" ]; then
        echo "error: no AWS region: pass --region or set AWS_DEFAULT_REGION" >&2
        exit 2
    fi
    if [ -z "$account" ]; then
        if [ "$dry_run" = 1 ]; then
            echo "error: --dry-run needs --account (it makes no AWS calls)" >&2
            exit 2
        fi
        account=$(aws_cli sts get-caller-identity --query Account --output text)
    fi
    registry="$account.dkr.ecr.$region.amazonaws.com"
    image="$registry/$repository"

    if [ "$dry_run" = 1 ]; then
        echo "+ aws ecr describe-repositories --repository-names $repository (create it if missing)"
    elif ! aws_cli ecr describe-repositories --repository-names "$repository" >/dev/null 2>&1; then
        echo "creating ECR repository $repository in $region"
        aws_cli ecr create-repository --repository-name "$repository" \
            --image-scanning-configuration scanOnPush=true >/dev/null
    fi
    if [ "$dry_run" = 1 ]; then
        echo "+ aws ecr get-login-password | docker login --username AWS --password-stdin $registry"
    else
        aws_cli ecr get-login-password | docker login --username AWS --password-stdin "$registry"
    fi
fi

build_args=(--build-arg "CUDA_VARIANT=$variant" --build-arg "VCS_REF=${commit:-unknown}")
[ -n "$arch_list" ] && build_args+=(--build-arg "CUDA_ARCH_LIST=$arch_list")
tags=(--tag "$image:$tag")
[ -n "$commit" ] && tags+=(--tag "$image:$commit-$variant")

DOCKER_BUILDKIT=1 run docker build "${build_args[@]}" "${tags[@]}" "$repo_root"

if [ "$local_only" = 0 ]; then
    run docker push "$image:$tag"
    [ -n "$commit" ] && run docker push "$image:$commit-$variant"
fi
echo "image_uri=$image:$tag"
