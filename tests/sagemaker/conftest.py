"""A fake /opt/ml per test, and the real entrypoint run as a subprocess against it."""
import json
import os
import subprocess
import sys
import time

import pytest

from sg2_container.data.synthetic import write_synthetic_dataset

# The article's job, made small enough for a CPU test: tiny channels, 16 px, a few steps.
ARTICLE = {"data": "/opt/ml/input/data/train/animeface.zip", "gpus": 1, "augpipe": "bg",
           "gamma": 10, "cfg": "paper256", "mirror": 1, "snap": 10, "kimg": 0.008,
           "metrics": "none", "outdir": "/opt/ml/checkpoints"}
SMALL = {"batch": 4, "cbase": 128, "cmax": 16, "map": 2, "workers": 0, "kimg-per-tick": 0.008}


@pytest.fixture(scope="session")
def animeface_zip(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("channel") / "animeface.zip", count=32,
                                   resolution=16)


class FakeOptMl:
    def __init__(self, base, dataset):
        self.base = base
        (base / "input" / "config").mkdir(parents=True)
        (base / "input" / "data" / "train").mkdir(parents=True)
        (base / "input" / "data" / "train" / "animeface.zip").symlink_to(dataset)
        for folder in ("checkpoints", "model", "output"):
            (base / folder).mkdir()
        self.resources(["algo-1"], "algo-1")
        (base / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
            {"train": {"TrainingInputMode": "File", "ContentType": "application/x-image",
                       "S3DistributionType": "FullyReplicated"}}))

    def hyperparameters(self, values: dict, encode=json.dumps):
        (self.base / "input" / "config" / "hyperparameters.json").write_text(
            json.dumps({k: encode(v) for k, v in values.items()}))

    def resources(self, hosts, current):
        (self.base / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
            {"current_host": current, "hosts": hosts, "network_interface_name": "lo"}))

    def env(self, **extra):
        return dict(os.environ, SAGEMAKER_BASE_DIR=str(self.base), OMP_NUM_THREADS="1", **extra)

    def start(self, *args, **env):
        return subprocess.Popen([sys.executable, "-m", "sg2_container.sagemaker.entrypoint", *args],
                                env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def run(self, *args, timeout=300, **env):
        process = self.start(*args, **env)
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out

    @property
    def failure(self):
        path = self.base / "output" / "failure"
        return path.read_text() if path.exists() else None

    def checkpoints(self):
        return sorted(p.name for p in (self.base / "checkpoints").glob("checkpoint-*.pt"))

    def wait_for(self, predicate, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False


@pytest.fixture
def opt_ml(tmp_path, animeface_zip):
    return FakeOptMl(tmp_path / "opt_ml", animeface_zip)
