"""Our model file (`.pt`): the networks' weights and constructor kwargs, readable with
`torch.load(path, weights_only=True)`, so opening a model never runs code from it.

Layout (a plain dict, see docs/model-files.md):
`format` ('sg2-model'), `format_version` (int), `G_ema` (state dict, always present), `G`, `D`
(state dicts, optional), `G_kwargs`, `D_kwargs` (constructor kwargs; G and G_ema share
`G_kwargs`), `metadata` (free-form JSON data: training options, kimg, source) and `created_by`.
`load_model` also reads the reference's network pickles, by content, through
`sg2_container.models.reference_pickle`.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

from sg2_container import __version__
from sg2_container.errors import UserError, kind_of
from sg2_container.io.atomic import write_atomically
from sg2_container.models.state import (
    ModelBundle,
    build_network,
    cpu_state_dict,
    network_kwargs,
    plain_json,
)

log = logging.getLogger(__name__)

FORMAT_MARKER = "sg2-model"
FORMAT_VERSION = 1
# A training checkpoint (the run's whole state, training.checkpoint writes it) is a torch file
# too, but no model file: readers of model files tell it by these.
CHECKPOINT_MARKER = "sg2-checkpoint"
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d{12})\.pt$")
NETWORK_PARTS = ("G_ema", "G", "D")

# Upgrades, applied in order: _MIGRATIONS[v] turns a version-v payload into version v + 1.
_MIGRATIONS: dict[int, Callable[[dict], dict]] = {}

_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's pre-1.6 (non-zip) format starts with a pickled magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


# ---------------------------------------------------------------------------------------------
# Sniffing


def sniff_kind(path: str | os.PathLike) -> str:
    """Says what a file holds by its first bytes: 'torch' (our .pt or any torch.save file),
    'pickle' (a plain pickle such as a reference snapshot); raises UserError otherwise."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: is not a file")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if not head:
        raise UserError(f"{path.name}: the file is empty (an interrupted copy or download?)")
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    # Pickle protocols 2..5 start with the PROTO opcode; the reference writes protocol 3 or 4.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    raise UserError(
        f"{path.name}: not a model file: it is neither an sg2 model (.pt, a zip archive) nor a "
        f"network pickle (.pkl); it starts with bytes {head[:8]!r}"
    )


# ---------------------------------------------------------------------------------------------
# Save


def save_model(path, *, G_ema, G=None, D=None, metadata: dict | None = None) -> Path:
    """Writes our model file atomically. G and G_ema must share constructor kwargs (G_ema is
    an average of G's weights); `metadata` must be JSON data."""
    g_kwargs = network_kwargs(G_ema, "G_ema")
    if G is not None and network_kwargs(G, "G") != g_kwargs:
        raise ValueError("G and G_ema were built with different kwargs; cannot share G_kwargs")
    payload: dict[str, Any] = {
        "format": FORMAT_MARKER,
        "format_version": FORMAT_VERSION,
        "created_by": f"sg2-container {__version__}",
        "G_kwargs": g_kwargs,
        "G_ema": cpu_state_dict(G_ema),
    }
    if G is not None:
        payload["G"] = cpu_state_dict(G)
    if D is not None:
        payload["D_kwargs"] = network_kwargs(D, "D")
        payload["D"] = cpu_state_dict(D)
    payload["metadata"] = json.loads(json.dumps(plain_json(metadata or {}, "metadata")))
    return save_payload(path, payload)


def save_payload(path, payload: dict) -> Path:
    """Writes an already-assembled model payload atomically with torch.save (zip format)."""
    import torch

    path = write_atomically(path, lambda f: torch.save(payload, f))
    log.info("wrote %s (%s)", path, ", ".join(p for p in NETWORK_PARTS if p in payload))
    return path


# ---------------------------------------------------------------------------------------------
# Load


