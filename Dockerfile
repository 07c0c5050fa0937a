# syntax=docker/dockerfile:1
# sg2-container: one image for SageMaker processing (prepare), training and hosting jobs.
#
# Two variants from this one file, chosen with --build-arg CUDA_VARIANT (see docs/docker.md):
#   cu130 (default)  CUDA 13.0 + torch 2.14.1+cu130, kernels for sm_75..sm_100:
#                    ml.g4dn (T4), p4d (A100), g5 (A10G), g6/g6e (L4, L40S), p5 (H100), p6 (B200)
#   cu126            CUDA 12.6 + torch 2.14.1+cu126, kernels for sm_70..sm_90:
#                    adds ml.p3 (V100, the article's training instance); no p6 (B200).
#                    CUDA 13 dropped sm_70, and torch's CUDA 12.8 builds dropped it in 2.11,
#                    so 12.6 is the only torch 2.14.1 build that still runs on a V100.
# The kernels are compiled here, ahead of time: a job never compiles at start-up.

ARG CUDA_VARIANT=cu130
# Base images, overridable (a mirror, or a local base for a daemonless test build).
ARG CU130_DEVEL_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04
ARG CU130_RUNTIME_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG CU126_DEVEL_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04
ARG CU126_RUNTIME_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
# torchvision's ImageNet VGG16 weights for the projector's LPIPS distance, fetched at build time
# (never at run time) and checked against a pinned SHA-256. An empty VGG16_FILE skips them (an
# offline build); projection then needs --vgg16 FILE at run time. Keep it under /opt/venv: that
# is what the runtime stage copies.
ARG VGG16_FILE=/opt/venv/share/sg2-container/vgg16-397923af.pth

# ---- Per-variant settings: only the stages of the chosen variant are built (BuildKit). ----
FROM ${CU130_DEVEL_IMAGE} AS devel-cu130
ENV SG2_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 \
    SG2_CUDA_ARCH_LIST="7.5;8.0;8.6;8.9;9.0;10.0"

FROM ${CU126_DEVEL_IMAGE} AS devel-cu126
ENV SG2_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
    SG2_CUDA_ARCH_LIST="7.0;7.5;8.0;8.6;8.9;9.0"

FROM ${CU130_RUNTIME_IMAGE} AS runtime-cu130
FROM ${CU126_RUNTIME_IMAGE} AS runtime-cu126

# ---- Build stage: compilers, nvcc, the venv, our wheel with the kernels compiled in. ----
# (devel-* is a stage above, tagged there; hadolint cannot see through the variable.)
# hadolint ignore=DL3006
FROM devel-${CUDA_VARIANT} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# Distribution versions are pinned by the base image tag; pinning each package breaks on
# every Ubuntu security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential ca-certificates python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CUDA_HOME=/usr/local/cuda \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv

# torch first, from the variant's PyTorch index (pins the CUDA build, not only the version).
# TORCH_INDEX_URL overrides the index (a mirror); empty means the variant's own.
ARG TORCH_INDEX_URL=""
RUN pip install --index-url "${TORCH_INDEX_URL:-$SG2_TORCH_INDEX_URL}" \
        torch==2.14.1 torchvision==0.29.1

# Build tools for --no-build-isolation, and the SageMaker training toolkit (compiles a small
# C extension with gcc: done here, so the runtime stage needs no compiler). A layer of its own:
# changing these pins keeps the multi-GB torch layer above cached.
# hadolint ignore=DL3059
RUN pip install setuptools==84.2.1 wheel==0.46.3 sagemaker-training==5.1.4

