"""A package that only some commands import (an extra's, or a dependency imported where it is
used) missing from the install: `sg2` says which package, which command and how to install it
(exit 1), instead of 'internal error (a bug; please report it ...)' and a traceback (exit 2)."""
import pathlib
import subprocess
import sys

import pytest

from sg2_container.errors import LAZY_PACKAGES, install_hint, missing_package
from sg2_container.models.files import save_model
from tests.inference.conftest import tiny_generator

REPO = pathlib.Path(__file__).resolve().parent.parent

# Runs `sg2 ARGS...` with the packages named in argv[1] unimportable, as if not installed:
# the import system's own ModuleNotFoundError, name and all.
WITHOUT = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["sg2"] + sys.argv[2:]
runpy.run_module("sg2_container.cli.main", run_name="__main__")
"""


def sg2_without(packages: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT, packages, *args], capture_output=True,
                          text=True, timeout=300)


def test_pipeline_commands_without_the_pipeline_extra_name_it():
    """`sg2 pipeline status` imports botocore (boto3's) only when it calls AWS."""
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc"
    result = sg2_without("boto3,botocore", "pipeline", "status", arn)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: `sg2 pipeline status` needs botocore, which is not installed: "
        "pip install 'sg2-container[pipeline]'"), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_interpolate_without_imageio_ffmpeg_names_it_and_writes_no_video(tmp_path):
    """imageio's plugin loader raised its own ImportError, without the missing module's name."""
    model = save_model(tmp_path / "model.pt", G_ema=tiny_generator())
    outdir = tmp_path / "walk"
    result = sg2_without("imageio_ffmpeg", "interpolate", "--network", str(model), "--outdir",
                         str(outdir), "--seeds", "0,1", "--frames", "4", "--format", "mp4",
                         "--device", "cpu")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: `sg2 interpolate` needs imageio_ffmpeg, which is not installed: pip install "
        "'imageio-ffmpeg' (a dependency of every sg2-container install: this one is "
        "incomplete)"), result.stderr
    assert "Traceback" not in result.stderr
    assert not list(outdir.iterdir())


def test_other_import_errors_stay_bugs():
    assert missing_package(ModuleNotFoundError("No module named 'scipy'", name="scipy"),
                           "x") is None
    assert missing_package(ImportError("cannot import name 'f' from 'boto3'"), "x") is None
    # A library's own ImportError raised from the missing module's error names the module.
    try:
        try:
            raise ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")
        except ImportError as error:
            raise ImportError("install the server") from error
    except ImportError as error:
        assert str(missing_package(error, "`sg2 serve`")) == (
            "`sg2 serve` needs uvicorn, which is not installed: pip install "
            "'sg2-container[serve]'")


@pytest.mark.parametrize("package", sorted(LAZY_PACKAGES))
def test_each_install_hint_is_what_setup_py_declares(package):
    """The table names real extras and the requirements setup.py pins, not guesses."""
    base, extras = (REPO / "setup.py").read_text().split("install_requires=")[1].split(
        "extras_require=")
    requirement = LAZY_PACKAGES[package]
    if requirement.startswith("["):
        assert f'"{requirement.strip("[]")}": ' in extras
    else:
        assert f'"{requirement}"' in base
