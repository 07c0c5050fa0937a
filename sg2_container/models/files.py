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

import dataclasses
import json
import logging
import os
import pickle
import secrets
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from sg2_container import __version__
from sg2_container.errors import UserError

log = logging.getLogger(__name__)

FORMAT_MARKER = "sg2-model"
FORMAT_VERSION = 1
NETWORK_PARTS = ("G_ema", "G", "D")

# Upgrades, applied in order: _MIGRATIONS[v] turns a version-v payload into version v + 1.
_MIGRATIONS: dict[int, Callable[[dict], dict]] = {}

_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's pre-1.6 (non-zip) format starts with a pickled magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


@dataclasses.dataclass
class ModelBundle:
    """Networks rebuilt from a model file, in eval mode on `device`; G and D may be None."""

    G_ema: Any
    G: Any = None
    D: Any = None
    metadata: dict = dataclasses.field(default_factory=dict)
    format_version: int | None = FORMAT_VERSION  # None for a reference pickle
    source_kind: str = "sg2-model"  # or 'reference-pickle'


# ---------------------------------------------------------------------------------------------
# Sniffing and atomic writes


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


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Writes through `write(f)` into a hidden temporary file next to `path`, fsyncs it, then
    renames it over `path`, so readers see either the old file or the complete new one."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: Path) -> None:
    """Makes the rename durable; not every platform lets one open a directory."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------------------------
# State dicts and networks


def plain_json(value: Any, where: str) -> Any:
    """Returns `value` as plain JSON data (dict subclasses -> dict, tuples -> list, numpy
    scalars -> numbers); raises UserError naming `where` for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"{where}: key {key!r} is not a string")
            out[key] = plain_json(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    import numpy as np

    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return plain_json(value.item(), where)
    raise UserError(f"{where}: {type(value).__name__} value {value!r} is not plain data")


def build_network(part: str, kwargs: dict, where: str):
    """Builds our Generator (for G / G_ema) or Discriminator (for D) from reference kwargs,
    after checking them against models.bounds (a tiny file must not allocate absurd memory)."""
    from sg2_container.models import bounds
    from sg2_container.models.networks import Discriminator, Generator

    bounds.check_network_kwargs(part, kwargs, where)

    cls = Discriminator if part == "D" else Generator
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise UserError(
            f"{where}: {part}: cannot build {cls.__name__} from kwargs {kwargs!r}: {exc}"
        ) from exc


def load_state_checked(module, state_dict: dict, where: str) -> None:
    """`load_state_dict(strict=True)`, but reports every missing, extra or ill-shaped tensor
    in one UserError that names the file and part (`where`, e.g. 'model.pt: G_ema')."""
    import torch

    expected = module.state_dict()
    problems = []
    for name, value in state_dict.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            problems.append(f"entry {name!r} is a {type(value).__name__}, not a tensor")
        elif name not in expected:
            problems.append(f"unexpected tensor '{name}' (the network has no such entry)")
        elif tuple(value.shape) != tuple(expected[name].shape):
            problems.append(
                f"tensor '{name}' has shape {list(value.shape)} but the network expects "
                f"{list(expected[name].shape)}"
            )
    problems += [f"missing tensor '{name}'" for name in expected if name not in state_dict]
    if problems:
        shown = "; ".join(problems[:8])
        more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise UserError(f"{where}: {shown}{more}")
    module.load_state_dict(state_dict, strict=True)


def cpu_state_dict(module, float32: bool = False) -> dict:
    """The module's state dict as detached, contiguous CPU tensors (optionally float32)."""
    out = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if float32 and tensor.is_floating_point():
            tensor = tensor.float()
        out[name] = tensor.contiguous().clone()
    return out


def network_kwargs(module, part: str) -> dict:
    """The constructor kwargs a network recorded (`init_kwargs`), as plain JSON data."""
    kwargs = getattr(module, "init_kwargs", None)
    if not isinstance(kwargs, dict):
        raise TypeError(f"{part} ({type(module).__name__}) has no init_kwargs dict")
    return plain_json(kwargs, f"{part}.init_kwargs")


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path.name}: cannot be read safely: it holds objects a model file never needs "
            f"({first})"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise UserError(f"{path.name}: the file is truncated or corrupt ({exc})") from exc
    return check_payload(payload, path.name)


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
            raise UserError(f"{name}: {part} is a {type(payload[part]).__name__}, not a state dict")
    for key in ("G_kwargs", "D_kwargs", "metadata"):
        if key in payload and not isinstance(payload[key], dict):
            raise UserError(f"{name}: {key} is a {type(payload[key]).__name__}, not a dict")
    return payload


def networks_from_payload(payload: dict, name: str, device="cpu") -> ModelBundle:
    """Rebuilds the networks a validated payload describes and loads their weights."""
    nets = {}
    for part in NETWORK_PARTS:
        if part not in payload:
            continue
        kwargs = payload["D_kwargs" if part == "D" else "G_kwargs"]
        net = build_network(part, kwargs, name)
        load_state_checked(net, payload[part], f"{name}: {part}")
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
    if sniff_kind(path) == "pickle":
        from sg2_container.models import reference_pickle

        return reference_pickle.load_reference_pickle(path, device=device)
    bundle = networks_from_payload(read_model_payload(path), path.name, device)
    log.info("loaded %s (format_version %s)", path, bundle.format_version)
    return bundle
