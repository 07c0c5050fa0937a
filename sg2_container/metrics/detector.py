"""The feature network (detector) behind the metrics: found, checked and loaded without
network access and without running code from the file.

The detector is torch-fidelity's Inception-v3, a port of TensorFlow's inception-2015-12-05
graph whose FIDs match the usual TensorFlow numbers; its weights are a plain state dict, read
with `torch.load(weights_only=True)`. NVIDIA's TorchScript detector is a program, not data: it
is loaded only when the user says so (`--detector-torchscript`).
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import mmap
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from sg2_container.errors import UserError, kind_of

log = logging.getLogger(__name__)

ENV_VAR = "SG2_DETECTOR"
CHANNEL = "detector"
WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               + WEIGHTS_NAME)
# The published file's sha256 (its name carries the first 8 digits): other weights of this
# architecture load and measure, but their values are not comparable with published ones.
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
HOW_TO_GET = (f"download {WEIGHTS_URL} once (torch-fidelity's Inception-v3 weights, ~95 MB) and "
              f"pass it with --detector FILE (hyperparameter 'detector'), set {ENV_VAR}=FILE, or "
              f"give a SageMaker training job an input channel named '{CHANNEL}' holding it; the "
              "Docker image carries a copy unless it was built with SG2_DETECTOR_DOWNLOAD=0")
POOL, LOGITS = "2048", "logits_unbiased"  # torch-fidelity's names for pool features / IS logits
POOL_WIDTH = 2048  # features per image: what FID, KID and precision/recall are defined on
MAX_PICKLE_MEMBER = 1 << 26  # data.pkl of a torch.save zip: tensors live beside it, not in it
PROBE_SIDE = 16  # the TorchScript probe's image: the detector resizes it to 299 px itself


class DetectorMissing(UserError):
    """Metrics were asked for but no detector file is available."""


class DetectorUnsafe(UserError):
    """The file holds code or objects, not just tensors: not loaded."""


class DetectorWrongArchitecture(UserError):
    """The file is a state dict, but not of the Inception-v3 the metrics expect."""


def locate_detector(path: str | None) -> Path:
    """The detector file: the option if given, else the environment variable, else an error
    that says where to get one and how to pass it."""
    source = "detector"
    if not path:
        path, source = os.environ.get(ENV_VAR) or None, ENV_VAR
    if not path:
        raise DetectorMissing(f"metrics need a detector file and none was given: {HOW_TO_GET}")
    file = Path(path)
    if not file.is_file():
        # The image sets the variable whether or not its build downloaded the file (a
        # Dockerfile's ENV cannot depend on a file), so say what that case means.
        why = (" (an image built with SG2_DETECTOR_DOWNLOAD=0 sets it but holds no detector: "
               "metrics there need one passed in)" if source == ENV_VAR else "")
        raise DetectorMissing(f"{source}={str(path)!r}: no such file{why}; {HOW_TO_GET}")
    return file


def file_identity(path: Path) -> str:
    """sha256 of the file: names cached dataset features, so another detector never reuses them."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a code/ folder (a state dict zip has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in f"/{name}" for name in archive.namelist())


class Detector:
    """Uint8 NCHW images (any size; 1 or 3 channels) -> pool features and logits, on a device."""

    def __init__(self, module, *, path: Path, identity: str, device, torchscript: bool):
        self.module, self.path, self.identity = module, path, identity
        self.device, self.torchscript = device, torchscript

    @property
    def has_logits(self) -> bool:
        return not self.torchscript

    def __call__(self, images, *, logits: bool = False) -> dict[str, np.ndarray]:
        import torch

        x = images.to(self.device)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        with torch.no_grad():
            if self.torchscript:
                return {"pool": self.module(x, return_features=True).float().cpu().numpy()}
            outputs = self.module(x)
        result = {"pool": outputs[0].cpu().numpy()}
        if logits:
            result["logits"] = outputs[1].cpu().numpy()
        return result


