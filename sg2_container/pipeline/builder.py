"""The one module that imports the SageMaker Python SDK (V3, `sagemaker==3.27.0`; why:
docs/pipeline.md): PipelineParameters + PipelineSettings -> a `sagemaker.mlops.workflow`
Pipeline.

Building needs no credentials and no network: the session is a boto3 session with the
region and placeholder keys, every S3 location is explicit, the Lambda is named by ARN, the
SDK's telemetry is switched off through the session's own config, the region variable and
role-validation switch V3 reads are defaulted before it is imported, and the EC2 instance
metadata lookup is off while the SDK loads and builds (`_offline`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from typing import Any

from sg2_container.pipeline import layout
from sg2_container.pipeline.options import (
    PARAMETER_TYPES,
    PipelineParameters,
    PipelineSettings,
    parameter_fields,
    parameter_value,
)

log = logging.getLogger(__name__)

# Telemetry off: passed to the SDK session as its config, so no file or variable is needed.
SDK_CONFIG = {"SchemaVersion": "1.0",
              "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


METADATA_SWITCH = "AWS_EC2_METADATA_DISABLED"


@contextlib.contextmanager
def _offline():
    """Importing the SDK creates a boto3 client (sagemaker.ai_registry.air_hub); without
    credentials, botocore then asks the EC2 instance metadata service (169.254.169.254, with
    retries and timeouts). Building needs no credentials, so that lookup is off meanwhile; the
    caller's setting comes back after, because `upsert` and `start` may need the instance's
    role for their own clients in the same process."""
    before = os.environ.get(METADATA_SWITCH)
    os.environ[METADATA_SWITCH] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(METADATA_SWITCH, None)
        else:
            os.environ[METADATA_SWITCH] = before


def _sdk(region: str):
    """Imports the SDK modules we use, quietly; a missing SDK is the user's to install.

    V3 reads the region when its modules load and validates roles against IAM unless told
    not to; building offline needs neither, so both are defaulted (never overridden) first."""
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in ("sagemaker", "sagemaker.config", "sagemaker.core", "sagemaker.train",
                         "sagemaker.mlops"):
                logging.getLogger(name).setLevel(logging.ERROR)
            import sagemaker.core.lambda_helper as lambda_helper
            import sagemaker.core.processing as processing
            import sagemaker.core.shapes as shapes
            import sagemaker.core.training.configs as configs
            import sagemaker.core.workflow.execution_variables as execution_variables
            import sagemaker.core.workflow.functions as functions
            import sagemaker.core.workflow.parameters as parameters
            import sagemaker.core.workflow.pipeline_context as pipeline_context
            import sagemaker.mlops.workflow.lambda_step as lambda_step
            import sagemaker.mlops.workflow.pipeline as pipeline
            import sagemaker.mlops.workflow.steps as steps
            import sagemaker.train.model_trainer as model_trainer
    except ImportError as error:
        from sg2_container.errors import UserError, install_hint

        raise UserError("the SageMaker Python SDK V3 (sagemaker 3.x, the [pipeline] extra pins "
                        f"3.27.0) is not installed, or an older V2 is: {install_hint('sagemaker')}"
                        f" ({error})") from error
    _check_config_schema_once()
    return dict(lambda_helper=lambda_helper, processing=processing, shapes=shapes,
                ev=execution_variables, functions=functions, parameters=parameters,
                pipeline_context=pipeline_context, lambda_step=lambda_step, pipeline=pipeline,
                steps=steps, configs=configs, model_trainer=model_trainer)


def _check_config_schema_once():
    """The SDK validates its config (ours: SDK_CONFIG) with jsonschema.validate at each of the
    ~44 lookups of a build, and that checks the SDK's large schema against the meta-schema
    every time: 7 of a build's 8 s. The same validation, with the constant schema checked once
    (jsonschema.validate's own steps: check_schema, then best_match of iter_errors)."""
    import jsonschema
    from sagemaker.core.config import config_manager

    manager = getattr(config_manager, "SageMakerConfig", None)
    schema = getattr(config_manager, "SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA", None)
    if manager is None or schema is None or getattr(manager.validate_sagemaker_config,
                                                    "_sg2_checked", False):
        return  # another SDK layout: left as it is
    kind = jsonschema.validators.validator_for(schema)
    kind.check_schema(schema)
    validator = kind(schema)

    def validate_sagemaker_config(sagemaker_config=None):
        error = jsonschema.exceptions.best_match(validator.iter_errors(sagemaker_config))
        if error is not None:
            raise error

    validate_sagemaker_config._sg2_checked = True
    manager.validate_sagemaker_config = staticmethod(validate_sagemaker_config)


def _session(sdk, settings: PipelineSettings, boto_session=None):
    """A PipelineSession that records job requests instead of sending them."""
    import boto3

    if boto_session is None:  # offline: the SDK wants keys, but nothing is sent
        boto_session = boto3.Session(aws_access_key_id="offline", aws_secret_access_key="offline",
                                     region_name=settings.region)
    return sdk["pipeline_context"].PipelineSession(
        boto_session=boto_session, default_bucket=settings.bucket, sagemaker_config=SDK_CONFIG)


def _parameters(sdk, values: PipelineParameters) -> dict[str, Any]:
    """One SDK parameter per PipelineParameters field, its default the field's value, its
    type the one `start` sends text for (options.PARAMETER_TYPES)."""
    made = {}
    for name, field in parameter_fields().items():
        kind = getattr(sdk["parameters"], "Parameter" + PARAMETER_TYPES[field.kind])
        default = parameter_value(field, getattr(values, field.name))
        made[field.name] = kind(name, default_value=default)
    return made


def hyperparameters(sdk, p: dict[str, Any]) -> dict[str, Any]:
    """The article's `{k: json.dumps(v)}`: fixed values dumped now; a string parameter is
    quoted at run time (Join), numbers are their own JSON (as text: hyperparameters are
    strings). batch/cbase stay raw text, where
    empty means the preset's value."""
    join = sdk["functions"].Join
    quoted = {name: join(on="", values=['"', p[name], '"']) for name in ("cfg", "augpipe")}
    fixed = {k: json.dumps(v) for k, v in layout.FIXED_HYPERPARAMETERS.items()}
    numbers = {name: p[name].to_string() for name in ("gpus", "kimg", "gamma", "mirror", "snap")}
    return {**fixed, **quoted, **numbers, "batch": p["batch"], "cbase": p["cbase"]}


def build_pipeline(values: PipelineParameters, settings: PipelineSettings, *, boto_session=None):
    """The article's four steps on our image, wired by data dependencies only."""
    with _offline():
        sdk = _sdk(settings.region)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _build(sdk, values.with_bucket(settings.bucket), settings,
                          _session(sdk, settings, boto_session))


def _build(sdk, values: PipelineParameters, settings: PipelineSettings, session):
    p = _parameters(sdk, values)
    join, ev, shapes = sdk["functions"].Join, sdk["ev"].ExecutionVariables, sdk["shapes"]
    run_prefix = [p["output_uri"], ev.PIPELINE_EXECUTION_ID]

    def processor(command: str, kind: str):
        return sdk["processing"].Processor(
            image_uri=p["image_uri"], role=settings.role_arn, entrypoint=[layout.ENTRYPOINT, command],
            instance_count=p[f"{kind}_instance_count"], instance_type=p[f"{kind}_instance_type"],
            volume_size_in_gb=settings.volume_gb, sagemaker_session=session)

    def processing_input(name_and_path, source):
        name, path = name_and_path
        return shapes.ProcessingInput(input_name=name, s3_input=shapes.ProcessingS3Input(
            s3_uri=source, local_path=path, s3_data_type="S3Prefix", s3_input_mode="File",
            s3_data_distribution_type="FullyReplicated"))

    def processing_output(name_and_path, destination):
        name, path = name_and_path
        return shapes.ProcessingOutput(output_name=name, s3_output=shapes.ProcessingS3Output(
            s3_uri=destination, local_path=path, s3_upload_mode="EndOfJob"))

    prepare_input, prepare_output = layout.PREPARE_INPUT, layout.PREPARE_OUTPUT
    prepare = sdk["steps"].ProcessingStep(layout.PREPARE_STEP, step_args=processor("prepare", "process").run(
        inputs=[processing_input(prepare_input, p["input_data_uri"])],
        outputs=[processing_output(prepare_output, join(on="/", values=[*run_prefix, "data"]))],
        arguments=["--source", prepare_input[1],
                   "--dest", f"{prepare_output[1]}/{layout.DATASET_NAME}",
                   "--width", p["resolution"].to_string(), "--height", p["resolution"].to_string()]))

    configs = sdk["configs"]
    trainer = sdk["model_trainer"].ModelTrainer(
        training_image=p["image_uri"], role=settings.role_arn, sagemaker_session=session,
        base_job_name=layout.TRAIN_STEP,  # V3 would derive it from the image, a parameter here
        compute=configs.Compute(
            instance_count=p["train_instance_count"], instance_type=p["train_instance_type"],
            volume_size_in_gb=settings.volume_gb, enable_managed_spot_training=settings.spot or None),
        stopping_condition=configs.StoppingCondition(
            max_runtime_in_seconds=settings.max_run_seconds,
            max_wait_time_in_seconds=settings.max_wait_seconds),
        output_data_config=configs.OutputDataConfig(
            s3_output_path=join(on="/", values=[*run_prefix, "model"])),
        checkpoint_config=configs.CheckpointConfig(
            s3_uri=join(on="/", values=[p["checkpoint_uri"], ev.PIPELINE_EXECUTION_ID]),
            local_path=layout.CHECKPOINT_LOCAL_PATH),
        hyperparameters=hyperparameters(sdk, p),
    ).with_metric_definitions([configs.MetricDefinition(name=m["Name"], regex=m["Regex"])
                               for m in layout.METRIC_DEFINITIONS])
    dataset = prepare.properties.ProcessingOutputConfig.Outputs[prepare_output[0]].S3Output.S3Uri
    train = sdk["steps"].TrainingStep(layout.TRAIN_STEP, step_args=trainer.train(input_data_config=[
        configs.Channel(channel_name=layout.TRAIN_CHANNEL, content_type="application/x-image",
                        data_source=configs.DataSource(s3_data_source=configs.S3DataSource(
                            s3_uri=dataset, s3_data_type="S3Prefix",
                            s3_data_distribution_type="FullyReplicated")))]))

    model_input, data_input, infer_output = (layout.INFER_MODEL_INPUT, layout.INFER_DATA_INPUT,
                                             layout.INFER_OUTPUT)
    infer = sdk["steps"].ProcessingStep(layout.INFER_STEP, step_args=processor("infer", "inference").run(
        inputs=[processing_input(model_input, train.properties.ModelArtifacts.S3ModelArtifacts),
                processing_input(data_input, p["inference_input_uri"])],
        outputs=[processing_output(infer_output, join(on="/", values=[*run_prefix, "inference"]))],
        arguments=["--name", layout.INFER_RESULTS_NAME,
                   "--num-steps", p["inference_steps"].to_string(),
                   *([layout.INFER_REHEARSAL_FLAG] if settings.inference_rehearsal else [])]))

    results = infer.properties.ProcessingOutputConfig.Outputs[infer_output[0]].S3Output.S3Uri
    LambdaOutput = sdk["lambda_step"].LambdaOutput
    kinds = sdk["lambda_step"].LambdaOutputTypeEnum
    notify = sdk["lambda_step"].LambdaStep(
        layout.NOTIFY_STEP,
        lambda_func=sdk["lambda_helper"].Lambda(function_arn=settings.lambda_arn, session=session),
        inputs={"output_uri": join(on="/", values=[results, layout.INFER_RESULTS_NAME]),
                "pipeline_execution_arn": ev.PIPELINE_EXECUTION_ARN,
                "topic_arn": p["notification_topic_arn"], "subject": layout.NOTIFY_SUBJECT,
                "status": "Succeeded"},
        outputs=[LambdaOutput("statusCode", kinds.Integer), LambdaOutput("message", kinds.String)])

    return sdk["pipeline"].Pipeline(
        name=settings.name, parameters=list(p.values()), steps=[prepare, train, infer, notify],
        sagemaker_session=session)


def definition(values: PipelineParameters, settings: PipelineSettings) -> dict:
    """The pipeline definition as SageMaker stores it, built offline."""
    pipeline = build_pipeline(values, settings)
    with _offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return json.loads(pipeline.definition())


