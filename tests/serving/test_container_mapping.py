"""How the container's model folder and environment become server settings."""
from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from sg2_container.errors import UserError
from sg2_container.models.reference_pickle import save_reference_pickle
from sg2_container.sagemaker.serve import find_model_file, serve_options
from tests.serving.server import REPO, environment, tiny_model


def test_the_model_is_found_by_content(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    G = tiny_model(tmp_path / "weights.bin")  # any name: the first bytes decide
    assert find_model_file(tmp_path, {}) == tmp_path / "weights.bin"
    save_reference_pickle(tmp_path / "network-snapshot.pkl", G_ema=G)
    with pytest.raises(UserError, match="several model files.*SG2_MODEL_FILE"):
        find_model_file(tmp_path, {})
    assert find_model_file(tmp_path, {"SG2_MODEL_FILE": "network-snapshot.pkl"}).name == \
        "network-snapshot.pkl"
    (tmp_path / "weights.bin").rename(tmp_path / "model.pt")  # what our training job exports
    assert find_model_file(tmp_path, {}).name == "model.pt"


def test_an_empty_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(UserError, match="holds no model file"):
        find_model_file(tmp_path, {})
    with pytest.raises(UserError, match="no model folder"):
        find_model_file(tmp_path / "missing", {})


def test_environment_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    (tmp_path / "model").mkdir()
    tiny_model(tmp_path / "model" / "model.pt")
    options = serve_options({"SAGEMAKER_BIND_TO_PORT": "9000", "SG2_MAX_BATCH": "16",
                             "SG2_BATCH_WAIT_MS": "2.5"})
    assert (options.host, options.port, options.max_batch, options.batch_wait_ms) == \
        ("0.0.0.0", 9000, 16, 2.5)
    assert serve_options({}).port == 8080
    with pytest.raises(UserError, match="SG2_MAX_BATCH.*max_batch=0"):
        serve_options({"SG2_MAX_BATCH": "0"})
    with pytest.raises(UserError, match="SAGEMAKER_BIND_TO_PORT='x'"):
        serve_options({"SAGEMAKER_BIND_TO_PORT": "x"})


def test_a_misspelled_variable_is_named_with_the_closest_known_one(tmp_path, monkeypatch,
                                                                    caplog):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    (tmp_path / "model").mkdir()
    tiny_model(tmp_path / "model" / "model.pt")
    env = {"SG2_MAX_BACTH": "16", "SG2_DRAIN_TIMEOUT": "5", "SG2_OPS": "reference",
           "SG2_DETECTOR": "/x.pth", "SG2_VGG16_WEIGHTS": "/v.pth", "SG2_LOG_LEVEL": "INFO",
           "SG2_MODEL_FILE": "model.pt", "SG2_MAX_BATCH": "4", "OTHER_MAX_BACTH": "1"}
    with caplog.at_level(logging.WARNING, logger="sg2_container.sagemaker.serve"):
        options = serve_options(env)
    assert options.max_batch == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # only the two misspellings; other SG2_ names are read
    assert "SG2_DRAIN_TIMEOUT is not" in warnings[0] and "'SG2_DRAIN_TIMEOUT_S'" in warnings[0]
    assert "SG2_MAX_BACTH is not" in warnings[1] and "'SG2_MAX_BATCH'" in warnings[1]


def test_every_sg2_variable_the_package_reads_is_known_to_the_container():
    """The misspelling warning must not fire for a variable another part reads: every SG2_ name
    quoted in the package's Python is a server setting or in OTHER_VARIABLES."""
    from sg2_container.sagemaker.serve import OTHER_VARIABLES, env_variables

    read = set()
    for folder in ("sg2_container", "stylegan2_ops"):
        for path in (REPO / folder).rglob("*.py"):
            read |= set(re.findall(r"[\"'](SG2_[A-Z0-9_]+)[\"']", path.read_text()))
    read |= set(re.findall(r"\bENV (SG2_[A-Z0-9_]+)=", (REPO / "Dockerfile").read_text()))
    known = set(env_variables()) | set(OTHER_VARIABLES)
    assert read and read <= known, sorted(read - known)


def test_a_missing_serve_extra_names_the_extra():
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "from sg2_container.serving import require_packages\n"
            "require_packages()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment(), timeout=60)
    assert result.returncode != 0
    assert "serving needs uvicorn" in result.stderr
    assert "pip install 'sg2-container[serve]'" in result.stderr
