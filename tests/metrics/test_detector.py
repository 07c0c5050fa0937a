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
    with pytest.raises(DetectorUnsafe):
        load_detector(raw)
    assert "code ran" not in capsys.readouterr().out


class Eval:
    def __reduce__(self):
        return (eval, ("print('code ran')",))


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("container", ["pickle", "torch.save"])
def test_a_pickle_that_needs_code_is_called_one_whatever_its_protocol(tmp_path, capsys,
                                                                      protocol, container):
    """From protocol 4 on, torch's safe loader stops at the first frame without naming a
    global, and such a file was 'neither a torch.save archive nor a pickle'."""
    path = tmp_path / "evil.pth"
    content = {"w": torch.zeros(1), "x": Boom(), "y": Eval()}
    if container == "pickle":
        path.write_bytes(pickle.dumps(content, protocol=protocol))
    else:
        torch.save(content, path, pickle_protocol=protocol)
    with pytest.raises(DetectorUnsafe) as caught:
        load_detector(path)
    text = str(caught.value)
    assert text.startswith(f"detector {path}: refused: a pickle (protocol {protocol}) that needs "
                           "code to load (builtins.print, builtins.eval); only plain tensors "
                           "are read from a detector file. Give the weights as a state dict "
                           "saved with torch.save; download "), text
    assert "code ran" not in capsys.readouterr().out


def test_plain_tensors_in_a_newer_pickle_protocol_are_told_how_to_resave(tmp_path):
    path = tmp_path / "p4.pth"
    torch.save({"w": torch.zeros(1)}, path, pickle_protocol=4)
    with pytest.raises(DetectorWrongArchitecture, match=r"a pickle \(protocol 4\) that torch's "
                                                        r"safe loader cannot read .*torch.save"):
        load_detector(path)


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
            "archive nor a complete pickle); download "), str(caught.value)
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


class _Features(torch.nn.Module):
    """A stand-in for NVIDIA's TorchScript detector: module(images, return_features=True)."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return images.float().mean(dim=[1, 2, 3]).unsqueeze(1).repeat(1, self.width)


def _scripted(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_torchscript_detector_must_give_2048_features_per_image(tmp_path):
    """Another width was found only after the dataset's features had been extracted (or gave
    FIDs of another scale): it is probed at load, on one small image."""
    good = load_detector(_scripted(_Features(2048), tmp_path / "good.pt"), torchscript=True)
    images = torch.randint(0, 256, [2, 3, 8, 8], dtype=torch.uint8)
    assert good(images)["pool"].shape == (2, 2048)
    with pytest.raises(DetectorWrongArchitecture, match=r"features of shape \[1, 1000\] for one "
                                                        r"image; the metrics need 2048 per image"):
        load_detector(_scripted(_Features(1000), tmp_path / "narrow.pt"), torchscript=True)
    with pytest.raises(DetectorWrongArchitecture, match=r"failed on a 1 x 3 x 16 x 16 uint8 "
                                                        r"image \(.*\); the metrics call it as"):
        load_detector(_scripted(torch.nn.Linear(2, 2), tmp_path / "linear.pt"), torchscript=True)


def test_weights_other_than_the_published_file_are_measured_with_a_warning(detector_file,
                                                                          caplog, monkeypatch):
    import hashlib
    import logging

    from sg2_container.metrics import detector as detector_module

    with caplog.at_level(logging.WARNING):
        load_detector(detector_file)
    assert "not the published weights-inception-2015-12-05-6726825d.pth" in caplog.text
    assert "not comparable with published" in caplog.text

    caplog.clear()  # the published file (here: its checksum pinned to this one) loads quietly
    published = hashlib.sha256(detector_file.read_bytes()).hexdigest()
    monkeypatch.setattr(detector_module, "WEIGHTS_SHA256", published)
    with caplog.at_level(logging.WARNING):
        load_detector(detector_file)
    assert "not the published" not in caplog.text
