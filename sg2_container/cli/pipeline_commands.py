"""`sg2 pipeline`: the article's SageMaker Pipeline (prepare -> train -> infer -> notify) as
commands. Everything is validated before anything reaches AWS."""
import contextlib
import json
import re
from pathlib import Path

import click

from sg2_container.cli.errors import user_errors_as_click
from sg2_container.options.schema import click_options

SETTINGS_HELP = "Build settings as in `sg2 pipeline definition --help`."


def register(cli: click.Group) -> None:
    cli.add_command(pipeline)


def _settings_options():
    from sg2_container.pipeline.options import PipelineSettings

    return click_options(PipelineSettings, exclude=("role_arn", "bucket"))


def _param_option(command):
    return click.option(
        "--param", "params", multiple=True, metavar="NAME=VALUE",
        help="A pipeline parameter's value (repeatable), e.g. --param Kimg=1 --param "
             "TrainInstanceType=ml.g5.2xlarge; `sg2 pipeline parameters` lists them.")(command)


@click.group()
def pipeline() -> None:
    """The article's SageMaker Pipeline on the sg2-container image: stylegan2Process ->
    stylegan2train -> stylegan2Inference -> stylegan2Notification (SNS), with an EventBridge
    rule that notifies failures too. Needs the extra: pip install 'sg2-container[pipeline]'."""


def _build_inputs(params, image_uri=None, **settings_values):
    from sg2_container.errors import UserError
    from sg2_container.pipeline.options import (
        PipelineParameters,
        PipelineSettings,
        parse_param_args,
    )

    overrides = parse_param_args(params)
    if image_uri is not None:
        if overrides.get("image_uri", image_uri) != image_uri:
            raise UserError(f"--param ImageUri={overrides['image_uri']} and --image-uri "
                            f"{image_uri} disagree: give the image once")
        overrides["image_uri"] = image_uri
    return PipelineParameters(**overrides), PipelineSettings(**settings_values)


def _definition(values, settings) -> dict:
    from sg2_container.pipeline.builder import definition

    return definition(values, settings)


@pipeline.command("parameters")
def parameters_command():
    """List the pipeline's parameters, their defaults and what they mean."""
    from sg2_container.pipeline.options import parameter_fields, parameter_text

    for name, field in parameter_fields().items():
        empty = field.default is None or field.default == ""
        default = field.spec.default_text if empty else parameter_text(field, field.default)
        click.echo(f"{name:<24} {default or '':<24} {field.spec.help}")


def _check_output(output: str) -> None:
    """A file we can write: its folder exists and is writable, and it is not a folder."""
    import os

    from sg2_container.errors import UserError

    path = Path(output)
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"--output {output}: the folder {folder} does not exist; create it first")
    if path.is_dir():
        raise UserError(f"--output {output} is a folder: name the JSON file to write")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise UserError(f"--output {output}: {path if path.exists() else folder} is not writable")


@pipeline.command("definition")
@_param_option
@click.option("--role-arn", default=None, metavar="ARN",
              help="IAM role of the jobs [default: an example role, for reading only].")
@click.option("--bucket", default="sg2-example-bucket", show_default=True,
              help="S3 bucket for the default data locations.")
@_settings_options()
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON here instead of printing it.")
def definition_command(params, role_arn, bucket, output, **settings):
    """Print the pipeline definition JSON, built offline (no credentials, no network)."""
    with user_errors_as_click():
        if output:
            _check_output(output)  # before the build, which takes seconds
        if role_arn is not None:
            settings["role_arn"] = role_arn
        values, built = _build_inputs(params, bucket=bucket, **settings)
        text = json.dumps(_definition(values, built), indent=2) + "\n"
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as error:
            raise click.ClickException(f"--output {output}: {error.strerror or error}") from error
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@pipeline.command("run")
@click.option("--local", "local", is_flag=True,
              help="Run on this machine (required: executions on SageMaker use `start`).")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the local run: s3/<bucket>/<key> stands in for each S3 URI "
                   "(put the designer's uploads at the InputDataUri's folder), jobs/ holds each "
                   "step's /opt/ml tree, notifications/ the messages.")
@_param_option
@click.option("--bucket", default="sg2-example-bucket", show_default=True,
              help="S3 bucket of the default data locations (a folder under WORKDIR/s3).")
@_settings_options()
@click.option("--sns-topic-arn", default=None, metavar="ARN",
              help="Publish the notifications to this real SNS topic (boto3's default "
                   "credentials) instead of writing them to WORKDIR/notifications.")
@click.option("--until", default=None, metavar="STEP",
              help="Stop after this step (e.g. stylegan2Process to rehearse the data only).")
@click.option("--new-execution", is_flag=True,
              help="Start a new execution (new id, so training starts over) instead of "
                   "retrying the one recorded in WORKDIR.")
