"""Reading a pipeline definition (the JSON SageMaker stores), without the SDK: its steps, the
steps each one reads from, and the value of an expression ({"Get": ...}, {"Std:Join": ...})
once parameters, execution variables and earlier steps' properties are known.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from sg2_container.errors import UserError

STEP_REFERENCE = re.compile(r"Steps\.([A-Za-z0-9_-]+)\.")


def steps(definition: Mapping) -> dict[str, dict]:
    """Step name -> step, in the order the definition lists them."""
    return {step["Name"]: step for step in definition["Steps"]}


def parameter_defaults(definition: Mapping) -> dict[str, Any]:
    return {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}


def references(value: Any) -> list[str]:
    """Every "Get" path inside a step's arguments (parameters, execution, step properties)."""
    found: list[str] = []
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            return [value["Get"]]
        for item in value.values():
            found += references(item)
    elif isinstance(value, list):
        for item in value:
            found += references(item)
    return found


def dependencies(step: Mapping) -> set[str]:
    """Names of the steps this step reads a property of, plus its explicit DependsOn."""
    names = {m.group(1) for ref in references(step) for m in [STEP_REFERENCE.match(ref)] if m}
    return names | set(step.get("DependsOn", []))


def resolve(value: Any, lookup: Callable[[str], Any]) -> Any:
    """The expression's value; `lookup` answers each "Get" path."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            return lookup(value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(_text(resolve(v, lookup)) for v in join["Values"])
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    return value


def _text(value: Any) -> str:
    """How SageMaker writes a value into a joined string (booleans lowercase, as JSON)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def parameter_lookup(definition: Mapping, overrides: Mapping[str, Any] | None = None,
                     other: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """A lookup for `resolve`: Parameters.X from the defaults (or overrides), the rest from
    `other` (execution variables, step properties)."""
    values = {**parameter_defaults(definition), **(overrides or {})}

    def lookup(path: str) -> Any:
        if path.startswith("Parameters."):
            name = path.split(".", 1)[1]
            if name not in values:
                raise UserError(f"the definition reads parameter {name!r}, which it does not declare")
            return values[name]
        if other is None:
            raise UserError(f"cannot resolve {path!r} here")
        return other(path)

    return lookup
