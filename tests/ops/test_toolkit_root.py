"""Finding the CUDA toolkit to build with, where torch's own guess is wrong (no nvcc needed:
a stand-in nvcc script answers the dry run the way the real one does)."""
import os
import pathlib
import stat
import types

import pytest

from stylegan2_ops import _build


def _toolkit(root: pathlib.Path, layout: str = "include") -> pathlib.Path:
    headers = root / ("include" if layout == "include" else "targets/x86_64-linux/include")
    headers.mkdir(parents=True)
    (headers / "cuda_runtime.h").write_text("/* stand-in */\n")
    return root


def _script(path: pathlib.Path, body: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    return monkeypatch


@pytest.mark.parametrize("layout", ["include", "targets"])
def test_a_wrapper_nvcc_on_path_leads_to_the_real_toolkit(clean_env, tmp_path, layout):
    real = _toolkit(tmp_path / "cuda-13.0", layout)
    # What torch does: the parent of the folder holding the nvcc on PATH (here the wrapper's).
    wrapper = _script(tmp_path / "local" / "bin" / "nvcc",
                      f'echo "#\\$ TOP={real}/bin/.." >&2\necho "#\\$ PATH=/x" >&2\n')
    clean_env.setenv("PATH", str(wrapper.parent))
    guess = str(tmp_path / "local")
    assert _build.toolkit_root(guess) == str(real.resolve())

    module = types.SimpleNamespace(CUDA_HOME=guess)  # stands in for torch.utils.cpp_extension
    assert _build.adopt_toolkit_root(module) == str(real.resolve())
    assert module.CUDA_HOME == str(real.resolve())


def test_a_guess_with_headers_is_kept_without_asking_nvcc(clean_env, tmp_path):
    toolkit = _toolkit(tmp_path / "cuda")
    asked = tmp_path / "asked"
    _script(toolkit / "bin" / "nvcc", f"touch {asked}\n")
    assert _build.toolkit_root(str(toolkit)) == str(toolkit)
    assert not asked.exists()


def test_cuda_home_set_by_the_user_wins(clean_env, tmp_path):
    clean_env.setenv("CUDA_HOME", str(tmp_path / "chosen"))
    assert _build.toolkit_root(str(_toolkit(tmp_path / "other"))) == str(tmp_path / "chosen")
    clean_env.delenv("CUDA_HOME")
    clean_env.setenv("CUDA_PATH", str(tmp_path / "by-path"))
    assert _build.toolkit_root(None) == str(tmp_path / "by-path")


def test_nothing_better_found_keeps_the_guess(clean_env, tmp_path):
    assert _build.toolkit_root(None) is None
    headerless = tmp_path / "headerless"
    # An nvcc that says nothing useful, or points at another folder without headers.
    _script(headerless / "bin" / "nvcc", f'echo "#\\$ TOP={tmp_path / "nowhere"}" >&2\nexit 1\n')
    assert _build.toolkit_root(str(headerless)) == str(headerless)
    assert _build.toolkit_root(str(tmp_path / "missing")) == str(tmp_path / "missing")


def test_the_dry_run_is_read_whatever_stdout_ends_with_and_asked_once(clean_env, tmp_path):
    real = _toolkit(tmp_path / "cuda-13.0")
    count = tmp_path / "count"
    wrapper = _script(tmp_path / "local" / "bin" / "nvcc",
                      f'echo x >> {count}\nprintf "no newline"\necho "#\\$ TOP={real}" >&2\n')
    clean_env.setenv("PATH", str(wrapper.parent))  # the guess's nvcc is the one on PATH
    assert _build.toolkit_root(str(tmp_path / "local")) == str(real.resolve())
    assert count.read_text().count("x") == 1
