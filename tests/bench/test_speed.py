"""bench.speed end to end on the CPU against a copy of this tree: the figures it writes with
--json (what scripts/gpu_check.sh reads for its comparison with the reference stand-in) and the
differences, which between identical trees must be none."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_a_copy_of_this_tree_computes_the_same_and_the_json_says_so(tmp_path):
    baseline = tmp_path / "baseline"
    for package in ("sg2_container", "stylegan2_ops"):
        shutil.copytree(ROOT / package, baseline / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    written = tmp_path / "out" / "speed.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.speed", "--baseline", str(baseline), "--repeat", "1",
         "--batches", "2", "--train-res", "8", "--train-cbase", "256", "--train-cmax", "32",
         "--train-batch", "2", "--json", str(written)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(written.read_text())
    assert results["baseline"] == str(baseline.resolve())
    # Each side says whether its ops ran on CUDA kernels (none on a CPU), and why.
    assert set(results["ops"]) == {"base", "ours"}
    assert all(ops["kernels"] is False and ops["reason"] for ops in results["ops"].values())
    generation = results["generation"]["batch_2"]
    step = results["train_step"]
    assert (step["res"], step["batch"], step["cfg"]) == (8, 2, "paper256")
    # The same code on the same weights and inputs: not merely close.
    assert generation["max_abs_diff"] == 0.0
    assert step["r1_grads_max_abs_diff"] == 0.0 and step["largest_param_grad_diff"] == 0.0
    for figures in (generation, step):
        assert figures["baseline_ms"] > 0 and figures["ours_ms"] > 0
        assert figures["speedup"] == pytest.approx(
            figures["baseline_ms"] / figures["ours_ms"], rel=1e-2)
    # The printed table carries the same medians.
    assert f"| {step['baseline_ms']:.0f} | {step['ours_ms']:.0f} |" in run.stdout

    # What gpu_check makes of it: the step's ratio against its target, and each batch.
    lines = gpu_check.vs_reference_lines({"status": "ok", **results})
    assert f"{step['speedup']}x" in lines[1] and "1.3x target" in lines[1]
    assert ("meets" in lines[1]) == (step["speedup"] >= gpu_check.STEP_TARGET)
    assert lines[2].startswith("  generation batch 2:") and "0.0e+00" in lines[2]
    assert gpu_check.parse(gpu_check.VS_REFERENCE, "", written.parent.parent) == {}
    shutil.copy(written, tmp_path / f"{gpu_check.VS_REFERENCE}.json")
    assert gpu_check.parse(gpu_check.VS_REFERENCE, "", tmp_path) == results


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a usable GPU")
def test_cuda_is_refused_at_once_without_a_gpu(tmp_path):
    (tmp_path / "sg2_container").mkdir()
    (tmp_path / "sg2_container" / "__init__.py").touch()
    run = subprocess.run([sys.executable, "-m", "bench.speed", "--baseline", str(tmp_path),
                          "--device", "cuda"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    assert "--device 'cuda': no usable CUDA device here" in run.stderr.splitlines()[-1]
