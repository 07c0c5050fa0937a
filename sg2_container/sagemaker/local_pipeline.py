"""`sg2 pipeline run --local`: a pipeline definition (the JSON SageMaker stores) executed step
by step on this machine, with the local stand-ins of local.py.

Everything comes from the definition: each step's container entrypoint and arguments,
hyperparameters as encoded, channels, processing inputs and outputs with their S3 URIs, and
the properties later steps read (a processing output's S3 URI, the training step's
S3ModelArtifacts). Each S3 URI is a folder under the work dir (`s3/<bucket>/<key>`): inputs
are copied into the job's /opt/ml tree, outputs copied out when the job succeeds (EndOfJob),
/opt/ml/model is packed into model.tar.gz as SageMaker packs it, and /opt/ml/checkpoints is
the checkpoint URI's folder itself (SageMaker syncs it while the job runs). Lambda steps call
our notification handler with an SNS stand-in that writes each message to
`notifications/NNN.json` (or with a real SNS client). A failed or stopped step ends the run
and sends the failure rule's message (rules.py) made from the status-change event SageMaker
would emit, as EventBridge would; that event has no failure reason, so the console shows it
and the message names the failed step's job folder.

The execution id is kept in the work dir: running again is a retry of the same execution
(as SageMaker's RetryPipelineExecution), so the training step resumes from its checkpoints.
Every step runs again; prepare is cheap and deterministic, and the training job's own resume
guards refuse a changed dataset or run-defining option rather than lose progress.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import string
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sg2_container.errors import UserError
from sg2_container.io.atomic import write_atomically, write_text_atomically
from sg2_container.io.signals import stop_on_signals
from sg2_container.pipeline import definition as pipeline_definition
from sg2_container.options.training import CHANGED_OPTIONS
from sg2_container.pipeline import layout, notify, rules
from sg2_container.sagemaker.jobs import EXIT_OK, EXIT_STOPPED
from sg2_container.sagemaker.local import (
    LocalJob,
    failure_reason,
    processing_message,
    run_local,
    run_local_processing,
)

log = logging.getLogger(__name__)

S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.-]*[a-z0-9])(?:/(.*))?")
STATE_FILE = "execution.json"
# execution.json's status after --until: every step run succeeded, the pipeline did not finish
# (SageMaker has no such status: a real execution runs every step).
UNTIL_STATUS = "SucceededUntil"
DEFINITION_FILE = "definition.json"  # the definition the latest run executed
LOCK_FILE = ".lock"
LOCAL_TOPIC = "local:notifications"  # what the SNS stand-in records as the topic
# Added to the training job's refusal of changed options (options.training.CHANGED_OPTIONS): in
# a pipeline the outdir is the execution's checkpoint folder, so the way to a new run differs.
CHANGED_OPTIONS_IN_A_PIPELINE = (
    "In a pipeline run the checkpoints are this execution's (CheckpointUri/<execution id>), "
    "which a re-run retries: rerun with the parameters it was started with to continue it, or "
    "add --new-execution to start a new run (a new id, training from zero) with the new values")


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """A step's state change, as `sg2 pipeline status` shows it."""

    step: str
    state: str  # Executing, Succeeded, Failed, Stopped, NotRun
    seconds: float = 0.0
    reason: str = ""


@dataclasses.dataclass
class RunReport:
    execution_id: str
    execution_arn: str
    status: str  # Succeeded, Failed, Stopped
    steps: list[StepEvent]
    failure_reason: str = ""
    messages: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (subject, text)
    notifications: list[Path] = dataclasses.field(default_factory=list)  # the stand-in's files
    not_run: list[str] = dataclasses.field(default_factory=list)  # after --until, in order


class StepFailed(Exception):
    """A step ended without success; `state` is Failed or Stopped."""

    def __init__(self, reason: str, state: str = "Failed"):
        super().__init__(reason)
        self.state = state


def _now() -> str:
    """An event time as EventBridge writes it (ISO 8601, UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def s3_folder(workdir: Path, uri: str) -> Path:
    """s3://bucket/key -> <workdir>/s3/bucket/key (the local stand-in of that location)."""
    match = S3_URI.fullmatch(str(uri).rstrip("/"))
    if not match or ".." in (match.group(2) or "").split("/"):
        raise UserError(f"{uri!r} is not an S3 URI the local run can map (s3://BUCKET/KEY)")
    return workdir / "s3" / match.group(1) / (match.group(2) or "")


