"""`sg2-sagemaker infer` run as SageMaker runs the image: the real entrypoint in a subprocess,
a stand-in /opt/ml under tmp_path (SAGEMAKER_BASE_DIR), the article's layout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner


def _job_tree(tmp_path, model_path: Path, requests: list | None = None, images=()) -> Path:
    """<base>/processing/model/model.tar.gz (as a training job leaves it) and data/."""
    base = tmp_path / "ml"
    model_dir = base / "processing" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as tar:
        tar.add(model_path, arcname="model.pt")
    data = base / "processing" / "data"
    data.mkdir(parents=True)
    if requests is not None:
        lines = [r if isinstance(r, str) else json.dumps(r) for r in requests]
        (data / "requests.jsonl").write_text("\n".join(lines) + "\n")
    for name, content in images:
        (data / name).write_bytes(content)
    return base


def _env(base: Path) -> dict:
    return {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}


def _run(base: Path, *args: str, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sg2_container.sagemaker.entrypoint", "infer",
                           "--device", "cpu", *args], env=_env(base), capture_output=True,
                          text=True, timeout=timeout, check=False)


def _manifest(base: Path, name="test") -> dict:
    return json.loads((base / "processing" / "output" / name / "manifest.json").read_text())


def _png(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_generate_and_style_mix_requests_with_a_bad_line(tmp_path, tiny_model):
    _, model_path = tiny_model
    requests = [
        {"generate": {"seeds": [1, 2], "truncation_psi": 0.7}},
        "this is not json",
        {"style_mix": {"rows": [1, 2], "cols": [3], "styles": [0, 1]}},
        {"generate": {"seeds": "a,b"}},
        {"generate": {"seed": [1]}},
        {"generate": {"seeds": [1], "truncation_psi": "nan"}},
        {"paint": {}},
    ]
    base = _job_tree(tmp_path, model_path, requests)
    result = _run(base, "--project-images", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = base / "processing" / "output" / "test"
    manifest = _manifest(base)
    assert manifest["status"] == "done"
    assert manifest["counts"] == {"done": 2, "failed": 5, "skipped": 0, "pending": 0}
    by_index = {r["index"]: r for r in manifest["requests"]}
    assert by_index[0]["status"] == "done"
    assert by_index[0]["files"] == ["000-generate/seed0001.png", "000-generate/seed0002.png"]
    assert by_index[1]["status"] == "failed" and "not JSON" in by_index[1]["message"]
    assert by_index[1]["source"] == "requests.jsonl line 2"
    assert by_index[2]["files"] == sorted(
        f"002-style_mix/{n}" for n in ("1-3.png", "2-3.png", "1-1.png", "2-2.png", "3-3.png",
                                       "grid.png"))
    assert "bad seed 'a'" in by_index[3]["message"]
    assert "unknown field 'seed' (did you mean 'seeds'?)" in by_index[4]["message"]
    assert "truncation_psi=nan is not allowed" in by_index[5]["message"]
    assert "unknown request kind 'paint'" in by_index[6]["message"]
    for entry in manifest["requests"]:
        for name in entry["files"]:
            assert (out / name).is_file()
    with PIL.Image.open(out / "002-style_mix" / "grid.png") as grid:
        assert grid.size == (16 * 2, 16 * 3)
    assert manifest["job"]["model_file"].endswith("model.tar.gz/model.pt")


def test_no_valid_request_fails_with_the_job_runners_contract(tmp_path, tiny_model):
    _, model_path = tiny_model
    base = _job_tree(tmp_path, model_path, ['{"generate": {"seeds": "x"}}'])
    result = _run(base, "--project-images", "0")
    assert result.returncode == 1
    message = (base / "output" / "message").read_text()
    assert message.startswith("UserError: infer: nothing to do")
    # The failure reason alone (all a pipeline's status shows) says what was wrong, and where
    # the manifest is (a failed job's outputs are not uploaded).
    assert "requests.jsonl line 1: seeds: bad seed" in message and "/manifest.json" in message
    assert _manifest(base)["requests"][0]["status"] == "failed"
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_job_arguments_and_a_missing_model_are_user_errors(tmp_path, tiny_model):
    _, model_path = tiny_model
    base = _job_tree(tmp_path, model_path, [{"generate": {"seeds": [0]}}])
    result = _run(base, "--num-steps", "zero")
    assert result.returncode == 1
    assert "--num-steps" in (base / "output" / "message").read_text()
    result = _run(base, "--model", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "no such file or folder" in (base / "output" / "message").read_text()
    manifest = _manifest(base)
    assert manifest["status"] == "failed" and "no such file or folder" in manifest["job"]["error"]
    assert manifest["requests"][0]["status"] == "failed"


def test_sigterm_midway_stops_between_requests_with_the_manifest_written(tmp_path, tiny_model):
    _, model_path = tiny_model
    requests = [{"generate": {"seeds": [0, 1]}},
                {"generate": {"seeds": "0-2999"}},
                {"style_mix": {"rows": [1], "cols": [2], "styles": [0]}}]
    base = _job_tree(tmp_path, model_path, requests)
    process = subprocess.Popen(
        [sys.executable, "-m", "sg2_container.sagemaker.entrypoint", "infer", "--device", "cpu",
         "--project-images", "0"], env=_env(base), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    manifest_path = base / "processing" / "output" / "test" / "manifest.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if manifest_path.exists() and json.loads(manifest_path.read_text())["counts"]["done"]:
                break
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.05)
        time.sleep(0.3)  # inside the long request
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    manifest = json.loads(manifest_path.read_text())
    assert manifest["status"] == "stopped"
    statuses = [r["status"] for r in manifest["requests"]]
    assert statuses == ["done", "skipped", "skipped"]
    assert "stopped before the end" in manifest["requests"][1]["message"]
    # The images the stopped request finished stay, and the manifest lists them.
    stopped = manifest["requests"][1]
    on_disk = sorted(str(p.relative_to(manifest_path.parent))
                     for p in (manifest_path.parent / stopped["folder"]).glob("*.png"))
    assert on_disk and stopped["files"] == on_disk
    assert (base / "output" / "message").read_text().startswith("Stopped: infer")
    assert "Traceback" not in output


def test_local_process_runs_the_job(tmp_path, tiny_model):
    from sg2_container.cli.main import cli

    _, model_path = tiny_model
    data = tmp_path / "data"
    data.mkdir()
    (data / "requests.jsonl").write_text(json.dumps({"generate": {"seeds": [4]}}) + "\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.pt").write_bytes(model_path.read_bytes())
    output = tmp_path / "results"
    result = CliRunner().invoke(cli, [
        "local", "process", "--base-dir", str(tmp_path / "sm"), "--input", f"model={model_dir}",
        "--input", f"data={data}", "--output", f"output={output}", "--", "infer",
        "--device", "cpu", "--name", "run1"])
    assert result.exit_code == 0, result.output
    assert (output / "run1" / "000-generate" / "seed0004.png").is_file()
    assert _manifest_at(output / "run1")["status"] == "done"


def _manifest_at(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# ---- projection requests: need the projector (inference/project.py) ------------------------

def test_images_in_projections_and_manifest_out(tmp_path, tiny_model):
    pytest.importorskip("sg2_container.inference.project")
    import torch

    from sg2_container.io.images import to_uint8
    from sg2_container.inference.latents import ws_for_seeds

    G, model_path = tiny_model
    with torch.no_grad():
        face = to_uint8(G.synthesis(ws_for_seeds(G, [7]), noise_mode="const"))[0]
    requests = [{"project": {"targets": ["face.png"], "num_steps": 3}},
                {"generate": {"seeds": [0]}}]
    base = _job_tree(tmp_path, model_path, requests,
                     images=[("face.png", _png(face)), ("other.png", _png(face[::-1].copy())),
                             ("broken.png", b"not an image at all")])
    result = _run(base, "--num-steps", "2", "--allow-random-vgg16")
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = _manifest(base)
    kinds = [(r["source"], r["kind"], r["status"]) for r in manifest["requests"]]
    assert kinds == [("requests.jsonl line 1", "project", "done"),
                     ("requests.jsonl line 2", "generate", "done"),
                     ("data image broken.png", "project", "failed"),
                     ("data image other.png", "project", "done")]
    assert "not an image" in manifest["requests"][2]["message"]
    out = base / "processing" / "output" / "test"
    files = manifest["requests"][0]["files"]
    for name in ("target.png", "proj.png", "projected_w.npz"):
        assert f"000-project/face/{name}" in files and (out / "000-project" / "face" / name).is_file()
    assert "rehearsal" in manifest["requests"][0]["note"]
    assert "not a meaningful projection" in manifest["job"]["note"]
    assert "not a meaningful projection" in result.stdout


def test_projection_without_vgg16_weights_names_what_to_supply(tmp_path, tiny_model):
    pytest.importorskip("sg2_container.inference.project")
    _, model_path = tiny_model
    base = _job_tree(tmp_path, model_path, None, images=[("face.png", _png(
        np.zeros([16, 16, 3], np.uint8)))])
    env = {k: v for k, v in _env(base).items() if k != "SG2_VGG16_WEIGHTS"}
    result = subprocess.run([sys.executable, "-m", "sg2_container.sagemaker.entrypoint", "infer",
                             "--device", "cpu", "--num-steps", "1"], env=env, check=False,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    message = (base / "output" / "message").read_text()
    assert "VGG16" in message and "--vgg16" in message


def test_a_request_uses_files_earlier_requests_of_the_job_wrote(tmp_path, tiny_model):
    """Files named in requests are looked up when the request runs: an earlier request's
    projected_w.npz is found; a file an older run left in the output folder is not."""
    pytest.importorskip("sg2_container.inference.project")
    _, model_path = tiny_model
    face = np.full([16, 16, 3], 90, np.uint8)
    requests = [
        {"project": {"targets": ["face.png"], "num_steps": 2}},
        {"interpolate": {"seeds": [1, 5], "projected_w": ["000-project/face/projected_w.npz"],
                         "frames": 2, "formats": ["gif"]}},
        {"generate": {"projected_w": "009-generate/seed0003.npz"}},  # only an old run's file
        {"generate": {"seeds": [3], "save_w": True}},
        {"generate": {"projected_w": "003-generate/seed0003.npz"}},
        {"generate": {"projected_w": "../escape.npz"}},
    ]
    base = _job_tree(tmp_path, model_path, requests, images=[("face.png", _png(face))])
    stale = base / "processing" / "output" / "test" / "009-generate"
    stale.mkdir(parents=True)
    np.savez(stale / "seed0003.npz", w=np.zeros([1, 4, 16], np.float32))
    result = _run(base, "--allow-random-vgg16")
    assert result.returncode == 0, result.stdout + result.stderr
    entries = _manifest(base)["requests"]
    assert [r["status"] for r in entries] == ["done", "done", "failed", "done", "done", "failed"]
    assert entries[1]["files"] == ["001-interpolate/walk-sheet.png", "001-interpolate/walk.gif"]
    assert "nor among the files earlier requests of this job wrote" in entries[2]["message"]
    assert entries[4]["files"] == ["004-generate/proj00.png"]
    assert "without '..'" in entries[5]["message"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb to Pillow)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_hostile_lines_and_images_fail_alone(tmp_path, tiny_model):
    """Each of these once ended the whole job (exit 2, manifest left 'running')."""
    pytest.importorskip("sg2_container.inference.project")
    _, model_path = tiny_model
    base = _job_tree(tmp_path, model_path, None, images=[("bomb.png", _png_header(60000, 60000))])
    lines = [
        json.dumps({"generate": {"seeds": [1], "truncation_psi": 10 ** 400}}).encode(),
        b'{"generate": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        b'{"generate": {"seeds": [2]}} \xff',
        json.dumps({"project": {"targets": ["bomb.png"], "num_steps": 1}}).encode(),
        json.dumps({"generate": {"seeds": [4]}}).encode(),
    ]
    (base / "processing" / "data" / "requests.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = _run(base, "--allow-random-vgg16")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    manifest = _manifest(base)
    assert manifest["status"] == "done"
    entries = manifest["requests"]
    assert [r["status"] for r in entries] == ["failed"] * 4 + ["done"]
    assert "truncation_psi=" in entries[0]["message"] and "out of range" in entries[0]["message"]
    assert "nested too deeply" in entries[1]["message"]
    assert "not UTF-8" in entries[2]["message"]
    assert "too many pixels" in entries[3]["message"]
