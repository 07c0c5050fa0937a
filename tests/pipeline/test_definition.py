"""The pipeline definition, built offline, has the article's four steps wired by data, on our
image, with hyperparameters our own decoder reads back and arguments our jobs parse."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from sg2_container.options.schema import decode_hyperparameters, parse_args
from sg2_container.options.training import TrainingOptions
from sg2_container.pipeline import definition as d
from sg2_container.pipeline import layout
from sg2_container.pipeline.options import PipelineParameters, PipelineSettings

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPECTED = REPO / "tests" / "data" / "pipeline-definition.json"
REGENERATE = "python -m sg2_container.cli.main pipeline definition -o tests/data/pipeline-definition.json"

CUSTOM = PipelineParameters(cfg="auto", kimg=1.5, gamma=2.0, augpipe="bgc", mirror=False, snap=3,
                            gpus=2, batch="8", cbase="1024", resolution=64,
                            image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/sg2:7",
                            input_data_uri="s3://designer-bucket/uploads/42")


@pytest.fixture(scope="module")
def default_definition():
    from sg2_container.pipeline.builder import definition

    return definition(PipelineParameters(), PipelineSettings())


@pytest.fixture(scope="module")
def custom_definition():
    from sg2_container.pipeline.builder import definition

    return definition(CUSTOM, PipelineSettings(spot=True, max_run_hours=10, bucket="my-bucket"))


def _lookup(definition, **steps):
    """Parameters from the definition's defaults; execution variables and step properties
    as a run would give them."""
    values = {"Execution.PipelineExecutionId": "exec1",
              "Execution.PipelineExecutionArn": "arn:aws:sagemaker:us-east-1:111122223333:"
                                                "pipeline/sg2-stylegan2/execution/exec1",
              **steps}
    return d.parameter_lookup(definition, other=values.__getitem__)


def test_four_steps_in_order_wired_by_data(default_definition):
    steps = d.steps(default_definition)
    assert tuple(steps) == layout.STEP_ORDER
    deps = {name: d.dependencies(step) for name, step in steps.items()}
    assert deps == {layout.PREPARE_STEP: set(), layout.TRAIN_STEP: {layout.PREPARE_STEP},
                    layout.INFER_STEP: {layout.TRAIN_STEP}, layout.NOTIFY_STEP: {layout.INFER_STEP}}
    types = [step["Type"] for step in steps.values()]
    assert types == ["Processing", "Training", "Processing", "Lambda"]


def test_every_job_runs_the_image_parameter_and_no_uploaded_code(default_definition):
    steps = d.steps(default_definition)
    image = {"Get": "Parameters.ImageUri"}
    assert steps[layout.PREPARE_STEP]["Arguments"]["AppSpecification"]["ImageUri"] == image
    assert steps[layout.INFER_STEP]["Arguments"]["AppSpecification"]["ImageUri"] == image
    assert steps[layout.TRAIN_STEP]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] == image
    text = json.dumps(default_definition)
    assert "sagemaker_submit_directory" not in text and "/opt/ml/processing/input/code" not in text
    assert steps[layout.PREPARE_STEP]["Arguments"]["AppSpecification"]["ContainerEntrypoint"] == [
        "sg2-sagemaker", "prepare"]
    assert steps[layout.INFER_STEP]["Arguments"]["AppSpecification"]["ContainerEntrypoint"] == [
        "sg2-sagemaker", "infer"]


def test_training_hyperparameters_decode_back_to_the_values_given(custom_definition):
    train = d.steps(custom_definition)[layout.TRAIN_STEP]["Arguments"]
    raw = d.resolve(train["HyperParameters"], _lookup(custom_definition))
    assert all(isinstance(v, str) for v in raw.values())  # what hyperparameters.json holds
    assert raw["cfg"] == '"auto"' and raw["data"] == '"/opt/ml/input/data/train/animeface.zip"'
    options = TrainingOptions(**decode_hyperparameters(TrainingOptions, raw))
    assert (options.cfg, options.kimg, options.gamma, options.augpipe, options.mirror,
            options.snap, options.gpus, options.batch, options.cbase) == (
        "auto", 1.5, 2.0, "bgc", False, 3, 2, 8, 1024)
    assert options.data == "/opt/ml/input/data/train/animeface.zip"
    assert options.outdir == "/opt/ml/checkpoints" and options.metrics == ()


def test_default_hyperparameters_are_the_articles(default_definition):
    train = d.steps(default_definition)[layout.TRAIN_STEP]["Arguments"]
    raw = d.resolve(train["HyperParameters"], _lookup(default_definition))
    options = TrainingOptions(**decode_hyperparameters(TrainingOptions, raw))
    assert (options.cfg, options.kimg, options.gamma, options.augpipe, options.mirror,
            options.snap, options.batch, options.cbase) == ("paper256", 2000, 10, "bg", True, 10,
                                                            None, None)


def test_training_job_checkpoints_spot_metrics_and_input(custom_definition):
    from sg2_container.training.report import status_line

    train = d.steps(custom_definition)[layout.TRAIN_STEP]["Arguments"]
    lookup = _lookup(custom_definition)
    assert d.resolve(train["CheckpointConfig"], lookup) == {
        "S3Uri": "s3://my-bucket/sg2/checkpoints/exec1", "LocalPath": "/opt/ml/checkpoints"}
    assert train["EnableManagedSpotTraining"] is True
    assert train["StoppingCondition"] == {"MaxRuntimeInSeconds": 36000, "MaxWaitTimeInSeconds": 72000}
    assert d.resolve(train["OutputDataConfig"]["S3OutputPath"], lookup) == "s3://my-bucket/sg2/output/exec1/model"
    channel, = train["InputDataConfig"]
    assert channel["ChannelName"] == "train" and channel["ContentType"] == "application/x-image"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.stylegan2Process.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    line = status_line(tick=3, cur_nimg=1500, total_kimg=2, total_sec=30, tick_sec=10,
                       tick_nimg=500, maintenance_sec=0.5, augment_p=0.125, gpu_mem_gib=1.0,
                       means={"Loss/G/loss": {"mean": -0.25}, "Loss/D/loss": {"mean": 1.5}})
    import re

    scraped = {m["Name"]: float(re.search(m["Regex"], line).group(1))
               for m in train["AlgorithmSpecification"]["MetricDefinitions"]}
    assert scraped == {"kimg": 1.5, "sec_per_kimg": 20.0, "loss_G": -0.25, "loss_D": 1.5,
                       "augment_p": 0.125}


def test_no_spot_without_asking(default_definition):
    train = d.steps(default_definition)[layout.TRAIN_STEP]["Arguments"]
    assert train.get("EnableManagedSpotTraining", False) is False
    assert "MaxWaitTimeInSeconds" not in train["StoppingCondition"]


def test_prepare_arguments_are_the_articles_and_parse_as_prepare_options(custom_definition):
    from sg2_container.data.options import PrepareOptions

    prepare = d.steps(custom_definition)[layout.PREPARE_STEP]["Arguments"]
    lookup = _lookup(custom_definition)
    args = d.resolve(prepare["AppSpecification"]["ContainerArguments"], lookup)
    assert args == ["--source", "/opt/ml/processing/input", "--dest",
                    "/opt/ml/processing/train/animeface.zip", "--width", "64", "--height", "64"]
    options = PrepareOptions(**parse_args(PrepareOptions, args, "prepare", ""))
    assert options.size == (64, 64)
    source, = prepare["ProcessingInputs"]
    assert d.resolve(source["S3Input"]["S3Uri"], lookup) == "s3://designer-bucket/uploads/42"
    assert prepare["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {
        "Get": "Parameters.ProcessInstanceType"}


def test_inference_reads_the_training_model_and_the_notification_gets_its_output(default_definition):
    steps = d.steps(default_definition)
    infer = steps[layout.INFER_STEP]["Arguments"]
    inputs = {i["InputName"]: i["S3Input"] for i in infer["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == {"Get": "Steps.stylegan2train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["model"]["LocalPath"] == "/opt/ml/processing/model"
    assert inputs["data"]["S3Uri"] == {"Get": "Parameters.InferenceInputUri"}
    assert inputs["data"]["LocalPath"] == "/opt/ml/processing/data"
    output, = infer["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output"

    notify = steps[layout.NOTIFY_STEP]
    results = "Steps.stylegan2Inference.ProcessingOutputConfig.Outputs['results'].S3Output.S3Uri"
    event = d.resolve(notify["Arguments"], _lookup(default_definition, **{
        results: "s3://b/sg2/output/exec1/inference"}))
    assert event["output_uri"] == "s3://b/sg2/output/exec1/inference/test"
    assert event["pipeline_execution_arn"].endswith("/execution/exec1")
    assert event["subject"] == "StyleGAN2 Inference" and event["topic_arn"] == ""
    assert notify["FunctionArn"] == "arn:aws:lambda:us-east-1:111122223333:function:sg2-pipeline-notify"


def test_matches_the_checked_in_definition(default_definition):
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert default_definition == expected, f"regenerate with: {REGENERATE}"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare to cut the network")
def test_definition_command_without_network_or_credentials(tmp_path):
    """The command in a process with no network namespace access and no AWS configuration."""
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("unprivileged network namespaces are not allowed here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
    result = subprocess.run(["unshare", "-rn", sys.executable, "-m", "sg2_container.cli.main",
                             "pipeline", "definition"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(EXPECTED.read_text(encoding="utf-8"))


# Instance families with a GPU the image's default variant cannot run on (docs/docker.md):
# ml.p3 is a V100 (sm_70), which only the cu126 variant runs on; ml.p2 (K80) neither.
NOT_ON_CU130 = ("ml.p2.", "ml.p3.")


def test_default_instances_run_the_default_image_variant():
    """The pipeline's defaults must run on the image built by default (Dockerfile and
    buildspec: cu130), or a default upsert fails at the training step's first CUDA call."""
    import re

    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    buildspec = (REPO / "buildspec.yml").read_text(encoding="utf-8")
    variant = re.search(r"^ARG CUDA_VARIANT=(\S+)$", dockerfile, re.M).group(1)
    assert re.search(rf'^\s+CUDA_VARIANT: "{variant}"$', buildspec, re.M), "buildspec differs"
    values = PipelineParameters()
    cannot_run = {"cu130": NOT_ON_CU130, "cu126": ("ml.p2.",)}[variant]  # a new variant: add it
    for name in ("train_instance_type", "inference_instance_type"):
        assert not getattr(values, name).startswith(cannot_run), name


