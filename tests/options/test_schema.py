"""The option schema: one declaration per option reaches every entry point."""
import dataclasses
import json
import math

import click
import pytest
from click.testing import CliRunner

from sg2_container.errors import UserError
from sg2_container.options import TrainingOptions
from sg2_container.options import schema
from sg2_container.options.schema import option, validate


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyOptions:
    name: str = option(help="A required name.")
    count: int = option(2, min=1, max=8, help="How many.")
    ratio: float | None = option(None, min=0, default_text="automatic", help="A ratio.")
    mode: str = option("fast", choices=("fast", "slow"), help="How.")
    tags: tuple[str, ...] = option((), choices=("a", "b"), help="Tags.")
    loud: bool = option(False, help="Shout.")

    def __post_init__(self):
        validate(self)


def _extended(cls):
    """`cls` with one more field, declared the one way options are declared."""
    return dataclasses.make_dataclass(
        "Extended" + cls.__name__,
        [("brand_new_knob", int, option(7, min=0, help="A knob added in one place."))],
        bases=(cls,), frozen=True, kw_only=True)


def _help(cls) -> str:
    command = click.Command("toy", params=schema.click_params(cls), callback=lambda **v: v)
    return CliRunner().invoke(command, ["--help"], terminal_width=100).output


def test_one_new_field_appears_in_help_hyperparameters_and_processing_arguments():
    extended = _extended(TrainingOptions)
    text = _help(extended)
    assert "--brand-new-knob INT" in text and "A knob added in one place." in text
    assert "[default: 7]" in text
    decoded = schema.decode_hyperparameters(extended, {"brand_new_knob": "\"3\"", "cfg": "paper256"})
    assert decoded == {"brand_new_knob": 3, "cfg": "paper256"}
    parsed = schema.parse_args(extended, ["--data", "d.zip", "--outdir", "o", "--brand-new-knob", "5"],
                               "job", "help")
    assert extended(**parsed).brand_new_knob == 5
    with pytest.raises(UserError, match="brand_new_knob=-1 is not allowed: an integer >= 0"):
        extended(data="d.zip", outdir="o", brand_new_knob=-1)


def test_docs_cli_md_shows_the_schema_defaults():
    """docs/cli.md is rendered from --help (tests/test_cli.py keeps it current), so the schema's
    defaults and bounds reach it."""
    from sg2_container.cli.reference import render

    rendered = render()
    assert "--kimg-per-tick FLOAT" in rendered and "Base configuration preset.  [default: auto]" in rendered
    assert "--max-pixels INT" in rendered and "[default: 89478485]" in rendered


@pytest.mark.parametrize("raw,expected", [
    ({"count": "3", "loud": "True", "ratio": "0.5"}, {"count": 3, "loud": True, "ratio": 0.5}),
    ({"count": "3.0", "loud": "1", "ratio": "null"}, {"count": 3, "loud": True, "ratio": None}),
    ({"tags": "\"a,b\"", "mode": "\"slow\""}, {"tags": ("a", "b"), "mode": "slow"}),
    ({"tags": "[\"a\"]", "loud": "false"}, {"tags": ("a",), "loud": False}),
    ({"sagemaker_program": "x.py", "_tuning_objective_metric": "m"}, {}),
])
def test_hyperparameter_encodings_decode_to_typed_values(raw, expected):
    assert schema.decode_hyperparameters(ToyOptions, raw) == expected


@pytest.mark.parametrize("raw,message", [
    ({"cuont": "1"}, "unknown hyperparameter 'cuont' (did you mean 'count'?)"),
    ({"count": "2.5"}, "count=2.5 is not an integer (an integer >= 1 and <= 8)"),
    ({"loud": "perhaps"}, "loud='perhaps' is not a boolean"),
    ({"ratio": "\"much\""}, "ratio='much' is not a number (a number >= 0)"),
    ({"mode": "{\"a\": 1}"}, "mode={'a': 1} must be a single value"),
])
def test_bad_hyperparameters_are_named(raw, message):
    with pytest.raises(UserError) as info:
        schema.decode_hyperparameters(ToyOptions, raw)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("values,message", [
    ({"count": 0}, "count=0 is not allowed: an integer >= 1 and <= 8"),
    ({"count": 9}, "count=9 is not allowed: an integer >= 1 and <= 8"),
    ({"count": True}, "count=True is not allowed"),
    ({"ratio": math.inf}, "ratio=inf is not allowed: a number >= 0 (finite)"),
    ({"ratio": math.nan}, "ratio=nan is not allowed"),
    ({"mode": "fsat"}, "mode='fsat' is not allowed: one of fast, slow (did you mean 'fast'?)"),
    ({"tags": ("a", "c")}, "tags='c' is not allowed: one of a, b"),
    ({"tags": "a"}, "tags='a' is not allowed"),
])
def test_validation_names_field_value_and_what_is_allowed(values, message):
    with pytest.raises(UserError) as info:
        ToyOptions(name="x", **values)
    assert str(info.value).startswith(message)


def test_ints_become_floats_and_help_shows_defaults_and_bounds():
    assert ToyOptions(name="x", ratio=1).ratio == 1.0 and isinstance(ToyOptions(name="x", ratio=1).ratio, float)
    text = _help(ToyOptions)
    assert "--name TEXT" in text and "[required]" in text
    assert "(an integer >= 1 and <= 8)" in text and "[default: 2]" in text
    assert "[default: (automatic)]" in text and "[fast|slow]" in text


