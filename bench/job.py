"""A SageMaker training job's start-up and stop latency, with the real entrypoint.

Measures, for a job run as the container would run it (subprocess, fake /opt/ml):
process start -> training begins (set-up done), -> first optimisation step finished, and
SIGTERM -> process exit with the checkpoint saved. Targets: start < 15 s plus data load,
SIGTERM -> exit < 10 s. Usage: python -m bench.job [--cbase 2048 --cmax 64 --res 32]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench import args as checks
from bench.timing import machine_description
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.sagemaker.local import LocalJob, lay_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default="paper256")
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-gpu", type=int, default=None,
                        help="Images per GPU and accumulation round [default: batch / gpus].")
    parser.add_argument("--cbase", type=int, default=2048)
    parser.add_argument("--cmax", type=int, default=64)
    args = parser.parse_args()
    checks.at_least(parser, args, batch=1, batch_gpu=1, cbase=1, cmax=1)
    checks.power_of_two(parser, "--res", args.res, low=8)
    print(f"# device: {machine_description(torch.device('cuda' if torch.cuda.is_available() else 'cpu'))}")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_dataset(Path(tmp) / "animeface.zip", count=256, resolution=args.res)
        job = LocalJob(base_dir=Path(tmp) / "opt_ml", channels={"train": data}, hyperparameters={
            "gpus": 1, "augpipe": "bg", "gamma": 10, "cfg": args.cfg, "mirror": 1, "snap": 10,
            "kimg": 1000, "metrics": "none", "outdir": "/opt/ml/checkpoints", "batch": args.batch,
            "cbase": args.cbase, "cmax": args.cmax, "kimg-per-tick": 1000,
            **({"batch-gpu": args.batch_gpu} if args.batch_gpu else {})})
        lay_out(job)
        env = dict(os.environ, SAGEMAKER_BASE_DIR=str(job.base_dir))
        marks: dict[str, float] = {}
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "sg2_container.sagemaker.entrypoint", "train"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        log: list[str] = []

        def read():
            for line in process.stdout:
                log.append(line)
                if " training " in line and "for kimg" in line:
                    marks.setdefault("training", time.monotonic())
                if "tick=0 " in line:
                    marks.setdefault("first_step", time.monotonic())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while "first_step" not in marks and process.poll() is None:
            time.sleep(0.01)
        if "first_step" not in marks:  # the job failed (or finished) before its first step
            reader.join(timeout=5)
            failure = job.base_dir / "output" / "failure"
            reason = (failure.read_text().strip() if failure.is_file()
                      else "".join(log[-20:]).strip() or "no output")
            sys.exit(f"error: the training job exited (code {process.returncode}) before its "
                     f"first step: {reason}")
        time.sleep(1.0)  # mid-tick
        stop_sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        exited = time.monotonic()
        reader.join(timeout=5)
        saved = sorted(p.name for p in (job.base_dir / "checkpoints").glob("checkpoint-*.pt"))
    print(f"start -> training begins:      {marks['training'] - start:6.2f} s (imports, dataset scan, networks)")
    print(f"start -> first step finished:  {marks['first_step'] - start:6.2f} s")
    print(f"SIGTERM -> exit:               {exited - stop_sent:6.2f} s (exit code {process.returncode}, "
          f"checkpoints {saved})")


if __name__ == "__main__":
    main()
