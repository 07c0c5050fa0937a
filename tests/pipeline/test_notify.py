"""The notification handler against moto's SNS, and the failure rule against moto's EventBridge."""
import json
import logging

import boto3
import pytest
from moto import mock_aws

from sg2_container.pipeline import notify, rules

REGION = "us-east-1"
EXECUTION = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/sg2-stylegan2/execution/abc123"
OUTPUT = "s3://designer-bucket/sg2/output/abc123/inference/test"


def _topic_with_queue():
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="designer-mail")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, sqs, queue


def _received(sqs, queue):
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


@mock_aws
def test_publishes_subject_and_output_uri_to_the_topic_from_the_event():
    topic, sqs, queue = _topic_with_queue()
    result = notify.handler({"topic_arn": topic, "output_uri": OUTPUT, "subject": "StyleGAN2 Inference",
                             "pipeline_execution_arn": EXECUTION, "status": "Succeeded"}, None)
    assert result["statusCode"] == 200 and result["message_id"]
    body, = _received(sqs, queue)
    assert body["Subject"] == "StyleGAN2 Inference: Succeeded"
    assert OUTPUT in body["Message"] and EXECUTION in body["Message"]
    assert body["MessageId"] == result["message_id"]


@mock_aws
def test_topic_from_the_function_environment(monkeypatch):
    topic, sqs, queue = _topic_with_queue()
    monkeypatch.setenv(notify.TOPIC_ENV, topic)
    result = notify.handler({"topic_arn": "", "output_uri": OUTPUT,
                             "pipeline_execution_arn": EXECUTION}, None)
    assert result["statusCode"] == 200
    body, = _received(sqs, queue)
    assert OUTPUT in body["Message"]


@mock_aws
def test_missing_topic_fails_the_lambda_and_is_logged(monkeypatch, caplog):
    """A LambdaStep that returns normally counts as Succeeded: the handler raises instead."""
    monkeypatch.delenv(notify.TOPIC_ENV, raising=False)
    with caplog.at_level(logging.ERROR, logger=notify.__name__):
        with pytest.raises(notify.NotificationFailed) as raised:
            notify.handler({"output_uri": OUTPUT, "pipeline_execution_arn": EXECUTION}, None)
    reason = str(raised.value)
    assert "NotificationTopicArn" in reason and notify.TOPIC_ENV in reason
    assert OUTPUT in reason  # the message that could not be sent is not lost
    assert any("no SNS topic" in r.getMessage() for r in caplog.records)
    # notify() itself still answers with the status and the reason.
    assert notify.notify({"output_uri": OUTPUT}, environ={})["statusCode"] == 400


@mock_aws
def test_sns_error_fails_the_lambda_and_is_logged(caplog):
    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    with caplog.at_level(logging.ERROR, logger=notify.__name__):
        with pytest.raises(notify.NotificationFailed) as raised:
            notify.handler({"topic_arn": missing, "output_uri": OUTPUT}, None)
    assert missing in str(raised.value) and "failed" in str(raised.value)
    assert any(missing in r.getMessage() for r in caplog.records)
    assert notify.notify({"topic_arn": missing, "output_uri": OUTPUT})["statusCode"] == 502


def _failed_event(pipeline_arn, status="Failed"):
    """A "Pipeline Execution Status Change" event as EventBridge receives it: these are all
    the detail's fields (it has no failure reason)."""
    return {"Source": "aws.sagemaker", "DetailType": rules.DETAIL_TYPE, "Detail": json.dumps({
        "pipelineArn": pipeline_arn, "pipelineExecutionArn": f"{pipeline_arn}/execution/abc123",
        "pipelineExecutionDisplayName": "execution-1714557600000",
        "pipelineExecutionDescription": "",
        "currentPipelineExecutionStatus": status, "previousPipelineExecutionStatus": "Executing",
        "executionStartTime": "2024-05-01T10:00:00Z", "executionEndTime": "2024-05-01T11:00:00Z"})}


