"""What a pipeline is built from, declared once with the option schema.

`PipelineParameters`: every field is a SageMaker Pipeline parameter (named in CamelCase, e.g.
`train_instance_type` -> `TrainInstanceType`), so a re-run with other values is one
`start --param K=V`. `PipelineSettings`: what is fixed when the pipeline is built or upserted
(name, role, bucket, spot). Both validate S3 URIs, instance types and ARNs before anything
reaches AWS.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sg2_container.errors import UserError
from sg2_container.options.schema import (
    closest,
    coerce,
    fail,
    fields,
    option,
    renamed,
    validate,
)
from sg2_container.options.training import (
    AUGPIPE_NAMES, CFG_NAMES, MIN_TRAINING_RESOLUTION, TrainingOptions, make_plan)

S3_URI = re.compile(r"s3://(?=[a-z0-9])[a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?")
INSTANCE_TYPE = re.compile(r"ml\.[a-z][a-z0-9-]*\.[a-z0-9]+")
ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
LAMBDA_ARN = re.compile(r"arn:aws(-[a-z]+)*:lambda:[a-z0-9-]+:\d{12}:function:[\w-]{1,64}(:[\w$-]+)?")
TOPIC_ARN = re.compile(r"arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
BUCKET = re.compile(r"(?=[a-z0-9])[a-z0-9.-]{1,61}[a-z0-9]")
PIPELINE_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}")
DISPLAY_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}")  # PipelineExecutionDisplayName
EXAMPLE_ACCOUNT = "111122223333"  # AWS's documentation account: offline definitions only

ALLOWED_S3 = "an S3 URI s3://BUCKET[/KEY] (lowercase bucket name)"
ALLOWED_TYPE = "a SageMaker instance type such as ml.m5.xlarge, ml.p3.2xlarge or ml.g5.2xlarge"
ALLOWED_ROLE = "an IAM role ARN such as arn:aws:iam::123456789012:role/SageMakerExecution"


def parameter_name(field_name: str) -> str:
    """`train_instance_type` -> `TrainInstanceType` (the name SageMaker shows and takes)."""
    return "".join(part.capitalize() for part in field_name.split("_"))


def check_s3_uri(name: str, value: str) -> None:
    if not S3_URI.fullmatch(value):
        raise fail(name, value, ALLOWED_S3)


def check_instance_type(name: str, value: str) -> None:
    if not INSTANCE_TYPE.fullmatch(value):
        raise fail(name, value, ALLOWED_TYPE)


def check_role_arn(name: str, value: str) -> None:
    if not ROLE_ARN.fullmatch(value):
        raise fail(name, value, ALLOWED_ROLE)


def check_topic_arn(name: str, value: str, allowed_extra: str = "") -> None:
    if not TOPIC_ARN.fullmatch(value):
        raise fail(name, value, "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)" + allowed_extra)


def check_display_name(name: str, value: str) -> None:
    if not DISPLAY_NAME.fullmatch(value):
        raise fail(name, value, "letters, digits and hyphens, starting and ending with a letter "
                   "or digit, up to 82 characters")


def _validate(instance: Any, shown: Callable[[str], str]) -> None:
    """The schema's `validate`, its error naming the field as the user typed it (`shown`:
    the CamelCase parameter, the --flag) rather than by its Python name."""
    try:
        validate(instance)
    except UserError as error:
        better = renamed(error, type(instance), shown)
        if better is error:
            raise
        raise better from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineParameters:
    """The pipeline's parameters and their defaults (the article's, unless said otherwise).

    S3 locations left as None are placed under the settings' bucket (`with_bucket`).
    """

    input_data_uri: str | None = option(None, metavar="S3_URI", default_text="s3://BUCKET/sg2/uploads",
                                        help="The designer's uploaded images (prepare's input).")
    inference_input_uri: str | None = option(
        None, metavar="S3_URI", default_text="s3://BUCKET/sg2/inference-input",
        help="Images to project and/or requests.jsonl for the inference step.")
    output_uri: str | None = option(None, metavar="S3_URI", default_text="s3://BUCKET/sg2/output",
                                    help="Prefix for the training zip, the model and the results; "
                                    "each execution writes below its own execution id.")
    checkpoint_uri: str | None = option(
        None, metavar="S3_URI", default_text="s3://BUCKET/sg2/checkpoints",
        help="Prefix for training checkpoints (synced with /opt/ml/checkpoints); each execution "
        "uses its own folder below it, so spot restarts and step retries resume.")
    image_uri: str = option("sg2-container:latest", metavar="URI",
                            help="The sg2-container image (ECR URI) every step runs.")
    notification_topic_arn: str = option("", metavar="ARN", default_text="the Lambda's SNS_TOPIC_ARN",
                                         help="SNS topic the notification step publishes to.")
    process_instance_type: str = option("ml.m5.xlarge", help="Instance type of the prepare step.")
    process_instance_count: int = option(
        1, min=1, max=1, help="Instances of the prepare step: 1 (the job does not split its "
        "work; more instances would each do all of it, to the same output).")
    train_instance_type: str = option(
        "ml.g5.2xlarge", help="Instance type of the training step. The article's ml.p3.2xlarge "
        "(V100) needs the image's cu126 variant; the default cu130 image runs on T4 and newer.")
    train_instance_count: int = option(1, min=1, help="Instances of the training step.")
    inference_instance_type: str = option("ml.g4dn.2xlarge",
                                          help="Instance type of the inference step.")
    inference_instance_count: int = option(
        1, min=1, max=1, help="Instances of the inference step: 1 (the job does not split its "
        "requests; more instances would each run all of them, to the same output).")
    resolution: int = option(256, min=MIN_TRAINING_RESOLUTION, max=1024, power_of_two=True,
                             help="Square size of the prepared training images.")
    cfg: str = option("paper256", choices=CFG_NAMES, help="Training preset (hyperparameter cfg).")
    kimg: float = option(2000.0, min=0, min_exclusive=True,
                         help="Training length in thousands of images (hyperparameter kimg).")
    gamma: float = option(10.0, min=0, help="R1 regularisation weight (hyperparameter gamma).")
    augpipe: str = option("bg", choices=AUGPIPE_NAMES, help="ADA pipeline (hyperparameter augpipe).")
    mirror: bool = option(True, help="Add x-flipped images (hyperparameter mirror).")
    snap: int = option(10, min=1, help="Checkpoint every N ticks (hyperparameter snap).")
    gpus: int = option(1, min=1, power_of_two=True, help="GPUs per training instance.")
    batch: str = option("", metavar="INT", default_text="preset value",
                        help="Total batch size (hyperparameter batch); empty: the preset's.")
    cbase: str = option("", metavar="INT", default_text="preset value",
                        help="Channel base (hyperparameter cbase); empty: the preset's. Small "
                        "values make rehearsals fast.")
    inference_steps: int = option(1000, min=1, max=100000,
                                  help="Optimisation steps of each projection (infer --num-steps).")

    # False: each value alone (an execution's overrides, before the stored pipeline's other
    # values are known); the definition's values are always checked together.
    check_together: dataclasses.InitVar[bool] = True

    def __post_init__(self, check_together: bool = True) -> None:
        _validate(self, parameter_name)
        for name in ("output_uri", "checkpoint_uri"):
            # Each execution writes below PREFIX/<execution id>: a trailing '/' would make the
            # keys PREFIX//<id>, another S3 location than PREFIX/<id>.
            value = getattr(self, name)
            if value is not None and value.endswith("/") and len(value.rstrip("/")) > 5:
                object.__setattr__(self, name, value.rstrip("/"))
        for name in ("input_data_uri", "inference_input_uri", "output_uri", "checkpoint_uri"):
            value = getattr(self, name)
            if value is not None:
                check_s3_uri(parameter_name(name), value)
        for name in ("process_instance_type", "train_instance_type", "inference_instance_type"):
            check_instance_type(parameter_name(name), getattr(self, name))
        if not self.image_uri or any(c.isspace() for c in self.image_uri):
            raise fail("ImageUri", self.image_uri, "an image URI such as "
                       "123456789012.dkr.ecr.us-east-1.amazonaws.com/sg2-container:latest")
        if self.notification_topic_arn:
            check_topic_arn("NotificationTopicArn", self.notification_topic_arn, " or empty")
        for name in ("batch", "cbase"):
            value = getattr(self, name)
            if value and not (value.isascii() and value.isdigit() and int(value) >= 1):
                raise fail(parameter_name(name), value, "a positive integer, or empty for the "
                           "preset's value")
        if check_together:
            self._check_training()

    def _check_training(self) -> None:
        """What the training job would refuse from these values (a filter augpipe at 16 px, a
        batch that does not split over the GPUs) is refused now, before anything is paid for:
        the same options and plan the job makes, for the prepared RGB images."""
        from sg2_container.pipeline import layout

        try:
            options = TrainingOptions(
                data=layout.FIXED_HYPERPARAMETERS["data"],
                outdir=layout.FIXED_HYPERPARAMETERS["outdir"], metrics=(), cfg=self.cfg,
                augpipe=self.augpipe, gpus=self.gpus, kimg=self.kimg, gamma=self.gamma,
                mirror=self.mirror, snap=self.snap, batch=int(self.batch) if self.batch else None,
                cbase=int(self.cbase) if self.cbase else None)
            make_plan(options, self.resolution, 3, 0,
                      num_gpus=self.gpus * self.train_instance_count)
        except UserError as error:
            raise UserError(f"the training step would refuse these parameters (Resolution="
                            f"{self.resolution}, Cfg={self.cfg}, Augpipe={self.augpipe}, Gpus="
                            f"{self.gpus} x {self.train_instance_count} instance(s), Batch="
                            f"{self.batch or 'preset'}): {error}") from None

    def with_bucket(self, bucket: str, prefix: str = "sg2") -> "PipelineParameters":
        """S3 locations not given are placed under s3://BUCKET/PREFIX/."""
        defaults = {"input_data_uri": "uploads", "inference_input_uri": "inference-input",
                    "output_uri": "output", "checkpoint_uri": "checkpoints"}
        filled = {k: f"s3://{bucket}/{prefix}/{leaf}" for k, leaf in defaults.items()
                  if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)

    def with_params(self, overrides: Mapping[str, str]) -> "PipelineParameters":
        """`{"Kimg": "1", ...}` (names as SageMaker shows them) applied to these values."""
        return dataclasses.replace(self, **field_values(overrides))


