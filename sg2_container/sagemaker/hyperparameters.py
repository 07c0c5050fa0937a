"""hyperparameters.json -> TrainingOptions values, whatever client encoded it.

SageMaker hands every value over as a string, and clients encode them differently: json.dumps
per value (the StyleGAN2 pipeline notebook), str() (the V2 SDK's Estimator: "True", "10.0"), or
raw strings (the V3 ModelTrainer). The option schema decodes all three the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

from sg2_container.errors import UserError
from sg2_container.options import TrainingOptions
from sg2_container.options.schema import decode_hyperparameters as decode_for


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, object]:
    """The user's keys, decoded and typed for TrainingOptions (platform keys dropped)."""
    return decode_for(TrainingOptions, raw)


def load_hyperparameters_file(path: Path) -> dict:
    """The raw JSON object of a hyperparameters file; anything else is a UserError naming it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not valid UTF-8 text ({error.reason} at byte "
                        f"{error.start}); save it as UTF-8 JSON") from error
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a JSON object of name -> value")
    return raw


def read_hyperparameters(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    return decode_hyperparameters(load_hyperparameters_file(path))
