"""Training-job mode: the SageMaker contract mapped onto the training loop.

Reads <base>/input/config, resolves the dataset and the run folder, trains (resuming from
<base>/checkpoints after a spot restart), stops cleanly on SIGTERM, and leaves the model in
<base>/model. A failure leaves its reason in <base>/output/failure, written last.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Collection
from pathlib import Path

from sg2_container.errors import Stopped, UserError
from sg2_container.io.logs import configure_logging
from sg2_container.sagemaker import paths
from sg2_container.sagemaker.hyperparameters import read_hyperparameters
from sg2_container.sagemaker.jobs import EXIT_OK, run_job
from sg2_container.sagemaker.resources import (
    channel_dirs,
    master_port,
    pipe_mode_channels,
    read_host_config,
    wait_for_hosts,
)

log = logging.getLogger(__name__)

DATA_CHANNELS = ("train", "training")
DATA_SUFFIXES = (".zip",)


def find_dataset(channels: dict[str, Path], pipe_channels: Collection[str] = ()) -> Path:
    """The one dataset in the train/training channel: a zip, or the channel folder of images."""
    for name in DATA_CHANNELS:
        if name in pipe_channels and name not in channels:
            raise UserError(f"channel {name!r} uses Pipe input mode, which this image does not "
                            "read: give the channel File (or FastFile) mode, e.g. "
                            "TrainingInput(s3_data, input_mode='File')")
        if name not in channels:
            continue
        folder = channels[name]
        # Hidden files are not datasets: macOS leaves ._animeface.zip beside animeface.zip.
        zips = sorted(p for p in folder.iterdir()
                      if p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith("."))
        if len(zips) == 1:
            return zips[0]
        if len(zips) > 1:
            raise UserError(f"channel {name!r} holds {len(zips)} zips ({', '.join(p.name for p in zips[:5])}); "
                            f"name one with the 'data' hyperparameter")
        return folder
    raise UserError(f"no training data: add an input channel named 'train' (or 'training'), or "
                    f"set the 'data' hyperparameter; channels present: {sorted(channels) or 'none'}")


def _channel_file(channels: dict[str, Path], channel: str, what: str) -> Path | None:
    """The one weights file (.pth or .pt) of an input channel, if the job has that channel."""
    if channel not in channels:
        return None
    folder = channels[channel]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".pth", ".pt"))
    if len(files) != 1:
        raise UserError(f"channel {channel!r} must hold exactly one {what} file (.pth or .pt), "
                        f"found {len(files)}: {', '.join(p.name for p in files[:5]) or 'none'}")
    return files[0]


def find_detector(channels: dict[str, Path]) -> Path | None:
    """The metrics' detector file from the 'detector' channel, if the job has one."""
    from sg2_container.metrics.detector import CHANNEL

    return _channel_file(channels, CHANNEL, "detector")


def find_vgg16(channels: dict[str, Path]) -> Path | None:
    """The PPL metrics' VGG16 weights from the 'vgg16' channel, if the job has one."""
    from sg2_container.options.metric_specs import VGG16_CHANNEL

    return _channel_file(channels, VGG16_CHANNEL, "VGG16 weights")


def _refuse_uri(key: str, value: str, instead: str) -> None:
    """A path hyperparameter holding a URI: the job would take s3://b/x as the folder ./s3:/b/x."""
    if "://" in value:
        raise UserError(f"{key}={value!r} is not allowed: {key} is a path in the container; "
                        f"{instead}")


def resolve_options(values: dict[str, object]):
    """Hyperparameters -> TrainingOptions with the job's paths filled in."""
    from sg2_container.options import TrainingOptions

    values = dict(values)
    if values.get("outdir"):
        outdir_text = str(values["outdir"])
        _refuse_uri("outdir", outdir_text, "to keep checkpoints in S3, set the estimator's "
                    "checkpoint_s3_uri and leave outdir at /opt/ml/checkpoints, which SageMaker "
                    "syncs to it")
        if not os.path.isabs(outdir_text):
            raise UserError(f"outdir={outdir_text!r} is not allowed: a relative path is a folder "
                            "in the container's working directory, lost when the job ends; use "
                            "/opt/ml/checkpoints (synced to checkpoint_s3_uri)")
    if values.get("data"):
        _refuse_uri("data", str(values["data"]), "S3 data goes in an input channel "
                    "(fit(inputs={'train': 's3://...'})), which SageMaker copies to "
                    "/opt/ml/input/data/train; data can then be left out")
        data = paths.translate(str(values["data"]))
        if not data.exists():
            piped = [n for n in pipe_mode_channels() if n not in channel_dirs()]
            raise UserError(
                f"data={values['data']!r} does not exist in the container; channels present: "
                f"{sorted(channel_dirs()) or 'none'}"
                + (f"; channel(s) {', '.join(map(repr, piped))} use Pipe input mode, which "
                   "this image does not read: give them File (or FastFile) mode, e.g. "
                   "TrainingInput(s3_data, input_mode='File')" if piped else ""))
    else:
        data = find_dataset(channel_dirs(), pipe_mode_channels())
    values["data"] = str(data)
    # Lexically, symlinks not followed: a channel may be a link (the local stand-in links the
    # user's files in), and following it would call every such dataset "outside".
    input_dir = Path(os.path.abspath(paths.input_data_dir()))
    lexical = Path(os.path.abspath(data))
    if not (lexical == input_dir or input_dir in lexical.parents):
        log.warning("data=%s is outside the job's input channels (%s): it must already be in the "
                    "image; channels present: %s", values["data"], input_dir,
                    sorted(channel_dirs()) or "none")
    # Normalised first: /opt/ml/checkpoints/../model is the model folder, not a checkpoint one.
    outdir = paths.translate(os.path.normpath(values.get("outdir") or paths.checkpoints_dir()))
    if outdir.resolve() == paths.base_dir().resolve() or (
            paths.base_dir() / "input").resolve() in (outdir.resolve(), *outdir.resolve().parents):
        raise UserError(f"outdir={values.get('outdir')!r} is not allowed: use /opt/ml/checkpoints "
                        "(synced to checkpoint_s3_uri) or /opt/ml/model, not the job's own "
                        "config or input folders")
    checkpoints, model = paths.checkpoints_dir(), paths.model_dir()
    if not (outdir == checkpoints or checkpoints in outdir.parents):
        packed = outdir == model or model in outdir.parents
        log.warning("outdir %s is not under %s: checkpoints will not be synced to S3, so a spot "
                    "restart cannot resume%s", outdir, checkpoints,
                    "; every checkpoint kept (keep) is packed into model.tar.gz with the model"
                    if packed else "")
    values["outdir"] = str(outdir)
    for key in ("resume", "detector", "vgg16"):
        if isinstance(values.get(key), str) and values[key].startswith(paths.DEFAULT_BASE_DIR):
            values[key] = str(paths.translate(values[key]))
    # Decoded names (a tuple); training drops 'none' later, in TrainingOptions.
    metrics_asked = any(name.lower() != "none" for name in values.get("metrics") or ())
    for key, find in (("detector", find_detector), ("vgg16", find_vgg16)):
        if not values.get(key):
            try:
                found = find(channel_dirs())
            except UserError as error:  # an ambiguous channel matters only to the metrics
                if metrics_asked:
                    raise
                log.warning("%s; unused: this job computes no metrics", error)
                found = None
            if found is not None:
                values[key] = str(found)
    if "gpus" not in values:  # not setdefault: detect_gpus loads torch even when unused
        values["gpus"] = detect_gpus()
    return TrainingOptions(**values)


