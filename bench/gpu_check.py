"""The measuring half of scripts/gpu_check.sh (which builds the kernels and runs the GPU tests
first): runs the bench scripts on the GPU, each in a subprocess under a time limit, and prints
one summary, also written as JSON (results.json) with every step's log to --outdir.

Usage: python -m bench.gpu_check --outdir DIR [--tests-rc N] [--budget SECONDS] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

# The reference implementation's published paper256 figures on one GPU (its README).
ANCHORS = {"V100 (reference, published)": "21.6-24.2 s/kimg",
           "A100 (reference, published)": "12.5 s/kimg"}
# The reference's paper256 on one GPU: batch 64 in 8 accumulation rounds of 8. Tick 0 is one
# step running every phase (cuDNN picks its algorithms there); the measured tick is 16 steps,
# one whole cycle of the lazy regularisation (path length every 4 steps, R1 every 16).
TRAIN = ["-m", "bench.train", "--cfg", "paper256", "--res", "256", "--batch", "64",
         "--batch-gpu", "8", "--steps-per-tick", "16", "--ticks", "1"]
# The GPU target: the training step at least this many times the reference's speed.
STEP_TARGET = 1.3
VS_REFERENCE = "vs_reference"


def vs_reference_argv(baseline: Path, outdir: Path) -> list[str]:
    """bench.speed on the GPU against the reference stand-in: generation and one paper256 G+D
    step at 256 px, batch 8 (one accumulation round of the batch-64 run), fp16 top blocks."""
    return ["-m", "bench.speed", "--device", "cuda", "--baseline", str(baseline),
            "--mixed-precision", "--train-res", "256", "--train-batch", "8", "--repeat", "10",
            "--json", str(outdir / f"{VS_REFERENCE}.json")]


# (name, argv after the interpreter, extra environment, seconds allowed), most telling first:
# whatever the budget cuts comes last. The comparison with the reference comes third when a
# baseline is given.
STEPS = [
    ("ops", ["-m", "bench.ops", "--device", "cuda"], {}, 45),
    ("generation", ["-m", "bench.models", "--device", "cuda", "--skip-train", "--repeat", "5"],
     {}, 45),
    ("train_kernels_mixed", TRAIN, {}, 100),
    ("train_reference_mixed", TRAIN, {"SG2_OPS": "reference"}, 100),
    ("job", ["-m", "bench.job", "--cfg", "paper256", "--res", "256", "--batch", "64",
             "--batch-gpu", "8", "--cbase", "16384", "--cmax", "512"], {}, 75),
    ("train_kernels_fp32", TRAIN + ["--fp32"], {}, 100),
    ("train_reference_fp32", TRAIN + ["--fp32"], {"SG2_OPS": "reference"}, 100),
]
OPS_LINE = re.compile(r"^(?P<name>(?:upfirdn2d|bias_act) .+?)\s+(?P<shape>\[[\d, ]+\])\s+"
                      r"(?P<impl>reference|cuda)\s+(?P<ms>[\d.]+) ms", re.M)
SEC_PER_KIMG = re.compile(r"([\d.]+) s/kimg over")
JOB = {"start_to_training_s": re.compile(r"start -> training begins:\s+([\d.]+) s"),
       "start_to_first_step_s": re.compile(r"start -> first step finished:\s+([\d.]+) s"),
       "sigterm_to_exit_s": re.compile(r"SIGTERM -> exit:\s+([\d.]+) s")}
JOB_EXIT = re.compile(r"exit code (-?\d+), checkpoints (\[.*\])")
GENERATION = re.compile(r"^ours\s+batch (\d+):\s+([\d.]+) ms/batch\s+([\d.]+) img/s", re.M)


def parse_ops(text: str) -> dict:
    """{case: {reference_ms, cuda_ms, kernel_speedup}} from bench.ops output."""
    cases: dict[str, dict] = {}
    for m in OPS_LINE.finditer(text):
        cases.setdefault(m["name"], {"shape": m["shape"]})[f"{m['impl']}_ms"] = float(m["ms"])
    for case in cases.values():
        if "reference_ms" in case and "cuda_ms" in case:
            case["kernel_speedup"] = round(case["reference_ms"] / case["cuda_ms"], 2)
    return cases


def parse(name: str, text: str, outdir: Path | None = None) -> dict:
    if name == VS_REFERENCE:
        written = outdir / f"{VS_REFERENCE}.json" if outdir else None
        return json.loads(written.read_text()) if written and written.is_file() else {}
    if name == "ops":
        return {"cases": parse_ops(text)}
    if name.startswith("train"):
        m = SEC_PER_KIMG.search(text)
        return {"sec_per_kimg": float(m[1])} if m else {}
    if name == "job":
        found = {key: float(m[1]) for key, rx in JOB.items() if (m := rx.search(text))}
        if m := JOB_EXIT.search(text):
            found.update(exit_code=int(m[1]), checkpoints=m[2])
        return found
    if name == "generation":
        return {f"batch_{m[1]}": {"ms_per_batch": float(m[2]), "images_per_s": float(m[3])}
                for m in GENERATION.finditer(text)}
    raise ValueError(name)


def run_step(name, argv, env, limit, outdir: Path) -> dict:
    """Runs one bench script in its own process group, so that a timeout also ends what it
    started (bench.job's training job would otherwise go on using the GPU)."""
    start = time.monotonic()
    log = outdir / f"{name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, *argv], env=dict(os.environ, **env),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = "ok" if process.wait(timeout=limit) == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = f"timeout after {limit} s"
    text = log.read_text(errors="replace")
    return {"status": status, "seconds": round(time.monotonic() - start, 1),
            **parse(name, text, outdir)}


def vs_reference_lines(step: dict | None) -> list[str]:
    """The headline: our step and generation against the reference stand-in's, same GPU."""
    if step is None:
        return ["against the reference stand-in: not run (no baseline tree; see --help)"]
    lines = [f"against the reference stand-in ({step.get('networks', '?')}), same GPU, "
             f"baseline time -> ours ({step['status']}):"]
    ops = step.get("ops", {})
    if ops.get("ours", {}).get("kernels") and not ops.get("base", {}).get("kernels"):
        lines.append("  NOT COMPARABLE: the stand-in runs without its CUDA kernels "
                     f"({ops['base'].get('reason', '?')}), the reference would not")
    if train := step.get("train_step"):
        verdict = "meets" if train["speedup"] >= STEP_TARGET else "misses"
        lines.append(f"  G+D step, paper256 @ {train['res']} px, batch {train['batch']}: "
                     f"{train['baseline_ms']} ms -> {train['ours_ms']} ms  {train['speedup']}x "
                     f"({verdict} the {STEP_TARGET}x target; R1 grads differ by at most "
                     f"{train['r1_grads_max_abs_diff']:.1e})")
    for key, gen in step.get("generation", {}).items():
        lines.append(f"  generation {key.replace('_', ' ')}: {gen['baseline_ms']} ms -> "
                     f"{gen['ours_ms']} ms  {gen['speedup']}x (images differ by at most "
                     f"{gen['max_abs_diff']:.1e})")
    return lines


def summary(results: dict) -> str:
    rc = results["gpu_tests_rc"]
    lines = [f"# gpu_check: {results['device']}",
             f"GPU tests (pytest -m gpu): {'passed' if rc == 0 else f'FAILED, exit {rc}'}"]
    steps = results["steps"]
    lines.append("kernel vs PyTorch path, forward, 256 px training shapes (batch 8):")
    for case, r in steps["ops"].get("cases", {}).items():
        lines.append(f"  {case:<56} {r.get('reference_ms', '?')} ms -> {r.get('cuda_ms', '?')} ms"
                     f"  {r.get('kernel_speedup', '?')}x")
    lines.append("paper256 training, batch 64 as 8 rounds of 8, s/kimg over 16 steps (lower is "
                 "better):")
    for key, label in (("train_kernels_mixed", "kernels on,  mixed precision on "),
                       ("train_reference_mixed", "kernels off, mixed precision on "),
                       ("train_kernels_fp32", "kernels on,  mixed precision off"),
                       ("train_reference_fp32", "kernels off, mixed precision off")):
        lines.append(f"  {label}: {steps[key].get('sec_per_kimg', steps[key]['status'])}")
    for anchor, value in ANCHORS.items():
        lines.append(f"  anchor {anchor}: {value}")
    lines.extend(vs_reference_lines(steps.get(VS_REFERENCE)))
    job = steps["job"]
    lines.append(f"paper256 job: start -> first step {job.get('start_to_first_step_s', '?')} s, "
                 f"SIGTERM -> exit {job.get('sigterm_to_exit_s', '?')} s (exit code "
                 f"{job.get('exit_code', '?')}, checkpoints {job.get('checkpoints', '?')})")
    gen = {k: v for k, v in steps["generation"].items() if k.startswith("batch_")}
    lines.append("generation, paper256 G_ema: " + (", ".join(
        f"{k.replace('_', ' ')}: {v['images_per_s']} img/s" for k, v in gen.items())
        or steps["generation"]["status"]))
    lines.append(f"total {results['seconds']} s (budget {results['budget_s']} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--tests-rc", type=int, default=None, help="Exit code of pytest -m gpu.")
    parser.add_argument("--budget", type=int, default=480, help="Seconds for all measurements.")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="A tree of the reference stand-in (its sg2_container and "
                             "stylegan2_ops, with its kernels built) to run bench.speed against.")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("error: no usable CUDA device; bench.gpu_check measures GPU figures only")
    args.outdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = {"device": f"{torch.cuda.get_device_name()}, torch {torch.__version__}",
               "gpu_tests_rc": args.tests_rc, "budget_s": args.budget, "anchors": ANCHORS,
               "steps": {}}
    steps = list(STEPS)
    if args.baseline:
        steps.insert(2, (VS_REFERENCE, vs_reference_argv(args.baseline, args.outdir), {}, 120))
    for name, argv, env, limit in steps:
        left = int(args.budget - (time.monotonic() - start))
        if left < 10:
            results["steps"][name] = {"status": "skipped: out of time"}
            continue
        print(f"== {name}", flush=True)
        results["steps"][name] = run_step(name, argv, env, min(limit, left), args.outdir)
    results["seconds"] = round(time.monotonic() - start, 1)
    (args.outdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = summary(results)
    (args.outdir / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