@contextlib.contextmanager
def _loads_forced_weights_only():
    """torch reads TORCH_FORCE_WEIGHTS_ONLY_LOAD at every torch.load and then loads with
    weights_only=True whatever the caller passed: the rule holds inside a library we call."""
    saved = {name: os.environ.pop(name, None)
             for name in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _inception_from_state(state: dict, where: str):
    """torch-fidelity's Inception-v3 with these weights. Its constructor calls torch.load on
    the path it is given, without weights_only; it gets an in-memory copy of the tensors we
    already read with weights_only=True, and that load is forced to weights_only too."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    try:
        with _loads_forced_weights_only():
            return FeatureExtractorInceptionV3("inception-v3-compat", [POOL, LOGITS],
                                               feature_extractor_weights_path=buffer)
    except RuntimeError as e:  # load_state_dict: missing / unexpected keys, shape mismatches
        problems = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        raise DetectorWrongArchitecture(
            f"detector {where}: not the Inception-v3 weights the metrics expect "
            f"({'; '.join(problems)[:400]}); {HOW_TO_GET}") from None


def _check_feature_width(detector: Detector, where: str) -> None:
    """One forward pass on a small black image (cheap: a single 299 px image inside): a
    TorchScript file is any program, and features of another width would fail only after
    the whole dataset had been read, or give FIDs of another scale."""
    import torch

    probe = torch.zeros([1, 3, PROBE_SIDE, PROBE_SIDE], dtype=torch.uint8)
    try:
        features = detector(probe)["pool"]
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable detector"
        raise DetectorWrongArchitecture(
            f"detector {where}: the TorchScript program failed on a 1 x 3 x {PROBE_SIDE} x "
            f"{PROBE_SIDE} uint8 image ({type(e).__name__}: {str(e)[:200]}); the metrics call it "
            "as NVIDIA's inception-2015-12-05.pt: module(images, return_features=True)") from None
    if features.shape != (1, POOL_WIDTH):
        raise DetectorWrongArchitecture(
            f"detector {where}: the TorchScript program gives features of shape "
            f"{list(features.shape)} for one image; the metrics need {POOL_WIDTH} per image "
            "(Inception-v3's pool features, as NVIDIA's inception-2015-12-05.pt gives)")


def _pickle_facts(path: Path) -> tuple[int, list[str]] | None:
    """(protocol, the module.name of each thing it would import) of a raw pickle or of a
    torch.save zip's data.pkl, read opcode by opcode with pickletools, which runs nothing;
    None if it is not a complete pickle (random bytes, a truncated file)."""
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return _scan_pickle(m)  # a mapping: a huge file is not read into memory
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not members:
                return None
            with archive.open(members[0]) as member:
                data = member.read(MAX_PICKLE_MEMBER)
        return _scan_pickle(io.BytesIO(data))
    except (ValueError, OSError, zipfile.BadZipFile):
        return None


def _scan_pickle(data) -> tuple[int, list[str]]:
    """_pickle_facts of a readable pickle stream; ValueError if it is not a complete one."""
    import pickletools

    protocol, imports = 0, []
    recent: collections.deque = collections.deque([None, None], maxlen=2)  # last pushed
    memo: dict[int, object] = {}
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name == "PROTO":
            protocol = arg
        elif name in ("GLOBAL", "INST"):
            imports.append(arg.replace(" ", "."))
        elif name == "STACK_GLOBAL":  # the module and the name are the two values pushed last
            imports.append(".".join(map(str, recent)))
        if name == "MEMOIZE":
            memo[len(memo)] = recent[-1]
        elif name.endswith("PUT"):
            memo[arg] = recent[-1]
        elif name.endswith("GET"):
            recent.append(memo.get(arg))
        elif name not in ("FRAME", "PROTO"):
            recent.append(arg if "UNICODE" in name or "STRING" in name else None)
    return protocol, list(dict.fromkeys(imports))


def _unreadable_pickle(path: Path, where: str) -> UserError:
    """What the file is, when torch's weights-only loader refused it without naming a global
    (its text then says only that weights_only failed)."""
    facts = _pickle_facts(path)
    if facts is None:
        return DetectorWrongArchitecture(
            f"detector {where}: not a PyTorch weights file ({path.stat().st_size} bytes, "
            f"neither a torch.save archive nor a complete pickle); {HOW_TO_GET}")
    protocol, imports = facts
    code = [name for name in imports if not name.startswith(("torch.", "collections."))]
    if code:
        return DetectorUnsafe(
            f"detector {where}: refused: a pickle (protocol {protocol}) that needs code to load "
            f"({', '.join(code[:3])}); only plain tensors are read from a detector file. Give "
            f"the weights as a state dict saved with torch.save; {HOW_TO_GET}")
    return DetectorWrongArchitecture(
        f"detector {where}: a pickle (protocol {protocol}) that torch's safe loader cannot "
        "read (it reads torch.save's default protocol 2); save the tensors again with "
        f"torch.save(state_dict, FILE) and no pickle_protocol; {HOW_TO_GET}")


def load_detector(path: Path, device="cpu", *, torchscript: bool = False) -> Detector:
    """Checks and loads a detector file; every failure is a named UserError."""
    import pickle

    import torch

    path = Path(path)
    where = str(path)
    identity = file_identity(path)
    if is_torchscript(path):
        if not torchscript:
            raise DetectorUnsafe(
                f"detector {where} is a TorchScript program (such as NVIDIA's "
                "inception-2015-12-05.pt): loading it runs code from the file. Use the "
                f"torch-fidelity weights instead ({WEIGHTS_URL}), or, if you trust the file, pass "
                "--detector-torchscript (hyperparameter 'detector_torchscript')")
        try:
            module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as e:  # noqa: BLE001 - any failure here means "not a usable program"
            raise DetectorWrongArchitecture(f"detector {where}: not a loadable TorchScript "
                                            f"detector ({type(e).__name__}: {e})") from None
        detector = Detector(module, path=path, identity=identity, device=device,
                            torchscript=True)
        _check_feature_width(detector, where)
        log.info("detector: TorchScript %s (sha256 %s...)", path.name, identity[:12])
        return detector
    if torchscript:
        raise DetectorWrongArchitecture(f"detector {where}: --detector-torchscript was given but "
                                        "the file is not a TorchScript archive")
    try:
        with warnings.catch_warnings():  # torch's note on the protocol: our refusal says more
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        objects = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if objects:
            raise DetectorUnsafe(
                f"detector {where}: refused, it is not plain weights: it refers to code that "
                f"only an unrestricted unpickler would run ({objects[0][:160]}); "
                f"{HOW_TO_GET}") from None
        raise _unreadable_pickle(path, where) from None
    except Exception as e:  # noqa: BLE001 - truncated zips, random bytes, ...
        raise DetectorWrongArchitecture(f"detector {where}: not a PyTorch weights file "
                                        f"({type(e).__name__}: {str(e)[:200]}); {HOW_TO_GET}"
                                        ) from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DetectorWrongArchitecture(
            f"detector {where}: holds {kind_of(state)}, not a flat state dict of "
            f"tensors; {HOW_TO_GET}")
    module = _inception_from_state(state, where).to(device)
    log.info("detector: Inception-v3 %s (sha256 %s...)", path.name, identity[:12])
    if identity != WEIGHTS_SHA256:
        log.warning("detector %s is not the published %s (sha256 %s..., expected %s...): its "
                    "values are not comparable with published FID/KID/IS figures", where,
                    WEIGHTS_NAME, identity[:12], WEIGHTS_SHA256[:12])
    return Detector(module, path=path, identity=identity, device=device, torchscript=False)
