"""`sg2 prepare` and `sg2 dataset info` through click: help, errors, start-up without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from sg2_container.cli import data_commands
from sg2_container.cli.main import cli
from tests.prepare.inputs import make_images


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


def test_every_dataset_command_and_option_has_help():
    group = click.Group()
    data_commands.register(group)
    for name, command in _commands(group):
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"


@pytest.mark.parametrize(
    "args", [["prepare", "--help"], ["dataset", "info", "--help"], ["dataset", "--help"]]
)
def test_help_works(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_prepare_then_info_with_a_grid(tmp_path):
    source = make_images(tmp_path / "src", {f"c{i % 2}/{i}.png": (40, 30) for i in range(5)})
    dest = tmp_path / "train.zip"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "prepare",
            "--source",
            str(source),
            "--dest",
            str(dest),
            "--width",
            "16",
            "--labels",
            "folders",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 5 of 5 files as 16x16 RGB" in result.output
    grid = tmp_path / "grid.png"
    result = runner.invoke(
        cli, ["dataset", "info", str(dest), "--grid", str(grid), "--grid-images", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "images: 5" in result.output and "resolution: 16x16" in result.output
    assert "channels: 3 (RGB)" in result.output
    assert "labels: 2 classes (one-hot, label_dim 2); images per class 0: 3, 1: 2" in result.output
    with Image.open(grid) as im:
        assert im.size == (32, 32) and im.mode == "RGB"

    # The grid never lands on an existing file unasked, least of all on the dataset itself.
    zipped = dest.read_bytes()
    for target, words in ((dest, "the grid is a PNG"), (grid, "exists; give --force")):
        result = runner.invoke(cli, ["dataset", "info", str(dest), "--grid", str(target)])
        assert result.exit_code == 1 and words in result.output, result.output
    assert dest.read_bytes() == zipped
    result = runner.invoke(cli, ["dataset", "info", str(tmp_path), "--grid",
                                 str(tmp_path / "inside.png")])
    assert result.exit_code == 1 and "would become one of its images" in result.output
    assert not (tmp_path / "inside.png").exists()
    copy = tmp_path / "copy.png"
    copy.write_bytes(b"precious")
    result = runner.invoke(cli, ["dataset", "info", str(dest), "--grid", str(copy), "--force"])
    assert result.exit_code == 0 and copy.read_bytes() != b"precious"


def test_user_errors_become_one_line_click_errors(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "prepare",
            "--source",
            str(tmp_path),
            "--dest",
            str(tmp_path / "o.zip"),
            "--width",
            "64",
            "--height",
            "32",
        ],
    )
    assert result.exit_code == 1
    assert "Error: width 64 and height 32 differ" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["dataset", "info", str(tmp_path / "none.zip")])
    assert result.exit_code == 1 and "not found" in result.output


def test_prepare_never_imports_torch(tmp_path):
    source = make_images(tmp_path / "src", {"a.png": (20, 20), "b.jpg": (30, 20)})
    code = textwrap.dedent(
        f"""
        import sys, time
        start = time.perf_counter()
        from sg2_container.cli.main import cli
        import_s = time.perf_counter() - start
        assert "torch" not in sys.modules, "importing the CLI imported torch"
        cli(["prepare", "--source", {str(source)!r}, "--dest", {str(tmp_path / "o.zip")!r},
             "--width", "16", "--workers", "2"], standalone_mode=False)
        cli(["dataset", "info", {str(tmp_path / "o.zip")!r}], standalone_mode=False)
        assert "torch" not in sys.modules, "sg2 prepare imported torch"
        print("import_s", import_s)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    import_s = float(result.stdout.split("import_s")[1])
    assert import_s < 0.5


def _noise_upload(folder, count: int):
    import io

    folder.mkdir(parents=True)
    buf = io.BytesIO()
    Image.effect_noise((1200, 1200), 60).convert("RGB").save(buf, "JPEG")
    for i in range(count):
        (folder / f"{i:03d}.jpg").write_bytes(buf.getvalue())
    return folder


def _start_prepare(tmp_path):
    """`sg2 prepare` with two workers on slow images; returns it once its workers run."""
    import os
    import time
    from pathlib import Path

    source = _noise_upload(tmp_path / "up", 300)
    (tmp_path / "out").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "sg2_container.cli.main", "prepare", "--source", str(source),
         "--dest", str(tmp_path / "out" / "p.zip"), "--width", "256", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, COLUMNS="80"))
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    while len(children.read_text().split()) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    return process, [int(pid) for pid in children.read_text().split()]


def _gone(pids, timeout: float = 10) -> bool:
    import os
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def _state(pid) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_sigterm_stops_prepare_cleanly_with_its_workers(tmp_path):
    """A supervisor's SIGTERM (docker stop, a CI timeout): exit 130 with what was done, no
    partial zip or scratch folder left, and no worker left waiting forever on the output pipe
    (they ignore stop signals; the main process was killed at once before)."""
    import signal

    process, workers = _start_prepare(tmp_path)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "SIGTERM: stopping cleanly" in out and "stopped: stopped after" in out, out
    assert "Traceback" not in out
    assert list((tmp_path / "out").iterdir()) == []
    assert _gone(workers)


def test_workers_end_when_prepare_is_killed_outright(tmp_path):
    """SIGKILL (or the OOM killer) gives no chance to clean up; the workers still must not
    outlive their parent."""
    import signal

    process, workers = _start_prepare(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)  # ends only once no worker holds the output pipe
    assert _gone(workers)
