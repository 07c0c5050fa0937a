"""Facts about the running process: devices, versions. Imports torch, so use lazily."""
from __future__ import annotations

import platform

import torch

from sg2_container import __version__
from sg2_container.errors import UserError


def arch_runs(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether code built for `arch_list` (torch.cuda.get_arch_list(): 'sm_XY' binaries run on
    the same major version with a minor >= Y, 'compute_XY' PTX on any GPU >= X.Y) runs on a GPU
    of compute `capability`."""
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit() or len(digits) < 2:
            continue
        built = (int(digits[:-1]), int(digits[-1]))
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= tuple(capability):
            return True
    return False


def check_gpu_supported(device: torch.device) -> None:
    """A GPU this PyTorch build has no code for fails at the first kernel with 'no kernel image
    is available', after the job has started and been paid for; say so before any work."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    capability = torch.cuda.get_device_capability(index)
    archs = torch.cuda.get_arch_list()
    if archs and not arch_runs(capability, archs):
        sm = f"sm_{capability[0]}{capability[1]}"
        raise UserError(
            f"this GPU ({torch.cuda.get_device_name(index)}, {sm}) is not supported by this "
            f"PyTorch build (torch {torch.__version__}, CUDA {torch.version.cuda}, compiled for "
            f"{', '.join(archs)}): use an image built for {sm} (the sg2-container image's "
            "CUDA_VARIANT=cu126 covers V100 / ml.p3, see docs/docker.md) or another instance type")


def check_ops_request(device: torch.device) -> None:
    """$SG2_OPS must name a path that can run on `device`: the ops would otherwise fail at
    their first call, as a crash, after the model had loaded."""
    from stylegan2_ops import request_problem

    problem = request_problem(device)
    if problem is not None:
        raise UserError(f"{problem}; unset SG2_OPS (auto picks the kernels where they run) or "
                        "set it to auto, reference or cuda (on a GPU with usable kernels)")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the first GPU when there is one; an unusable choice is a clear error."""
    device = _named_device(name)
    check_ops_request(device)
    return device


def _named_device(name: str) -> torch.device:
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            check_gpu_supported(device)
        return device
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible")
        check_gpu_supported(device)
    elif device.type != "cpu":
        raise UserError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def environment_report() -> dict[str, object]:
    """What `sg2 info` prints: versions, devices, and which op implementation runs."""
    import numpy

    from stylegan2_ops import cpu_kernels, describe_backend

    report: dict[str, object] = {
        "sg2-container": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch CUDA build": torch.version.cuda or "none (CPU-only build)",
        "numpy": numpy.__version__,
        "CPU threads": torch.get_num_threads(),
        "CUDA available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        report["GPUs"] = [
            f"{i}: {torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        ]
    ops = describe_backend()
    report["ops requested ($SG2_OPS)"] = ops["requested"]
    report["ops active"] = ops["active"]
    report["ops kernels"] = ops["kernels"]
    try:
        cpu = cpu_kernels.status()
    except ValueError as error:  # an invalid $SG2_OPS: shown above, every op call fails
        report["CPU kernels"] = f"unknown ({error})"
        return report
    report["CPU kernels"] = (f"{cpu.reason}: Winograd 3x3 convs where they win, bias + activation"
                             if cpu.available
                             else f"off, 3x3 convs on oneDNN, bias + activation in PyTorch ({cpu.reason})")
    return report
