"""`sg2 pipeline run --local`: the built definition executed step by step on the local
stand-ins, each step a real subprocess of the image's entrypoint, tiny settings."""
from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from sg2_container.cli.main import cli
from sg2_container.data.synthetic import write_synthetic_folder
from sg2_container.errors import UserError
from sg2_container.pipeline import builder, layout, rules
from sg2_container.pipeline.options import PipelineParameters, PipelineSettings
from sg2_container.sagemaker.local_pipeline import LocalPipelineRun, s3_folder
from sg2_container.sagemaker.processing import COMMANDS

BUCKET = "sg2-example-bucket"
TINY = {"Resolution": "16", "Kimg": "0.004", "Batch": "2", "Cbase": "128", "Cfg": "cifar",
        "Snap": "1", "InferenceSteps": "3"}
PIPELINE_ARN = rules.pipeline_arn("us-east-1", "111122223333", "sg2-stylegan2")


def _uploads(workdir: Path, count: int = 6) -> Path:
    uploads = workdir / "s3" / BUCKET / "sg2" / "uploads"
    write_synthetic_folder(uploads, count=count, resolution=16, seed=0)
    return uploads


def _definition(**overrides) -> dict:
    from sg2_container.pipeline.options import field_values

    values = PipelineParameters(**field_values({**TINY, **overrides}))
    return builder.definition(values, PipelineSettings(inference_rehearsal=True))


def _events(report):
    return [(e.step, e.state) for e in report.steps]


@pytest.mark.skipif("infer" not in COMMANDS,
                    reason="the inference step needs `sg2-sagemaker infer` (issue 13), not here yet")
