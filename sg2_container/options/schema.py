"""One option schema: each options dataclass declares, per field, its type, default, allowed
values, bounds and help, and everything users type is derived from that one declaration.

From a dataclass whose fields are made with `option(...)` this module builds the click options
(`click_options`), parses a processing job's argument list (`parse_args`), decodes SageMaker
hyperparameters in all three client encodings (`decode_hyperparameters`), and validates an
instance (`validate`, called from the dataclass's `__post_init__`). docs/cli.md is rendered from
the click help, so it follows too. Adding a field therefore adds it everywhere at once.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import click

from sg2_container.errors import UserError, shortened

SCHEMA_KEY = "sg2_option"
TRUE_WORDS = frozenset({"1", "1.0", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "0.0", "false", "no", "off"})
NONE_WORDS = frozenset({"", "null", "none"})
# Keys SageMaker and its clients add to hyperparameters.json; they are not ours to decode.
PLATFORM_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptionSpec:
    """What one field accepts; `kind` and `optional` come from the field's annotation."""

    help: str
    choices: tuple | None = None
    min: float | None = None
    min_exclusive: bool = False
    max: float | None = None
    power_of_two: bool = False
    metavar: str | None = None
    default_text: str | None = None  # shown as [default: ...] when the default is None
    is_flag: bool = False  # a bare --flag (prepare style) rather than --flag 1 (reference style)
    hyperparameter: bool = True  # accepted in hyperparameters.json
    cli: bool = True  # offered as a command-line option
    flag: str | None = None  # the option's name on the command line, if not --field-name


def option(default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field with its schema; `help` is required (the CLI is documentation)."""
    if "help" not in spec:
        raise TypeError("option() needs help=")
    return dataclasses.field(default=default, metadata={SCHEMA_KEY: OptionSpec(**spec)})


@dataclasses.dataclass(frozen=True)
class Field:
    """A field of an options dataclass, resolved: name, base type, optional, default, spec."""

    name: str
    kind: type  # int, float, str, bool or tuple (a tuple of str)
    optional: bool
    default: Any
    spec: OptionSpec

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """What the field accepts, in words (used by errors and help alike)."""
        if self.spec.choices is not None:
            text = "one of " + ", ".join(str(c) for c in self.spec.choices)
            return text + (" (comma-separated)" if self.kind is tuple else "")
        noun = {int: "an integer", float: "a number", bool: "a boolean (1/0, true/false)",
                str: "a text", tuple: "comma-separated names"}[self.kind]
        if self.spec.power_of_two:
            noun = "a power of two"
        if self.spec.min is not None and self.spec.min == self.spec.max \
                and not self.spec.min_exclusive:
            return f"{_number(self.spec.min)} only"
        bounds = []
        if self.spec.min is not None:
            bounds.append(f"{'>' if self.spec.min_exclusive else '>='} {_number(self.spec.min)}")
        if self.spec.max is not None:
            bounds.append(f"<= {_number(self.spec.max)}")
        return noun + (" " + " and ".join(bounds) if bounds else "")


def _number(bound: float) -> str:
    """A bound as written: 4294967295 in full, not 4.29497e+09; 0.5 as 0.5."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@functools.cache
def fields(cls: type) -> dict[str, Field]:
    """The schema fields of an options dataclass, in declaration order (resolved once per
    class: validation runs at every instantiation). Do not mutate the returned dict."""
    hints = typing.get_type_hints(cls)
    resolved = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(SCHEMA_KEY)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
        kind, optional = _base_type(hints[f.name], f"{cls.__name__}.{f.name}")
        default = f.default
        resolved[f.name] = Field(f.name, kind, optional, default, spec)
    return resolved


def _base_type(annotation: Any, where: str) -> tuple[type, bool]:
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"{where}: unsupported annotation {annotation}")
        annotation = args[0]
    if typing.get_origin(annotation) is tuple:
        return tuple, optional
    if annotation in (int, float, str, bool):
        return annotation, optional
    raise TypeError(f"{where}: unsupported annotation {annotation}")


def closest(value: Any, allowed: Iterable) -> str:
    """' (did you mean X?)' when a close name exists, else ''. Compared without case, so
    FID50K finds fid50k, and the suggestion is spelled as allowed."""
    spelled: dict[str, str] = {}
    for name in allowed:
        spelled.setdefault(str(name).lower(), str(name))
    match = difflib.get_close_matches(str(value).lower(), list(spelled), n=1)
    return f" (did you mean {spelled[match[0]]!r}?)" if match else ""


def fail(name: str, value: Any, allowed: str) -> UserError:
    """The one error format: the option's name, the bad value, what is allowed."""
    return UserError(f"{name}={shortened(repr(value), 200)} is not allowed: {allowed}")


