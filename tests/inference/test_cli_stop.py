"""SIGTERM (what `docker stop` and SageMaker send) ends the rendering commands as Ctrl-C does:
exit 130 with one line, the finished files kept, no temporary file left (the default action
killed them at once, leaving a hidden .tmp of the file being written)."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SG2 = [sys.executable, "-m", "sg2_container.cli.main"]


@pytest.mark.parametrize("command,finished", [
    (["generate", "--seeds", "0-99999"], "seed*.png"),
    (["interpolate", "--seeds", "0,1", "--frames", "10000", "--format", "mp4,gif"], "walk*"),
])
def test_sigterm_mid_work_exits_130_and_leaves_no_partial_file(tmp_path, tiny_model, command,
                                                               finished):
    _, model_path = tiny_model
    outdir = tmp_path / "out"
    process = subprocess.Popen(
        SG2 + command + ["--network", str(model_path), "--outdir", str(outdir), "--device", "cpu",
                         "--progress-every-s", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(" -> " in line and "/" in line for line in lines[-1:]):  # a progress line
            line = process.stderr.readline()
            assert line, "".join(lines) + process.stdout.read()
            lines.append(line)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, "".join(lines) + err
    assert "stopped: after" in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert not [p.name for p in outdir.iterdir() if p.name.startswith(".")]
    if command[0] == "generate":  # the images finished before the stop are kept
        assert list(outdir.glob(finished))
    else:  # a walk cut short is no video
        assert not list(outdir.glob(finished))
