"""Shared fixtures: the golden files produced by running the reference implementation; a
session-wide temporary folder for everything tests and their subprocesses write outside
tmp_path; the count of GPU tests left out, in the summary."""
import os
import pathlib
import shutil
import tempfile

import pytest

# Two xdist workers on two cores: more than one math thread per process oversubscribes the
# machine and small ops then stall on thread hand-offs (~100x slower). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden_ops():
    import torch

    return torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)


@pytest.fixture(scope="session")
def golden_tiny():
    import torch

    return torch.load(DATA_DIR / "reference_tiny_G.pt", weights_only=True)


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    config.stash[_GPU_DESELECTED] = 0


# Where libraries and subprocesses put their scratch files (tempfile, torch.compile's cache, JIT
# extension builds): all inside one folder under pytest's own, removed when the session ends.
_SCRATCH_VARIABLES = ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR")


@pytest.fixture(scope="session", autouse=True)
def session_scratch(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("scratch")
    saved_env = {name: os.environ.get(name) for name in _SCRATCH_VARIABLES}
    saved_tempdir = tempfile.tempdir
    for name in _SCRATCH_VARIABLES:
        os.environ[name] = str(scratch / name.lower()) if name != "TMPDIR" else str(scratch)
    tempfile.tempdir = str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)


# --- how many GPU tests the marker expression left out ---------------------------------------

_GPU_DESELECTED = pytest.StashKey[int]()


def pytest_deselected(items):
    if items:
        config = items[0].config
        gpu = sum(1 for item in items if item.get_closest_marker("gpu") is not None)
        config.stash[_GPU_DESELECTED] = config.stash.get(_GPU_DESELECTED, 0) + gpu


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)  # an xdist worker
    if workeroutput is not None:
        workeroutput["gpu_deselected"] = session.config.stash.get(_GPU_DESELECTED, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist: every worker collects the whole suite, so each reports the same count."""
    count = getattr(node, "workeroutput", {}).get("gpu_deselected", 0)
    node.config.stash[_GPU_DESELECTED] = max(node.config.stash.get(_GPU_DESELECTED, 0), count)


def pytest_terminal_summary(terminalreporter, config):
    count = config.stash.get(_GPU_DESELECTED, 0)
    if count:
        import torch

        where = ("a GPU is visible here" if torch.cuda.is_available()
                 else "no GPU here; run them on a GPU machine")
        terminalreporter.write_line(f"GPU tests deselected: {count} ({where} with -m gpu)")


@pytest.fixture(scope="session")
def random_vgg16_file(tmp_path_factory):
    """A randomly initialised VGG16 in torchvision's file layout (features.* and, to show that
    the loader ignores it, a small stand-in classifier part): about 59 MB, written once."""
    import torch

    from sg2_container.inference.lpips_vgg import _vgg16_feature_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        layers = _vgg16_feature_layers()
    state = {f"features.{k}": v for k, v in layers.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros([10, 4096])
    state["classifier.6.bias"] = torch.zeros([10])
    path = tmp_path_factory.mktemp("vgg16") / "vgg16-random.pth"
    torch.save(state, path)
    return path