def run_command(local, workdir, params, bucket, sns_topic_arn, until, new_execution, **settings):
    """Run the pipeline's definition step by step on this machine, before spending money.

    Builds the same definition as `sg2 pipeline definition` and executes its steps in
    dependency order with the local stand-ins: every step runs the image's entrypoint
    (sg2-sagemaker) with the arguments, hyperparameters, channels, inputs and outputs the
    definition gives it. Instance types are ignored (steps use this machine's GPU if it has
    one). Running the same command again retries the same execution: the training step
    resumes from its checkpoints. A failed step stops the run and sends the failure
    notification, as the EventBridge rule would.
    """
    from sg2_container.pipeline import rules
    from sg2_container.pipeline.options import check_topic_arn
    from sg2_container.sagemaker.jobs import EXIT_STOPPED, EXIT_USER_ERROR
    from sg2_container.sagemaker.local_pipeline import LocalPipelineRun, s3_folder

    with user_errors_as_click():
        if not local:
            raise click.UsageError("only --local runs are supported here; start an execution "
                                   "on SageMaker with `sg2 pipeline start`")
        if sns_topic_arn is not None:
            check_topic_arn("--sns-topic-arn", sns_topic_arn)
        values, built = _build_inputs(params, bucket=bucket, **settings)
        body = _definition(values, built)
        sns_client = None
        if sns_topic_arn is not None:
            sns_client = _client("sns", sns_topic_arn.split(":")[3])
        started = {}

        def show(event):
            if event.state == "Executing":
                started[event.step] = True
                click.echo(f"[{event.step}] Executing", err=True)
            else:
                line = f"[{event.step}] {event.state} after {event.seconds:.1f} s"
                click.echo(line + (f": {event.reason}" if event.reason else ""), err=True)

        runner = LocalPipelineRun(
            body, workdir, pipeline_arn=rules.pipeline_arn(built.region, built.account, built.name),
            sns_client=sns_client, topic_arn=sns_topic_arn, new_execution=new_execution,
            on_event=show)
        types = ", ".join(f"{name}={getattr(values, name)}" for name in (
            "process_instance_type", "train_instance_type", "inference_instance_type"))
        click.echo(f"note: instance types and counts are ignored locally ({types}); each step "
                   "runs once on this machine, on its GPU if it has one", err=True)
        located = values.with_bucket(built.bucket)
        click.echo(f"execution {runner.execution_id} in {workdir} (uploads: "
                   f"{s3_folder(workdir, located.input_data_uri)}, inference input: "
                   f"{s3_folder(workdir, located.inference_input_uri)})", err=True)
        report = runner.run(until=until)
    for subject, message in report.messages:
        click.echo(f"--- notification{': ' + subject if subject else ''}")
        click.echo(message.rstrip())
        for uri in sorted(set(re.findall(r"s3://[^\s,;]+", message))):
            click.echo(f"(locally, {uri} is {s3_folder(workdir, uri.rstrip('.'))})")
    for path in report.notifications:
        click.echo(f"(written to {path})", err=True)
    if report.status != "Succeeded":
        click.echo(f"pipeline {report.status}: {report.failure_reason}", err=True)
        raise SystemExit(EXIT_STOPPED if report.status == "Stopped" else EXIT_USER_ERROR)
    if report.not_run:
        click.echo(f"steps through {until} Succeeded (--until): execution {report.execution_id}; "
                   f"not run: {', '.join(report.not_run)}. The same command without --until "
                   "runs them (the same execution: training resumes from its checkpoints)",
                   err=True)
        return
    click.echo(f"pipeline Succeeded: execution {report.execution_id}", err=True)


@contextlib.contextmanager
def _aws_errors(doing: str):
    """An AWS refusal (no credentials, no such pipeline, access denied) as one line."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        raise click.ClickException(f"{doing}: {error}") from error


def _client(service: str, region: str):
    import boto3

    return boto3.Session(region_name=region).client(service)


@pipeline.command("upsert")
@click.option("--role-arn", required=True, metavar="ARN",
              help="IAM role of the pipeline and its jobs (SageMaker execution role).")
@click.option("--image-uri", required=True, metavar="URI",
              help="The sg2-container image in ECR (default of the ImageUri parameter).")
@click.option("--bucket", required=True, help="S3 bucket for the default data locations.")
@_param_option
@_settings_options()
def upsert_command(role_arn, image_uri, bucket, params, **settings):
    """Create or update the pipeline on SageMaker (parameters given become its defaults)."""
    from sg2_container.pipeline import service

    with user_errors_as_click():
        values, built = _build_inputs(params, image_uri=image_uri, role_arn=role_arn,
                                      bucket=bucket, **settings)
        body = _definition(values, built)
        with _aws_errors(f"upserting pipeline {built.name}"):
            arn = service.upsert(_client("sagemaker", built.region), built.name, body,
                                 built.role_arn)
    click.echo(arn)


@pipeline.command("start")
@_param_option
@click.option("--name", default="sg2-stylegan2", show_default=True, help="Pipeline name.")
@click.option("--region", default="us-east-1", show_default=True, help="AWS region.")
@click.option("--display-name", default=None, help="Name shown for this execution.")
def start_command(params, name, region, display_name):
    """Start an execution; parameters not given keep the pipeline's defaults. Prints its ARN."""
    from sg2_container.pipeline import service
    from sg2_container.pipeline.options import (
        PipelineSettings,
        check_display_name,
        check_with_stored,
        parameter_texts,
        parse_param_args,
    )

    with user_errors_as_click():
        given = parse_param_args(params, together=False)  # each value, before any AWS call
        PipelineSettings(name=name, region=region)
        if display_name is not None:
            check_display_name("--display-name", display_name)
        client = _client("sagemaker", region)
        with _aws_errors(f"starting pipeline {name}"):
            stored = service.stored_defaults(client, name)
        # Together with the values the execution gets for the rest: the stored pipeline's.
        check_with_stored(given, stored)
        with _aws_errors(f"starting pipeline {name}"):
            arn = service.start(client, name, parameter_texts(given), display_name)
    click.echo(arn)


