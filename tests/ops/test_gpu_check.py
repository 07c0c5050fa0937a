"""scripts/gpu_check.sh on a machine without a GPU: argument handling, the clear refusal, and
that its summary parser reads what the bench scripts print."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import gpu_check, ops

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_help_explains_usage_and_outputs():
    result = run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: scripts/gpu_check.sh OUTDIR")
    assert "JSON" in result.stdout and "9 minutes" in result.stdout


@pytest.mark.parametrize("args,message", [
    ((), "OUTDIR is required"),
    (("out", "--frobnicate"), "unknown option --frobnicate"),
    (("a", "b"), "one OUTDIR expected"),
    (("out", "--python"), "--python needs a value"),
    (("out", "--baseline"), "--baseline needs a value"),
    (("out", "--baseline", "/nonexistent"), "--baseline /nonexistent holds no sg2_container/"),
])
def test_bad_arguments_are_usage_errors(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_refuses_clearly_without_a_gpu(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    outdir = tmp_path / "results"
    result = run(str(outdir))
    assert result.returncode == 3
    assert "no usable NVIDIA GPU" in result.stderr and "nvidia-smi" in result.stderr
    assert not outdir.exists()  # refused before building, testing or writing anything


@pytest.mark.parametrize("listing,message", [
    ("GPU 0: Stand-in (UUID: GPU-0)", "cannot use CUDA"),  # a driver, but torch sees no device
    ("No devices were found", "nvidia-smi lists no GPU"),
])
def test_refuses_with_a_driver_but_no_usable_gpu(tmp_path, listing, message):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\necho '{listing}'\n")
    (fake / "nvidia-smi").chmod(0o755)
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out"), "--python", sys.executable],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}"))
    assert result.returncode == 3
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_summary_parser_reads_the_bench_output(capsys):
    ops.report("upfirdn2d D conv1 pre-filter, 256px", [8, 64, 256, 256], "reference", 0.0120, 10**9, None)
    ops.report("upfirdn2d D conv1 pre-filter, 256px", [8, 64, 256, 256], "cuda", 0.0015, 10**9, 2039)
    cases = gpu_check.parse_ops(capsys.readouterr().out)
    case = cases["upfirdn2d D conv1 pre-filter, 256px"]
    assert case["reference_ms"] == 12.0 and case["cuda_ms"] == 1.5 and case["kernel_speedup"] == 8.0
    assert gpu_check.parse("train_kernels_mixed", "cfg paper256 @ 256px, batch 64 (per GPU and "
                           "round 8), cbase None, cmax None: 12.3 s/kimg over 1.024 kimg"
                           )["sec_per_kimg"] == 12.3


def test_a_step_past_its_time_ends_with_everything_it_started(tmp_path):
    """bench.job starts a training job of its own: a timeout must not leave it on the GPU,
    and what the step printed (stdout and stderr) stays in its log."""
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              "print('child', child.pid, flush=True)\n"
              "print('a log line', file=sys.stderr, flush=True)\n"
              "time.sleep(120)\n")
    result = gpu_check.run_step("ops", ["-c", script], {}, 3, tmp_path)
    assert result["status"] == "timeout after 3 s"
    text = (tmp_path / "ops.log").read_text()
    assert "a log line" in text
    child = int(text.split("child ")[1].split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_summary_reads_every_step_even_when_the_budget_cut_them():
    """A run out of time still summarises: each skipped step says so; the comparison with the
    reference says what ran of it, or that no baseline was given."""
    skipped = {"status": "skipped: out of time"}
    results = {"device": "stand-in GPU", "gpu_tests_rc": 0, "budget_s": 300, "seconds": 299.0,
               "steps": {name: dict(skipped) for name, *_ in gpu_check.STEPS}}
    text = gpu_check.summary(results)
    assert "kernels on,  mixed precision on : skipped: out of time" in text
    assert "generation, paper256 G_ema: skipped: out of time" in text
    assert "against the reference stand-in: not run (no baseline tree" in text

    results["steps"][gpu_check.VS_REFERENCE] = {
        "status": "timeout after 120 s", "networks": "fp16 top blocks",
        "generation": {"batch_1": {"baseline_ms": 9.0, "ours_ms": 6.0, "speedup": 1.5,
                                   "max_abs_diff": 1e-3}}}
    text = gpu_check.summary(results)
    assert "NOT COMPARABLE" not in text  # nothing said about kernels: nothing claimed
    results["steps"][gpu_check.VS_REFERENCE]["ops"] = {
        "base": {"kernels": False, "reason": "no code for sm_90"},
        "ours": {"kernels": True, "reason": "prebuilt"}}
    text = gpu_check.summary(results)
    assert ("NOT COMPARABLE: the stand-in runs without its CUDA kernels (no code for sm_90)"
            in text)
    assert "baseline time -> ours (timeout after 120 s):" in text
    assert "generation batch 1: 9.0 ms -> 6.0 ms  1.5x" in text and "G+D step" not in text


def test_the_comparison_with_the_reference_is_the_mixed_precision_256_px_step(tmp_path):
    argv = gpu_check.vs_reference_argv(tmp_path / "baseline", tmp_path)
    assert argv[:2] == ["-m", "bench.speed"]
    for flag, value in (("--device", "cuda"), ("--baseline", str(tmp_path / "baseline")),
                        ("--train-res", "256"), ("--train-batch", "8")):
        assert argv[argv.index(flag) + 1] == value
    assert "--mixed-precision" in argv
    assert argv[argv.index("--json") + 1] == str(tmp_path / f"{gpu_check.VS_REFERENCE}.json")