_LEADING_NAME = re.compile(r"([a-z_][a-z0-9_]*)[=:]")


def renamed(error: UserError, cls: type, shown: Callable[[str], str] | None = None) -> UserError:
    """`error` about a field of `cls`, its leading field name (fail's NAME=VALUE, or NAME: ...)
    replaced by `shown(name)` (default: the --flag), the name the user typed: one options
    class serves entries that spell its fields differently, e.g. generate's --class and a
    batch request's class_idx. Any other error comes back as it is."""
    match = _LEADING_NAME.match(str(error))
    if match is None or match.group(1) not in fields(cls):
        return error
    name = match.group(1)
    typed = shown(name) if shown else fields(cls)[name].flag
    return UserError(typed + str(error)[match.end(1):])


# ---- values from text (command line, hyperparameters) -------------------------------------

def coerce(field: Field, value: Any) -> Any:
    """A value as typed by a user (text, or JSON-decoded) -> the field's Python type.

    One set of rules for the command line, processing arguments and hyperparameters.
    """
    name = field.name
    # An optional text takes "None" (what str(None) gives: the SageMaker SDK v2's Estimator
    # passes hyperparameters through str()) as absent; other words may be its value.
    if value is None or (field.optional and isinstance(value, str) and (
            value.strip() == "None"
            or (field.kind is not str and value.strip().lower() in NONE_WORDS))):
        if field.optional or field.kind is tuple:
            return () if field.kind is tuple else None
        raise UserError(f"{name}: a value is required ({field.allowed()})")
    if field.kind is tuple:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return tuple(s for s in (str(i).strip() for i in items) if s and s.lower() != "none")
    if isinstance(value, (dict, list)):
        raise UserError(f"{name}={value!r} must be a single value ({field.allowed()})")
    if field.kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise UserError(f"{name}={value!r} is not a boolean: use 1/0 or true/false")
    if field.kind is int:
        if isinstance(value, int):  # exact, however large: the range check says if it fits
            return int(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(
                f"{name}={shortened(repr(value))} is not an integer ({field.allowed()})") from None
        if not number.is_integer():
            raise UserError(f"{name}={shortened(repr(value))} is not an integer ({field.allowed()})")
        return int(number)
    if field.kind is float:
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range, e.g. 400 digits
            raise UserError(f"{name}={shortened(repr(value))} is out of range ({field.allowed()})") from None
        except (TypeError, ValueError):
            raise UserError(f"{name}={shortened(repr(value))} is not a number ({field.allowed()})") from None
    return str(value)


def decode_value(raw: Any) -> Any:
    """The toolkit's rule for hyperparameter values: json.loads when possible, else the text."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def decode_hyperparameters(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """hyperparameters.json (any client's encoding) -> typed values for `cls`.

    Platform keys are dropped; keys may use '-' for '_' (the reference's command-line
    spelling); an unknown key is an error that lists what is allowed.
    """
    accepted = {n: f for n, f in fields(cls).items() if f.spec.hyperparameter}
    decoded: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith(PLATFORM_PREFIXES):
            continue
        name = key.replace("-", "_")
        if name not in accepted:
            raise UserError(f"unknown hyperparameter {key!r}{closest(key, accepted)}; "
                            f"allowed: {', '.join(sorted(accepted))}")
        if name in spelled:  # kimg-per-tick and kimg_per_tick: which one was meant is unknown
            raise UserError(f"hyperparameters {spelled[name]!r} and {key!r} are the same option "
                            f"({name}); give it once")
        spelled[name] = key
        decoded[name] = coerce(accepted[name], decode_value(value))
    return decoded


def encode_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """What the common client pattern sends: strings stay, everything else is json.dumps'ed."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


# ---- validation ------------------------------------------------------------------------------

def validate(instance: Any) -> None:
    """Checks every field of a (frozen) options instance against its schema; ints given for
    float fields become floats. Call from __post_init__, before cross-field checks."""
    for name, field in fields(type(instance)).items():
        value = getattr(instance, name)
        if value is None:
            if not field.optional:
                raise fail(name, value, field.allowed())
            continue
        value = _check_type(field, value)
        object.__setattr__(instance, name, value)
        for item in value if field.kind is tuple else (value,):
            _check_bounds(field, item)


def _check_type(field: Field, value: Any) -> Any:
    kind = field.kind
    if kind is tuple:
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise fail(field.name, value, field.allowed())
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise fail(field.name, value, field.allowed()) from None
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise fail(field.name, value, field.allowed())
    return value


def _check_bounds(field: Field, value: Any) -> None:
    spec, name = field.spec, field.name
    if spec.choices is not None and value not in spec.choices:
        raise fail(name, value, field.allowed() + closest(value, spec.choices))
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(name, value, field.allowed() + " (finite)")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        too_low = spec.min is not None and (value <= spec.min if spec.min_exclusive else value < spec.min)
        too_high = spec.max is not None and value > spec.max
        not_power = spec.power_of_two and (value < 1 or int(value) & (int(value) - 1))
        if too_low or too_high or not_power:
            raise fail(name, value, field.allowed())


# ---- the command line ------------------------------------------------------------------------

class _SchemaType(click.ParamType):
    """Parses with `coerce`, so the command line follows the same rules as hyperparameters."""

    def __init__(self, field: Field):
        self.field = field
        self.name = field.kind.__name__ if field.kind is not tuple else "list"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return coerce(self.field, value)
        except UserError as error:
            # click names the option already ("Invalid value for '--class': "): the field's
            # own name (class_idx='abc') would only confuse.
            text = str(error)
            match = _LEADING_NAME.match(text)
            if match is not None and match.group(1) == self.field.name:
                text = text[match.end():].lstrip()  # 'abc' is not ..., or: a value is ...
            self.fail(text, param, ctx)


def _metavar(field: Field) -> str | None:
    if field.spec.metavar:
        return field.spec.metavar
    if field.spec.choices is not None and field.kind is tuple:
        return "NAMES"
    return {bool: "BOOL", int: "INT", float: "FLOAT", str: "TEXT", tuple: "NAMES"}[field.kind]


def click_params(cls: type, *, exclude: Sequence[str] = ()) -> list[click.Option]:
    """click options for every CLI field of `cls`, in declaration order."""
    params = []
    for name, field in fields(cls).items():
        if not field.spec.cli or name in exclude:
            continue
        spec = field.spec
        help_text = spec.help
        if spec.choices is None and (spec.min is not None or spec.max is not None or spec.power_of_two):
            help_text += f" ({field.allowed()})"
        kwargs: dict[str, Any] = dict(help=help_text, required=field.required)
        names = [field.flag, name]
        if spec.is_flag and field.optional and field.default is None:
            # --flag/--no-flag, unset meaning "look it up" (metrics' --mirror: as trained)
            names[0] = f"{field.flag}/--no-{field.flag[2:]}"
            kwargs.update(default=None, show_default=spec.default_text or False)
        elif spec.is_flag:
            kwargs.update(is_flag=True, default=bool(field.default), show_default=False)
        else:
            if spec.choices is not None and field.kind is str:
                kwargs["type"] = click.Choice([str(c) for c in spec.choices])
            elif spec.choices is not None and field.kind is int:
                kwargs["type"] = click.Choice([str(c) for c in spec.choices])
                kwargs["callback"] = lambda ctx, param, v: None if v is None else int(v)
            else:
                kwargs["type"] = _SchemaType(field)
                kwargs["metavar"] = _metavar(field)
            if field.kind is tuple and field.spec.choices is not None:
                kwargs["help"] += f" [allowed: {', '.join(map(str, field.spec.choices))}]"
            if not field.required:
                default = field.default
                if field.kind is tuple:  # click hands over None when unset: the default then
                    kwargs["callback"] = lambda ctx, param, v, d=default: d if v is None else v
                    default = ",".join(default) or None
                kwargs["default"] = default
                if default is None:
                    kwargs["show_default"] = spec.default_text or False
                else:
                    kwargs["show_default"] = True
        params.append(click.Option(names, **kwargs))
    return params


def click_options(cls: type, *, exclude: Sequence[str] = ()) -> Callable:
    """Decorator adding `cls`'s options to a click command (first field listed first)."""
    def decorate(command: Callable) -> Callable:
        for param in reversed(click_params(cls, exclude=exclude)):
            click.decorators._param_memo(command, param)  # what @click.option does
        return command
    return decorate


def command(cls: type, name: str, help_text: str, *, exclude: Sequence[str] = ()) -> click.Command:
    """A stand-alone click command for `cls` that returns its parsed values (processing jobs)."""
    return click.Command(name, params=click_params(cls, exclude=exclude), help=help_text,
                         callback=lambda **values: values,
                         context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})


def parse_args(cls: type, args: Sequence[str], prog: str, help_text: str) -> dict | None:
    """A processing job's argument list -> values for `cls` (None when --help was printed).

    Errors come back as UserError naming the option, as from every other entry.
    """
    cmd = command(cls, prog, help_text)
    try:
        with cmd.make_context(prog, list(args)) as ctx:
            return dict(ctx.params)
    except click.exceptions.Exit:
        return None
    except click.ClickException as error:
        raise UserError(error.format_message()) from error
