"""Paths of the SageMaker container contract, resolved when called (never at import).

`SAGEMAKER_BASE_DIR` replaces /opt/ml, so tests and local runs can use a folder of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BASE_DIR = "/opt/ml"
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"


def base_dir() -> Path:
    """$SAGEMAKER_BASE_DIR, else /opt/ml."""
    return Path(os.environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)


def processing_dir() -> Path:
    """Where processing jobs mount their inputs and outputs (`ProcessingInput/Output` paths)."""
    return base_dir() / "processing"


def output_dir() -> Path:
    return base_dir() / "output"


def message_path() -> Path:
    """A processing job's failure text: SageMaker shows its first 1 KB as the failure reason."""
    return output_dir() / "message"


def failure_path() -> Path:
    """A training job's failure text: its first 1024 characters become the FailureReason."""
    return output_dir() / "failure"


def config_dir() -> Path:
    """input/config: hyperparameters.json, resourceconfig.json, inputdataconfig.json."""
    return base_dir() / "input" / "config"


def input_data_dir() -> Path:
    """input/data/<channel>: the training job's input channels."""
    return base_dir() / "input" / "data"


def checkpoints_dir() -> Path:
    """Synced with the job's checkpoint S3 URI (and pre-filled after a spot restart)."""
    return base_dir() / "checkpoints"


def model_dir() -> Path:
    """Tarred into model.tar.gz after the container exits."""
    return base_dir() / "model"


def translate(path: str) -> Path:
    """A path the user wrote for /opt/ml, moved under the actual base dir (local runs)."""
    if path == DEFAULT_BASE_DIR or path.startswith(DEFAULT_BASE_DIR + "/"):
        return base_dir() / path[len(DEFAULT_BASE_DIR) :].lstrip("/")
    return Path(path)
