"""Per-op timings at the shapes a 256px StyleGAN2 training step uses.

Prints, per op and shape, the time of each available implementation (the PyTorch reference
path always; the compiled CUDA kernels when they load) and, on a GPU, the achieved memory
bandwidth against the device's peak. Usage: python -m bench.ops [--device cuda] [--dtype float16]
"""
from __future__ import annotations

import argparse

import torch

from bench import args as checks
from bench.timing import machine_description, time_call
from stylegan2_ops import bias_act, setup_filter, upfirdn2d
from stylegan2_ops._backend import kernel_status

# Peak DRAM bandwidth in GB/s by device name fragment (vendor data sheets).
PEAK_GBPS = {"H200": 4800, "H100 PCIe": 2000, "H100": 3350, "A100-SXM4-80GB": 2039,
             "A100": 1555, "V100": 900, "A10G": 600, "L40S": 864, "L4": 300, "T4": 320,
             "B200": 8000}

# (name, input shape, kwargs): where the 256px networks resample (batch 8 per GPU).
UPFIRDN_CASES = [
    ("G img upsample2d 128->256", [8, 3, 128, 128], dict(up=2, padding=[2, 1, 2, 1], gain=4)),
    ("G conv0 filter after transposed conv, 256px", [8, 64, 257, 257], dict(padding=1, gain=4)),
    ("G conv0 filter after transposed conv, 64px", [8, 256, 65, 65], dict(padding=1, gain=4)),
    ("D conv1 pre-filter, 256px", [8, 64, 256, 256], dict(padding=2)),
    ("D skip downsample2d 256->128", [8, 64, 256, 256], dict(down=2, padding=1)),
]
BIAS_ACT_CASES = [
    ("lrelu+bias+clamp 256px", [8, 64, 256, 256], dict(act="lrelu", clamp=256.0)),
    ("lrelu+bias 64px", [8, 256, 64, 64], dict(act="lrelu")),
    ("linear+bias 8px", [8, 512, 8, 8], dict(act="linear")),
]


def peak_bandwidth(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, gbps in PEAK_GBPS.items():
        if fragment in name:
            return gbps
    return None


def implementations(device: torch.device) -> list[str]:
    impls = ["reference"]
    if device.type == "cuda" and kernel_status().available:
        impls.append("cuda")
    return impls


def report(name: str, shape, impl: str, seconds: float, moved_bytes: int, peak: float | None):
    gbps = moved_bytes / seconds / 1e9
    line = f"{name:<48} {str(shape):<22} {impl:<9} {seconds * 1e3:9.3f} ms  {gbps:8.1f} GB/s"
    if peak:
        line += f"  ({100 * gbps / peak:5.1f}% of {peak} GB/s peak)"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--backward", action="store_true", help="Time forward + backward too.")
    args = parser.parse_args()
    device = checks.device(parser, args.device)
    dtype = getattr(torch, args.dtype)
    peak = peak_bandwidth(device)
    print(f"# device: {machine_description(device)}; dtype {args.dtype}")
    status = kernel_status()
    print(f"# CUDA kernels: {'available' if status.available else 'unavailable'} "
          f"(source {status.source}, archs {status.archs or 'n/a'}; {status.reason})")
    f = setup_filter([1, 3, 3, 1], device=device)
    elem = torch.tensor([], dtype=dtype).element_size()

    for name, shape, kwargs in UPFIRDN_CASES:
        x = torch.randn(shape, device=device, dtype=dtype)
        out_numel = upfirdn2d(x, f, **kwargs).numel()
        for impl in implementations(device):
            seconds = time_call(lambda: upfirdn2d(x, f, impl=impl, **kwargs), device)
            report(f"upfirdn2d {name}", shape, impl, seconds, (x.numel() + out_numel) * elem, peak)
            if args.backward:
                xg = x.clone().requires_grad_(True)
                def step():
                    upfirdn2d(xg, f, impl=impl, **kwargs).sum().backward()
                seconds = time_call(step, device)
                report(f"upfirdn2d fwd+bwd {name}", shape, impl, seconds,
                       2 * (x.numel() + out_numel) * elem, peak)

    for name, shape, kwargs in BIAS_ACT_CASES:
        x = torch.randn(shape, device=device, dtype=dtype)
        b = torch.randn(shape[1], device=device, dtype=dtype)
        for impl in implementations(device):
            seconds = time_call(lambda: bias_act(x, b, impl=impl, **kwargs), device)
            report(f"bias_act {name}", shape, impl, seconds, 2 * x.numel() * elem, peak)
            if args.backward:
                xg = x.clone().requires_grad_(True)
                def step():
                    bias_act(xg, b, impl=impl, **kwargs).sum().backward()
                seconds = time_call(step, device)
                report(f"bias_act fwd+bwd {name}", shape, impl, seconds, 4 * x.numel() * elem, peak)


if __name__ == "__main__":
    main()
