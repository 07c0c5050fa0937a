"""The failure path: an EventBridge rule on the pipeline's executions that end `Failed` or
`Stopped`, sending a readable message to the same SNS topic as the notification step.

`failure_rule` is the whole rule as JSON (for the console, CloudFormation or the CLI);
`create_failure_rule` puts it with boto3 and lets EventBridge publish to the topic.
"""
from __future__ import annotations

import json

DETAIL_TYPE = "SageMaker Model Building Pipeline Execution Status Change"
FAILED_STATUSES = ("Failed", "Stopped")


def pipeline_arn(region: str, account: str, name: str, partition: str = "aws") -> str:
    # SageMaker stores pipeline names lowercased in the ARN.
    return f"arn:{partition}:sagemaker:{region}:{account}:pipeline/{name.lower()}"


def event_pattern(pipeline: str) -> dict:
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [DETAIL_TYPE],
        "detail": {"currentPipelineExecutionStatus": list(FAILED_STATUSES),
                   "pipelineArn": [pipeline]},
    }


# The event's detail has the status, the execution's ARN and display name, times and the
# pipeline ARN, but no failure reason: the message says where to read the failing step's.
STATUS_HINT = ("For the step that failed or stopped and its reason, run "
               "`sg2 pipeline status <execution>`.")


def input_transformer(hint: str = STATUS_HINT) -> dict:
    """The message EventBridge sends, from fields the status-change event has; `hint` says
    where the failing step's reason is (the local run names its job folder instead)."""
    return {
        "InputPathsMap": {"status": "$.detail.currentPipelineExecutionStatus",
                          "execution": "$.detail.pipelineExecutionArn",
                          "name": "$.detail.pipelineExecutionDisplayName"},
        "InputTemplate": json.dumps(
            f"StyleGAN2 pipeline <status>: no results this time. Execution <name>: "
            f"<execution>. {hint}"),
    }


def transformed_message(event: dict, transformer: dict | None = None) -> str:
    """The text EventBridge's input transformer makes of `event` (the local runner's failure
    notification uses it, so both paths send the same words). Paths are `$.a.b` lookups."""
    transformer = transformer or input_transformer()
    text = json.loads(transformer["InputTemplate"])
    for name, path in transformer["InputPathsMap"].items():
        value = event
        for key in path.removeprefix("$.").split("."):
            value = value.get(key, "") if isinstance(value, dict) else ""
        text = text.replace(f"<{name}>", str(value))
    return text


def failure_rule(pipeline: str, topic_arn: str, rule_name: str) -> dict:
    """PutRule + PutTargets arguments for the failure notification."""
    return {
        "Rule": {"Name": rule_name, "EventPattern": json.dumps(event_pattern(pipeline)),
                 "State": "ENABLED",
                 "Description": "sg2-container: notify when the StyleGAN2 pipeline fails or stops"},
        "Targets": [{"Id": "sg2-failure-topic", "Arn": topic_arn,
                     "InputTransformer": input_transformer()}],
    }


def topic_policy_statement(topic_arn: str, rule_arn: str) -> dict:
    """Lets EventBridge (this rule only) publish to the topic."""
    return {"Sid": "sg2-pipeline-failure-rule", "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": topic_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}


def create_failure_rule(rule: dict, *, events_client, sns_client) -> str:
    """Puts the rule and its target, and adds the topic-policy statement; returns the rule ARN.
    The topic is read first, so a topic that is missing or not ours leaves no rule behind."""
    topic = rule["Targets"][0]["Arn"]
    attributes = sns_client.get_topic_attributes(TopicArn=topic)["Attributes"]
    rule_arn = events_client.put_rule(**rule["Rule"])["RuleArn"]
    events_client.put_targets(Rule=rule["Rule"]["Name"], Targets=rule["Targets"])
    policy = json.loads(attributes.get("Policy") or '{"Version": "2012-10-17", "Statement": []}')
    statement = topic_policy_statement(topic, rule_arn)
    policy["Statement"] = [s for s in policy.get("Statement", []) if s.get("Sid") != statement["Sid"]]
    policy["Statement"].append(statement)
    sns_client.set_topic_attributes(TopicArn=topic, AttributeName="Policy",
                                    AttributeValue=json.dumps(policy))
    return rule_arn
