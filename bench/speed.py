"""This tree against a baseline checkout of the project, side by side in one run.

The baseline (e.g. a git worktree of the commit to compare with) is the folder given by
--baseline. Both sides run the same networks on the same weights, their calls alternating;
the figures are medians and the ratios baseline time / our time (above 1: we are faster).
Measured:

- G_ema generation: paper256 at 256 px, float32, const noise, batch 1 and 8 (baseline under
  torch.no_grad as it was run, ours under torch.inference_mode as sg2 generate runs it), and
  the largest difference between the two trees' images.
- One G+D training step (default 64 px, batch 8, float32): G forward, D on fakes and on
  reals, R1 (gradient of D w.r.t. the reals, then its own backward), path length (gradient
  w.r.t. ws, then its backward); and the largest difference between the two trees' R1
  gradients.

On --device cuda both sides run as training runs there by default (cuDNN's autotuner on, TF32
off) and each side uses the kernels its tree loads (scripts/gpu_check.sh gives the baseline
the same build when its kernel sources are ours). --json writes the figures as well.

Each side runs in its own worker process (bench/speed_worker.py) with PYTHONPATH set to its
tree, so both import the same package names; the calls alternate between the two. Our worker
sets malloc up as sg2's entry points do (sg2_container/io/allocator.py); the baseline keeps
glibc's defaults, as the reference's scripts do, unless --same-allocator gives it the same.
Usage: python -m bench.speed --baseline PATH [--repeat 5] [--skip-train] [--same-allocator]
       [--device cuda] [--train-res 256] [--mixed-precision] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench import args as checks
from bench.timing import machine_description

WORKER = Path(__file__).with_name("speed_worker.py")


class Side:
    """A worker process importing the project from `root`."""

    def __init__(self, name: str, root: Path, inference_mode: bool, threads: int | None,
                 device: torch.device, keep_freed_memory: bool = False,
                 malloc_env: dict | None = None):
        self.name = name
        env = dict(os.environ, PYTHONPATH=str(root), **(malloc_env or {}))
        argv = [sys.executable, str(WORKER), "--device", str(device)]
        argv += ["--inference-mode"] if inference_mode else []
        argv += ["--threads", str(threads)] if threads else []
        argv += ["--keep-freed-memory"] if keep_freed_memory else []
        self.process = subprocess.Popen(argv, env=env, cwd=root, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.ask_raw()

    def ask_raw(self) -> dict:
        line = self.process.stdout.readline()
        if not line:  # its traceback went to stderr, above
            sys.exit(f"error: the {self.name} worker exited (code {self.process.wait()}); "
                     "its error is above")
        return json.loads(line)

    def ask(self, cmd: str, **kwargs) -> dict:
        self.process.stdin.write(json.dumps(dict(cmd=cmd, **kwargs)) + "\n")
        self.process.stdin.flush()
        return self.ask_raw()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def interleaved(sides: list[Side], cmd: str, repeat: int, **kwargs) -> dict[str, dict]:
    """Median wall-clock and CPU seconds per call on each side, calls alternating after one
    warm-up each. CPU time (all threads of the worker) is what the call cost; on a machine
    shared with other work it varies far less than wall-clock time."""
    for side in sides:
        side.ask(cmd, **kwargs)
    samples: dict[str, list[dict]] = {side.name: [] for side in sides}
    for _ in range(repeat):
        for side in sides:
            samples[side.name].append(side.ask(cmd, **kwargs))
    return {name: {clock: statistics.median(r[clock] for r in runs)
                   for clock in ("seconds", "cpu_seconds")}
            for name, runs in samples.items()}


def speedups(times: dict[str, dict]) -> dict[str, float]:
    """Medians in ms and the ratios baseline / ours, for --json."""
    found = {}
    for clock, tag in (("seconds", ""), ("cpu_seconds", "_cpu")):
        base, ours = times["base"][clock], times["ours"][clock]
        found[f"baseline{tag}_ms"] = round(base * 1e3, 3)
        found[f"ours{tag}_ms"] = round(ours * 1e3, 3)
        found[f"speedup{tag}"] = round(base / ours, 3)
    return found


def timing_cells(times: dict[str, dict]) -> str:
    """'base wall | ours wall | speed-up wall | base CPU | ours CPU | speed-up CPU' cells."""
    found = speedups(times)
    return " | ".join(f"{found[f'baseline{tag}_ms']:.0f} | {found[f'ours{tag}_ms']:.0f} | "
                      f"**{found[f'speedup{tag}']:.2f}x**" for tag in ("", "_cpu"))


TIMING_HEADER = ("baseline ms | ours ms | speed-up | baseline CPU ms | ours CPU ms | "
                 "speed-up (CPU time)")


def max_diff(a_path: Path, b_path: Path) -> dict[str, float]:
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    if isinstance(a, torch.Tensor):
        return {"out": (a - b).abs().max().item()}
    return {key: (a[key] - b[key]).abs().max().item() for key in a}


def model_kind(args) -> str:
    return ("networks with fp16 top blocks (as mixed-precision runs save them)"
            if args.mixed_precision else "float32 networks")


def bench_generation(base: Side, ours: Side, tmp: Path, args) -> dict:
    weights = str(tmp / "G.pt")
    setup = dict(kind="generate", weights=weights, res=256, cfg="paper256", cbase=None, cmax=512,
                 fp32=not args.mixed_precision)
    base.ask("setup", load=False, **setup)
    ours.ask("setup", load=True, **setup)
    print(f"## G_ema generation, paper256 @ 256 px, {model_kind(args)}, const noise", flush=True)
    print(f"| batch | {TIMING_HEADER} | ours img/s | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for batch in args.batches:
        for side in (base, ours):
            side.ask("generate", batch=batch, seed=batch, out=str(tmp / f"{side.name}.pt"))
        diff = max_diff(tmp / "base.pt", tmp / "ours.pt")["out"]
        times = interleaved([base, ours], "generate", args.repeat, batch=batch, seed=batch)
        print(f"| {batch} | {timing_cells(times)} | {batch / times['ours']['seconds']:.2f} | "
              f"{diff:.1e} |", flush=True)
        results[f"batch_{batch}"] = dict(speedups(times), max_abs_diff=diff,
                                         ours_images_per_s=batch / times["ours"]["seconds"])
    return results


def bench_train(base: Side, ours: Side, tmp: Path, args) -> dict:
    res, batch = args.train_res, args.train_batch
    weights = str(tmp / "GD.pt")
    setup = dict(kind="train", weights=weights, res=res, cfg=args.train_cfg,
                 cbase=args.train_cbase, cmax=args.train_cmax, fp32=not args.mixed_precision)
    base.ask("setup", load=False, **setup)
    ours.ask("setup", load=True, **setup)
    for side in (base, ours):
        side.ask("train", batch=batch, res=res, seed=1, out=str(tmp / f"{side.name}.pt"))
    diffs = max_diff(tmp / "base.pt", tmp / "ours.pt")
    r1_diff = diffs.pop("r1_grads")
    worst = max(diffs, key=diffs.get)
    times = interleaved([base, ours], "train", args.repeat, batch=batch, res=res, seed=2)
    print(f"## G+D training step, cfg {args.train_cfg} @ {res} px (channel base "
          f"{args.train_cbase or 'of the preset'}, max {args.train_cmax}), batch {batch}, "
          f"{model_kind(args)}",
          flush=True)
    print(f"| {TIMING_HEADER} | max abs diff R1 grads | largest param-grad diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {timing_cells(times)} | {r1_diff:.1e} | {diffs[worst]:.1e} ({worst}) |",
          flush=True)
    return dict(speedups(times), res=res, batch=batch, cfg=args.train_cfg,
                r1_grads_max_abs_diff=r1_diff, largest_param_grad_diff=diffs[worst],
                largest_param_grad_diff_name=worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True,
                        help="Root of the baseline checkout (the folder holding sg2_container/).")
    parser.add_argument("--repeat", type=int, default=5, help="Timed calls per side.")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--train-cfg", default="paper256")
    parser.add_argument("--train-cbase", type=int, default=None)
    parser.add_argument("--train-cmax", type=int, default=512)
    parser.add_argument("--train-res", type=int, default=64,
                        help="Resolution of the training step (a power of two, 8 to 1024).")
    parser.add_argument("--train-batch", type=int, default=8,
                        help="Images per training step (path length takes half of them).")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N.")
    parser.add_argument("--json", type=Path, default=None,
                        help="Also write the figures to this JSON file.")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="Networks with fp16 top blocks and clamps, as the default training "
                             "(mixed precision) and the reference's pickles have them, instead "
                             "of --fp32 ones (fp16 on CUDA; a CPU computes them in float32).")
    parser.add_argument("--threads", type=int, default=None,
                        help="Math threads per side (default: torch's, one per core).")
    parser.add_argument("--same-allocator", action="store_true",
                        help="Give the baseline the malloc setting that sg2's entry points make "
                             "(sg2_container/io/allocator.py), through glibc's environment "
                             "variables: separates that setting's share of the speed-up.")
    args = parser.parse_args()
    checks.at_least(parser, args, repeat=1, batches=1, threads=1, train_cbase=1, train_cmax=1,
                    train_batch=2)
    checks.power_of_two(parser, "--train-res", args.train_res, low=8, high=1024)
    baseline = args.baseline.resolve()
    ours_root = Path(__file__).resolve().parents[1]
    if not (baseline / "sg2_container" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline} holds no sg2_container package")
    if baseline == ours_root:
        parser.error(f"--baseline {args.baseline} is this tree itself")
    device = checks.device(parser, args.device)
    if not args.skip_train:
        from sg2_container.options import resolve_preset

        with checks.user_errors():
            resolve_preset(args.train_cfg, args.train_res)
    machine = machine_description(device)
    print(f"# machine: {machine}")
    print(f"# baseline: {baseline}; ours: {ours_root}; medians of {args.repeat} interleaved calls; "
          f"{args.threads or torch.get_num_threads()} math thread(s) per side; load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    from sg2_container.io.allocator import ENV_SWITCH, KEEP_BYTES

    malloc_env = {"MALLOC_MMAP_THRESHOLD_": str(KEEP_BYTES),
                  "MALLOC_TRIM_THRESHOLD_": str(KEEP_BYTES)} if args.same_allocator else None
    ours_malloc = ("keeps freed memory as sg2's entry points set it"
                   if os.environ.get(ENV_SWITCH, "1").strip() != "0"
                   else f"glibc defaults ({ENV_SWITCH}=0)")
    base_malloc = ("the same set-up (environment variables)" if args.same_allocator
                   else "glibc defaults")
    print(f"# malloc: ours {ours_malloc}; baseline {base_malloc}", flush=True)
    base = Side("base", baseline, inference_mode=False, threads=args.threads, device=device,
                malloc_env=malloc_env)
    ours = Side("ours", ours_root, inference_mode=True, threads=args.threads, device=device,
                keep_freed_memory=True)
    results = {"machine": machine, "baseline": str(baseline), "repeat": args.repeat,
               "networks": model_kind(args)}
    try:
        results["ops"] = {side.name: side.ask("ops") for side in (base, ours)}
        if device.type == "cuda":
            print("# CUDA kernels: " + "; ".join(
                f"{name} {'yes' if ops['kernels'] else 'NO'} ({ops['reason']})"
                for name, ops in results["ops"].items()), flush=True)
        with tempfile.TemporaryDirectory(prefix="sg2-bench-speed-") as tmp:
            if not args.skip_generation:
                results["generation"] = bench_generation(base, ours, Path(tmp), args)
            if not args.skip_train:
                results["train_step"] = bench_train(base, ours, Path(tmp), args)
    finally:
        base.close()
        ours.close()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