def test_the_command_line_uses_the_same_parser_as_hyperparameters():
    command = schema.command(ToyOptions, "toy", "help")
    with command.make_context("toy", ["--name", "n", "--loud", "yes", "--tags", "b,a", "--count", "4.0"]) as ctx:
        assert ToyOptions(**ctx.params) == ToyOptions(name="n", loud=True, tags=("b", "a"), count=4)
    with pytest.raises(UserError, match="'--count': 'x' is not an integer"):
        schema.parse_args(ToyOptions, ["--name", "n", "--count", "x"], "toy", "help")
    assert schema.parse_args(ToyOptions, ["--help"], "toy", "help") is None


def test_every_options_field_has_help_and_round_trips_through_hyperparameters():
    from sg2_container.data.options import PrepareOptions

    for cls in (TrainingOptions, PrepareOptions):
        for name, field in schema.fields(cls).items():
            assert field.spec.help.strip(), f"{cls.__name__}.{name} has no help"
    options = TrainingOptions(data="d.zip", outdir="o", cfg="paper256", gamma=10, mirror=True,
                              metrics=(), kimg=0.5, augpipe="bg")
    encoded = schema.encode_hyperparameters(
        {k: v for k, v in options.to_dict().items() if k != "device"})
    assert json.loads(json.dumps(encoded)) == encoded
    assert TrainingOptions(**schema.decode_hyperparameters(TrainingOptions, encoded)) == options


def test_docs_sagemaker_md_names_every_hyperparameter():
    """docs/sagemaker.md lists the hyperparameters by hand: a new TrainingOptions field must be
    named there too."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "sagemaker.md").read_text(encoding="utf-8")
    section = text[text.index("## Hyperparameters"):text.index("## Rehearse locally")]
    missing = [name for name, field in schema.fields(TrainingOptions).items()
               if field.spec.hyperparameter and f"`{name}`" not in section]
    assert missing == [], f"add to docs/sagemaker.md's Hyperparameters section: {missing}"


@pytest.mark.parametrize("values,message", [
    ({"map": 65}, "map=65 is not allowed: an integer >= 1 and <= 64"),
    ({"cmax": 2049}, "cmax=2049 is not allowed: an integer >= 1 and <= 2048"),
    ({"cbase": 2**20 + 1}, "cbase=1048577 is not allowed: an integer >= 1 and <= 1048576"),
    ({"freezed": 1025}, "freezed=1025 is not allowed: an integer >= 0 and <= 1024"),
])
def test_network_sizes_the_model_file_would_refuse_are_refused_at_start(values, message):
    """A run must not train for hours and then fail to save its model (models/bounds.py)."""
    with pytest.raises(UserError) as info:
        TrainingOptions(data="d.zip", outdir="o", **values)
    assert str(info.value) == message


def test_the_largest_network_options_make_kwargs_a_model_file_accepts():
    from sg2_container.models.bounds import check_network_kwargs
    from sg2_container.options import make_plan

    options = TrainingOptions(data="d.zip", outdir="o", cfg="paper256", map=64, cmax=2048,
                              cbase=2**20, freezed=1024)
    plan = make_plan(options, resolution=64, img_channels=3, c_dim=0)
    check_network_kwargs("G", plan.G_kwargs, "test")
    check_network_kwargs("D", plan.D_kwargs, "test")


@pytest.mark.parametrize("raw", ["99999999999999999999", "4294967296"])
def test_a_seed_numpy_cannot_take_is_refused_at_start(raw):
    """numpy's RandomState (subset, data order) takes seeds below 2^32; beyond, the run crashed."""
    decoded = schema.decode_hyperparameters(TrainingOptions, {"seed": raw})
    with pytest.raises(UserError) as info:
        TrainingOptions(data="d.zip", outdir="o", **decoded)
    assert str(info.value) == f"seed={raw} is not allowed: an integer >= 0 and <= 4294967295"
    assert TrainingOptions(data="d.zip", outdir="o", seed=2**32 - 1).seed == 4294967295


def test_a_channel_base_below_the_resolution_is_a_user_error():
    from sg2_container.options import make_plan

    options = TrainingOptions(data="d.zip", outdir="o", cbase=16)
    with pytest.raises(UserError, match=r"cbase=16 is not allowed for this 32x32 dataset: .* "
                                        r"cbase must be at least 32"):
        make_plan(options, resolution=32, img_channels=3, c_dim=0)
    assert make_plan(options, resolution=16, img_channels=3, c_dim=0).D_kwargs["channel_base"] == 16


@pytest.mark.parametrize("part, kwargs", [
    ("G", {"img_resolution": 256, "synthesis_kwargs": {"channel_base": 128}}),
    ("D", {"img_resolution": 256, "channel_base": 128}),
])
def test_a_model_file_whose_channel_base_leaves_blocks_empty_is_refused(part, kwargs):
    """Such kwargs made the networks raise a ValueError (a crash, exit 2, in generate or
    convert); the file's check names them instead."""
    from sg2_container.models.bounds import check_network_kwargs

    with pytest.raises(UserError, match=rf"{part} .*channel_base = 128 gives the 256 px blocks "
                                        r"no channels .*at least 256"):
        check_network_kwargs(part, kwargs, "model.pt")
    check_network_kwargs(part, {**kwargs, "img_resolution": 128}, "model.pt")


def test_renamed_names_a_field_as_the_user_typed_it():
    from sg2_container.inference.options import GenerateOptions

    with pytest.raises(UserError) as info:
        GenerateOptions(seeds=(0,), class_idx=-1)
    assert str(info.value) == "class_idx=-1 is not allowed: an integer >= 0"  # a batch request
    assert str(schema.renamed(info.value, GenerateOptions)) == (
        "--class=-1 is not allowed: an integer >= 0")
    assert str(schema.renamed(info.value, GenerateOptions, str.upper)).startswith("CLASS_IDX=-1")
    for other in ("model.pt: missing tensor", "generate --grid: too many", "gamma=1 is not"):
        error = UserError(other)
        assert schema.renamed(error, GenerateOptions) is error