def read_model_payload(path) -> dict:
    """Reads and validates our model file, upgraded to FORMAT_VERSION; tensors stay on CPU."""
    import torch

    path = Path(path)
    if sniff_kind(path) != "torch":
        raise UserError(
            f"{path.name}: this is a pickle, not an sg2 model file; "
            "convert it first with `sg2 convert`"
        )
    check_zip_crcs(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = refused_objects(exc)
        raise UserError(
            f"{path.name}: cannot be read safely: it contains objects we refuse to load"
            + (f" ({what})" if what else "") + "; a model file holds only tensors and plain values"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise UserError(f"{path.name}: the file is truncated or corrupt ({exc})") from exc
    return check_payload(payload, path.name)


def refused_objects(error: pickle.UnpicklingError) -> str:
    """What torch's weights_only unpickler refused ('posix.system'), without its advice to
    load the file with weights_only=False or to allow the class: we never load untrusted
    pickles."""
    text = str(error)
    names = re.findall(r"GLOBAL ([\w.]+)", text)
    if names:
        return ", ".join(dict.fromkeys(names))
    detail = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    return detail.group(1).strip()[:160] if detail else ""


def check_zip_crcs(path: Path) -> None:
    """torch.load does not verify the zip's CRC-32s, so a flipped byte inside a tensor would
    load silently; this re-reads every member once and compares."""
    if not zipfile.is_zipfile(path):
        return  # legacy torch.save format, or a damaged central directory torch.load reports
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise UserError(f"{path.name}: the file is truncated or corrupt ({exc})") from exc
    if bad is not None:
        raise UserError(f"{path.name}: the file is truncated or corrupt (bad checksum in {bad})")


def check_payload(payload: Any, name: str) -> dict:
    """Validates the marker, version and parts of a loaded payload and applies migrations."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_MARKER:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        if found == CHECKPOINT_MARKER:
            raise UserError(f"{name}: a training checkpoint (the run's whole state), not a model "
                            "file: use network-final.pt or a network-snapshot-*.pt from the same "
                            "run folder")
        raise UserError(
            f"{name}: not an sg2 model file (expected 'format': '{FORMAT_MARKER}', "
            f"found {found!r})"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{name}: unknown format_version {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{name}: format_version {version} was written by a newer sg2-container; this one "
            f"reads versions up to {FORMAT_VERSION}: upgrade sg2-container"
        )
    while version < FORMAT_VERSION:
        if version not in _MIGRATIONS:
            raise UserError(f"{name}: no upgrade path from format_version {version}")
        payload = _MIGRATIONS[version](payload)
        version += 1
        payload["format_version"] = version
    if "G_ema" not in payload or "G_kwargs" not in payload:
        raise UserError(f"{name}: the model file has no G_ema or no G_kwargs")
    if "D" in payload and "D_kwargs" not in payload:
        raise UserError(f"{name}: the model file has D but no D_kwargs")
    for part in NETWORK_PARTS:
        if part in payload and not isinstance(payload[part], dict):
            raise UserError(f"{name}: {part} is {kind_of(payload[part])}, not a state dict")
    for key in ("G_kwargs", "D_kwargs", "metadata"):
        if key in payload and not isinstance(payload[key], dict):
            raise UserError(f"{name}: {key} is {kind_of(payload[key])}, not a dict")
    return payload


def networks_from_payload(payload: dict, name: str, device="cpu") -> ModelBundle:
    """Rebuilds the networks a validated payload describes and loads their weights."""
    nets = {}
    for part in NETWORK_PARTS:
        if part not in payload:
            continue
        kwargs = payload["D_kwargs" if part == "D" else "G_kwargs"]
        net = build_network(part, kwargs, name, payload[part])
        nets[part] = net.eval().to(device)
    return ModelBundle(
        G_ema=nets["G_ema"],
        G=nets.get("G"),
        D=nets.get("D"),
        metadata=dict(payload.get("metadata") or {}),
        format_version=payload["format_version"],
        source_kind="sg2-model",
    )


def load_model(path, device="cpu") -> ModelBundle:
    """Loads our model file or a reference network pickle (chosen by the file's first bytes)."""
    path = Path(path)
    try:
        if sniff_kind(path) == "pickle":
            from sg2_container.models import reference_pickle

            return reference_pickle.load_reference_pickle(path, device=device)
        bundle = networks_from_payload(read_model_payload(path), path.name, device)
    except RecursionError:  # kwargs or modules nested thousands deep, or a cycle: not a model
        raise UserError(f"{path.name}: its contents are nested too deeply (or refer to "
                        "themselves) to be a model file") from None
    log.info("loaded %s (format_version %s)", path, bundle.format_version)
    return bundle
