"""Training speed with the real loop: sec/kimg in steady state and peak memory.

CPU default: a small configuration (cfg auto at 32 px, reduced channels). On a GPU, the
reference's 1-GPU paper256 setting (its README: about 22 s/kimg on one V100) is
`--cfg paper256 --res 256 --batch 64 --batch-gpu 8` (8 accumulation rounds of 8, as the
preset runs on one GPU); `--steps-per-tick 16 --ticks 1` then measures one whole cycle of the
lazy regularisation (path length every 4 steps, R1 every 16) after tick 0, whose one step runs
every phase (so cuDNN has picked its algorithms for all of them). Usage:
    python -m bench.train [--cfg auto --res 32 --batch 8 --cbase 2048 --cmax 64 --kimg 0.4]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench import args as checks
from bench.timing import machine_description, malloc_as_sg2, peak_memory
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.options import TrainingOptions
from sg2_container.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default="auto")
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-gpu", type=int, default=None,
                        help="Images per GPU and accumulation round [default: batch / gpus].")
    parser.add_argument("--cbase", type=int, default=None)
    parser.add_argument("--cmax", type=int, default=None)
    parser.add_argument("--kimg", type=float, default=0.2)
    parser.add_argument("--ticks", type=int, default=4, help="Ticks to measure (after tick 0).")
    parser.add_argument("--warmup-ticks", type=int, default=0,
                        help="Ticks after tick 0 left out of the measure.")
    parser.add_argument("--steps-per-tick", type=int, default=None,
                        help="Ticks of this many steps (sets the length: --kimg is ignored).")
    parser.add_argument("--augpipe", default="bgc")
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    checks.at_least(parser, args, batch=1, batch_gpu=1, cbase=1, cmax=1, ticks=1,
                    warmup_ticks=0, steps_per_tick=1)
    if args.kimg <= 0:
        parser.error(f"--kimg must be above 0, got {args.kimg}")
    checks.power_of_two(parser, "--res", args.res, low=8)
    device = checks.device(parser, args.device)
    print(f"# device: {machine_description(device)}; {malloc_as_sg2()}")
    ticks_after_first = args.warmup_ticks + args.ticks
    if args.steps_per_tick is not None:  # tick 0 is one step, then whole ticks
        kimg_per_tick = args.steps_per_tick * args.batch / 1000
        kimg = (1 + args.steps_per_tick * ticks_after_first) * args.batch / 1000
    else:
        kimg, kimg_per_tick = args.kimg, args.kimg / (ticks_after_first + 1)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_dataset(Path(tmp) / "data.zip", count=256, resolution=args.res)
        with checks.user_errors():  # an unknown --cfg or --augpipe, a batch it cannot split
            options = TrainingOptions(
                data=str(data), outdir=str(Path(tmp) / "run"), cfg=args.cfg, kimg=kimg,
                batch=args.batch, batch_gpu=args.batch_gpu, cbase=args.cbase, cmax=args.cmax,
                workers=2, snap=1000, kimg_per_tick=kimg_per_tick, augpipe=args.augpipe,
                aug="ada", fp32=args.fp32, device=args.device)
            start = time.time()
            train(options)
        total = time.time() - start
        ticks = [json.loads(line) for line in (Path(tmp) / "run" / "stats.jsonl").read_text().splitlines()]
    first = 1 + args.warmup_ticks  # tick 0 is one step plus start-up
    if len(ticks) <= first:
        raise SystemExit(f"error: the run had {len(ticks)} tick(s), none left to measure after "
                         f"{first}; give a longer --kimg or fewer --warmup-ticks")
    steady = ticks[first:]
    sec = sum(t["Timing/sec_per_tick"]["mean"] for t in steady)
    measured_kimg = (ticks[-1]["Progress/kimg"]["mean"]
                     - ticks[first - 1]["Progress/kimg"]["mean"])
    memory = peak_memory(device)
    print(f"cfg {args.cfg} @ {args.res}px, batch {args.batch} (per GPU and round "
          f"{args.batch_gpu or args.batch}), cbase {args.cbase}, cmax {args.cmax}: "
          f"{sec / measured_kimg:.1f} s/kimg over {measured_kimg:.3f} kimg (steady state), run total {total:.1f} s, {memory}")


if __name__ == "__main__":
    main()