def test_the_whole_pipeline_runs_locally_and_a_second_run_resumes_training(tmp_path, capfd):
    workdir = tmp_path / "run"
    _uploads(workdir)
    target = workdir / "s3" / BUCKET / "sg2" / "inference-input"
    target.mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 40, 90)).save(target / "design.png")
    args = ["pipeline", "run", "--local", "--workdir", str(workdir), "--inference-rehearsal"]
    for name, value in TINY.items():
        args += ["--param", f"{name}={value}"]

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    state = json.loads((workdir / "execution.json").read_text())
    execution = state["execution_id"]
    assert [(s["step"], s["state"]) for s in state["steps"]] == [
        (step, "Succeeded") for step in layout.STEP_ORDER]
    output = workdir / "s3" / BUCKET / "sg2" / "output" / execution

    # prepare: the training zip at the processing output's S3 URI, images at Resolution.
    with zipfile.ZipFile(output / "data" / layout.DATASET_NAME) as archive:
        pngs = [n for n in archive.namelist() if n.endswith(".png")]
        assert len(pngs) == 6
        with archive.open(pngs[0]) as member:
            assert Image.open(member).size == (16, 16)
    # train: model.tar.gz where S3ModelArtifacts points, packed from /opt/ml/model; the
    # checkpoints at the checkpoint URI's folder.
    packed = output / "model" / f"pipelines-{execution}-{layout.TRAIN_STEP}" / "output" / "model.tar.gz"
    with tarfile.open(packed) as archive:
        assert {"model.pt", "training_options.json"} <= set(archive.getnames())
    checkpoints = workdir / "s3" / BUCKET / "sg2" / "checkpoints" / execution
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*.pt"))
    # infer: the manifest of the projected test image, under the output URI's folder.
    results = output / "inference" / layout.INFER_RESULTS_NAME
    manifest = json.loads((results / "manifest.json").read_text())
    [request] = manifest["requests"]
    assert (request["kind"], request["status"]) == ("project", "done")
    assert request["source"] == "data image design.png" and "rehearsal" in request["note"]
    for name in request["files"]:
        assert (results / name).is_file()
    assert "000-project/design/proj.png" in request["files"]
    # notify: the handler's message names the folder of the results.
    notes = sorted((workdir / "notifications").glob("*.json"))
    assert len(notes) == 1
    note = json.loads(notes[0].read_text())
    uri = f"s3://{BUCKET}/sg2/output/{execution}/inference/{layout.INFER_RESULTS_NAME}"
    assert note["subject"] == "StyleGAN2 Inference: Succeeded"
    assert uri in note["message"] and execution in note["message"]
    assert uri in result.output and f"{uri} is {results}" in result.output
    for step in layout.STEP_ORDER:
        assert f"[{step}] Succeeded after" in result.output

    # Again, same work dir: a retry of the same execution; training resumes, trains nothing.
    stats = (checkpoints / "stats.jsonl").read_text()
    capfd.readouterr()
    again = CliRunner().invoke(cli, args + ["--until", layout.TRAIN_STEP], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    logs = capfd.readouterr().out
    state = json.loads((workdir / "execution.json").read_text())
    assert state["execution_id"] == execution
    assert "continuing from checkpoint" in logs and "nothing to train" in logs
    # --until ran part of the pipeline: not called the pipeline's success, the rest named.
    rest = layout.STEP_ORDER[layout.STEP_ORDER.index(layout.TRAIN_STEP) + 1:]
    assert rest and state["not_run"] == list(rest)
    assert state["status"] == "SucceededUntil"  # not "Succeeded": the pipeline did not finish
    assert "pipeline Succeeded" not in again.output
    assert (f"steps through {layout.TRAIN_STEP} Succeeded (--until): execution {execution}; "
            f"not run: {', '.join(rest)}.") in again.output
    assert (checkpoints / "stats.jsonl").read_text() == stats


def test_a_broken_hyperparameter_fails_the_training_step_and_notifies(tmp_path):
    """An execution started with a value the service accepts but our decoder refuses."""
    workdir = tmp_path / "run"
    _uploads(workdir, count=2)
    run = LocalPipelineRun(_definition(), workdir, pipeline_arn=PIPELINE_ARN,
                           overrides={"Cfg": "paper257"})
    report = run.run()

    assert report.status == "Failed"
    assert _events(report) == [(layout.PREPARE_STEP, "Succeeded"), (layout.TRAIN_STEP, "Failed")]
    failure = (workdir / "jobs" / report.execution_id / layout.TRAIN_STEP / "output" / "failure")
    text = failure.read_text()
    assert text.startswith("UserError: train:") and "paper257" in text and "paper256" in text
    assert text in report.failure_reason and report.failure_reason.startswith(
        f"Step {layout.TRAIN_STEP} failed")
    # The failure rule's message, as EventBridge would send it (the event has no reason: the
    # message names where it is); no success notification.
    notes = sorted((workdir / "notifications").glob("*.json"))
    assert len(notes) == 1
    message = json.loads(notes[0].read_text())["message"]
    assert message.startswith("StyleGAN2 pipeline Failed: no results this time.")
    assert report.execution_arn in message and "paper257" not in message
    assert str(failure.parent.parent.resolve()) in message and "sg2 pipeline status" not in message
    assert "(output/failure holds the reason)" in message
    assert not list((workdir / "s3" / BUCKET / "sg2" / "output" / report.execution_id).glob("model"))


def test_the_local_run_follows_the_definition_the_builder_writes(tmp_path, monkeypatch):
    """Changing the builder's layout changes what the local run does: it reads the JSON."""
    monkeypatch.setattr(layout, "PREPARE_OUTPUT", ("designs", "/opt/ml/processing/designs"))
    monkeypatch.setattr(layout, "DATASET_NAME", "designs.zip")
    workdir = tmp_path / "run"
    _uploads(workdir, count=3)
    body = _definition(Resolution="8")
    report = LocalPipelineRun(body, workdir, pipeline_arn=PIPELINE_ARN).run(until=layout.PREPARE_STEP)

    assert _events(report) == [(layout.PREPARE_STEP, "Succeeded")]
    job = workdir / "jobs" / report.execution_id / layout.PREPARE_STEP
    config = json.loads((job / "config" / "processingjobconfig.json").read_text())
    assert config["ProcessingOutputConfig"]["Outputs"] == [
        {"OutputName": "designs", "S3Output": {"LocalPath": "/opt/ml/processing/designs"}}]
    uri = body["Steps"][0]["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert uri["Std:Join"]["Values"][-1] == "data"
    dataset = s3_folder(workdir, f"s3://{BUCKET}/sg2/output/{report.execution_id}/data") / "designs.zip"
    with zipfile.ZipFile(dataset) as archive:
        png = next(n for n in archive.namelist() if n.endswith(".png"))
        with archive.open(png) as member:
            assert Image.open(member).size == (8, 8)
    assert not list(workdir.rglob("animeface.zip"))


def test_an_edited_definition_is_what_runs(tmp_path):
    """The JSON itself, edited after building: the job gets the edited arguments."""
    workdir = tmp_path / "run"
    _uploads(workdir, count=2)
    body = _definition()
    arguments = body["Steps"][0]["Arguments"]["AppSpecification"]["ContainerArguments"]
    arguments[arguments.index("--width") + 1] = "8"
    arguments[arguments.index("--height") + 1] = "8"
    report = LocalPipelineRun(body, workdir, pipeline_arn=PIPELINE_ARN).run(until=layout.PREPARE_STEP)
    assert report.status == "Succeeded"
    dataset = next((workdir / "s3").rglob("animeface.zip"))
    with zipfile.ZipFile(dataset) as archive:
        png = next(n for n in archive.namelist() if n.endswith(".png"))
        with archive.open(png) as member:
            assert Image.open(member).size == (8, 8)


def test_missing_uploads_fail_the_first_step_with_the_folder_to_fill(tmp_path):
    workdir = tmp_path / "run"
    report = LocalPipelineRun(_definition(), workdir, pipeline_arn=PIPELINE_ARN).run()
    assert _events(report) == [(layout.PREPARE_STEP, "Failed")]
    folder = workdir / "s3" / BUCKET / "sg2" / "uploads"
    assert f"s3://{BUCKET}/sg2/uploads" in report.failure_reason
    assert str(folder) in report.failure_reason
    # No job ran, so no job folder holds the reason: the notification carries it.
    note = json.loads(next((workdir / "notifications").glob("*.json")).read_text())
    assert "Failed" in note["message"] and "output/failure" not in note["message"]
    assert (f"step {layout.PREPARE_STEP} failed before its job ran: " in note["message"]
            and str(folder) in note["message"])


def test_run_without_local_or_with_a_bad_topic_is_refused(tmp_path):
    plain = CliRunner().invoke(cli, ["pipeline", "run", "--workdir", str(tmp_path)])
    assert plain.exit_code != 0 and "--local" in plain.output and "start" in plain.output
    topic = CliRunner().invoke(cli, ["pipeline", "run", "--local", "--workdir", str(tmp_path),
                                     "--sns-topic-arn", "designer-mail"])
    assert topic.exit_code != 0 and "sns-topic-arn" in topic.output
    assert not (tmp_path / "execution.json").exists()


def test_a_stop_signal_during_training_stops_the_run_and_notifies(tmp_path):
    """Ctrl-C reaches the running step as SageMaker's stop would; no later step starts; the
    failure rule's message (Stopped) is written; exit 130 as every job of the image."""
    import os
    import signal
    import subprocess
    import sys

    workdir = tmp_path / "run"
    _uploads(workdir)
    command = [sys.executable, "-m", "sg2_container.cli.main", "pipeline", "run", "--local",
               "--workdir", str(workdir), "--inference-rehearsal"]
    for name, value in {**TINY, "Kimg": "2"}.items():
        command += ["--param", f"{name}={value}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "tick=0" in line:  # training is under way
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    out = "".join(seen) + rest
    assert process.returncode == 130, out
    assert f"[{layout.TRAIN_STEP}] Stopped" in out
    assert f"[{layout.INFER_STEP}] Executing" not in out
    messages = [json.loads(p.read_text()) for p in sorted((workdir / "notifications").glob("*.json"))]
    assert messages and "Stopped" in json.dumps(messages[-1])


class _RefusingSns:
    """An SNS client whose topic refuses the notification step's message (the failure
    rule's message, which has no subject of ours, is recorded)."""

    def __init__(self):
        self.sent = []

    def publish(self, TopicArn, Message, Subject=None):
        if Subject is not None:
            raise RuntimeError(f"AuthorizationError: not allowed to publish to {TopicArn}")
        self.sent.append(Message)
        return {"MessageId": "m-1"}


def test_a_notification_that_cannot_be_sent_fails_the_step_and_the_run(tmp_path):
    """As on SageMaker, where the handler raises and the LambdaStep fails."""
    body = {"Version": "2020-12-01", "Parameters": [], "Steps": [{
        "Name": layout.NOTIFY_STEP, "Type": "Lambda",
        "FunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:sg2-pipeline-notify",
        "Arguments": {"output_uri": "s3://b/results", "subject": layout.NOTIFY_SUBJECT,
                      "pipeline_execution_arn": {"Get": "Execution.PipelineExecutionArn"}}}]}
    topic = "arn:aws:sns:us-east-1:111122223333:designer-mail"
    sns = _RefusingSns()
    report = LocalPipelineRun(body, tmp_path / "run", pipeline_arn=PIPELINE_ARN, sns_client=sns,
                              topic_arn=topic).run()
    assert report.status == "Failed"
    assert _events(report) == [(layout.NOTIFY_STEP, "Failed")]
    assert "NotificationFailed" in report.failure_reason
    assert "AuthorizationError" in report.failure_reason
    message, = sns.sent  # the failure rule's message went out instead
    assert message.startswith("StyleGAN2 pipeline Failed")


def test_a_retry_with_changed_parameters_says_to_start_a_new_execution(tmp_path):
    """The training job's own advice (a new outdir, or --allow-changed-options) does not fit
    a pipeline, whose outdir is the execution's checkpoint folder."""
    workdir = tmp_path / "run"
    _uploads(workdir, count=2)
    first = LocalPipelineRun(_definition(), workdir, pipeline_arn=PIPELINE_ARN).run(
        until=layout.TRAIN_STEP)
    assert first.status == "Succeeded", first.failure_reason
    again = LocalPipelineRun(_definition(Gamma="3"), workdir, pipeline_arn=PIPELINE_ARN).run(
        until=layout.TRAIN_STEP)
    assert again.execution_id == first.execution_id and again.status == "Failed"
    assert "gamma" in again.failure_reason and "--new-execution" in again.failure_reason


def test_a_second_run_on_a_busy_workdir_is_refused_and_touches_nothing(tmp_path):
    """Two runs on one work dir share the execution id; the second would delete the job tree
    the first is writing to."""
    import fcntl

    workdir = tmp_path / "run"
    _uploads(workdir, count=2)
    first = LocalPipelineRun(_definition(), workdir, pipeline_arn=PIPELINE_ARN)
    state = json.dumps({"execution_id": first.execution_id, "status": "Executing", "steps": []})
    (workdir / "execution.json").write_text(state)  # as the first run records it
    running = workdir / "jobs" / first.execution_id / layout.PREPARE_STEP / "output"
    running.mkdir(parents=True)
    (running / "being-written").write_text("x")
    with open(workdir / ".lock", "a+") as held:  # what the first run holds while it runs
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"pid 4242, execution {first.execution_id}, since 2026-01-01T00:00:00Z\n")
        held.flush()
        with pytest.raises(UserError) as refused:
            LocalPipelineRun(_definition(), workdir, pipeline_arn=PIPELINE_ARN).run()
    message = str(refused.value)
    assert str(workdir) in message and "pid 4242" in message and first.execution_id in message
    assert "--workdir" in message
    assert (running / "being-written").exists()
    assert (workdir / "execution.json").read_text() == state
    # Once the other run has ended, the lock is free again.
    report = LocalPipelineRun(_definition(), workdir, pipeline_arn=PIPELINE_ARN).run(
        until=layout.PREPARE_STEP)
    assert report.status == "Succeeded", report.failure_reason
    assert (workdir / "definition.json").is_file()
