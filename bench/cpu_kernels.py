"""The compiled CPU kernels against what PyTorch runs without them, side by side in one run.

- Winograd 3x3 convs (stylegan2_ops.winograd.conv3x3 with styles, demodulation and a noise
  plane) against oneDNN's conv2d plus those three passes, the faster of its two layouts
  (contiguous, channels_last): paper256's synthesis shapes at batch 1, and two at batch 8.
- Bias + activation in one pass (stylegan2_ops.bias_act) against PyTorch's passes (the same
  call with impl="reference"), in place as the layers call it, on fresh tensors each call.
- Weight gradients of a training step's convs at batch 8: the plain 3x3 ones by Winograd
  (stylegan2_ops.winograd.weight_grad) and the discriminator's stride-2 ones as one product
  over their windows (stylegan2_ops.window_product, PyTorch's own matrix product), each
  against oneDNN's weight gradient in the faster of its two layouts.

The two sides' calls alternate; figures are medians; speed-up = PyTorch's time / the kernel's.
With --all-isas the whole run repeats in a subprocess per instruction set this CPU has
(SG2_CPU_ISA), so the AVX-512, AVX2 and baseline variants can be compared on one machine.
Usage: python -m bench.cpu_kernels [--repeat 15] [--threads N] [--all-isas] [--quick]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from bench import args as checks
from bench.timing import machine_description, time_alternating

# (channels, resolution, batch): paper256's 3x3 convs without resampling, at 8-256 px.
CONV_CASES = [(512, 8, 1), (512, 16, 1), (512, 32, 1), (256, 64, 1), (128, 128, 1),
              (64, 256, 1), (512, 16, 8), (256, 64, 8)]
# (shape, channels_last, clamp): the 128-256 px layers' activations.
ACT_CASES = [((1, 64, 256, 256), False, None), ((1, 64, 256, 256), False, 256.0),
             ((1, 128, 128, 128), True, 256.0), ((8, 64, 256, 256), True, 256.0)]
# (in channels, out channels, input size, stride): a 64 px G+D step's plain 3x3 convs and the
# discriminator's stride-2 ones (input blurred and padded to 2n + 1 px), batch 8.
GRAD_CASES = [(256, 256, 64, 1), (512, 512, 32, 1), (512, 512, 16, 1), (256, 512, 65, 2),
              (512, 512, 33, 2)]
QUICK_CONV, QUICK_ACT, QUICK_GRAD = [(64, 16, 1)], [((1, 8, 16, 16), True, 256.0)], \
    [(64, 64, 16, 1), (8, 8, 9, 2)]
GRAD_BATCH = 8


def conv_rows(cases, repeat: int) -> list[str]:
    from stylegan2_ops import winograd

    rows = []
    for channels, size, batch in cases:
        gen = torch.Generator().manual_seed(channels + size)
        x = torch.randn(batch, channels, size, size, generator=gen)
        x_last = x.contiguous(memory_format=torch.channels_last)
        weight = torch.randn(channels, channels, 3, 3, generator=gen)
        styles = torch.randn(batch, channels, generator=gen)
        dcoefs = torch.rand(batch, channels, generator=gen) + 0.5
        noise = torch.randn(1, 1, size, size, generator=gen)
        transformed = winograd.transform_filter(weight)

        def ours():
            return winograd.conv3x3(x_last, transformed, styles, dcoefs, noise)

        def pytorch(inp):
            scaled = inp * styles[:, :, None, None]
            return F.conv2d(scaled, weight, padding=1).mul_(dcoefs[:, :, None, None]).add_(noise)

        kernel_s, contiguous_s, last_s = time_alternating(
            ours, lambda: pytorch(x), lambda: pytorch(x_last), repeat=repeat)
        best = min(contiguous_s, last_s)
        rows.append(f"| conv3x3 {channels} ch @ {size} px | {batch} | {best * 1e3:.2f} | "
                    f"{kernel_s * 1e3:.2f} | **{best / kernel_s:.2f}x** |")
    return rows


def act_rows(cases, repeat: int) -> list[str]:
    from stylegan2_ops import bias_act

    rows = []
    for shape, channels_last, clamp in cases:
        gen = torch.Generator().manual_seed(sum(shape))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        pool = [torch.randn(shape, generator=gen).contiguous(memory_format=fmt) for _ in range(4)]
        bias = torch.randn(shape[1], generator=gen)
        fresh = iter(pool * (repeat + 2))  # every call on a tensor the last one left alone

        def call(impl):
            return bias_act(next(fresh), bias, act="lrelu", clamp=clamp, impl=impl, overwrite=True)

        kernel_s, pytorch_s = time_alternating(lambda: call(None), lambda: call("reference"),
                                               repeat=repeat)
        layout = "channels_last" if channels_last else "contiguous"
        rows.append(f"| bias + lrelu{' + clamp' if clamp else ''} {list(shape)} {layout} | "
                    f"{shape[0]} | {pytorch_s * 1e3:.2f} | {kernel_s * 1e3:.2f} | "
                    f"**{pytorch_s / kernel_s:.2f}x** |")
    return rows


def weight_grad_rows(cases, repeat: int) -> list[str]:
    from stylegan2_ops import window_product, winograd

    rows = []
    for in_channels, out_channels, size, stride in cases:
        gen = torch.Generator().manual_seed(in_channels + size)
        padding = 1 if stride == 1 else 0
        x = torch.randn(GRAD_BATCH, in_channels, size, size, generator=gen)
        weight = torch.randn(out_channels, in_channels, 3, 3, generator=gen)
        out_size = (size + 2 * padding - 3) // stride + 1
        grad = torch.randn(GRAD_BATCH, out_channels, out_size, out_size, generator=gen)
        x_last, grad_last, weight_last = (t.contiguous(memory_format=torch.channels_last)
                                          for t in (x, grad, weight))

        def onednn(inp, dy, w):
            return torch.ops.aten.convolution_backward(
                dy, inp, w, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1,
                [False, True, False])[1]

        if stride == 1:
            def ours():
                return winograd.weight_grad(x_last, grad_last)
            name = "Winograd"
        else:
            def ours():
                return window_product.weight_grad(x_last, grad_last, (3, 3), (stride, stride),
                                                  transpose=False)
            name = "window product"
        ours_s, contiguous_s, last_s = time_alternating(
            ours, lambda: onednn(x, grad, weight), lambda: onednn(x_last, grad_last, weight_last),
            repeat=repeat)
        best = min(contiguous_s, last_s)
        rows.append(f"| weight grad, {name}: 3x3 stride {stride}, {in_channels} -> "
                    f"{out_channels} ch @ {size} px | {GRAD_BATCH} | {best * 1e3:.2f} | "
                    f"{ours_s * 1e3:.2f} | **{best / ours_s:.2f}x** |")
    return rows


def run(args) -> None:
    from stylegan2_ops import cpu_kernels

    status = cpu_kernels.status()
    print(f"# machine: {machine_description(torch.device('cpu'))}")
    print(f"# CPU kernels: {status.reason}; medians of {args.repeat} alternating calls")
    if not status.available:
        print("# nothing to compare: the CPU kernels are not available here")
        return
    print("| op | batch | PyTorch ms | kernel ms | speed-up |")
    print("|---|---:|---:|---:|---:|")
    conv_cases, act_cases, grad_cases = ((QUICK_CONV, QUICK_ACT, QUICK_GRAD) if args.quick
                                         else (CONV_CASES, ACT_CASES, GRAD_CASES))
    for make_rows, cases in ((conv_rows, conv_cases), (act_rows, act_cases),
                             (weight_grad_rows, grad_cases)):
        for row in make_rows(cases, args.repeat):
            print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="Timed calls per side and case.")
    parser.add_argument("--threads", type=int, default=None, help="Math threads (default: torch's).")
    parser.add_argument("--all-isas", action="store_true",
                        help="Run once per instruction set this CPU has (SG2_CPU_ISA).")
    parser.add_argument("--quick", action="store_true", help="One small case each (a smoke run).")
    args = parser.parse_args()
    checks.at_least(parser, args, repeat=1, threads=1)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sg2_container.io.allocator import keep_freed_memory

    keep_freed_memory()  # as sg2's entry points set malloc up
    if not args.all_isas:
        run(args)
        return
    from stylegan2_ops import cpu_kernels

    status = cpu_kernels.status()
    if not status.available:
        run(args)
        return
    isas = cpu_kernels.ISAS[:cpu_kernels.ISAS.index(status.module.supported_isa()) + 1]
    argv = [a for a in sys.argv[1:] if a != "--all-isas"]
    for isa in reversed(isas):
        print(f"\n## SG2_CPU_ISA={isa}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.cpu_kernels", *argv], check=True,
                       env=dict(os.environ, SG2_CPU_ISA=isa))


if __name__ == "__main__":
    main()