class LocalSns:
    """The SNS stand-in: `publish` writes the message to <workdir>/notifications/NNN.json."""

    def __init__(self, folder: Path):
        self.folder = folder

    def publish(self, TopicArn: str, Message: str, Subject: str | None = None) -> dict:
        """boto3's SNS `publish`, its argument names included."""
        self.folder.mkdir(parents=True, exist_ok=True)
        number = 1 + max((int(p.stem) for p in self.folder.glob("*.json") if p.stem.isdigit()),
                         default=0)
        path = self.folder / f"{number:03d}.json"
        write_text_atomically(path, json.dumps(
            {"topic_arn": TopicArn, "subject": Subject, "message": Message}, indent=2) + "\n")
        log.info("notification written to %s", path)
        return {"MessageId": f"local-{number:03d}", "path": str(path)}


def _new_execution_id() -> str:
    """Twelve lowercase letters and digits, like SageMaker's execution ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _order(steps: Mapping[str, dict]) -> list[str]:
    """Steps in dependency order; among steps ready together, the definition's order."""
    waiting = {name: pipeline_definition.dependencies(step) for name, step in steps.items()}
    for name, needs in waiting.items():
        unknown = needs - set(steps)
        if unknown:
            raise UserError(f"step {name} depends on {sorted(unknown)}, not in the definition")
    ordered: list[str] = []
    while waiting:
        ready = [n for n, needs in waiting.items() if needs <= set(ordered)]
        if not ready:
            raise UserError(f"the steps {sorted(waiting)} depend on each other in a circle")
        ordered.append(ready[0])
        del waiting[ready[0]]
    return ordered


def _packed_model(model_dir: Path, target: Path) -> None:
    """model.tar.gz of /opt/ml/model's contents (members relative, as SageMaker packs it)."""
    target.parent.mkdir(parents=True, exist_ok=True)

    def pack(file) -> None:
        with tarfile.open(fileobj=file, mode="w:gz") as archive:
            for path in sorted(model_dir.rglob("*")):
                archive.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)

    write_atomically(target, pack)