@pipeline.command("status")
@click.argument("execution_arn")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_command(execution_arn, as_json):
    """The execution's status and each step's state (and failure reason)."""
    from sg2_container.pipeline import service

    with user_errors_as_click():
        region = service.execution_region("EXECUTION_ARN", execution_arn)
        with _aws_errors(f"reading {execution_arn}"):
            report = service.status(_client("sagemaker", region), execution_arn)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"execution {execution_arn}: {report['status']}"
               + (f" ({report['failure_reason']})" if report["failure_reason"] else ""))
    for step in report["steps"]:
        first, *more = step["reason"].splitlines() or [""]
        row = f"  {step['name']:<24} {step['status']:<12}"
        click.echo(f"{row}  {first}" if first else row.rstrip())
        for line in more:  # a training job's reason runs over lines: keep them in its column
            click.echo(" " * (len(row) + 2) + line)


@pipeline.command("retry")
@click.argument("execution_arn")
def retry_command(execution_arn):
    """Retry a failed or stopped execution under its own id: its training step resumes from
    the checkpoints under CheckpointUri/<execution id> and steps that succeeded are not run
    again (SageMaker's RetryPipelineExecution; `start` begins a new execution, whose training
    starts over). The execution keeps its parameters. Prints its ARN."""
    from sg2_container.pipeline import service

    with user_errors_as_click():
        region = service.execution_region("EXECUTION_ARN", execution_arn)
        with _aws_errors(f"retrying {execution_arn}"):
            arn = service.retry(_client("sagemaker", region), execution_arn)
    click.echo(arn)


@pipeline.command("notify-rule")
@click.option("--topic-arn", required=True, metavar="ARN", help="The SNS topic to notify.")
@click.option("--name", default="sg2-stylegan2", show_default=True, help="Pipeline name.")
@click.option("--region", default="us-east-1", show_default=True, help="AWS region.")
@click.option("--account", default=None, metavar="ID",
              help="AWS account of the pipeline [default: the topic's account].")
@click.option("--rule-name", default="sg2-stylegan2-failed", show_default=True,
              help="EventBridge rule name.")
@click.option("--create", is_flag=True,
              help="Create the rule, its target and the topic-policy statement with boto3 "
                   "(otherwise print them as JSON).")
def notify_rule_command(topic_arn, name, region, account, rule_name, create):
    """The failure notification: an EventBridge rule on executions that end Failed or Stopped,
    publishing to the same SNS topic as the notification step."""
    from sg2_container.errors import UserError
    from sg2_container.pipeline import rules
    from sg2_container.pipeline.options import PipelineSettings, check_topic_arn

    with user_errors_as_click():
        check_topic_arn("--topic-arn", topic_arn)
        PipelineSettings(name=name, region=region)
        topic_region = topic_arn.split(":")[3]
        if topic_region != region:
            raise UserError(f"--topic-arn {topic_arn} is in {topic_region}, the rule in --region "
                            f"{region}: EventBridge sends to an SNS topic in the rule's own region "
                            "only, and the rule must be in the pipeline's region; use a topic in "
                            f"{region} (or --region {topic_region} if the pipeline is there)")
        account = account or topic_arn.split(":")[4]
        if not (account.isascii() and account.isdigit() and len(account) == 12):
            raise UserError(f"--account={account!r} is not allowed: a 12-digit AWS account id")
        partition = topic_arn.split(":")[1]
        rule = rules.failure_rule(rules.pipeline_arn(region, account, name, partition),
                                  topic_arn, rule_name)
        if not create:
            click.echo(json.dumps(rule, indent=2))
            return
        with _aws_errors(f"creating rule {rule_name}"):
            arn = rules.create_failure_rule(rule, events_client=_client("events", region),
                                            sns_client=_client("sns", topic_region))
    click.echo(arn)