def detect_gpus() -> int:
    """One worker per GPU (rounded down to a power of two); 1 on a CPU instance."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 1
    return 1 << (max(count, 1).bit_length() - 1)


def run_training_job(args: list[str] | None = None) -> int:
    """The `train` mode; returns the exit code (see sagemaker/jobs.py). Never raises."""
    return run_job("train", _train, paths.failure_path(),
                   doing_on_stop="finishing the current step, saving a checkpoint")


def _train(stop: threading.Event) -> None:
    from sg2_container.data.dataset import check_batch_fits
    from sg2_container.sagemaker.model_export import export_model

    options = resolve_options(read_hyperparameters(paths.config_dir() / "hyperparameters.json"))
    check_batch_fits(options.data, options.batch, options.subset, options.mirror)
    hosts = read_host_config()
    # Imported after the checks above (launch loads torch, 2-3 s): a mistake there fails at once.
    from sg2_container.training.launch import Topology, run_training

    topology = Topology()
    if hosts.num_nodes > 1:
        if hosts.network_interface_name:
            os.environ.setdefault("NCCL_SOCKET_IFNAME", hosts.network_interface_name)
            os.environ.setdefault("GLOO_SOCKET_IFNAME", hosts.network_interface_name)
        wait_for_hosts(hosts.hosts)
        topology = Topology(num_nodes=hosts.num_nodes, node_rank=hosts.node_rank,
                            master_addr=hosts.master, master_port=master_port())
    if topology.node_rank == 0:  # found before training, not after it at the export
        _check_model_dir(paths.model_dir())
    log.info("training job on %s (node %d of %d): %s", hosts.current_host, topology.node_rank + 1,
             topology.num_nodes, dataclasses.asdict(options))
    result = run_training(options, stop_event=stop, topology=topology)
    if result is None:  # a node other than the first: its workers report nothing here
        if stop.is_set():
            raise Stopped("with the other nodes; the first node keeps the checkpoint")
        return
    if topology.node_rank != 0:
        return
    if result.stopped:
        raise Stopped(f"at kimg {result.cur_nimg / 1000:.3f}, with a checkpoint in "
                      f"{result.run_dir}; restarting the job continues it")
    export_model(result, paths.model_dir())


def _check_model_dir(model_dir: Path) -> None:
    """The model folder is a writable folder (made if missing)."""
    if model_dir.exists() and not model_dir.is_dir():
        raise UserError(f"{model_dir} is not a folder: the trained model is written there "
                        "(SageMaker uploads it as model.tar.gz)")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{model_dir}: cannot be created ({error.strerror}): the trained model "
                        "is written there") from None
    if not os.access(model_dir, os.W_OK):
        raise UserError(f"{model_dir} is not writable: the trained model is written there")


class JobFailed(Exception):
    """Raised to the sagemaker-training toolkit, which exits with `errno` and keeps our failure
    file (it writes its own only when none exists)."""

    def __init__(self, code: int, reason: str | None):
        super().__init__(reason or f"training job failed with exit code {code}")
        self.errno = code


def main() -> int:
    """Entry for the sagemaker-training toolkit's in-process module mode
    (SAGEMAKER_TRAINING_MODULE=sg2_container.sagemaker.job:main)."""
    configure_logging(stream=sys.stdout)
    code = run_training_job()
    if code != EXIT_OK:
        failure = paths.failure_path()
        raise JobFailed(code, failure.read_text(encoding="utf-8") if failure.exists() else None)
    return code