def _copy_out(source: Path, target: Path) -> None:
    """An EndOfJob upload: the folder's files land under the S3 folder (same keys replaced)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True, symlinks=False)


@contextlib.contextmanager
def _workdir_lock(workdir: Path, holder: str):
    """One run per work dir at a time: two would share the execution id, and each step's
    attempt replaces the step's job folder, deleting the tree a running job writes to. The
    lock (flock on WORKDIR/.lock) goes with the process, however it ends; the file names its
    holder for the error of the next one."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            other = handle.read().strip() or "holder not yet named"
            raise UserError(f"{workdir} is in use by another `sg2 pipeline run --local` ({other}); "
                            "wait for it to end or stop it, or use another --workdir") from error
        handle.seek(0)
        handle.truncate()
        handle.write(holder + "\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


class LocalPipelineRun:
    """One execution (or retry) of a definition under `workdir`."""

    def __init__(self, definition: Mapping, workdir: Path, *, pipeline_arn: str,
                 overrides: Mapping[str, Any] | None = None, sns_client=None,
                 topic_arn: str | None = None, new_execution: bool = False,
                 on_event: Callable[[StepEvent], None] | None = None,
                 extra_env: Mapping[str, str] | None = None):
        self.definition = definition
        self.workdir = workdir.resolve()
        self.steps = pipeline_definition.steps(definition)
        self.order = _order(self.steps)
        self.pipeline_arn = pipeline_arn
        self.sns = sns_client if sns_client is not None else LocalSns(self.workdir / "notifications")
        self.topic_arn = topic_arn
        self.on_event = on_event or (lambda event: log.info("%s", event))
        self.extra_env = dict(extra_env or {})
        self.execution_id = self._execution_id(new_execution)
        self.execution_arn = f"{pipeline_arn}/execution/{self.execution_id}"
        self.properties: dict[str, Any] = {}
        self.notifications: list[Path] = []
        self.messages: list[tuple[str, str]] = []
        self.lookup = pipeline_definition.parameter_lookup(definition, overrides, self._property)

    # -- state ---------------------------------------------------------------------------------
    def _execution_id(self, new: bool) -> str:
        path = self.workdir / STATE_FILE
        if path.exists() and not new:
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
                return str(state["execution_id"])
            except (ValueError, KeyError) as error:
                raise UserError(f"{path} is damaged ({error}); remove it or pass --new-execution "
                                "(the training step then starts over)") from error
        return _new_execution_id()

    def _save_state(self, status: str, events: list[StepEvent],
                    not_run: list[str] | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.workdir / STATE_FILE, json.dumps({
            "execution_id": self.execution_id, "execution_arn": self.execution_arn,
            "status": status, "steps": [dataclasses.asdict(e) for e in events],
            "not_run": not_run or []}, indent=2) + "\n")

    def _property(self, path: str) -> Any:
        execution = {"Execution.PipelineExecutionId": self.execution_id,
                     "Execution.PipelineExecutionArn": self.execution_arn,
                     "Execution.PipelineName": self.pipeline_arn.rsplit("/", 1)[-1],
                     "Execution.PipelineArn": self.pipeline_arn}
        if path in execution:
            return execution[path]
        if path in self.properties:
            return self.properties[path]
        raise UserError(f"the definition reads {path!r}, which the local run does not provide "
                        "(not yet produced, or unknown)")

    def _publish(self, subject: str | None, message: str) -> Path | None:
        """The failure rule's message, sent as EventBridge would (no subject of ours)."""
        topic = self.topic_arn or LOCAL_TOPIC
        kwargs = {"TopicArn": topic, "Message": message}
        if subject:
            kwargs["Subject"] = subject
        response = self.sns.publish(**kwargs)
        self.messages.append((subject or "", message))
        return Path(response["path"]) if "path" in response else None

    # -- the run -------------------------------------------------------------------------------
    def run(self, until: str | None = None) -> RunReport:
        if until is not None and until not in self.steps:
            raise UserError(f"--until {until!r}: not a step of this pipeline; steps: "
                            f"{', '.join(self.order)}")
        started = _now()
        holder = f"pid {os.getpid()}, execution {self.execution_id}, since {started}"
        with _workdir_lock(self.workdir, holder):
            write_text_atomically(self.workdir / DEFINITION_FILE,
                                  json.dumps(self.definition, indent=2) + "\n")
            self._save_state("Executing", [])
            events: list[StepEvent] = []
            with stop_on_signals(doing="no further step starts") as stop:
                status, reason = self._run_steps(until, events, stop)
            if status != "Succeeded":
                event = self._status_change_event(status, started, _now())
                message = rules.transformed_message(event, rules.input_transformer(
                    self._where_to_look(events[-1] if events else None)))
                path = self._publish(None, message)
                if path:
                    self.notifications.append(path)
            # Succeeded with --until means every step run succeeded, not the pipeline: the
            # steps it left out are named, in the state file and the report.
            done = {event.step for event in events}
            not_run = [] if status != "Succeeded" else [s for s in self.order if s not in done]
            self._save_state(UNTIL_STATUS if not_run else status, events, not_run)
        return RunReport(self.execution_id, self.execution_arn, status, events, reason,
                         list(self.messages), list(self.notifications), not_run)

    def _status_change_event(self, status: str, started: str, ended: str) -> dict:
        """The "Pipeline Execution Status Change" event SageMaker would emit: its fields only."""
        return {"source": "aws.sagemaker", "detail-type": rules.DETAIL_TYPE,
                "resources": [self.pipeline_arn], "detail": {
                    "currentPipelineExecutionStatus": status,
                    "previousPipelineExecutionStatus": "Executing",
                    "executionStartTime": started, "executionEndTime": ended,
                    "pipelineArn": self.pipeline_arn, "pipelineExecutionArn": self.execution_arn,
                    "pipelineExecutionDisplayName": self.execution_id}}

    def _where_to_look(self, last: StepEvent | None) -> str:
        """The failure message's pointer: `sg2 pipeline status` cannot read a local run."""
        jobs = self.workdir / "jobs" / self.execution_id
        if last is None:
            return f"Locally, each step's job folder is under {jobs}; the log is on the console."
        step, output = last.step, jobs / last.step / "output"
        if self.steps[step].get("Type") == "Lambda":  # no job folder
            return f"Locally, step {step}'s reason and log are on the console."
        written = [name for name in ("failure", "message") if (output / name).is_file()]
        if not written:  # it failed before its job ran (its inputs, its arguments)
            return f"Locally, step {step} failed before its job ran: {last.reason}"
        return (f"Locally, step {step}'s job folder is {jobs / step} (output/"
                f"{written[0]} holds the reason); its log is on the console.")

    def _run_steps(self, until: str | None, events: list[StepEvent], stop) -> tuple[str, str]:
        """Runs the steps in order until one fails, `until` is done, or a stop signal came
        (a step in progress gets the signal itself and stops as its job would)."""
        for name in self.order:
            if stop.is_set():
                return "Stopped", f"stopped by a signal before step {name}"
            step = self.steps[name]
            self.on_event(StepEvent(name, "Executing"))
            started = time.monotonic()
            try:
                self._run_step(name, step)
            except StepFailed as failed:
                event = StepEvent(name, failed.state, time.monotonic() - started, str(failed))
                events.append(event)
                self.on_event(event)
                status = "Stopped" if failed.state == "Stopped" else "Failed"
                return status, f"Step {name} {failed.state.lower()}: {failed}"
            event = StepEvent(name, "Succeeded", time.monotonic() - started)
            events.append(event)
            self.on_event(event)
            if name == until:
                break
        return "Succeeded", ""

    def _run_step(self, name: str, step: dict) -> None:
        kinds = {"Processing": self._processing, "Training": self._training, "Lambda": self._lambda}
        if step.get("Type") not in kinds:
            raise StepFailed(f"step type {step.get('Type')!r} cannot run locally (Processing, "
                             "Training and Lambda can)")
        try:
            arguments = pipeline_definition.resolve(step.get("Arguments", {}), self.lookup)
            kinds[step["Type"]](name, step, arguments)
        except UserError as error:
            raise StepFailed(f"UserError: {error}") from error

    def _job_dir(self, name: str) -> Path:
        """A fresh /opt/ml tree per attempt (the previous attempt's is replaced)."""
        base = self.workdir / "jobs" / self.execution_id / name
        if base.exists():
            shutil.rmtree(base)  # a checkpoints link inside is removed, not followed
        base.mkdir(parents=True)
        return base

    @staticmethod
    def _entrypoint(entrypoint: list[str], default: list[str]) -> list[str]:
        """The job's ContainerEntrypoint as our entrypoint's arguments."""
        if not entrypoint:
            return default
        if entrypoint[0] != layout.ENTRYPOINT:
            raise UserError(f"ContainerEntrypoint {entrypoint!r}: the local run starts the "
                            f"sg2-container image's entrypoint only ({layout.ENTRYPOINT} ...)")
        return list(entrypoint[1:])

    @staticmethod
    def _outcome(code: int, text: str | None, job: str) -> None:
        if code == EXIT_OK:
            return
        reason = (text or f"{job} exited with code {code} and left no failure text").strip()
        raise StepFailed(reason, "Stopped" if code == EXIT_STOPPED else "Failed")

    def _processing(self, name: str, step: dict, args: dict) -> None:
        base = self._job_dir(name)
        app = args.get("AppSpecification", {})
        arguments = self._entrypoint(app.get("ContainerEntrypoint") or [], []) + [
            str(a) for a in app.get("ContainerArguments") or []]
        inputs, outputs, local_paths, uploads = {}, {}, {}, {}
        for item in args.get("ProcessingInputs", []):
            input_name, s3 = item["InputName"], item["S3Input"]
            source = s3_folder(self.workdir, s3["S3Uri"])
            if not source.exists() or (source.is_dir() and not any(source.iterdir())):
                raise UserError(f"input {input_name}: nothing at {s3['S3Uri']} (locally "
                                f"{source}); put the files there first")
            # An object (not a prefix) arrives as a file inside LocalPath, as SageMaker does.
            local_paths[input_name] = (f"{s3['LocalPath'].rstrip('/')}/{source.name}"
                                       if source.is_file() else s3["LocalPath"])
            inputs[input_name] = source
        staging = base.parent / f"{name}.outputs"
        if staging.exists():
            shutil.rmtree(staging)
        for item in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
            output_name, s3 = item["OutputName"], item["S3Output"]
            outputs[output_name] = staging / output_name
            local_paths[output_name] = s3["LocalPath"]
            uploads[output_name] = s3["S3Uri"]
        code = run_local_processing(base, inputs, outputs, arguments, local_paths=local_paths,
                                    copy=True, extra_env={**self.extra_env,
                                                          **(args.get("Environment") or {})})
        self._outcome(code, processing_message(base), f"processing job {name}")
        for output_name, uri in uploads.items():
            _copy_out(outputs[output_name], s3_folder(self.workdir, uri))
            self.properties[f"Steps.{name}.ProcessingOutputConfig.Outputs['{output_name}']"
                            ".S3Output.S3Uri"] = uri
        self.properties[f"Steps.{name}.ProcessingJobName"] = self._job_name(name)

    def _job_name(self, name: str) -> str:
        return f"pipelines-{self.execution_id}-{name}"

    def _training(self, name: str, step: dict, args: dict) -> None:
        base = self._job_dir(name)
        algorithm = args.get("AlgorithmSpecification", {})
        arguments = self._entrypoint(algorithm.get("ContainerEntrypoint") or [], ["train"]) + [
            str(a) for a in algorithm.get("ContainerArguments") or []]
        channels = {}
        for channel in args.get("InputDataConfig", []):
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            source = s3_folder(self.workdir, uri)
            if not source.exists():
                raise UserError(f"channel {channel['ChannelName']}: nothing at {uri} (locally "
                                f"{source})")
            channels[channel["ChannelName"]] = source
        checkpoints, resumed = None, False
        if args.get("CheckpointConfig"):
            config = args["CheckpointConfig"]
            if config.get("LocalPath", layout.CHECKPOINT_LOCAL_PATH) != layout.CHECKPOINT_LOCAL_PATH:
                raise UserError(f"CheckpointConfig.LocalPath {config['LocalPath']!r}: the local "
                                f"run syncs {layout.CHECKPOINT_LOCAL_PATH} only")
            checkpoints = s3_folder(self.workdir, config["S3Uri"])
            resumed = checkpoints.exists() and any(checkpoints.iterdir())
            if resumed:
                log.info("checkpoints of an earlier attempt at %s: the job resumes from them",
                         config["S3Uri"])
        hyperparameters = {str(k): str(v) for k, v in (args.get("HyperParameters") or {}).items()}
        job = LocalJob(base_dir=base, hyperparameters=hyperparameters, channels=channels,
                       checkpoints=checkpoints, copy_inputs=True)
        code = run_local(job, arguments[0] if arguments else "train", extra_env=self.extra_env,
                         arguments=arguments)
        job_name = self._job_name(name)
        artifacts = "/".join([args["OutputDataConfig"]["S3OutputPath"].rstrip("/"), job_name,
                              "output", "model.tar.gz"])
        if code in (EXIT_OK, EXIT_STOPPED):  # SageMaker packs the model of a stopped job too
            _packed_model(base / "model", s3_folder(self.workdir, artifacts))
        reason = failure_reason(base)
        if code != EXIT_OK and resumed and reason and CHANGED_OPTIONS in reason:
            reason = f"{reason.rstrip()}. {CHANGED_OPTIONS_IN_A_PIPELINE}"
        self._outcome(code, reason, f"training job {name}")
        self.properties[f"Steps.{name}.ModelArtifacts.S3ModelArtifacts"] = artifacts
        self.properties[f"Steps.{name}.TrainingJobName"] = job_name

    def _lambda(self, name: str, step: dict, event: dict) -> None:
        """Our notification handler, with the SNS stand-in (or a real client)."""
        if self.topic_arn:
            event = {**event, "topic_arn": self.topic_arn}
        environ = {notify.TOPIC_ENV: LOCAL_TOPIC} if self.topic_arn is None else {}
        log.info("calling %s (the notification handler) with %s", step.get("FunctionArn"), event)
        before = set(self.sns.folder.glob("*.json")) if isinstance(self.sns, LocalSns) else set()
        result = notify.notify(event, sns_client=self.sns, environ=environ)
        if isinstance(self.sns, LocalSns):
            self.notifications += sorted(set(self.sns.folder.glob("*.json")) - before)
        try:  # what the deployed handler does with the result: raise, failing the step
            notify.sent(result)
        except notify.NotificationFailed as error:
            raise StepFailed(f"the notification handler raised NotificationFailed: {error}") \
                from error
        self.messages.append(notify.compose(event))
        for key, value in result.items():
            self.properties[f"Steps.{name}.OutputParameters['{key}']"] = value