def test_failure_message_uses_only_the_events_fields_and_says_where_the_reason_is():
    pipeline = rules.pipeline_arn(REGION, "123456789012", "sg2-stylegan2")
    detail = json.loads(_failed_event(pipeline)["Detail"])
    transformer = rules.input_transformer()
    for path in transformer["InputPathsMap"].values():  # no made-up field
        assert path.startswith("$.detail.") and path.removeprefix("$.detail.") in detail, path
    message = rules.transformed_message({"detail": detail})
    execution = f"{pipeline}/execution/abc123"
    assert message == (
        "StyleGAN2 pipeline Failed: no results this time. Execution execution-1714557600000: "
        f"{execution}. For the step that failed or stopped and its reason, run "
        f"`sg2 pipeline status {execution}`.")
    assert "<" not in message  # every placeholder filled


def test_failure_rule_pattern_matches_failed_and_stopped_executions_only():
    """moto's EventBridge pattern matcher (moto does not serve TestEventPattern)."""
    from moto.events.models import EventPattern

    pipeline = rules.pipeline_arn(REGION, "123456789012", "sg2-stylegan2")
    pattern = EventPattern.load(json.dumps(rules.event_pattern(pipeline)))

    def matches(status, arn=pipeline):
        sample = _failed_event(arn, status)
        event = {"id": "1", "source": sample["Source"], "detail-type": sample["DetailType"],
                 "account": "123456789012", "region": REGION, "time": "2024-05-01T11:00:00Z",
                 "resources": [arn], "detail": json.loads(sample["Detail"])}
        return pattern.matches_event(event)

    assert matches("Failed") and matches("Stopped")
    assert not matches("Succeeded") and not matches("Executing")
    assert not matches("Failed", arn=rules.pipeline_arn(REGION, "123456789012", "other"))


@mock_aws
def test_created_rule_targets_the_topic_and_lets_eventbridge_publish():
    topic, sqs, queue = _topic_with_queue()
    pipeline = rules.pipeline_arn(REGION, "123456789012", "sg2-stylegan2")
    rule = rules.failure_rule(pipeline, topic, "sg2-stylegan2-failed")
    events, sns = boto3.client("events", region_name=REGION), boto3.client("sns", region_name=REGION)
    rule_arn = rules.create_failure_rule(rule, events_client=events, sns_client=sns)

    target, = events.list_targets_by_rule(Rule="sg2-stylegan2-failed")["Targets"]
    assert target["Arn"] == topic and "<execution>" in target["InputTransformer"]["InputTemplate"]
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    statement, = [s for s in policy["Statement"] if s.get("Sid") == "sg2-pipeline-failure-rule"]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == rule_arn
    rules.create_failure_rule(rule, events_client=events, sns_client=sns)  # again: no duplicate
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert [s.get("Sid") for s in policy["Statement"]].count("sg2-pipeline-failure-rule") == 1

    described = events.describe_rule(Name="sg2-stylegan2-failed")
    assert json.loads(described["EventPattern"]) == rules.event_pattern(pipeline)


@mock_aws
def test_publishes_to_a_topic_in_another_region_than_the_functions():
    """SNS takes a topic ARN only in the topic's region; the Lambda runs in the pipeline's."""
    sns = boto3.client("sns", region_name="eu-west-1")
    topic = sns.create_topic(Name="designer-mail")["TopicArn"]
    sqs = boto3.client("sqs", region_name="eu-west-1")
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=attributes["Attributes"]["QueueArn"])
    assert boto3.session.Session().region_name == REGION  # the function's own region
    result = notify.handler({"topic_arn": topic, "output_uri": OUTPUT,
                             "pipeline_execution_arn": EXECUTION}, None)
    assert result["statusCode"] == 200
    body, = _received(sqs, queue)
    assert OUTPUT in body["Message"]


@mock_aws
def test_a_topic_that_cannot_be_read_leaves_no_rule_behind():
    from botocore.exceptions import ClientError

    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    rule = rules.failure_rule(rules.pipeline_arn(REGION, "123456789012", "sg2-stylegan2"),
                              missing, "sg2-stylegan2-failed")
    events = boto3.client("events", region_name=REGION)
    with pytest.raises(ClientError):
        rules.create_failure_rule(rule, events_client=events,
                                  sns_client=boto3.client("sns", region_name=REGION))
    assert events.list_rules()["Rules"] == []


def test_a_long_subject_is_cut_below_the_100_characters_sns_allows():
    subject, _ = notify.compose({"subject": "s" * 150, "status": "Failed"})
    assert len(subject) == 99
