"""The metrics' detector from a SageMaker input channel named 'detector'."""
import pytest

from sg2_container.errors import UserError
from sg2_container.sagemaker.job import find_detector


def test_the_one_file_in_the_detector_channel_is_used(tmp_path):
    channel = tmp_path / "detector"
    (channel / "sub").mkdir(parents=True)
    (channel / "sub" / "weights.pth").write_bytes(b"x")
    (channel / "README.txt").write_text("not a detector")
    assert find_detector({"detector": channel}) == channel / "sub" / "weights.pth"
    assert find_detector({"train": tmp_path}) is None


def test_a_detector_channel_with_several_files_is_refused(tmp_path):
    channel = tmp_path / "detector"
    channel.mkdir()
    for name in ("a.pth", "b.pt"):
        (channel / name).write_bytes(b"x")
    with pytest.raises(UserError, match="exactly one detector file .* found 2: a.pth, b.pt"):
        find_detector({"detector": channel})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="found 0: none"):
        find_detector({"detector": empty})


def test_weight_channels_fill_the_detector_and_vgg16_options(tmp_path, monkeypatch):
    """A training job with 'detector' and 'vgg16' channels gets both files as options; a value
    given as a hyperparameter wins over the channel."""
    from sg2_container.sagemaker.job import find_vgg16, resolve_options

    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    data = tmp_path / "input" / "data"
    for channel, name in (("train", "images.zip"), ("detector", "inception.pth"),
                          ("vgg16", "vgg16-397923af.pth")):
        (data / channel).mkdir(parents=True)
        (data / channel / name).write_bytes(b"x")
    options = resolve_options({"gpus": 1})
    assert options.detector == str(data / "detector" / "inception.pth")
    assert options.vgg16 == str(data / "vgg16" / "vgg16-397923af.pth")
    assert resolve_options({"gpus": 1, "vgg16": "/elsewhere/v.pth"}).vgg16 == "/elsewhere/v.pth"
    (data / "vgg16" / "second.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="exactly one VGG16 weights file .* found 2"):
        find_vgg16({"vgg16": data / "vgg16"})


def test_an_ambiguous_weights_channel_fails_only_a_job_with_metrics(tmp_path, monkeypatch,
                                                                      caplog):
    """A 'detector' channel with two files failed the job even with metrics=none."""
    import logging

    from sg2_container.sagemaker.job import resolve_options

    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    data = tmp_path / "input" / "data"
    for channel, names in (("train", ["images.zip"]), ("detector", ["a.pth", "b.pth"])):
        (data / channel).mkdir(parents=True)
        for name in names:
            (data / channel / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        options = resolve_options({"gpus": 1, "metrics": ("none",)})
    assert options.detector is None and "unused: this job computes no metrics" in caplog.text
    with pytest.raises(UserError, match="exactly one detector file"):
        resolve_options({"gpus": 1, "metrics": ("fid50k_full",)})
