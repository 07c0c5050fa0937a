"""`sg2 generate` throughput: G_ema images/s through the inference code path (seeds -> ws ->
synthesis -> uint8), without PNG writing, at batch 1, 8 and 32; the default batch size of
`sg2 generate` is the fastest measured here. Random weights of the preset's size (no download).

Usage: python -m bench.generate [--device cpu|cuda] [--cfg paper256 --res 256]
       [--batches 1 8 32] [--images 32] [--repeat 3]
"""
from __future__ import annotations

import argparse

import torch

from bench import args as checks
from bench.timing import (machine_description, malloc_as_sg2, peak_memory, preset_generator,
                          time_call)
from sg2_container.inference.generate import generate
from sg2_container.inference.options import GenerateOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cfg", default="paper256")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--images", type=int, default=32,
                        help="Images per timed run (at least one full batch).")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    checks.at_least(parser, args, batches=1, images=1, repeat=1)
    checks.power_of_two(parser, "--res", args.res)
    device = checks.device(parser, args.device)
    print(f"# device: {machine_description(device)}; {malloc_as_sg2()}")
    torch.manual_seed(0)
    with checks.user_errors():  # an unknown --cfg
        G = preset_generator(args.cfg, args.res, device)
    print(f"## G_ema images/s, cfg {args.cfg} @ {args.res}px, const noise, "
          f"{args.images} images per run (or one batch, if larger)")
    for batch in args.batches:
        images = max(args.images, batch)
        options = GenerateOptions(seeds=(f"0-{images - 1}",), batch_size=batch)

        def run(options=options):
            return sum(1 for _ in generate(G, options, device))

        seconds = time_call(run, device, warmup=1, repeat=args.repeat)
        print(f"batch {batch:3d}: {images / seconds:8.2f} img/s  "
              f"({seconds / images * 1e3:.1f} ms/img)  {peak_memory(device)}", flush=True)


if __name__ == "__main__":
    main()
