"""The bench scripts refuse a bad argument with one line naming it and what is allowed, before
any work (they crashed with tracebacks, divided by zero or, for bench.metrics --batch 0, looped
forever)."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench import args as checks

ROOT = Path(__file__).resolve().parents[2]


def parser_with(**defaults):
    parser = argparse.ArgumentParser(prog="bench-x")
    for name, value in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", default=value)
    return parser, parser.parse_args([])


def refusal(capsys, check) -> str:
    with pytest.raises(SystemExit) as stop:
        check()
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_at_least_names_the_option_the_minimum_and_the_value(capsys):
    parser, args = parser_with(repeat=0, batches=[1, 0], threads=None, warmup_ticks=0)
    checks.at_least(parser, args, threads=1, warmup_ticks=0)  # unset and at the minimum pass
    assert refusal(capsys, lambda: checks.at_least(parser, args, repeat=1)) == (
        "bench-x: error: --repeat must be at least 1, got 0")
    assert refusal(capsys, lambda: checks.at_least(parser, args, batches=1)) == (
        "bench-x: error: --batches must be at least 1, got 0")


@pytest.mark.parametrize("value", [0, 5, 33, 8192])
def test_power_of_two_refuses_other_resolutions(capsys, value):
    parser, _ = parser_with()
    assert refusal(capsys, lambda: checks.power_of_two(parser, "--res", value, low=8)) == (
        f"bench-x: error: --res must be a power of two from 8 to 4096, got {value}")


def test_power_of_two_passes_the_bounds():
    parser, _ = parser_with()
    for value in (4, 64, 4096):
        checks.power_of_two(parser, "--res", value)


def test_device_refuses_a_name_that_is_no_device_or_an_absent_gpu(capsys):
    import torch

    parser, _ = parser_with()
    assert checks.device(parser, "cpu") == torch.device("cpu")
    assert "--device 'bogus' is not a device: use cpu, cuda or cuda:N" in refusal(
        capsys, lambda: checks.device(parser, "bogus"))
    assert "the benchmarks run on cpu or cuda" in refusal(
        capsys, lambda: checks.device(parser, "meta"))
    if not torch.cuda.is_available():
        assert "--device 'cuda': no usable CUDA device here" in refusal(
            capsys, lambda: checks.device(parser, "cuda"))


def test_user_errors_end_as_one_line():
    from sg2_container.errors import UserError

    with pytest.raises(SystemExit) as stop, checks.user_errors():
        raise UserError("cfg 'x' is not a preset")
    assert stop.value.code == "error: cfg 'x' is not a preset"


@pytest.mark.parametrize("argv,message", [
    (["-m", "bench.metrics", "--batch", "0"], "--batch must be at least 1, got 0"),
    (["-m", "bench.speed", "--baseline", "."], "is this tree itself"),
    (["-m", "bench.speed", "--baseline", ".", "--repeat", "0"], "--repeat must be at least 1"),
    (["-m", "bench.speed", "--baseline", ".", "--train-batch", "1"],
     "--train-batch must be at least 2, got 1"),
    (["-m", "bench.speed", "--baseline", ".", "--train-res", "48"],
     "--train-res must be a power of two from 8 to 1024, got 48"),
    (["-m", "bench.train", "--warmup-ticks", "-1"], "--warmup-ticks must be at least 0, got -1"),
    (["-m", "bench.project", "--steps", "0"], "--steps must be at least 1, got 0"),
    (["bench/prepare.py", "--size", "5"], "--size must be a power of two from 4 to 16384, got 5"),
    (["bench/serve.py", "--seconds", "0"], "--seconds must be above 0, got 0.0"),
])
def test_the_scripts_refuse_at_once_without_a_traceback(argv, message):
    run = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr.splitlines()[-1]
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_a_job_that_fails_at_start_says_why():
    """bench.job printed a KeyError traceback and swallowed the job's own reason."""
    run = subprocess.run([sys.executable, "-m", "bench.job", "--cfg", "bogus"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the training job exited (code 1) before its first step: ")
    assert "cfg='bogus' is not allowed" in last


def test_serve_load_times_every_client_from_when_all_are_ready():
    """With 32 clients most of a short window went to making their HTTP clients: no request
    finished and the percentiles of nothing crashed."""
    import http.server
    import threading

    from bench import serve

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn serves

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 64  # 32 clients connect at once
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = serve.load(f"http://127.0.0.1:{server.server_port}", 32, 0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert result["n"] >= 32 and result["errors"] == 0 and result["rps"] > 0
