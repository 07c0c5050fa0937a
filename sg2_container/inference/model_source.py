"""Where an inference run finds its generator (models/source.py locates the file: a model
file, a reference pickle, a model.tar.gz or a folder of these), loaded on its device.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from sg2_container.models.source import located_model

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedGenerator:
    """G_ema on its device, and where it came from (for logs and manifests)."""

    G: object
    path: Path  # the model file itself (inside the archive, for a model.tar.gz)
    source: Path  # what the user named
    source_kind: str  # 'sg2-model' or 'reference-pickle'

    def describe(self) -> str:
        inside = "" if self.path == self.source else f" ({self.path.name} inside)"
        return f"{self.source}{inside}, {self.source_kind}"


def load_generator(source: str | os.PathLike, device="cpu") -> LoadedGenerator:
    """G_ema from a model file, a reference pickle, a model.tar.gz or a folder of these."""
    from sg2_container.models.files import load_model

    with located_model(source) as (path, shown):
        bundle = load_model(path, device=device)
    G = bundle.G_ema.eval().requires_grad_(False)
    loaded = LoadedGenerator(G=G, path=shown, source=Path(source),
                             source_kind=bundle.source_kind)
    log.info("generator: %s; %dx%d, %d channel(s), %s", loaded.describe(), G.img_resolution,
             G.img_resolution, G.img_channels,
             f"{G.c_dim} classes" if G.c_dim else "unconditional")
    return loaded
