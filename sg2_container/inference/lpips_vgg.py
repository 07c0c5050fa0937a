"""The LPIPS (VGG16, v0.1) image distance the projector minimises, built without any download.

Two ingredients, from two places:
- the backbone: torchvision's VGG16 convolutional layers, with ImageNet weights from torchvision's
  own file (`vgg16-397923af.pth`, which the user supplies or the image ships); the classifier
  part of that file is not used;
- the LPIPS linear heads (one non-negative weight per channel of five VGG layers), read from the
  file the `lpips` package ships inside its wheel. lpips' own network classes are not used: they
  ask torchvision for pretrained weights, which downloads.

Both files are read with `torch.load(weights_only=True)`. `features(images)` returns one vector
per image such that the squared Euclidean distance of two vectors is their LPIPS distance, so a
target's features are computed once and every optimisation step compares against them.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from sg2_container.errors import UserError, kind_of
from sg2_container.inference.project_options import VGG16_ENV, VGG16_FILE_NAME, VGG16_URL

log = logging.getLogger(__name__)

PROJECTION = "the projection"


def rehearsal_warning(purpose: str = PROJECTION) -> str:
    return (f"rehearsal: the distance network is randomly initialised; {purpose} is not "
            f"meaningful (supply the VGG16 ImageNet weights for a real one)")


REHEARSAL_WARNING = rehearsal_warning()

# torchvision's VGG16 ("configuration D") feature layers; LPIPS taps the ReLU after the last conv
# of each of the five stages (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS v0.1 input normalisation, applied to images in [-1, 1], per RGB channel.
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_NORM_EPS = 1e-10
MAX_SIDE = 256  # larger images are area-downsampled to this before the distance


def _vgg16_feature_layers() -> torch.nn.Sequential:
    """torchvision's VGG16 `features` up to relu5_3 (the final max-pool is never used).

    Built with torchvision's own layer builder, so the indices (and hence the state-dict keys
    `features.N.weight`) are torchvision's.
    """
    from torchvision.models.vgg import make_layers

    return make_layers(list(_VGG16_LAYOUT), batch_norm=False)


def _lpips_heads_file() -> Path:
    """vgg.pth of the installed lpips package, found without importing the package."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the 'lpips' package is not installed: it ships the LPIPS linear heads "
                        "the projection distance needs (pip install lpips)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "v0.1" / "vgg.pth"
        if path.is_file():
            return path
    raise UserError("the installed 'lpips' package has no weights/v0.1/vgg.pth; reinstall it "
                    "(pip install --force-reinstall lpips)")


def _load_heads() -> list[torch.Tensor]:
    path = _lpips_heads_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    heads = []
    for idx, channels in enumerate(_TAP_CHANNELS):
        weight = state.get(f"lin{idx}.model.1.weight")
        if not isinstance(weight, torch.Tensor) or weight.numel() != channels:
            raise UserError(f"{path}: lin{idx} is not a [1, {channels}, 1, 1] tensor; the lpips "
                            f"package's weights look damaged (reinstall lpips)")
        heads.append(weight.reshape(channels).float())
    return heads


def missing_weights_message(purpose: str = PROJECTION,
                            rehearsal_flag: str | None = "--allow-random-vgg16",
                            other_ways: str | None = None) -> str:
    """What to supply when no VGG16 file is configured (one text for every entry point);
    `rehearsal_flag`: the entry point's switch to a random network, if it has one;
    `other_ways`: how else the entry point takes the file (a hyperparameter, a channel)."""
    text = (f"{purpose} needs torchvision's VGG16 ImageNet weights ({VGG16_FILE_NAME}, "
            f"528 MB) and nothing is downloaded at run time: download {VGG16_URL} once and pass "
            f"it with --vgg16 FILE{f', {other_ways},' if other_ways else ''} or set "
            f"{VGG16_ENV}=FILE; the container image ships it")
    if rehearsal_flag:
        text += f". {rehearsal_flag} runs a rehearsal with a random distance network instead"
    return text


def resolve_weights_path(vgg16: str | os.PathLike | None) -> Path | None:
    """The VGG16 weights file to use: the argument, else $SG2_VGG16_WEIGHTS, else None."""
    if vgg16 is not None and str(vgg16) != "":
        return Path(vgg16)
    env = os.environ.get(VGG16_ENV, "").strip()
    return Path(env) if env else None


def check_weights_file(path: Path, missing: str) -> None:
    """The VGG16 file given is a file: else a UserError naming it, then `missing` (what to
    supply). Also a dry run's check, without reading it."""
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise UserError(f"VGG16 weights file {path} {what}; {missing}")


