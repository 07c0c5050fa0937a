"""The pipeline on SageMaker through boto3: upsert a definition, start an execution with
parameter overrides, retry one, report an execution's steps. No SDK needed once the JSON exists.
"""
from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from sg2_container.errors import UserError

# The API's pattern for PipelineExecutionArn.
EXECUTION_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:pipeline/.+/execution/.+")


def execution_region(name: str, execution_arn: str) -> str:
    """The region of a pipeline execution ARN; a value that is not one is named."""
    if not EXECUTION_ARN.fullmatch(execution_arn):
        raise UserError(f"{name}={execution_arn!r} is not allowed: a pipeline execution ARN "
                        "(arn:aws:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID), as "
                        "printed by `sg2 pipeline start`")
    return execution_arn.split(":")[3]


def upsert(client, name: str, definition: dict, role_arn: str,
           description: str = "sg2-container: StyleGAN2-ADA prepare -> train -> infer -> notify") -> str:
    """Creates the pipeline or updates it in place; returns its ARN."""
    fields = dict(PipelineName=name, PipelineDefinition=json.dumps(definition),
                  PipelineDescription=description, RoleArn=role_arn)
    try:
        return client.create_pipeline(**fields)["PipelineArn"]
    except client.exceptions.ResourceInUse:
        pass
    except client.exceptions.ClientError as error:  # some services say it without the type
        if "already exists" not in str(error):
            raise
    return client.update_pipeline(**fields)["PipelineArn"]


def stored_defaults(client, name: str) -> dict[str, Any]:
    """{parameter name: DefaultValue} of the pipeline as SageMaker holds it (an execution runs
    with these where it gives no value)."""
    definition = json.loads(client.describe_pipeline(PipelineName=name)["PipelineDefinition"])
    return {p["Name"]: p["DefaultValue"] for p in definition.get("Parameters", [])
            if "Name" in p and "DefaultValue" in p}


def start(client, name: str, parameters: Mapping[str, str], display_name: str | None = None) -> str:
    """Starts an execution; parameters not given keep the pipeline's defaults."""
    kwargs = dict(PipelineName=name,
                  PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()])
    if display_name:
        kwargs["PipelineExecutionDisplayName"] = display_name
    return client.start_pipeline_execution(**kwargs)["PipelineExecutionArn"]


def retry(client, execution_arn: str, token: str | None = None) -> str:
    """Retries a failed or stopped execution under its own id (so CheckpointUri/<id> is the
    same folder and training resumes); returns its ARN. `token` makes a repeat of the same
    request a no-op (SageMaker wants 32-128 characters)."""
    execution_region("EXECUTION_ARN", execution_arn)
    return client.retry_pipeline_execution(
        PipelineExecutionArn=execution_arn,
        ClientRequestToken=token or uuid.uuid4().hex)["PipelineExecutionArn"]


def _iso_utc(moment) -> str:
    """A service time as ISO 8601 in UTC (what --json readers parse), "" when absent; botocore
    hands over aware datetimes in the machine's zone."""
    if moment is None or moment == "":
        return ""
    return moment.astimezone(datetime.timezone.utc).isoformat()


def status(client, execution_arn: str) -> dict:
    """{"status", "failure_reason", "steps": [{"name", "status", "start", "end", "reason"}]}."""
    execution_region("EXECUTION_ARN", execution_arn)
    described = client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    steps = []
    paginator_kwargs = dict(PipelineExecutionArn=execution_arn, SortOrder="Ascending")
    while True:
        page = client.list_pipeline_execution_steps(**paginator_kwargs)
        for step in page.get("PipelineExecutionSteps", []):
            # Every member is optional in the API's model: absent is "", as for the times.
            steps.append({"name": step.get("StepName", ""), "status": step.get("StepStatus", ""),
                          "start": _iso_utc(step.get("StartTime")),
                          "end": _iso_utc(step.get("EndTime")),
                          "reason": step.get("FailureReason", "")})
        if not page.get("NextToken"):
            break
        paginator_kwargs["NextToken"] = page["NextToken"]
    return {"status": described.get("PipelineExecutionStatus"),
            "failure_reason": described.get("FailureReason", ""), "steps": steps}