GUARD = '''
import json, socket, sys
attempts = []
def refuse(address):
    if address[0] not in ("127.0.0.1", "::1", "localhost"):
        attempts.append(list(address[:2]))
        raise OSError(f"network access to {address!r}")
connect = socket.socket.connect
def guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse(address)
    return connect(self, address)
socket.socket.connect = guarded
create_connection = socket.create_connection
socket.create_connection = lambda address, *a, **k: (refuse(address),
                                                     create_connection(address, *a, **k))[1]
from sg2_container.cli.main import cli
try:
    cli(["pipeline", "definition", "-o", sys.argv[1]], standalone_mode=False)
finally:
    print("ATTEMPTS " + json.dumps(attempts), file=sys.stderr)
'''


def test_definition_without_credentials_never_asks_the_instance_metadata_service(tmp_path):
    """No AWS variables and no credentials files: importing the SDK creates a boto3 client,
    whose credential lookup would end at 169.254.169.254 (retries and timeouts, swallowed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", GUARD, str(tmp_path / "d.json")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ATTEMPTS []" in result.stderr, result.stderr[-2000:]
    assert json.loads((tmp_path / "d.json").read_text()) == json.loads(EXPECTED.read_text())


@pytest.mark.parametrize("before", [None, "false"])
def test_the_metadata_switch_is_the_callers_again_after_building(monkeypatch, before):
    """upsert and start build, then call AWS in the same process, maybe with the instance's
    role: the build's offline setting must not outlive it."""
    from sg2_container.pipeline import builder

    if before is None:
        monkeypatch.delenv(builder.METADATA_SWITCH, raising=False)
    else:
        monkeypatch.setenv(builder.METADATA_SWITCH, before)
    builder.definition(PipelineParameters(), PipelineSettings())
    assert os.environ.get(builder.METADATA_SWITCH) == before


