"""`sg2 pipeline`: bad input is a named error before anything reaches AWS; upsert, start and
status against moto's SageMaker."""
import json
import pathlib

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from sg2_container.cli.main import cli

REPO = pathlib.Path(__file__).resolve().parents[2]

ROLE = "arn:aws:iam::123456789012:role/service-role/SageMakerExecution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sg2-container:1"


def run(*args):
    return CliRunner().invoke(cli, ["pipeline", *args], catch_exceptions=False)


@pytest.mark.parametrize("args, words", [
    (["definition", "--param", "Kimgg=1"], ["Kimgg", "did you mean 'Kimg'", "TrainInstanceType"]),
    (["definition", "--param", "Kimg"], ["NAME=VALUE", "Kimg"]),
    (["definition", "--param", "InputDataUri=my-bucket/uploads"], ["InputDataUri", "S3 URI"]),
    (["definition", "--param", "OutputUri=https://example.com/x"], ["OutputUri", "S3 URI"]),
    (["definition", "--param", "TrainInstanceType=p3.2xlarge"], ["TrainInstanceType", "ml.m5.xlarge"]),
    # Errors name what the user typed: the CamelCase parameter or the --flag.
    (["definition", "--param", "Cfg=paper255"], ["Cfg='paper255' is not allowed", "paper256"]),
    (["definition", "--param", "Kimg=lots"], ["Kimg='lots' is not a number"]),
    (["definition", "--param", "Mirror=maybe"], ["Mirror='maybe' is not a boolean"]),
    (["definition", "--param", "InferenceSteps=0"], ["InferenceSteps=0 is not allowed", ">= 1"]),
    (["definition", "--param", "Resolution=33"], ["Resolution=33 is not allowed", "power of two"]),
    (["definition", "--spot", "--max-run-hours", "10", "--max-wait-hours", "5"],
     ["--max-wait-hours=5.0 is not allowed", "--max-run-hours (10)"]),
    (["definition", "--max-wait-hours", "100"], ["--max-wait-hours=100.0", "only with --spot"]),
    (["definition", "--max-run-hours", "0.0002"], ["--max-run-hours=0.0002", "one second"]),
    (["definition", "--param", "InferenceInstanceCount=2"],
     ["InferenceInstanceCount=2 is not allowed: 1 only"]),
    (["start", "--param", "ProcessInstanceCount=3"], ["ProcessInstanceCount=3", "1 only"]),
    (["definition", "--spot", "--max-run-hours", "0.0003", "--max-wait-hours", "0.0002"],
     ["--max-wait-hours=0.0002", "one second"]),
    (["definition", "--param", "Batch=\u00b2"], ["Batch='\u00b2' is not allowed", "integer"]),
    (["definition", "--param", "Cbase=\u0668"], ["Cbase='\u0668' is not allowed"]),
    (["notify-rule", "--topic-arn", "arn:aws:sns:us-east-1:123456789012:t", "--account",
      "\u0661" * 12], ["--account=", "12-digit"]),
    (["definition", "--role-arn", "SageMakerExecution"], ["--role-arn=", "IAM role ARN"]),
    (["definition", "--name", "sg2_pipeline"], ["--name='sg2_pipeline' is not allowed"]),
    (["upsert", "--role-arn", "arn:aws:iam::123:role/x", "--image-uri", IMAGE, "--bucket", "b-1"],
     ["--role-arn=", "IAM role ARN"]),
    (["upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "s3://b-1"],
     ["--bucket=", "without s3://"]),
    (["start", "--param", "InferenceInstanceType=g4dn.xlarge"], ["InferenceInstanceType", "ml."]),
    (["start", "--region", "Frankfurt"], ["--region='Frankfurt' is not allowed"]),
    (["status", "not-an-arn"], ["EXECUTION_ARN", "pipeline execution ARN"]),
    (["notify-rule", "--topic-arn", "designer-mail"], ["--topic-arn=", "SNS topic ARN"]),
    (["notify-rule", "--topic-arn", "arn:aws:sns:us-east-1:123456789012:t", "--account", "42"],
     ["--account='42' is not allowed"]),
])
@mock_aws
def test_bad_input_is_named_before_anything_reaches_aws(args, words):
    result = run(*args)
    assert result.exit_code != 0
    for word in words:
        assert word in result.output, result.output
    # Nothing was created on the (mocked) service.
    assert boto3.client("sagemaker").list_pipelines()["PipelineSummaries"] == []


@mock_aws
def test_upsert_creates_then_updates_and_start_passes_overrides():
    sagemaker = boto3.client("sagemaker")
    first = run("upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "designer-bucket")
    assert first.exit_code == 0, first.output
    arn = first.output.strip().splitlines()[-1]
    assert arn.endswith(":pipeline/sg2-stylegan2")
    body = json.loads(sagemaker.describe_pipeline(PipelineName="sg2-stylegan2")["PipelineDefinition"])
    defaults = {p["Name"]: p["DefaultValue"] for p in body["Parameters"]}
    assert defaults["ImageUri"] == IMAGE
    assert defaults["InputDataUri"] == "s3://designer-bucket/sg2/uploads"
    assert json.dumps(body).count("123456789012:role/service-role/SageMakerExecution") == 3

    second = run("upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "designer-bucket",
                 "--param", "Kimg=500")
    assert second.exit_code == 0, second.output
    body = json.loads(sagemaker.describe_pipeline(PipelineName="sg2-stylegan2")["PipelineDefinition"])
    assert {p["Name"]: p["DefaultValue"] for p in body["Parameters"]}["Kimg"] == 500

    started = run("start", "--param", "Kimg=1", "--param", "TrainInstanceType=ml.g5.2xlarge")
    assert started.exit_code == 0, started.output
    execution = started.output.strip()
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution)
    assert described["PipelineArn"] == arn


def test_notify_rule_prints_the_rule_for_the_pipeline():
    topic = "arn:aws:sns:eu-west-1:123456789012:designer-mail"
    result = run("notify-rule", "--topic-arn", topic, "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    rule = json.loads(result.output)
    pattern = json.loads(rule["Rule"]["EventPattern"])
    assert pattern["detail"]["currentPipelineExecutionStatus"] == ["Failed", "Stopped"]
    assert pattern["detail"]["pipelineArn"] == [
        "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/sg2-stylegan2"]
    assert rule["Targets"][0]["Arn"] == topic


@mock_aws
def test_start_of_a_pipeline_that_does_not_exist_is_one_line():
    result = run("start", "--name", "nothing-here")
    assert result.exit_code == 1
    assert "starting pipeline nothing-here" in result.output and "Traceback" not in result.output


@mock_aws
def test_start_sends_each_value_as_the_text_its_parameter_type_takes():
    """Integer parameters get digits (Mirror is Integer 1/0), Float ones a number SageMaker
    parses; the raw text (true, 32.0, ' 2', 1e3) would be refused by the service."""
    sagemaker = boto3.client("sagemaker")
    assert run("upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "b-1").exit_code == 0
    started = run("start", "--param", "Mirror=true", "--param", "Resolution=32.0",
                  "--param", "Gpus= 2", "--param", "Kimg=1e3", "--param", "Cfg=auto",
                  "--display-name", "designer-42--retry-1")
    assert started.exit_code == 0, started.output
    execution = started.output.strip()
    sent = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution)
    assert {p["Name"]: p["Value"] for p in sent["PipelineParameters"]} == {
        "Mirror": "1", "Resolution": "32", "Gpus": "2", "Kimg": "1000.0", "Cfg": "auto"}
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution)
    assert described["PipelineExecutionDisplayName"] == "designer-42--retry-1"


def test_the_text_sent_parses_as_the_type_the_definition_declares():
    """One rule for both: each parameter's default, as `start` would send it, reads back as
    the definition's DefaultValue under the definition's Type."""
    from sg2_container.pipeline.options import parameter_fields, parameter_text

    body = json.loads((REPO / "tests" / "data" / "pipeline-definition.json").read_text())
    parse = {"Integer": int, "Float": float, "String": str}
    fields = parameter_fields()
    for parameter in body["Parameters"]:
        field = fields[parameter["Name"]]
        if field.default is None:  # an S3 location placed under the bucket
            continue
        text = parameter_text(field, field.default)
        assert parse[parameter["Type"]](text) == parameter["DefaultValue"], parameter


@pytest.mark.parametrize("display_name", ["run 1", "-run", "run-", "r" * 83, "run_1"])
@mock_aws
def test_a_display_name_sagemaker_would_refuse_is_named_first(display_name):
    result = run("start", "--display-name", display_name)
    assert result.exit_code != 0
    assert "--display-name" in result.output and "letters, digits" in result.output
    assert "starting pipeline" not in result.output  # nothing was sent


def test_parameters_show_defaults_as_sagemaker_holds_them():
    result = run("parameters")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()}
    assert rows["Mirror"].split()[1] == "1"
    assert rows["Resolution"].split()[1] == "256"
    assert "the Lambda's SNS_TOPIC_ARN" in rows["NotificationTopicArn"]
    assert "preset value" in rows["Batch"] and "preset value" in rows["Cbase"]