def parameter_fields() -> dict[str, Any]:
    """Parameter name -> schema field of PipelineParameters, in declaration order."""
    return {parameter_name(n): f for n, f in fields(PipelineParameters).items()}


# A field's kind -> its SageMaker parameter type; booleans are Integer 1/0, as the article
# passes mirror.
PARAMETER_TYPES = {str: "String", int: "Integer", float: "Float", bool: "Integer"}


def parameter_value(field: Any, value: Any) -> Any:
    """A typed field value as the pipeline's parameter of PARAMETER_TYPES[field.kind] holds
    it (a definition's DefaultValue)."""
    return int(value) if field.kind is bool else value


def parameter_text(field: Any, value: Any) -> str:
    """The text StartPipelineExecution takes for a typed value: SageMaker parses an Integer
    parameter's text as an integer and a Float's as a number, so `true`, `32.0` or ` 2` given
    to an Integer parameter would be refused there; bool -> 1/0, int -> digits, float -> its
    repr (1e3 -> 1000.0), a string as it is."""
    value = parameter_value(field, value)
    return repr(float(value)) if field.kind is float else str(value)


def field_values(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Parameter names and text values -> typed PipelineParameters field values."""
    known = parameter_fields()
    values = {}
    for name, text in overrides.items():
        if name not in known:
            raise UserError(f"unknown pipeline parameter {name!r}{closest(name, known)}; "
                            f"valid: {', '.join(known)}")
        field = known[name]
        values[field.name] = coerce(dataclasses.replace(field, name=name), text)
    return values


def parse_param_args(items: Iterable[str], *, together: bool = True) -> dict[str, Any]:
    """['Kimg=1', 'Mirror=true'] -> {'kimg': 1.0, 'mirror': True}, validated as
    PipelineParameters (with `together`, also with the code's defaults for the rest); a
    malformed item, an unknown name or a bad value is named."""
    parsed: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {item!r}: use NAME=VALUE, e.g. Kimg=1 "
                            f"(names: {', '.join(parameter_fields())})")
        parsed[name.strip()] = value
    values = field_values(parsed)
    PipelineParameters(**values, check_together=together)  # bad values fail here, first
    return values


def check_with_stored(values: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
    """An execution's overrides (typed, from `parse_param_args`) checked together with the
    stored pipeline's defaults (parameter name -> DefaultValue) for the parameters not given:
    the values the execution will run with, not the code's defaults."""
    known = parameter_fields()
    base = field_values({name: value for name, value in stored.items() if name in known})
    try:
        PipelineParameters(**{**base, **values})
    except UserError as error:
        raise UserError(f"{error} (parameters not given: the stored pipeline's defaults)"
                        ) from None


def parameter_texts(values: Mapping[str, Any]) -> dict[str, str]:
    """Typed field values (from `parse_param_args`) -> {parameter name: the text SageMaker
    takes}, as StartPipelineExecution's PipelineParameters."""
    known = fields(PipelineParameters)
    return {parameter_name(name): parameter_text(known[name], value)
            for name, value in values.items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineSettings:
    """Fixed when the pipeline is built: where it lives and how its jobs run."""

    name: str = option("sg2-stylegan2", help="Pipeline name.")
    region: str = option("us-east-1", help="AWS region of the pipeline.")
    bucket: str = option("sg2-example-bucket", help="S3 bucket for the default data locations.")
    role_arn: str = option(f"arn:aws:iam::{EXAMPLE_ACCOUNT}:role/sg2-pipeline", metavar="ARN",
                           help="IAM role the pipeline's jobs run as.")
    notify_lambda_arn: str | None = option(None, metavar="ARN", default_text=(
        "function sg2-pipeline-notify in the role's account and the region"),
        help="Lambda function running sg2_container.pipeline.notify.handler.")
    spot: bool = option(False, is_flag=True, help="Train on managed spot instances.")
    max_run_hours: float = option(72.0, min=0, min_exclusive=True, max=28 * 24,
                                  help="Training time limit (the article trains ~72 h).")
    max_wait_hours: float | None = option(None, min=0, min_exclusive=True, max=28 * 24,
                                          default_text="2 x max-run-hours",
                                          help="With --spot: limit including waiting for "
                                          "spot capacity.")
    volume_gb: int = option(30, min=1, help="Storage per instance, in GB.")
    inference_rehearsal: bool = option(
        False, is_flag=True, help="The inference step projects without VGG16 weights (infer "
        "--allow-random-vgg16): a labelled rehearsal of the mechanics, not a meaningful "
        "projection; for local runs where the weights are not at hand.")

    def __post_init__(self) -> None:
        """Errors name the --flag: settings are typed as options of `sg2 pipeline` commands."""
        flag = {name: field.flag for name, field in fields(PipelineSettings).items()}
        _validate(self, flag.__getitem__)
        if not PIPELINE_NAME.fullmatch(self.name):
            raise fail(flag["name"], self.name, "letters, digits and hyphens (up to 256)")
        if not REGION.fullmatch(self.region):
            raise fail(flag["region"], self.region, "an AWS region such as us-east-1")
        if not BUCKET.fullmatch(self.bucket):
            raise fail(flag["bucket"], self.bucket, "an S3 bucket name (lowercase, 3-63 "
                       "characters), without s3://")
        check_role_arn(flag["role_arn"], self.role_arn)
        if self.notify_lambda_arn is not None and not LAMBDA_ARN.fullmatch(self.notify_lambda_arn):
            raise fail(flag["notify_lambda_arn"], self.notify_lambda_arn,
                       "a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
        for name in ("max_run_hours", "max_wait_hours"):  # SageMaker counts whole seconds
            hours = getattr(self, name)
            if hours is not None and int(hours * 3600) < 1:
                raise fail(flag[name], hours, "at least one second (1/3600 h = 0.000278)")
        if self.max_wait_hours is not None and not self.spot:
            raise fail(flag["max_wait_hours"], self.max_wait_hours, f"only with {flag['spot']}")
        if self.max_wait_hours is not None and self.max_wait_hours < self.max_run_hours:
            raise fail(flag["max_wait_hours"], self.max_wait_hours,
                       f">= {flag['max_run_hours']} ({self.max_run_hours:g})")

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]

    @property
    def lambda_arn(self) -> str:
        partition = self.role_arn.split(":")[1]
        return self.notify_lambda_arn or (
            f"arn:{partition}:lambda:{self.region}:{self.account}:function:sg2-pipeline-notify")

    @property
    def max_run_seconds(self) -> int:
        return int(self.max_run_hours * 3600)

    @property
    def max_wait_seconds(self) -> int | None:
        if not self.spot:
            return None
        hours = self.max_wait_hours if self.max_wait_hours is not None else 2 * self.max_run_hours
        return int(min(hours, 28 * 24) * 3600)
