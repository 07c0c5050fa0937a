"""The notification step's Lambda handler: tells the designer where the results are.

Deployable on its own (imports only boto3 and the standard library): handler
`sg2_container.pipeline.notify.handler`, or this file uploaded as `notify.py` with handler
`notify.handler`. The SNS topic comes from the event's `topic_arn` or the function's
`SNS_TOPIC_ARN` environment variable, never from the code. A missing topic or an SNS error is
logged and raised as NotificationFailed: a LambdaStep whose function returns normally counts as
Succeeded whatever it returns, so only an exception fails the step and the execution, which
the failure rule (rules.py) then reports.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
TOPIC_ENV = "SNS_TOPIC_ARN"
DEFAULT_SUBJECT = "StyleGAN2 Inference"
MAX_SUBJECT = 99  # SNS: an e-mail subject must be shorter than 100 characters


class NotificationFailed(RuntimeError):
    """Nothing was sent; the message says why (and holds the text that was not sent)."""


def compose(event: dict) -> tuple[str, str]:
    """(subject, message) naming the pipeline execution and the output URI."""
    execution = event.get("pipeline_execution_arn") or "(unknown execution)"
    output = event.get("output_uri") or "(no output location given)"
    status = event.get("status") or "Succeeded"
    subject = f"{event.get('subject') or DEFAULT_SUBJECT}: {status}"
    if status == "Succeeded":
        body = f"Inference done; the results are at {output}"
    else:
        body = f"The pipeline ended with status {status}; nothing new at {output}"
    message = f"{body}\n\nPipeline execution: {execution}\n"
    return subject[:MAX_SUBJECT], message


def notify(event: dict, *, sns_client=None, environ=None) -> dict:
    """Publishes the notification; returns {"statusCode", "message", "message_id"?}."""
    environ = os.environ if environ is None else environ
    topic = event.get("topic_arn") or environ.get(TOPIC_ENV, "")
    subject, message = compose(event)
    if not topic:
        reason = (f"no SNS topic: give the pipeline parameter NotificationTopicArn or set "
                  f"{TOPIC_ENV} on the Lambda function; message not sent: {message.strip()}")
        log.error("%s", reason)
        return {"statusCode": 400, "message": reason}
    if sns_client is None:  # in the topic's region: SNS takes a topic ARN only there
        import boto3

        parts = topic.split(":")
        sns_client = boto3.client("sns", region_name=parts[3] if len(parts) > 5 else None)
    try:
        response = sns_client.publish(TopicArn=topic, Subject=subject, Message=message)
    except Exception as error:  # botocore ClientError, endpoint or credential errors alike
        reason = f"publishing to {topic} failed: {error}"
        log.error("%s", reason)
        return {"statusCode": 502, "message": reason}
    log.info("published %s to %s (%s)", subject, topic, response.get("MessageId"))
    return {"statusCode": 200, "message": message, "message_id": response.get("MessageId", "")}


def sent(result: dict) -> dict:
    """`notify`'s result when it was sent; NotificationFailed with the reason otherwise."""
    if result.get("statusCode") != 200:
        raise NotificationFailed(f"{result.get('statusCode')}: {result.get('message')}")
    return result


def handler(event, context):
    """Lambda entry point (the LambdaStep passes its inputs as the event). Raises when
    nothing was sent, so that the step fails instead of succeeding silently."""
    logging.getLogger().setLevel(logging.INFO)
    return sent(notify(event or {}))
