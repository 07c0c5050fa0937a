"""Generator throughput and a G+D training step, with peak memory.

- G_ema generation (eval, const noise, no grad) at batch 1 and 8 for a preset/resolution, next
  to a straightforward baseline: the same network with conv2d_resample evaluated literally by its
  definition (zero-insertion upsampling, full-size filtering, then the conv), which is what an
  implementation without the fused orderings does.
- One training step of G and D (non-saturating loss, R1 on reals, Adam) for a small preset.

Usage: python -m bench.models [--device cuda] [--cfg paper256 --res 256] [--train-cfg cifar]
"""
from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F

from bench import args as checks
from bench.timing import machine_description, peak_memory, preset_generator, time_call
from sg2_container.models.networks import Discriminator, Generator
from sg2_container.models.networks import layers as network_layers
from sg2_container.options import network_kwargs, resolve_preset
from stylegan2_ops.conv2d_resample import conv2d_resample_by_definition


@contextlib.contextmanager
def straightforward_resampling():
    original = network_layers.conv2d_resample
    network_layers.conv2d_resample = conv2d_resample_by_definition
    try:
        yield
    finally:
        network_layers.conv2d_resample = original


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_generation(args, device):
    G = preset_generator(args.cfg, args.res, device)
    print(f"## G_ema generation, cfg {args.cfg} @ {args.res}px, "
          f"{'fp16 top blocks' if device.type == 'cuda' else 'fp32'}")
    for batch in (1, 8):
        z = torch.randn([batch, G.z_dim], device=device)
        c = torch.zeros([batch, G.c_dim], device=device)
        run = lambda: G(z, c, noise_mode="const")  # noqa: E731
        reset_peak(device)
        ours = time_call(run, device, warmup=1, repeat=args.repeat)
        print(f"ours          batch {batch}: {ours * 1e3:9.1f} ms/batch  {batch / ours:8.2f} img/s  "
              f"{peak_memory(device)}", flush=True)
        with straightforward_resampling():
            base = time_call(run, device, warmup=1, repeat=args.repeat)
        print(f"straightforward batch {batch}: {base * 1e3:7.1f} ms/batch  {batch / base:8.2f} img/s  "
              f"(ours is {base / ours:.2f}x)", flush=True)


def bench_train_step(args, device):
    preset = resolve_preset(args.train_cfg, args.train_res)
    G_kwargs, D_kwargs = network_kwargs(preset, args.train_res, fp32=device.type != "cuda")
    G = Generator(**G_kwargs).train().to(device)
    D = Discriminator(**D_kwargs).train().to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    batch = args.train_batch
    reals = torch.randn([batch, 3, args.train_res, args.train_res], device=device)
    c = torch.zeros([batch, 0], device=device)

    def step():
        z = torch.randn([batch, G.z_dim], device=device)
        opt_G.zero_grad(set_to_none=True)
        F.softplus(-D(G(z, c), c)).mean().backward()
        opt_G.step()
        opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            fakes = G(z, c)
        real = reals.detach().requires_grad_(True)
        real_logits = D(real, c)
        (r1_grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = r1_grads.square().sum([1, 2, 3]).mean() * (preset.gamma / 2)
        (F.softplus(D(fakes, c)).mean() + F.softplus(-real_logits).mean() + r1).backward()
        opt_D.step()

    reset_peak(device)
    seconds = time_call(step, device, warmup=1, repeat=args.repeat)
    print(f"## G+D train step (Gmain, Dmain, R1), cfg {args.train_cfg} @ {args.train_res}px, "
          f"batch {batch}: {seconds * 1e3:.1f} ms/step, {seconds / batch * 1e3:.2f} s/kimg, "
          f"{peak_memory(device)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cfg", default="paper256")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--train-cfg", default="cifar")
    parser.add_argument("--train-res", type=int, default=32)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    checks.at_least(parser, args, train_batch=1, repeat=1)
    checks.power_of_two(parser, "--res", args.res)
    checks.power_of_two(parser, "--train-res", args.train_res, low=8)
    device = checks.device(parser, args.device)
    torch.manual_seed(0)
    print(f"# device: {machine_description(device)}")
    with checks.user_errors():  # an unknown --cfg or --train-cfg
        bench_generation(args, device)
        if not args.skip_train:
            bench_train_step(args, device)


if __name__ == "__main__":
    main()
