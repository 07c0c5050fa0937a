"""The one module that imports the SageMaker Python SDK (V2, `sagemaker==2.257.7`; why:
docs/pipeline.md): PipelineParameters + PipelineSettings -> a `sagemaker.workflow` Pipeline.

Building needs no credentials and no network: the session is a boto3 session with the
region and placeholder keys, every S3 location is explicit, the Lambda is named by ARN, and
the SDK's telemetry is switched off through the session's own config.
"""
from __future__ import annotations

import json
import logging
import warnings
from typing import Any

from sg2_container.pipeline import layout
from sg2_container.pipeline.options import (
    PipelineParameters,
    PipelineSettings,
    parameter_fields,
    parameter_name,
)

log = logging.getLogger(__name__)

# Telemetry off: passed to the SDK session as its config, so no file or variable is needed.
SDK_CONFIG = {"SchemaVersion": "1.0",
              "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def _sdk():
    """Imports the SDK modules we use, quietly; a missing SDK is the user's to install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("sagemaker").setLevel(logging.ERROR)
            logging.getLogger("sagemaker.config").setLevel(logging.ERROR)
            import sagemaker.estimator as estimator
            import sagemaker.inputs as inputs
            import sagemaker.lambda_helper as lambda_helper
            import sagemaker.processing as processing
            import sagemaker.workflow.execution_variables as execution_variables
            import sagemaker.workflow.functions as functions
            import sagemaker.workflow.lambda_step as lambda_step
            import sagemaker.workflow.parameters as parameters
            import sagemaker.workflow.pipeline as pipeline
            import sagemaker.workflow.pipeline_context as pipeline_context
            import sagemaker.workflow.steps as steps
    except ImportError as error:
        from sg2_container.errors import UserError

        raise UserError("the SageMaker Python SDK is not installed: pip install "
                        f"'sg2-container[pipeline]' ({error})") from error
    return dict(estimator=estimator, inputs=inputs, lambda_helper=lambda_helper,
                processing=processing, ev=execution_variables, functions=functions,
                lambda_step=lambda_step, parameters=parameters, pipeline=pipeline,
                pipeline_context=pipeline_context, steps=steps)


def _session(sdk, settings: PipelineSettings, boto_session=None):
    """A PipelineSession that records job requests instead of sending them."""
    import boto3

    if boto_session is None:  # offline: the SDK wants keys, but nothing is sent
        boto_session = boto3.Session(aws_access_key_id="offline", aws_secret_access_key="offline",
                                     region_name=settings.region)
    return sdk["pipeline_context"].PipelineSession(
        boto_session=boto_session, default_bucket=settings.bucket, sagemaker_config=SDK_CONFIG)


def _parameters(sdk, values: PipelineParameters) -> dict[str, Any]:
    """One SDK parameter per PipelineParameters field, its default the field's value."""
    kinds = {str: "ParameterString", int: "ParameterInteger", float: "ParameterFloat"}
    made = {}
    for name, field in parameter_fields().items():
        value = getattr(values, field.name)
        if field.kind is bool:  # the article passes mirror as 1/0
            made[field.name] = sdk["parameters"].ParameterInteger(name, default_value=int(value))
        else:
            made[field.name] = getattr(sdk["parameters"], kinds[field.kind])(name, default_value=value)
    return made


def hyperparameters(sdk, p: dict[str, Any]) -> dict[str, Any]:
    """The article's `{k: json.dumps(v)}`: fixed values dumped now; a string parameter is
    quoted at run time (Join), numbers are their own JSON. batch/cbase stay raw text, where
    empty means the preset's value."""
    join = sdk["functions"].Join
    quoted = {name: join(on="", values=['"', p[name], '"']) for name in ("cfg", "augpipe")}
    fixed = {k: json.dumps(v) for k, v in layout.FIXED_HYPERPARAMETERS.items()}
    return {**fixed, **quoted, "gpus": p["gpus"], "kimg": p["kimg"], "gamma": p["gamma"],
            "mirror": p["mirror"], "snap": p["snap"], "batch": p["batch"], "cbase": p["cbase"]}


def build_pipeline(values: PipelineParameters, settings: PipelineSettings, *, boto_session=None):
    """The article's four steps on our image, wired by data dependencies only."""
    sdk = _sdk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _build(sdk, values.with_bucket(settings.bucket), settings,
                      _session(sdk, settings, boto_session))


def _build(sdk, values: PipelineParameters, settings: PipelineSettings, session):
    p = _parameters(sdk, values)
    join, ev = sdk["functions"].Join, sdk["ev"].ExecutionVariables
    ProcessingInput, ProcessingOutput = sdk["processing"].ProcessingInput, sdk["processing"].ProcessingOutput
    run_prefix = [p["output_uri"], ev.PIPELINE_EXECUTION_ID]

    def processor(command: str, kind: str):
        return sdk["processing"].Processor(
            image_uri=p["image_uri"], role=settings.role_arn, entrypoint=[layout.ENTRYPOINT, command],
            instance_count=p[f"{kind}_instance_count"], instance_type=p[f"{kind}_instance_type"],
            volume_size_in_gb=settings.volume_gb, sagemaker_session=session)

    prepare_input, prepare_output = layout.PREPARE_INPUT, layout.PREPARE_OUTPUT
    prepare = sdk["steps"].ProcessingStep(layout.PREPARE_STEP, step_args=processor("prepare", "process").run(
        inputs=[ProcessingInput(source=p["input_data_uri"], destination=prepare_input[1],
                                input_name=prepare_input[0])],
        outputs=[ProcessingOutput(output_name=prepare_output[0], source=prepare_output[1],
                                  destination=join(on="/", values=[*run_prefix, "data"]))],
        arguments=["--source", prepare_input[1],
                   "--dest", f"{prepare_output[1]}/{layout.DATASET_NAME}",
                   "--width", p["resolution"].to_string(), "--height", p["resolution"].to_string()]))

    estimator = sdk["estimator"].Estimator(
        image_uri=p["image_uri"], role=settings.role_arn,
        instance_count=p["train_instance_count"], instance_type=p["train_instance_type"],
        volume_size=settings.volume_gb,
        output_path=join(on="/", values=[*run_prefix, "model"]),
        checkpoint_s3_uri=join(on="/", values=[p["checkpoint_uri"], ev.PIPELINE_EXECUTION_ID]),
        checkpoint_local_path=layout.CHECKPOINT_LOCAL_PATH,
        use_spot_instances=settings.spot, max_run=settings.max_run_seconds,
        max_wait=settings.max_wait_seconds, disable_profiler=True,
        metric_definitions=[dict(m) for m in layout.METRIC_DEFINITIONS],
        hyperparameters=hyperparameters(sdk, p), sagemaker_session=session)
    dataset = prepare.properties.ProcessingOutputConfig.Outputs[prepare_output[0]].S3Output.S3Uri
    train = sdk["steps"].TrainingStep(layout.TRAIN_STEP, step_args=estimator.fit({
        layout.TRAIN_CHANNEL: sdk["inputs"].TrainingInput(s3_data=dataset,
                                                          content_type="application/x-image")}))

    model_input, data_input, infer_output = (layout.INFER_MODEL_INPUT, layout.INFER_DATA_INPUT,
                                             layout.INFER_OUTPUT)
    infer = sdk["steps"].ProcessingStep(layout.INFER_STEP, step_args=processor("infer", "inference").run(
        inputs=[ProcessingInput(source=train.properties.ModelArtifacts.S3ModelArtifacts,
                                destination=model_input[1], input_name=model_input[0]),
                ProcessingInput(source=p["inference_input_uri"], destination=data_input[1],
                                input_name=data_input[0])],
        outputs=[ProcessingOutput(output_name=infer_output[0], source=infer_output[1],
                                  destination=join(on="/", values=[*run_prefix, "inference"]))],
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return json.loads(pipeline.definition())


def parameter_names() -> list[str]:
    return [parameter_name(n) for n in parameter_fields()]
