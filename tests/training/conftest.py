"""Tiny, fast training configurations on a procedural dataset."""
import dataclasses

import pytest

from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.options import TrainingOptions


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "shapes16.zip", count=32,
                                   resolution=16)


@pytest.fixture
def tiny_options(tiny_dataset, tmp_path):
    """A run of 6 steps of 4 images: Greg runs at steps 0 and 4, Dreg at step 0."""

    def make(**overrides):
        values = dict(data=str(tiny_dataset), outdir=str(tmp_path / "run"), cfg="paper256",
                      kimg=0.024, batch=4, cbase=128, cmax=16, map=2, workers=0, snap=2,
                      kimg_per_tick=0.008, aug="fixed", p=0.4, augpipe="bgc", mirror=True,
                      gamma=1.0, seed=7, device="cpu")
        values.update(overrides)
        return TrainingOptions(**values)

    return make


class StopAfter:
    """A stop event that is set from the `steps`-th check on (the loop checks once per step)."""

    def __init__(self, steps):
        self.remaining = steps

    def is_set(self):
        self.remaining -= 1
        return self.remaining <= 0

    def set(self):
        self.remaining = 0


def replace(options, **changes):
    return dataclasses.replace(options, **changes)


def folder_bytes(folder) -> dict[str, bytes]:
    """Every file under `folder` by relative path: to assert a folder was left byte-identical."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
