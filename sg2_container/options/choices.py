"""Named choices that several rooms share: the augment-pipe presets (which transforms each one
switches on) and the noise modes of the synthesis network. Kept torch-free here so the option
schema and the CLI can list them without importing the rooms that use them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
_BLIT, _GEOM = GEOMETRIC[:3], GEOMETRIC[3:]


def _switches(*groups: Sequence[str]) -> Mapping[str, int]:
    return MappingProxyType({name: 1 for group in groups for name in group})


# --augpipe presets: preset name -> the AugmentPipe switches it turns on (the reference's table).
AUGPIPE_PRESETS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "blit": _switches(_BLIT),
    "geom": _switches(_GEOM),
    "color": _switches(COLOR),
    "filter": _switches(["imgfilter"]),
    "noise": _switches(["noise"]),
    "cutout": _switches(["cutout"]),
    "bg": _switches(_BLIT, _GEOM),
    "bgc": _switches(_BLIT, _GEOM, COLOR),
    "bgcf": _switches(_BLIT, _GEOM, COLOR, ["imgfilter"]),
    "bgcfn": _switches(_BLIT, _GEOM, COLOR, ["imgfilter", "noise"]),
    "bgcfnc": _switches(_BLIT, _GEOM, COLOR, ["imgfilter", "noise", "cutout"]),
})
AUGPIPE_NAMES = tuple(AUGPIPE_PRESETS)
# Presets that include the image filter, which needs images larger than 21 pixels.
FILTER_AUGPIPES = tuple(name for name, switches in AUGPIPE_PRESETS.items() if "imgfilter" in switches)

# Per-pixel noise of the synthesis network: fresh draws, the stored maps, or none.
NOISE_MODES = ("random", "const", "none")
