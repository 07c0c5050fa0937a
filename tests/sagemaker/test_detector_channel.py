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
