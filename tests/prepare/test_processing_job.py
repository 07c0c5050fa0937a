"""The image's entrypoint in processing-job mode, run as SageMaker would: a subprocess, a fake
/opt/ml under tmp_path (SAGEMAKER_BASE_DIR), the arguments from the users' pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sg2_container.data.dataset import ImageFolderDataset
from tests.prepare.inputs import make_images


def _run(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    return subprocess.run(
        [sys.executable, "-m", "sg2_container.sagemaker.entrypoint", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_article_arguments_write_the_training_zip(tmp_path):
    base = tmp_path / "ml"
    make_images(base / "processing" / "input", {f"face{i}.jpg": (90 + i, 100) for i in range(6)})
    result = _run(
        base,
        "--source",
        f"{base}/processing/input/",
        "--dest",
        f"{base}/processing/train/animeface.zip",
        "--width",
        "256",
        "--height",
        "256",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 6 of 6 files as 256x256 RGB" in result.stdout + result.stderr  # the log
    dataset = ImageFolderDataset(base / "processing" / "train" / "animeface.zip")
    assert len(dataset) == 6 and dataset.resolution == 256
    report = json.loads((base / "processing" / "train" / "prepare_report.json").read_text())
    assert report["num_written"] == 6 and report["converted"] == {"upscaled": 6}
    assert not (base / "output" / "message").exists()


def test_prepare_subcommand_works_too(tmp_path):
    base = tmp_path / "ml"
    make_images(base / "processing" / "input", {"a.png": (40, 40)})
    result = _run(
        base,
        "prepare",
        "--source",
        f"{base}/processing/input",
        "--dest",
        f"{base}/processing/train/data.zip",
        "--width",
        "32",
        "--workers",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert (base / "processing" / "train" / "data.zip").is_file()


def test_failure_writes_the_message_and_exits_non_zero(tmp_path):
    base = tmp_path / "ml"
    result = _run(
        base,
        "--source",
        f"{base}/processing/nothing-here",
        "--dest",
        f"{base}/processing/train/animeface.zip",
        "--width",
        "256",
        "--height",
        "256",
    )
    assert result.returncode != 0
    message = (base / "output" / "message").read_text()
    assert message.startswith("UserError: prepare: --source:")
    assert "nothing-here" in message and "does not exist" in message
    assert len(message.encode()) < 1024 and "\n" not in message
    assert "does not exist" in result.stdout + result.stderr  # the log says it too


def test_bad_option_value_is_named_in_the_message(tmp_path):
    base = tmp_path / "ml"
    (base / "processing" / "input").mkdir(parents=True)
    result = _run(
        base, "--source", f"{base}/processing/input", "--dest", f"{base}/x.zip", "--width", "300"
    )
    assert result.returncode == 1
    assert (base / "output" / "message").read_text() == (
        "UserError: prepare: width=300 is not allowed: a power of two >= 4 and <= 16384"
    )


def test_serve_is_not_a_processing_command(tmp_path):
    """`serve` is the hosting mode: without a model folder it fails with a user error."""
    result = _run(tmp_path / "ml", "serve")
    assert result.returncode == 1 and "no model folder" in result.stdout + result.stderr


def test_no_arguments_explain_what_is_expected(tmp_path):
    base = tmp_path / "ml"
    result = _run(base)
    assert result.returncode == 1
    assert "no processing command given" in (base / "output" / "message").read_text()


def test_stop_signal_leaves_no_partial_output(tmp_path):
    """SageMaker stops a processing job with SIGINT: the old output stays, no temp files remain."""
    import io
    import signal

    from PIL import Image

    base = tmp_path / "ml"
    source = base / "processing" / "input"
    source.mkdir(parents=True)
    buf = io.BytesIO()
    Image.effect_noise((1200, 1200), 60).convert("RGB").save(buf, "JPEG")
    for i in range(300):
        (source / f"{i:03d}.jpg").write_bytes(buf.getvalue())
    train = base / "processing" / "train"
    train.mkdir()
    (train / "animeface.zip").write_bytes(b"previous output")
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    command = [
        sys.executable,
        "-m",
        "sg2_container.sagemaker.entrypoint",
        "--source",
        str(source),
        "--dest",
        str(train / "animeface.zip"),
        "--width",
        "256",
        "--workers",
        "2",
    ]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if "300 files in" in line:
                break
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 130, rest
    assert "SIGINT: stopping cleanly" in rest
    assert sorted(p.name for p in train.iterdir()) == ["animeface.zip"]
    assert (train / "animeface.zip").read_bytes() == b"previous output"
    assert (base / "output" / "message").read_text().startswith("Stopped: prepare stopped by a signal: stopped after")
