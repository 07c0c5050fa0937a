"""Networks <-> plain data, shared by our model files (files.py) and the reference pickles
(reference_pickle.py): the loaded bundle, constructor kwargs as JSON data, state dicts checked
tensor by tensor. Both file formats build on this module; neither imports the other's loader.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from sg2_container.errors import UserError, kind_of


@dataclasses.dataclass
class ModelBundle:
    """Networks rebuilt from a model file, in eval mode on `device`; G and D may be None."""

    G_ema: Any
    G: Any = None
    D: Any = None
    metadata: dict = dataclasses.field(default_factory=dict)
    format_version: int | None = None  # None for a reference pickle
    source_kind: str = "sg2-model"  # or 'reference-pickle'


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


def build_network(part: str, kwargs: dict, where: str, state_dict: dict | None = None):
    """Builds our Generator (for G / G_ema) or Discriminator (for D) from reference kwargs,
    after checking them against models.bounds; with `state_dict`, checks on the meta device
    (no memory) that the file's tensors fit before building, then loads them: kwargs within
    every bound can still describe gigabytes of network, which a small file must not make us
    allocate."""
    import torch

    from sg2_container.models import bounds
    from sg2_container.models.networks import Discriminator, Generator

    bounds.check_network_kwargs(part, kwargs, where)

    cls = Discriminator if part == "D" else Generator
    try:
        if state_dict is not None:
            with torch.device("meta"):
                shapes = cls(**kwargs).state_dict()
            check_state_fits(shapes, state_dict, f"{where}: {part}")
        net = cls(**kwargs)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise UserError(
            f"{where}: {part}: cannot build {cls.__name__} from kwargs {kwargs!r}: {exc}"
        ) from exc
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=True)
    return net


def load_state_checked(module, state_dict: dict, where: str) -> None:
    """`load_state_dict(strict=True)`, but reports every missing, extra or ill-shaped tensor
    in one UserError that names the file and part (`where`, e.g. 'model.pt: G_ema')."""
    check_state_fits(module.state_dict(), state_dict, where)
    module.load_state_dict(state_dict, strict=True)


def check_state_fits(expected: dict, state_dict: dict, where: str) -> None:
    """Every tensor of `expected` (a state dict, on any device, meta included) is in
    `state_dict` with its shape, and nothing else is, and every value fits its entry
    (_tensor_problem): else one UserError listing them."""
    import torch

    problems = []
    for name, value in state_dict.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            problems.append(f"entry {name!r} is {kind_of(value)}, not a tensor")
        elif name not in expected:
            problems.append(f"unexpected tensor '{name}' (the network has no such entry)")
        else:
            problem = _tensor_problem(name, value, expected[name])
            if problem:
                problems.append(problem)
    problems += [f"missing tensor '{name}'" for name in expected if name not in state_dict]
    if problems:
        shown = "; ".join(problems[:8])
        more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise UserError(f"{where}: {shown}{more}")


def _tensor_problem(name: str, value, expected) -> str | None:
    """What keeps a file's tensor from its network entry, or None. Where the network holds
    floats (every parameter and buffer of ours and the reference's), the value must be real
    floating point and finite: load_state_dict would cast integers silently, drop complex
    parts, and NaN or inf would render garbage. Entries the network keeps in another dtype
    (none today, e.g. BatchNorm's int64 counter) are checked for shape only."""
    import torch

    if tuple(value.shape) != tuple(expected.shape):
        return (f"tensor '{name}' has shape {list(value.shape)} but the network expects "
                f"{list(expected.shape)}")
    if not expected.is_floating_point():
        return None
    if not value.is_floating_point():  # integer, bool, complex, quantized
        return (f"tensor '{name}' is {_dtype_name(value.dtype)} but the network expects real "
                f"floating point ({_dtype_name(expected.dtype)})")
    bad = value.numel() - int(torch.isfinite(value).sum())
    if bad:
        return f"tensor '{name}' has {bad} non-finite values (NaN or inf)"
    return None


def _dtype_name(dtype) -> str:
    """'int64' for torch.int64: the name a user sees in numpy and torch alike."""
    return str(dtype).removeprefix("torch.")


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
