"""Projection speed: optimisation steps per second at a preset's size (random weights; a
randomly initialised VGG16 distance network times the same as the real one).

Each step is one synthesis forward + backward through G and the LPIPS VGG16 at 256 px (the
distance never sees more than 256 px), plus Adam on w and the noise maps. The W statistics
(w_avg_samples mapped latents) are set-up, timed separately.

Usage: python -m bench.project [--device cuda] [--cfg paper256 --res 256] [--steps 10]
"""
from __future__ import annotations

import argparse
import time

import torch

from bench import args as checks
from bench.timing import (machine_description, malloc_as_sg2, peak_memory, preset_generator,
                          synchronize)
from sg2_container.io.images import to_uint8
from sg2_container.inference.latents import ws_for_seeds
from sg2_container.inference.lpips_vgg import load_distance_network
from sg2_container.inference.project import ProjectOptions, project, w_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cfg", default="paper256")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--w-avg-samples", type=int, default=10000)
    args = parser.parse_args()
    checks.at_least(parser, args, steps=1, w_avg_samples=1)
    checks.power_of_two(parser, "--res", args.res)
    device = checks.device(parser, args.device)
    malloc = malloc_as_sg2()
    torch.manual_seed(0)
    with checks.user_errors():  # an unknown --cfg
        G = preset_generator(args.cfg, args.res, device)
    distance, _ = load_distance_network(allow_random=True, device=device)
    with torch.no_grad():
        target = to_uint8(G.synthesis(ws_for_seeds(G, [1], device=device), noise_mode="const"))[0]
    print(f"## projection, cfg {args.cfg} @ {args.res}px on {machine_description(device)}; "
          f"{malloc}")

    synchronize(device)
    start = time.perf_counter()
    w_statistics(G, args.w_avg_samples, None, device)
    synchronize(device)
    print(f"W statistics ({args.w_avg_samples} latents): {time.perf_counter() - start:.2f} s")

    stamps = []

    def on_step(step, dist):
        synchronize(device)
        stamps.append(time.perf_counter())

    options = ProjectOptions(num_steps=args.steps + 2, w_avg_samples=1)
    project(G, target, distance, options=options, device=device, on_step=on_step)
    seconds = (stamps[-1] - stamps[1]) / args.steps  # steps 3.. (2 warm-up steps)
    memory = peak_memory(device)
    print(f"step: {seconds * 1e3:.0f} ms  ->  {1 / seconds:.2f} steps/s; 1000 steps: "
          f"{1000 * seconds / 60:.1f} min  ({memory})", flush=True)


if __name__ == "__main__":
    main()