# The VGG16 weights (528 MB): a layer of their own, above the sources, so code changes keep it
# cached. VGG16_URL may name a mirror; the checksum is not an argument: the file must be this one.
ARG VGG16_FILE
ARG VGG16_URL=https://download.pytorch.org/models/vgg16-397923af.pth
RUN if [ -z "$VGG16_FILE" ]; then \
        echo "VGG16_FILE is empty: no VGG16 weights in this image (sg2 project needs --vgg16)"; \
    else \
        case "$VGG16_FILE" in /opt/venv/*) ;; \
            *) echo "VGG16_FILE must be under /opt/venv (copied to the runtime stage)" >&2; exit 1 ;; \
        esac \
        && mkdir -p "$(dirname "$VGG16_FILE")" \
        && python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
            "$VGG16_URL" "$VGG16_FILE.partial" \
        && echo "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0  $VGG16_FILE.partial" \
            | sha256sum --check --strict - \
        && mv "$VGG16_FILE.partial" "$VGG16_FILE"; \
    fi

WORKDIR /src
COPY setup.py pyproject.toml README.md ./
COPY stylegan2_ops/ stylegan2_ops/
COPY sg2_container/ sg2_container/

# SG2_BUILD_CUDA=0 builds a wheel without the CUDA kernels (only for test builds without nvcc);
# the CPU kernels (stylegan2_ops._cpu: Winograd convs, bias + activation) are built either way.
# CUDA_ARCH_LIST overrides the variant's architecture list (e.g. "8.0" for a quick build).
ARG SG2_BUILD_CUDA=1
ARG CUDA_ARCH_LIST=""
ARG MAX_JOBS=4
# Our wheel with its [serve] extra (the endpoint's server, pinned in setup.py); hadolint cannot
# see that the "${wheel}[serve]" requirement is this build's own file.
# hadolint ignore=DL3013
RUN export SG2_BUILD_CUDA MAX_JOBS \
        TORCH_CUDA_ARCH_LIST="${CUDA_ARCH_LIST:-$SG2_CUDA_ARCH_LIST}" \
    && echo "building sg2-container: SG2_BUILD_CUDA=$SG2_BUILD_CUDA TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST" \
    && pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
    && if [ "$SG2_BUILD_CUDA" = 1 ]; then \
           python3 -m zipfile -l /wheels/sg2_container-*.whl | grep -E 'stylegan2_ops/_C[^/]*\.so' \
           || { echo "SG2_BUILD_CUDA=1 but the wheel holds no compiled kernels" >&2; exit 1; }; \
       fi \
    && wheel="$(ls /wheels/sg2_container-*.whl)" \
    && pip install "${wheel}[serve]" \
    && pip check \
    && if [ "$SG2_BUILD_CUDA" = 1 ]; then python3 -c 'import torch, stylegan2_ops._C'; fi \
    && python3 -c 'import torch, stylegan2_ops._cpu'

# The metrics' detector (torch-fidelity's Inception-v3 weights, ~95 MB), downloaded here so that
# jobs never download it. SG2_DETECTOR_DOWNLOAD=0 skips it (then pass --detector or a
# 'detector' channel); the runtime stage's ENV SG2_DETECTOR still names the path (an ENV cannot
# depend on a file), and metrics' error for a missing file there says the build left it out.
# The download is checked against the file's full, pinned sha256 (its name carries the first
# 8 digits) before it is moved into place; the checksum is not an argument: the file must be
# this one (the value agrees with several public records of the same file).
ARG SG2_DETECTOR_DOWNLOAD=1
ARG DETECTOR_URL=https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth
RUN if [ "$SG2_DETECTOR_DOWNLOAD" = 1 ]; then \
        mkdir -p /opt/venv/share/sg2 \
        && file=/opt/venv/share/sg2/weights-inception-2015-12-05-6726825d.pth \
        && python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
               "$DETECTOR_URL" "$file.partial" \
        && echo "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2  $file.partial" \
           | sha256sum --check --strict - \
        && mv "$file.partial" "$file"; \
    fi

# ---- Runtime stage: CUDA user-space base (no compilers, no nvcc) + the venv. ----
# hadolint ignore=DL3006
FROM runtime-${CUDA_VARIANT} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# The venv's interpreter is this python3: the same distribution as the build stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
# The projector's default VGG16 weights (empty when the build skipped them).
ARG VGG16_FILE
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SG2_VGG16_WEIGHTS=${VGG16_FILE} \
    SG2_DETECTOR=/opt/venv/share/sg2/weights-inception-2015-12-05-6726825d.pth

ARG CUDA_VARIANT
ARG IMAGE_VERSION=0.1.0
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="sg2-container" \
      org.opencontainers.image.description="StyleGAN2-ADA training and inference for Amazon SageMaker (CUDA variant ${CUDA_VARIANT})" \
      org.opencontainers.image.version="${IMAGE_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0"
# `serve` listens on $SAGEMAKER_BIND_TO_PORT (default 8080), so SageMaker may choose the port.
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true

# Fails the build if the entrypoint is missing or cannot import in this image, or if the
# endpoint's server packages (the [serve] extra) are missing.
RUN sg2-sagemaker --help > /dev/null \
    && python3 -c 'import sg2_container.serving as s; s.require_packages(); import sg2_container.serving.app' 

# Hosting: SageMaker sends /ping and /invocations to port 8080.
EXPOSE 8080
# Exec form: sg2-sagemaker is PID 1 and receives SageMaker's SIGTERM itself.
# `docker run IMAGE train` / `... serve` / `... --source ... --dest ...` pick the job mode.
ENTRYPOINT ["sg2-sagemaker"]
