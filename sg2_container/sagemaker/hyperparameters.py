"""hyperparameters.json -> TrainingOptions, whatever client encoded it.

SageMaker hands every value over as a string. Clients encode them differently: json.dumps per
value (the StyleGAN2 pipeline notebook), str() (the V2 SDK's Estimator: "True", "10.0"), or raw
strings (the V3 ModelTrainer). We json-decode each value, keep the raw string when that fails,
and then coerce by the option's type, so all three give the same options.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from sg2_container.errors import UserError
from sg2_container.options import TrainingOptions, closest

PLATFORM_PREFIXES = ("sagemaker_", "_tuning_objective_metric")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
# Keys users may spell as on the reference's command line.
ALIASES = {"allow-tf32": "allow_tf32", "batch-gpu": "batch_gpu", "kimg-per-tick": "kimg_per_tick"}
# Options that make no sense inside a job.
NOT_IN_A_JOB = {"device"}


def decode_value(raw):
    """json.loads when possible (the toolkit's rule), else the string itself."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, ValueError):
        return raw


def _coerce(name: str, value, annotation):
    """Turns a decoded value into the option's type; errors name the key and what is allowed."""
    if typing.get_origin(annotation) is tuple:  # metrics: comma-separated names
        items = [] if value is None else value if isinstance(value, list) else str(value).split(",")
        return tuple(i.strip() for i in map(str, items) if i.strip() and i.strip() != "none")
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = type(None) in typing.get_args(annotation)
    target = args[0] if args else annotation
    if value is None or (optional and value in ("", "null", "None", "none") and target is not str):
        if optional:
            return None
        raise UserError(f"hyperparameter {name}: a value is required")
    if target is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE_WORDS or text == "1.0":
            return True
        if text in FALSE_WORDS or text == "0.0":
            return False
        raise UserError(f"hyperparameter {name}={value!r} is not a boolean: use 1/0 or true/false")
    if target is int:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"hyperparameter {name}={value!r} is not an integer") from None
        if not number.is_integer():
            raise UserError(f"hyperparameter {name}={value!r} is not an integer")
        return int(number)
    if target is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"hyperparameter {name}={value!r} is not a number") from None
    if target is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"hyperparameter {name}={value!r} must be a single value")
        return str(value)
    raise TypeError(f"no decoder for option {name} of type {annotation}")


def option_fields() -> dict[str, dataclasses.Field]:
    hints = typing.get_type_hints(TrainingOptions)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainingOptions) if f.name not in NOT_IN_A_JOB}


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, object]:
    """The user's keys, decoded and typed (platform keys dropped); unknown keys are errors."""
    fields = option_fields()
    decoded: dict[str, object] = {}
    for key, value in raw.items():
        if key.startswith(PLATFORM_PREFIXES):
            continue
        name = ALIASES.get(key, key.replace("-", "_"))
        if name not in fields:
            raise UserError(f"unknown hyperparameter {key!r}{closest(key, list(fields))}; "
                            f"allowed: {', '.join(sorted(fields))}")
        decoded[name] = _coerce(key, decode_value(value), fields[name])
    return decoded


def read_hyperparameters(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path.name} is not valid JSON ({error})") from error
    if not isinstance(raw, dict):
        raise UserError(f"{path.name} must hold a JSON object of name -> value")
    return decode_hyperparameters(raw)


def encode_hyperparameters(values: dict) -> dict[str, str]:
    """What a client sends: strings stay, everything else is json.dumps'ed (the common pattern)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
