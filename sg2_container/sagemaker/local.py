"""The local stand-in: lays out a SageMaker /opt/ml tree in a folder and runs the image's
entrypoint in a subprocess exactly as the container would, so a job can be rehearsed for free.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from sg2_container.errors import UserError
from sg2_container.io.logs import passed_on
from sg2_container.options.schema import encode_hyperparameters

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalJob:
    base_dir: Path
    hyperparameters: dict
    channels: dict[str, Path]
    checkpoints: Path | None = None
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"
    copy_inputs: bool = False  # copy channels in, as SageMaker's File mode does (default: link)


def _link_or_copy(source: Path, target: Path, copy: bool = False) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    if not copy:
        try:
            target.symlink_to(source.resolve())
            return
        except OSError:
            pass
    (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)


def _link_checkpoints(source: Path, target: Path) -> None:
    """Points <base>/checkpoints at the user's folder; never deletes a checkpoint to do so."""
    source.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        if target.resolve() == source.resolve():
            return
        target.unlink()
    elif target.exists():
        if target.resolve() == source.resolve():
            return
        if any(target.iterdir()):
            raise UserError(f"{target} already holds checkpoints of an earlier run; move them "
                            f"or drop --checkpoints {source}")
        target.rmdir()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve())


def _clear_model_dir(model: Path) -> None:
    """SageMaker gives every job an empty /opt/ml/model: a model left by an earlier run would
    otherwise pass for this run's when this one fails. Checkpoints there (outdir=/opt/ml/model)
    are never deleted: the user moves them."""
    if model.is_symlink() or model.is_file():
        model.unlink()
    elif model.exists():
        kept = sorted(p.name for p in model.rglob("checkpoint-*.pt"))
        if kept:
            raise UserError(f"{model} holds checkpoints of an earlier run ({', '.join(kept[:3])}); "
                            "SageMaker starts every job with an empty model folder, so move them "
                            "(to resume, train with outdir=/opt/ml/checkpoints)")
        shutil.rmtree(model)


def lay_out(job: LocalJob) -> Path:
    """Writes input/config/*.json and the channels; keeps existing checkpoints (to resume)."""
    base = job.base_dir
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(
        json.dumps(encode_hyperparameters(job.hyperparameters), indent=2), encoding="utf-8")
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": job.current_host, "hosts": list(job.hosts),
        "network_interface_name": "lo", "current_instance_type": "local",
        "current_group_name": "homogeneousCluster",
    }), encoding="utf-8")
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
               "RecordWrapperType": "None"} for name in job.channels}), encoding="utf-8")
    for name, source in job.channels.items():
        if not source.exists():
            raise UserError(f"channel {name}: {source} does not exist")
    _remove_stale_channels(base / "input" / "data", job.channels)
    for name, source in job.channels.items():
        channel_dir = base / "input" / "data" / name
        if channel_dir.exists() and not channel_dir.is_symlink():
            shutil.rmtree(channel_dir)
        if source.is_dir():
            _link_or_copy(source, channel_dir, job.copy_inputs)
        else:
            channel_dir.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source, channel_dir / source.name, job.copy_inputs)
    if job.checkpoints is not None:
        _link_checkpoints(job.checkpoints, base / "checkpoints")
    _clear_model_dir(base / "model")
    for folder in ("checkpoints", "model", "output/data", "output/tensorboard"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    failure = base / "output" / "failure"
    failure.unlink(missing_ok=True)
    return base


def _remove_stale_channels(data_dir: Path, channels) -> None:
    """An earlier run's channels that this run does not give: the job finds its data by the
    folders there, so a left-over `train` would win over this run's `training`. They hold
    only the links or copies an earlier lay_out made."""
    if not data_dir.is_dir():
        return
    for entry in data_dir.iterdir():
        if entry.name in channels:
            continue
        log.info("removing channel %s of an earlier run from %s", entry.name, data_dir)
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)


def run_local(job: LocalJob, mode: str = "train", extra_env: dict | None = None,
              arguments: list[str] | None = None) -> int:
    """Runs `sg2-sagemaker <mode>` (or the job's own entrypoint `arguments`) against the tree,
    as docker runs the image as PID 1."""
    lay_out(job)
    log.info("running %s with SAGEMAKER_BASE_DIR=%s", mode, job.base_dir)
    return run_entrypoint(job.base_dir, [mode] if arguments is None else arguments,
                          extra_env=extra_env)


