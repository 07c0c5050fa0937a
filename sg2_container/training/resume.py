"""resume (`--resume`, the `resume` hyperparameter): start from another run's or a published
model's weights (not its progress). Messages name the option as `resume=`, which reads the same
on the command line and in a job's hyperparameters."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from sg2_container.errors import UserError
from sg2_container.models.source import refuse_url
from sg2_container.options import PUBLISHED_RESUME

log = logging.getLogger(__name__)


def resolve_resume_path(value: str) -> Path:
    """A model file, pickle, model.tar.gz or folder of these, or a published-model name whose
    file the user must supply (no network)."""
    path = Path(value)
    if path.exists():
        return path
    if value in PUBLISHED_RESUME:
        raise UserError(
            f"resume={value!r} names the published model {PUBLISHED_RESUME[value]}; this "
            f"container does not download. Fetch that file (the reference's "
            f"transfer-learning-source-nets) and give its path as resume "
            f"(on SageMaker, through an input channel: "
            f"/opt/ml/input/data/CHANNEL/{PUBLISHED_RESUME[value]})")
    refuse_url(value, "resume")
    raise UserError(f"resume={value!r}: no such file; give a model file (.pt), a network pickle "
                    f"(.pkl), a training job's model.tar.gz, or one of "
                    f"{', '.join(PUBLISHED_RESUME)} (with the file supplied)")


def copy_weights(source: torch.nn.Module, target: torch.nn.Module, label: str) -> int:
    """Copies parameters and buffers by name; names on one side only are skipped, as the
    reference does, with a warning naming them (another resolution or mapping depth: the run
    starts only partly from the file); a shape mismatch is an error naming the tensor."""
    source_state = source.state_dict()
    target_state = target.state_dict()
    copied = 0
    with torch.no_grad():
        for name, tensor in target_state.items():
            if name not in source_state:
                continue
            value = source_state[name]
            if value.shape != tensor.shape:
                raise UserError(f"resume: {label} tensor {name!r} has shape {list(value.shape)} "
                                f"in the file but {list(tensor.shape)} in this run's network")
            tensor.copy_(value)
            copied += 1
    fresh = [name for name in target_state if name not in source_state]
    unused = [name for name in source_state if name not in target_state]
    if fresh or unused:
        sizes = (getattr(source, "img_resolution", "?"), getattr(target, "img_resolution", "?"))
        log.warning("resume: the file's %s (%s px) is another network than this run's (%s px): "
                    "%d of its tensors are left out (%s); %d of this run's start from scratch "
                    "(%s)", label, *sizes, len(unused), _some(unused), len(fresh), _some(fresh))
    return copied


def _some(names: list[str], shown: int = 3) -> str:
    """The first few names, and how many more."""
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_resume_weights(value: str, G, D, G_ema) -> None:
    from sg2_container.models.files import load_model
    from sg2_container.models.source import located_model

    with located_model(resolve_resume_path(value), what="resume") as (file, path):
        bundle = load_model(file)
    counts = {
        "G": copy_weights(bundle.G if bundle.G is not None else bundle.G_ema, G, "G"),
        "G_ema": copy_weights(bundle.G_ema, G_ema, "G_ema"),
    }
    if bundle.D is not None:
        counts["D"] = copy_weights(bundle.D, D, "D")
    else:
        log.warning("resume %s holds no D: the discriminator starts from scratch", path.name)
    log.info("resumed weights from %s (%s tensors copied)", path,
             ", ".join(f"{k} {v}" for k, v in counts.items()))
