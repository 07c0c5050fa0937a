"""`sg2 pipeline status` and `retry`, run for real against SageMaker on 127.0.0.1.

moto 5.2.6 serves CreatePipeline, StartPipelineExecution and DescribePipelineExecution but not
ListPipelineExecutionSteps or RetryPipelineExecution. The stand-in is one WSGI server: it
answers those two targets itself (SageMaker's JSON 1.1 protocol) from moto's own record of the
execution, and hands every other request to moto's server application. The CLI reaches it
through AWS_ENDPOINT_URL_SAGEMAKER, which boto3 honours, with the conftest's placeholder keys.
"""
import datetime
import json
import pathlib
import re
import threading
import uuid
from http import HTTPStatus

import boto3
import pytest
from click.testing import CliRunner
from moto.core.base_backend import BackendDict
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.utils import get_pipeline_execution_from_arn
from werkzeug.serving import make_server

from sg2_container.cli.main import cli

REGION = "eu-west-1"  # not the conftest's AWS_DEFAULT_REGION: the ARN's region must win
DEFINITION = pathlib.Path(__file__).resolve().parents[1] / "data" / "pipeline-definition.json"
STEPS = [step["Name"] for step in json.loads(DEFINITION.read_text())["Steps"]]
T0 = datetime.datetime(2025, 3, 1, 9, 0, tzinfo=datetime.timezone.utc)


class ServiceError(Exception):
    """A refusal as SageMaker sends it: HTTP status, {"__type": code, "message": ...}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


class SageMakerStandIn:
    """moto's SageMaker plus ListPipelineExecutionSteps and RetryPipelineExecution, which read
    and change the execution moto holds (an ARN moto does not know is unknown to both)."""

    OWN = ("ListPipelineExecutionSteps", "RetryPipelineExecution")

    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.clear()

    def clear(self):
        """What one test set up and saw (moto's own state is reset on its own)."""
        self.page_size = 1  # the service's page is larger; 1 makes every step a page
        self.steps = {}  # execution ARN -> its steps as the API gives them, in starting order
        self.calls = []  # (operation, request body, signing region) of the two operations
        self.pages = {}  # NextToken -> (ARN, SortOrder, offset): tokens are opaque
        self.tokens = {}  # ClientRequestToken -> the ARN it retried: a repeat is a no-op
        self.lost_answers = 0  # retries that happen but whose answer is a 500

    def __call__(self, environ, start_response):
        service, _, operation = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        if service != "SageMaker" or operation not in self.OWN:
            return self.moto(environ, start_response)
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/sagemaker/",
                          environ.get("HTTP_AUTHORIZATION", ""))
        self.calls.append((operation, body, scope and scope.group(1)))
        try:
            status, answer = 200, getattr(self, operation)(body)
        except ServiceError as error:
            status, answer = error.status, {"__type": error.code, "message": str(error)}
        data = json.dumps(answer).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4()))])
        return [data]

    def execution(self, arn: str):
        """moto's record of the execution."""
        _, _, _, region, account, _ = arn.split(":", 5)
        try:
            return get_pipeline_execution_from_arn(sagemaker_backends[account][region].pipelines,
                                                   arn)
        except ValidationError:
            raise ServiceError(400, "ResourceNotFound",
                               f"Pipeline execution {arn} does not exist") from None

    def ListPipelineExecutionSteps(self, body):
        arn = body["PipelineExecutionArn"]
        self.execution(arn)
        order = body.get("SortOrder", "Descending")  # the service's default: newest first
        offset = 0
        if "NextToken" in body:
            if self.pages.get(body["NextToken"], (arn, order))[:2] != (arn, order):
                raise ServiceError(400, "ValidationException", "Invalid NextToken")
            offset = self.pages[body["NextToken"]][2]
        steps = self.steps.get(arn, [])
        steps = steps if order == "Ascending" else steps[::-1]
        end = offset + body.get("MaxResults", self.page_size)
        answer = {"PipelineExecutionSteps": steps[offset:end]}
        if end < len(steps):
            answer["NextToken"] = uuid.uuid4().hex
            self.pages[answer["NextToken"]] = (arn, order, end)
        return answer

    def RetryPipelineExecution(self, body):
        arn, token = body["PipelineExecutionArn"], body["ClientRequestToken"]
        if self.tokens.get(token) == arn:
            return {"PipelineExecutionArn": arn}
        execution = self.execution(arn)
        if execution.pipeline_execution_status not in ("Failed", "Stopped"):
            raise ServiceError(400, "ValidationException",
                               f"Pipeline execution {arn} is in status "
                               f"{execution.pipeline_execution_status}: only a Failed or Stopped "
                               "execution can be retried")
        execution.pipeline_execution_status = "Executing"
        self.tokens[token] = arn
        if self.lost_answers:
            self.lost_answers -= 1
            raise ServiceError(500, "InternalFailure", "the answer was lost on its way back")
        return {"PipelineExecutionArn": arn}