@pytest.mark.parametrize("values,words", [
    # Each once built a definition whose training step could only fail, after the prepare
    # job and a training instance had been paid for.
    (dict(resolution=4), "Resolution=4 is not allowed: a power of two >= 8"),
    (dict(resolution=16, augpipe="bgcf"), "augpipe='bgcf' includes the image filter"),
    (dict(batch="6", gpus=4), "batch=6 is not allowed: a multiple of gpus=4"),
    (dict(batch="6", gpus=2, train_instance_count=2), "batch=6 cannot be split into 4 GPU(s)"),
])
def test_parameters_the_training_step_would_refuse_are_refused_up_front(values, words):
    from sg2_container.errors import UserError

    with pytest.raises(UserError) as refused:
        PipelineParameters(**values)
    assert words in str(refused.value)


def test_a_trailing_slash_on_an_output_prefix_makes_no_empty_folder_on_s3():
    """OutputUri=s3://b/sg2/output/ gave keys s3://b/sg2/output//<execution id>/..."""
    values = PipelineParameters(output_uri="s3://bucket-1/sg2/output/",
                                checkpoint_uri="s3://bucket-1/sg2/checkpoints//")
    assert values.output_uri == "s3://bucket-1/sg2/output"
    assert values.checkpoint_uri == "s3://bucket-1/sg2/checkpoints"
    assert PipelineParameters(output_uri="s3://bucket-1/").output_uri == "s3://bucket-1"


def test_the_sdk_still_validates_its_config_after_the_schema_is_checked_once(default_definition):
    """builder checks the SDK's config schema once, not at each lookup: configs are still
    validated against it."""
    import jsonschema
    from sagemaker.core.config.config_manager import SageMakerConfig

    from sg2_container.pipeline.builder import SDK_CONFIG

    assert SageMakerConfig.validate_sagemaker_config._sg2_checked
    SageMakerConfig.validate_sagemaker_config(SDK_CONFIG)
    bad = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {
        "TelemetryOptOut": "yes"}}}}
    with pytest.raises(jsonschema.ValidationError, match="'yes' is not of type 'boolean'"):
        SageMakerConfig.validate_sagemaker_config(bad)