def _read_backbone_state(path: Path, missing: str) -> dict[str, torch.Tensor]:
    """Conv weights from torchvision's VGG16 file (full model or features-only state dict)."""
    check_weights_file(path, missing)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's text advises loading it unsafely: not here
        from sg2_container.models.files import refused_objects

        detail = refused_objects(error)
        raise UserError(f"VGG16 weights {path} is not a PyTorch weights file that loads "
                        "without running code" + (f" ({detail})" if detail else "")
                        + f"; {missing}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise UserError(f"VGG16 weights {path} cannot be read as a PyTorch state dict "
                        f"({type(error).__name__}: {reason}); {missing}") from None
    if not isinstance(state, dict):
        raise UserError(f"VGG16 weights {path} hold {kind_of(state)}, not a state dict")
    # torchvision's file is the whole classifier model: keep `features.*`, ignore `classifier.*`.
    prefixed = {k[len("features."):]: v for k, v in state.items()
                if isinstance(k, str) and k.startswith("features.")}
    return prefixed if prefixed else state


@dataclasses.dataclass(frozen=True)
class DistanceSource:
    """Where the backbone's weights came from: a file, or nothing (a rehearsal)."""

    path: Path | None

    @property
    def rehearsal(self) -> bool:
        return self.path is None

    def describe(self) -> str:
        return str(self.path) if self.path else "randomly initialised (rehearsal)"


class LpipsVgg16(torch.nn.Module):
    """LPIPS v0.1 with a VGG16 backbone, as features whose squared distance is LPIPS."""

    def __init__(self, heads: list[torch.Tensor]):
        super().__init__()
        self.layers = _vgg16_feature_layers()
        # Slice ends (exclusive): just after each stage's last ReLU (the one before a max-pool,
        # or the final layer).
        layers = list(self.layers)
        self.tap_after = [i + 1 for i, layer in enumerate(layers)
                          if isinstance(layer, torch.nn.ReLU)
                          and (i + 1 == len(layers) or isinstance(layers[i + 1], torch.nn.MaxPool2d))]
        assert len(self.tap_after) == len(heads), self.tap_after
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        for idx, weight in enumerate(heads):
            self.register_buffer(f"head{idx}", weight.clamp(min=0).clone())
        self.requires_grad_(False)
        self.eval()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, C, H, W] (C = 1 or 3) with values in [0, 255] -> [N, D] LPIPS features.

        Images larger than 256 px are area-downsampled to 256 first, as the projector does.
        """
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        images = images.float()
        if images.shape[2] > MAX_SIDE or images.shape[3] > MAX_SIDE:
            images = F.interpolate(images, size=(min(images.shape[2], MAX_SIDE),
                                                 min(images.shape[3], MAX_SIDE)), mode="area")
        x = (images / 127.5 - 1 - self.shift) / self.scale
        parts, start = [], 0
        for idx, end in enumerate(self.tap_after):
            x = self.layers[start:end](x)
            start = end
            unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + _NORM_EPS)
            # LPIPS = sum over taps of mean over pixels of sum_c head_c * diff_c^2; scaling by
            # sqrt(head_c / pixels) turns that into a plain squared Euclidean distance.
            weight = (getattr(self, f"head{idx}") / (x.shape[2] * x.shape[3])).sqrt()
            parts.append((unit * weight.view(1, -1, 1, 1)).flatten(1))
        return torch.cat(parts, dim=1)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS distance [N] of two batches of images in [0, 255]."""
        return (self.features(a) - self.features(b)).square().sum(dim=1)


def _random_init(net: LpipsVgg16, seed: int = 0) -> None:
    """torchvision's initialisation of VGG convs (He normal, fan-out; zero bias), seeded, without
    touching the process's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in net.layers:
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)


def load_distance_network(vgg16: str | os.PathLike | None = None, *, allow_random: bool = False,
                          device: torch.device | str = "cpu", purpose: str = PROJECTION,
                          rehearsal_flag: str | None = "--allow-random-vgg16",
                          other_ways: str | None = None) -> tuple[LpipsVgg16, DistanceSource]:
    """The LPIPS VGG16 network on `device`, and where its backbone came from.

    Weights: `vgg16`, else $SG2_VGG16_WEIGHTS; with neither, a UserError naming what to supply
    (for `purpose`, and `rehearsal_flag` where the caller has one), unless `allow_random` (a
    rehearsal with a random backbone, logged as such).
    """
    path = resolve_weights_path(vgg16)
    missing = missing_weights_message(purpose, rehearsal_flag, other_ways)
    if path is None and not allow_random:
        raise UserError(missing)
    net = LpipsVgg16(_load_heads())
    if path is None:
        _random_init(net)
        log.warning(rehearsal_warning(purpose))
    else:
        state = _read_backbone_state(path, missing)
        expected = net.layers.state_dict()
        problems = [f"missing '{k}'" for k in expected if k not in state]
        problems += [f"'{k}' has shape {list(state[k].shape)}, VGG16 has {list(v.shape)}"
                     for k, v in expected.items()
                     if k in state and (not isinstance(state[k], torch.Tensor)
                                        or state[k].shape != v.shape)]
        if problems:
            raise UserError(f"VGG16 weights {path} do not fit torchvision's VGG16 features: "
                            f"{'; '.join(problems[:4])}; expected {VGG16_FILE_NAME} "
                            f"(torchvision's ImageNet VGG16)")
        net.layers.load_state_dict({k: state[k] for k in expected}, strict=True)
        log.info("distance network: LPIPS VGG16 with weights from %s", path)
    return net.to(device), DistanceSource(path)
