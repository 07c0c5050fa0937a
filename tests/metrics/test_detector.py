"""Finding and loading the detector: every bad file is refused with a named error, and
nothing from the file is executed."""
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch

from sg2_container.metrics.detector import (
    ENV_VAR,
    DetectorMissing,
    DetectorUnsafe,
    DetectorWrongArchitecture,
    load_detector,
    locate_detector,
)


def test_missing_detector_names_flag_env_channel_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DetectorMissing) as e:
        locate_detector(None)
    text = str(e.value)
    for needle in ("--detector", ENV_VAR, "'detector'", "weights-inception-2015-12-05-6726825d.pth"):
        assert needle in text
    with pytest.raises(DetectorMissing, match="no such file"):
        locate_detector(str(tmp_path / "nope.pth"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.pth"))
    with pytest.raises(DetectorMissing, match=f"{ENV_VAR}=.*gone.pth.*no such file"):
        locate_detector(None)


def test_the_images_variable_naming_no_file_says_the_build_left_the_detector_out(
        tmp_path, monkeypatch):
    """The Dockerfile sets SG2_DETECTOR even when SG2_DETECTOR_DOWNLOAD=0 skipped the file."""
    monkeypatch.setenv(ENV_VAR, "/opt/venv/share/sg2/weights-inception-2015-12-05-6726825d.pth")
    with pytest.raises(DetectorMissing) as e:
        locate_detector(None)
    assert ("no such file (an image built with SG2_DETECTOR_DOWNLOAD=0 sets it but holds no "
            "detector: metrics there need one passed in); download") in str(e.value)
    with pytest.raises(DetectorMissing) as e:  # a --detector typo is no image's doing
        locate_detector(str(tmp_path / "nope.pth"))
    assert "SG2_DETECTOR_DOWNLOAD=0 sets it" not in str(e.value)


def test_env_var_is_used_when_no_flag(detector_file, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(detector_file))
    assert locate_detector(None) == detector_file


class Boom:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_pickle_with_code_is_refused_unrun(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "x": Boom()}, path)
    with pytest.raises(DetectorUnsafe, match="not plain weights"):
        load_detector(path)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Boom()))
    with pytest.raises((DetectorUnsafe, DetectorWrongArchitecture)):
        load_detector(raw)
    assert "code ran" not in capsys.readouterr().out


def test_torchscript_needs_the_explicit_flag(tmp_path):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated; users still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(DetectorUnsafe, match="--detector-torchscript"):
        load_detector(path)


def test_wrong_architecture_and_junk(tmp_path, detector_file):
    other = tmp_path / "resnet.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), other)
    with pytest.raises(DetectorWrongArchitecture, match="not the Inception-v3"):
        load_detector(other)
    nested = tmp_path / "nested.pth"
    torch.save({"state": {"w": torch.zeros(1)}}, nested)
    with pytest.raises(DetectorWrongArchitecture, match="not a flat state dict"):
        load_detector(nested)
    number = tmp_path / "number.pth"
    torch.save(7, number)
    with pytest.raises(DetectorWrongArchitecture, match="holds an int, not a flat state dict"):
        load_detector(number)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    for size in (1, 1000):  # torch's own text (about weights_only) was cut off mid-word
        junk.write_bytes(np.random.default_rng(0).bytes(size))
        with pytest.raises(DetectorWrongArchitecture) as caught:
            load_detector(junk)
        assert str(caught.value).startswith(
            f"detector {junk}: not a PyTorch weights file ({size} bytes, neither a torch.save "
            "archive nor a pickle); download "), str(caught.value)
        assert "weights_only" not in str(caught.value)
    with pytest.raises(DetectorWrongArchitecture, match="not a TorchScript archive"):
        load_detector(detector_file, torchscript=True)
    assert zipfile.is_zipfile(detector_file)  # a state dict zip is not mistaken for TorchScript


def test_random_inception_gives_features_of_the_usual_shape(detector_file):
    detector = load_detector(detector_file)
    images = torch.randint(0, 256, [2, 1, 16, 16], dtype=torch.uint8)  # grayscale: repeated
    out = detector(images, logits=True)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert np.isfinite(out["pool"]).all() and out["pool"].std() > 1e-3
    assert len(detector.identity) == 64