@mock_aws
def test_upsert_refuses_two_different_images():
    other = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sg2-container:2"
    result = run("upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "b-1",
                 "--param", f"ImageUri={other}")
    assert result.exit_code != 0
    assert "--image-uri" in result.output and "ImageUri" in result.output and other in result.output
    assert boto3.client("sagemaker").list_pipelines()["PipelineSummaries"] == []
    same = run("upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "b-1",
               "--param", f"ImageUri={IMAGE}")
    assert same.exit_code == 0, same.output


EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/sg2-stylegan2/execution/k2j4x9a7m1qz"


@pytest.mark.parametrize("arn", ["not-an-arn",
                                 "arn:aws:sagemaker:us-east-1:123456789012:pipeline/x",
                                 EXECUTION.replace("sagemaker", "sns"),
                                 "arn:aws:sagemaker::123456789012:pipeline/x/execution/y"])
def test_retry_of_something_that_is_not_an_execution_is_named(arn, monkeypatch):
    from sg2_container.cli import pipeline_commands

    monkeypatch.setattr(pipeline_commands, "_client", lambda *a: pytest.fail("reached AWS"))
    result = run("retry", arn)
    assert result.exit_code != 0
    assert "EXECUTION_ARN" in result.output and "pipeline execution ARN" in result.output


