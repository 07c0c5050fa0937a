"""dataset.json, the labels file of a training set: the one parser and the one writer.

Format: {"labels": [[relative image name, label], ...] | null}, where a label is a class (an
integer >= 0) or a vector (a list of numbers), all of one kind (vectors all of one length), and
each name appears once. `sg2 prepare` reads it from its source, writes it into the training
set, and the dataset reader reads it back: all three use this module, so they agree.
"""
from __future__ import annotations

import json
import math

import numpy as np

from sg2_container.errors import UserError
from sg2_container.models.bounds import MAX_CLASSES

FLOAT32_MAX = float(np.finfo(np.float32).max)

LABELS_FILE = "dataset.json"
Label = int | tuple[float, ...]


def labels_json(labels: list[list[object]] | None) -> bytes:
    """The bytes of a dataset.json holding `labels` ([[name, label], ...] or None)."""
    return json.dumps({"labels": labels}).encode("utf-8")


def parse_labels(data: bytes, origin: str) -> dict[str, Label] | None:
    """Reads and checks dataset.json; None for "labels": null. Any deviation from the format
    (including a name given twice) is a UserError naming `origin` and the entry."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{origin}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or "labels" not in doc:
        raise UserError(f'{origin}: expected an object with a "labels" key')
    raw = doc["labels"]
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise UserError(f'{origin}: "labels" must be a list of [name, label] pairs or null')
    labels: dict[str, Label] = {}
    kind = None
    for i, pair in enumerate(raw):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise UserError(f"{origin}: labels[{i}] is {pair!r}; expected [name, label]")
        name, value = pair[0].replace("\\", "/"), pair[1]
        if isinstance(value, int) and not isinstance(value, bool):
            # Checked before any array is made: class 2**40 would mean a 2**40-wide one-hot.
            if not 0 <= value < MAX_CLASSES:
                raise UserError(f"{origin}: labels[{i}] ({name}) is class {value}; class "
                                f"indices must be from 0 to {MAX_CLASSES - 1}")
            this_kind, label = "int", value
        elif isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            if not value:
                raise UserError(f"{origin}: labels[{i}] ({name}) is an empty vector ([]); a "
                                "conditional network needs at least one label value per image")
            if len(value) > MAX_CLASSES:
                raise UserError(f"{origin}: labels[{i}] ({name}) has {len(value)} values; at "
                                f"most {MAX_CLASSES} are allowed")
            if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in value):
                raise UserError(f"{origin}: labels[{i}] ({name}) holds a non-finite number (NaN, "
                                "infinity, or beyond float32); labels must be finite")
            this_kind, label = f"vector of {len(value)}", tuple(float(v) for v in value)
        else:
            raise UserError(
                f"{origin}: labels[{i}] ({name}) is {value!r}; expected an integer class or a "
                "list of numbers"
            )
        if kind is not None and this_kind != kind:
            raise UserError(
                f"{origin}: labels[{i}] ({name}) is a {this_kind} label but earlier ones are "
                f"{kind}; all labels must be of one kind"
            )
        if name in labels:
            raise UserError(f"{origin}: labels[{i}] names {name!r} a second time")
        kind = this_kind
        labels[name] = label
    return labels


def label_matrix(labels: dict[str, Label], names: list[str], origin: str) -> tuple[np.ndarray, str]:
    """The labels of `names`, in that order, as float32 [N, dim] and their kind: "class"
    (one-hot, dim = largest class + 1) or "vector". Every name must have a label."""
    missing = next((n for n in names if n not in labels), None)
    if missing is not None:
        raise UserError(f"{origin} has no label for {missing!r}")
    values = [labels[n] for n in names]
    if values and isinstance(values[0], int):
        classes = np.array(values, dtype=np.int64)
        onehot = np.zeros([len(values), int(classes.max()) + 1], dtype=np.float32)
        onehot[np.arange(len(values)), classes] = 1
        return onehot, "class"
    return np.array(values, dtype=np.float32), "vector"
