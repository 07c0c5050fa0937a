"""Upper bounds on network sizes, checked before any network is built from a file or dataset.

A model file or pickle of a few bytes can ask for a network of any size (`img_resolution:
1048576`), and a dataset header or label file can imply one; building it would allocate
absurd memory before any shape check. Every size read from outside passes through here first.
The sizes themselves live in options/sizes.py, so that the training options refuse the same
values at start. Torch-free, so the dataset code can use it in data-loader workers. Listed in docs/model-files.md.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from sg2_container.errors import UserError, kind_of
from sg2_container.options.sizes import (  # noqa: F401  (the sizes, defined once for all rooms)
    MAX_CHANNEL_BASE,
    MAX_CHANNEL_MAX,
    MAX_CLASSES,
    MAX_FP16_RES,
    MAX_FREEZE_LAYERS,
    MAX_IMG_CHANNELS,
    MAX_LATENT_DIM,
    MAX_MAPPING_LAYERS,
    MAX_MBSTD_CHANNELS,
    MAX_MBSTD_GROUP,
    MAX_RESOLUTION,
)


@dataclasses.dataclass(frozen=True)
class Bound:
    """An integer in [low, high] (a power of two if `power_of_two`); None when `optional`."""

    low: int
    high: int
    power_of_two: bool = False
    optional: bool = False

    def describe(self) -> str:
        kind = "a power of two" if self.power_of_two else "an integer"
        text = f"{kind} from {self.low} to {self.high}"
        return f"{text} or null" if self.optional else text


_MAPPING = {
    "num_layers": Bound(1, MAX_MAPPING_LAYERS),
    "embed_features": Bound(1, MAX_LATENT_DIM, optional=True),
    "layer_features": Bound(1, MAX_LATENT_DIM, optional=True),
}
_CHANNELS = {
    "channel_base": Bound(1, MAX_CHANNEL_BASE),
    "channel_max": Bound(1, MAX_CHANNEL_MAX),
    "num_fp16_res": Bound(0, MAX_FP16_RES),
}
_COMMON = {
    "c_dim": Bound(0, MAX_CLASSES),
    "img_resolution": Bound(4, MAX_RESOLUTION, power_of_two=True),
    "img_channels": Bound(1, MAX_IMG_CHANNELS),
}

# part -> dotted kwarg name -> bound. Kwargs not listed take the networks' (sane) defaults or
# are not sizes; the networks refuse unknown names.
NETWORK_BOUNDS: dict[str, dict[str, Bound]] = {
    "G": {
        **_COMMON,
        "z_dim": Bound(0, MAX_LATENT_DIM),
        "w_dim": Bound(1, MAX_LATENT_DIM),
        **{f"mapping_kwargs.{k}": b for k, b in _MAPPING.items()},
        **{f"synthesis_kwargs.{k}": b for k, b in _CHANNELS.items()},
    },
    "D": {
        **_COMMON,
        **_CHANNELS,
        "cmap_dim": Bound(1, MAX_LATENT_DIM, optional=True),
        **{f"mapping_kwargs.{k}": b for k, b in _MAPPING.items()},
        "epilogue_kwargs.mbstd_group_size": Bound(1, MAX_MBSTD_GROUP, optional=True),
        "epilogue_kwargs.mbstd_num_channels": Bound(0, MAX_MBSTD_CHANNELS),
        "block_kwargs.freeze_layers": Bound(0, MAX_FREEZE_LAYERS),
    },
}
NETWORK_BOUNDS["G_ema"] = NETWORK_BOUNDS["G"]
NESTED_KWARGS = ("mapping_kwargs", "synthesis_kwargs", "block_kwargs", "epilogue_kwargs")
CLAMP_KWARGS = ("conv_clamp", "synthesis_kwargs.conv_clamp")


def _lookup(kwargs: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = kwargs
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def check_value(name: str, value: Any, bound: Bound, where: str) -> None:
    """Raises UserError naming `name`, the value and the allowed range unless it fits."""
    if value is None and bound.optional:
        return
    fits = (isinstance(value, int) and not isinstance(value, bool)
            and bound.low <= value <= bound.high
            and (not bound.power_of_two or value & (value - 1) == 0))
    if not fits:
        raise UserError(f"{where}: {name} = {value!r} is out of bounds: expected "
                        f"{bound.describe()}")


def check_network_kwargs(part: str, kwargs: Any, where: str) -> None:
    """Checks a network's constructor kwargs (G, G_ema or D) against NETWORK_BOUNDS."""
    if not isinstance(kwargs, dict):
        raise UserError(f"{where}: {part} kwargs are {kind_of(kwargs)}, not a dict")
    for key in NESTED_KWARGS:
        if key in kwargs and kwargs[key] is not None and not isinstance(kwargs[key], dict):
            raise UserError(f"{where}: {part} {key} is {kind_of(kwargs[key])}, "
                            "not a dict")
    for name, bound in NETWORK_BOUNDS[part].items():
        present, value = _lookup(kwargs, name)
        if present:
            check_value(f"{part} {name}", value, bound, where)
    base_name = "channel_base" if part == "D" else "synthesis_kwargs.channel_base"
    has_base, base = _lookup(kwargs, base_name)
    has_res, resolution = _lookup(kwargs, "img_resolution")
    if has_base and has_res and base < resolution:  # both checked above: ints in range
        raise UserError(f"{where}: {part} {base_name} = {base} gives the {resolution} px blocks "
                        f"no channels (channel_base // resolution); expected at least "
                        f"{resolution}")
    for name in CLAMP_KWARGS:
        present, value = _lookup(kwargs, name)
        if present and value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value > 0):
            raise UserError(f"{where}: {part} {name} = {value!r} is out of bounds: expected a "
                            "finite number > 0 or null")