def run_entrypoint(base_dir: Path, arguments: list[str], forward_as: int | None = None,
                   extra_env: dict | None = None) -> int:
    """The entrypoint in a subprocess of its own process group; SIGINT/SIGTERM received here
    are forwarded to it (as `forward_as` when given), as the platform signals the container.
    It logs at this process's level (`sg2 -q local ...` quiet all through)."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), **passed_on(), **(extra_env or {})}
    command = [sys.executable, "-m", "sg2_container.sagemaker.entrypoint", *arguments]
    process = subprocess.Popen(command, env=env, start_new_session=True)

    def forward(signum, frame):
        log.warning("forwarding signal %d to the job", forward_as or signum)
        process.send_signal(forward_as or signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
        # Killed by a signal: Popen says -N, docker (and a shell) 128 + N, e.g. 137 for SIGKILL.
        return 128 - code if code < 0 else code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def failure_reason(base_dir: Path) -> str | None:
    path = base_dir / "output" / "failure"
    return path.read_text(encoding="utf-8") if path.exists() else None


def run_folder(job: LocalJob) -> Path:
    """Where the job's checkpoints land in the local tree: its outdir hyperparameter (under
    /opt/ml), else /opt/ml/checkpoints."""
    from sg2_container.options.schema import decode_value

    outdir = decode_value(job.hyperparameters.get("outdir")) or "/opt/ml/checkpoints"
    try:
        return under_base(job.base_dir, str(outdir))
    except UserError:  # elsewhere: the job itself refuses or warns, with its reasons
        return Path(str(outdir))


def under_base(base_dir: Path, container_path: str) -> Path:
    """Where a container path (/opt/ml/...) lies in a local tree; other paths are refused."""
    path = Path(container_path)
    if path.is_absolute() and path.parts[:3] == ("/", "opt", "ml") and ".." not in path.parts:
        return base_dir.joinpath(*path.parts[3:])
    raise UserError(f"container path {container_path!r} is not allowed: a path under /opt/ml")


def lay_out_processing(base_dir: Path, inputs: dict[str, Path], outputs: dict[str, Path], *,
                       local_paths: dict[str, str] | None = None, copy: bool = False) -> Path:
    """Each input (linked, or copied with `copy`) and output (linked to a local folder,
    created) at its container path, /opt/ml/processing/<name> unless `local_paths` names
    another, plus config/processingjobconfig.json as a processing job has."""
    where = {n: (local_paths or {}).get(n, f"/opt/ml/processing/{n}") for n in (*inputs, *outputs)}
    config = base_dir / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "processingjobconfig.json").write_text(json.dumps({
        "ProcessingInputs": [{"InputName": n, "S3Input": {"LocalPath": where[n]}} for n in inputs],
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": n, "S3Output": {"LocalPath": where[n]}} for n in outputs]},
    }), encoding="utf-8")
    for name, source in inputs.items():
        if not source.exists():
            raise UserError(f"input {name}: {source} does not exist")
        _link_or_copy(source, under_base(base_dir, where[name]), copy)
    for name, target in outputs.items():
        target.mkdir(parents=True, exist_ok=True)
        _link_or_copy(target, under_base(base_dir, where[name]))
    (base_dir / "output" / "message").unlink(missing_ok=True)
    return base_dir


def run_local_processing(base_dir: Path, inputs: dict[str, Path], outputs: dict[str, Path],
                         arguments: list[str], *, local_paths: dict[str, str] | None = None,
                         copy: bool = False, extra_env: dict | None = None) -> int:
    """Runs the image's entrypoint with the job's ContainerArguments, as a processing job."""
    lay_out_processing(base_dir, inputs, outputs, local_paths=local_paths, copy=copy)
    # SageMaker stops a processing job with SIGINT.
    return run_entrypoint(base_dir, arguments, forward_as=signal.SIGINT, extra_env=extra_env)


def processing_message(base_dir: Path) -> str | None:
    path = base_dir / "output" / "message"
    return path.read_text(encoding="utf-8") if path.exists() else None
