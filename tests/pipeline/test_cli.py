"""`sg2 pipeline`: bad input is a named error before anything reaches AWS; upsert, start and
status against moto's SageMaker."""
import json

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from sg2_container.cli.main import cli

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
    (["definition", "--param", "Cfg=paper255"], ["cfg", "paper256"]),
    (["definition", "--param", "Kimg=lots"], ["Kimg", "not a number"]),
    (["definition", "--role-arn", "SageMakerExecution"], ["role_arn", "IAM role ARN"]),
    (["upsert", "--role-arn", "arn:aws:iam::123:role/x", "--image-uri", IMAGE, "--bucket", "b-1"],
     ["role_arn", "IAM role ARN"]),
    (["upsert", "--role-arn", ROLE, "--image-uri", IMAGE, "--bucket", "s3://b-1"], ["bucket", "without s3://"]),
    (["start", "--param", "InferenceInstanceType=g4dn.xlarge"], ["InferenceInstanceType", "ml."]),
    (["status", "not-an-arn"], ["EXECUTION_ARN", "pipeline execution ARN"]),
    (["notify-rule", "--topic-arn", "designer-mail"], ["topic-arn", "SNS topic ARN"]),
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
