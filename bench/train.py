"""Training speed with the real loop: sec/kimg in steady state and peak memory.

CPU default: a small configuration (cfg auto at 32 px, reduced channels). On a GPU:
`--cfg paper256 --res 256 --batch 64` is the reference's 1-GPU 256 px setting (the reference's
README reports about 22 s/kimg on one V100). Usage:
    python -m bench.train [--cfg auto --res 32 --batch 8 --cbase 2048 --cmax 64 --kimg 0.4]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.timing import machine_description, peak_memory
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.options import TrainingOptions
from sg2_container.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default="auto")
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cbase", type=int, default=None)
    parser.add_argument("--cmax", type=int, default=None)
    parser.add_argument("--kimg", type=float, default=0.2)
    parser.add_argument("--ticks", type=int, default=4, help="Ticks to measure (after tick 0).")
    parser.add_argument("--augpipe", default="bgc")
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# device: {machine_description(device)}")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_dataset(Path(tmp) / "data.zip", count=256, resolution=args.res)
        options = TrainingOptions(
            data=str(data), outdir=str(Path(tmp) / "run"), cfg=args.cfg, kimg=args.kimg,
            batch=args.batch, cbase=args.cbase, cmax=args.cmax, workers=2, snap=1000,
            kimg_per_tick=args.kimg / (args.ticks + 1), augpipe=args.augpipe, aug="ada",
            fp32=args.fp32, device=args.device)
        start = time.time()
        train(options)
        total = time.time() - start
        ticks = [json.loads(line) for line in (Path(tmp) / "run" / "stats.jsonl").read_text().splitlines()]
    steady = ticks[1:]  # tick 0 is one step plus start-up
    sec = sum(t["Timing/sec_per_tick"]["mean"] for t in steady)
    kimg = ticks[-1]["Progress/kimg"]["mean"] - ticks[0]["Progress/kimg"]["mean"]
    memory = peak_memory(device)
    print(f"cfg {args.cfg} @ {args.res}px, batch {args.batch}, cbase {args.cbase}, cmax {args.cmax}: "
          f"{sec / kimg:.1f} s/kimg over {kimg:.3f} kimg (steady state), run total {total:.1f} s, {memory}")


if __name__ == "__main__":
    main()