@pytest.mark.parametrize("create", [[], ["--create"]])
@mock_aws
def test_notify_rule_refuses_a_topic_in_another_region(create):
    """EventBridge targets an SNS topic in the rule's region only; --create made the rule and
    then failed at the topic, leaving half a setup."""
    boto3.client("sns", region_name="us-east-1").create_topic(Name="designer-mail")
    topic = "arn:aws:sns:us-east-1:123456789012:designer-mail"
    result = run("notify-rule", "--topic-arn", topic, "--region", "eu-west-1", *create)
    assert result.exit_code != 0
    assert "us-east-1" in result.output and "eu-west-1" in result.output
    for region in ("eu-west-1", "us-east-1"):
        assert boto3.client("events", region_name=region).list_rules()["Rules"] == []


@mock_aws
def test_notify_rule_create_reads_the_topic_in_its_region():
    topic = boto3.client("sns", region_name="eu-west-1").create_topic(Name="mail")["TopicArn"]
    result = run("notify-rule", "--topic-arn", topic, "--region", "eu-west-1", "--create")
    assert result.exit_code == 0, result.output
    assert boto3.client("events", region_name="eu-west-1").list_rules()["Rules"]


@pytest.mark.parametrize("where", ["missing/folder/definition.json", "."])
def test_definition_output_that_cannot_be_written_is_named_before_building(where, tmp_path,
                                                                         monkeypatch):
    from sg2_container.cli import pipeline_commands

    monkeypatch.setattr(pipeline_commands, "_definition", lambda *a: pytest.fail("built"))
    target = tmp_path / where
    result = run("definition", "-o", str(target))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "--output" in result.output and str(target) in result.output


@mock_aws
def test_start_checks_its_values_with_the_stored_pipelines_not_the_codes_defaults():
    """Upserted with Batch=48: 3 instances split it (the code's default 64 would not), and
    Augpipe=bgcf at the stored Resolution=16 is what the training step would refuse."""
    upsert = ("upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "b-1")
    assert run(*upsert, "--param", "Batch=48").exit_code == 0
    started = run("start", "--param", "TrainInstanceCount=3")
    assert started.exit_code == 0, started.output

    assert run(*upsert, "--param", "Resolution=16", "--param", "Cfg=cifar").exit_code == 0
    refused = run("start", "--param", "Augpipe=bgcf")
    assert refused.exit_code != 0
    assert "training step would refuse" in refused.output and "Resolution=16" in refused.output
    assert "stored pipeline's defaults" in refused.output
    executions = boto3.client("sagemaker").list_pipeline_executions(PipelineName="sg2-stylegan2")
    assert len(executions["PipelineExecutionSummaries"]) == 1  # only the first start