@pytest.fixture(scope="module")
def server():
    """The stand-in on 127.0.0.1 for the module's tests (a boto3 client takes half a second)."""
    stand_in = SageMakerStandIn()
    httpd = make_server("127.0.0.1", 0, stand_in, threaded=True,
                        request_handler=MotoRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{httpd.server_port}"
    stand_in.client = boto3.client("sagemaker", region_name=REGION, endpoint_url=stand_in.url,
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        yield stand_in
    finally:
        httpd.shutdown()
        thread.join()


@pytest.fixture
def sagemaker(server, monkeypatch):
    """The stand-in, empty, as the CLI's SageMaker endpoint; moto forgets the test's pipeline."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", server.url)
    server.clear()
    try:
        yield server
    finally:
        BackendDict.reset()


def started(sagemaker, status: str) -> str:
    """An execution of the checked-in definition that moto holds with `status`."""
    sagemaker.client.create_pipeline(
        PipelineName="sg2-stylegan2", PipelineDefinition=DEFINITION.read_text(),
        RoleArn="arn:aws:iam::123456789012:role/service-role/SageMakerExecution")
    arn = sagemaker.client.start_pipeline_execution(
        PipelineName="sg2-stylegan2")["PipelineExecutionArn"]
    sagemaker.execution(arn).pipeline_execution_status = status  # what SageMaker's run did
    return arn


def step(name: str, status: str, minute: int, ended: bool = True, reason: str | None = None):
    """One step as ListPipelineExecutionSteps gives it (times as epoch seconds)."""
    start = T0 + datetime.timedelta(minutes=minute)
    entry = {"StepName": name, "StepDisplayName": name, "StepStatus": status,
             "StartTime": start.timestamp(), "AttemptCount": 1, "Metadata": {}}
    if ended:
        entry["EndTime"] = (start + datetime.timedelta(minutes=5)).timestamp()
    if reason is not None:
        entry["FailureReason"] = reason
    return entry


def run(*args):
    return CliRunner().invoke(cli, ["pipeline", *args], catch_exceptions=False)


def calls(sagemaker, operation):
    return [(body, region) for name, body, region in sagemaker.calls if name == operation]


NO_NOTIFICATION = ("ClientError: An error occurred (AuthorizationError) when calling the "
                   "Publish operation: User is not authorized to perform SNS:Publish")


def test_status_prints_every_step_in_order_with_the_failed_ones_reason(sagemaker):
    """Four steps, one page each: the table has them all, oldest first, and the reason of the
    step that failed; the client signs for the ARN's region, not AWS_DEFAULT_REGION's."""
    arn = started(sagemaker, "Failed")
    sagemaker.steps[arn] = [step(STEPS[0], "Succeeded", 0), step(STEPS[1], "Succeeded", 5),
                            step(STEPS[2], "Succeeded", 10),
                            step(STEPS[3], "Failed", 15, reason=NO_NOTIFICATION)]
    result = run("status", arn)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"execution {arn}: Failed"
    assert [line.split()[:2] for line in lines[1:]] == [
        [STEPS[0], "Succeeded"], [STEPS[1], "Succeeded"], [STEPS[2], "Succeeded"],
        [STEPS[3], "Failed"]]
    assert lines[4].endswith(NO_NOTIFICATION) and NO_NOTIFICATION not in "".join(lines[:4])
    listed = calls(sagemaker, "ListPipelineExecutionSteps")
    assert len(listed) == 4  # followed NextToken to the last page
    assert all(body["SortOrder"] == "Ascending" and region == REGION for body, region in listed)
    assert "NextToken" not in listed[0][0]
    assert [body["NextToken"] for body, _ in listed[1:]] == list(sagemaker.pages)


def test_status_json_of_a_running_execution_has_no_end_or_reason_yet(sagemaker):
    """The training step runs: no EndTime and no FailureReason in the service's answer."""
    arn = started(sagemaker, "Executing")
    sagemaker.steps[arn] = [step(STEPS[0], "Succeeded", 0),
                            step(STEPS[1], "Executing", 5, ended=False)]
    result = run("status", arn, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "Executing" and report["failure_reason"] == ""
    assert [(s["name"], s["status"], s["reason"]) for s in report["steps"]] == [
        (STEPS[0], "Succeeded", ""), (STEPS[1], "Executing", "")]
    assert report["steps"][1]["end"] == ""
    assert all(s["start"].endswith("+00:00") and "T" in s["start"] for s in report["steps"])
    starts = [datetime.datetime.fromisoformat(s["start"]) for s in report["steps"]]
    assert starts == [T0, T0 + datetime.timedelta(minutes=5)]
    assert datetime.datetime.fromisoformat(report["steps"][0]["end"]) == (
        T0 + datetime.timedelta(minutes=5))


@pytest.mark.parametrize("command", ["status", "retry"])
def test_an_execution_sagemaker_does_not_know_is_one_line(sagemaker, command):
    started(sagemaker, "Failed")
    unknown = (f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/sg2-stylegan2/execution/"
               "nosuchexecution")
    result = run(command, unknown)
    assert result.exit_code == 1
    doing = "reading" if command == "status" else "retrying"
    assert result.output.startswith(f"Error: {doing} {unknown}: ")
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert "nosuchexecution" in result.output.split(": ", 2)[2]  # the service's own words
    assert not calls(sagemaker, "ListPipelineExecutionSteps")  # stopped at the describe


def test_retry_sends_the_execution_and_a_fresh_token_and_the_execution_runs_again(sagemaker):
    arn = started(sagemaker, "Failed")
    result = run("retry", arn)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{arn}\n"  # the same execution: the same checkpoint folder
    (body, region), = calls(sagemaker, "RetryPipelineExecution")
    assert body["PipelineExecutionArn"] == arn and region == REGION
    assert 32 <= len(body["ClientRequestToken"]) <= 128
    described = sagemaker.client.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionStatus"] == "Executing"
    assert run("status", arn).output.splitlines()[0] == f"execution {arn}: Executing"

    sagemaker.execution(arn).pipeline_execution_status = "Stopped"  # stopped again
    assert run("retry", arn).exit_code == 0
    first, second = (b["ClientRequestToken"] for b, _ in calls(sagemaker, "RetryPipelineExecution"))
    assert first != second  # a token per call: a later retry is not taken for a repeat


@pytest.mark.parametrize("status", ["Succeeded", "Executing"])
def test_retry_that_sagemaker_refuses_prints_its_reason(sagemaker, status):
    arn = started(sagemaker, status)
    result = run("retry", arn)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: retrying {arn}: ")
    assert "ValidationException" in result.output
    assert f"is in status {status}: only a Failed or Stopped execution can be retried" in (
        result.output)
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert sagemaker.execution(arn).pipeline_execution_status == status


def test_a_retry_whose_answer_was_lost_is_not_refused_when_boto3_sends_it_again(sagemaker):
    """The service retried the execution but its answer was a 500: boto3 sends the request
    again with the same token, which the service answers as done instead of refusing a retry
    of an execution that is now Executing."""
    arn = started(sagemaker, "Failed")
    sagemaker.lost_answers = 1
    result = run("retry", arn)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{arn}\n"
    first, second = (body for body, _ in calls(sagemaker, "RetryPipelineExecution"))
    assert first == second


def test_status_keeps_a_reason_over_several_lines_in_its_column(sagemaker):
    """A training step's reason is the job's, over lines (ExitCode, ErrorMessage): each goes
    under the first, none at the start of a line where a step's name would be."""
    arn = started(sagemaker, "Failed")
    reason = ('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "RuntimeError: '
              'CUDA error: no kernel image is available for execution on the device"')
    sagemaker.steps[arn] = [step(STEPS[0], "Succeeded", 0),
                            step(STEPS[1], "Failed", 5, reason=reason)]
    result = run("status", arn)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    column = lines[2].index("AlgorithmError")
    assert [line[column:] for line in lines[2:]] == reason.splitlines()
    assert all(line[:column].strip() == "" for line in lines[3:])
    assert lines[1] == f"  {STEPS[0]:<24} Succeeded"  # no trailing blanks without a reason


def test_status_of_a_step_listed_without_a_status_is_a_row_not_a_crash(sagemaker):
    """Every member of PipelineExecutionStep is optional in SageMaker's model."""
    arn = started(sagemaker, "Executing")
    sagemaker.steps[arn] = [step(STEPS[0], "Succeeded", 0), {"StepName": STEPS[1]}]
    result = run("status", arn)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2].split() == [STEPS[1]]
    report = json.loads(run("status", arn, "--json").stdout)
    assert report["steps"][1] == {"name": STEPS[1], "status": "", "start": "", "end": "",
                                  "reason": ""}
