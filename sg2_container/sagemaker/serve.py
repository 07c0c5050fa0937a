"""Hosting mode (`sg2-sagemaker serve`): maps the container onto the serving room.

The model comes from <base>/model (SageMaker extracts model.tar.gz there): the one file in it
that holds a network, found by content (our .pt or a reference .pkl), or the file named by
$SG2_MODEL_FILE. The port is $SAGEMAKER_BIND_TO_PORT (default 8080); the server settings come
from SG2_<SETTING> variables (SG2_MAX_BATCH, SG2_BATCH_WAIT_MS, ...; see docs/serving.md).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from sg2_container.errors import UserError
from sg2_container.sagemaker import paths

log = logging.getLogger(__name__)

PORT_VARIABLE = "SAGEMAKER_BIND_TO_PORT"
MODEL_FILE_VARIABLE = "SG2_MODEL_FILE"
DEFAULT_PORT = 8080
ENV_PREFIX = "SG2_"
NOT_FROM_ENV = ("network", "host", "port")  # the container decides these
# SG2_* variables that other parts of the package (or the image's build) read: not server
# settings, not misspellings either (a test checks the package reads no other SG2_ name).
OTHER_VARIABLES = (
    MODEL_FILE_VARIABLE, "SG2_OPS", "SG2_LOG_LEVEL", "SG2_KEEP_FREED_MEMORY", "SG2_DETECTOR",
    "SG2_DETECTOR_DOWNLOAD", "SG2_VGG16_WEIGHTS", "SG2_MASTER_PORT", "SG2_CPU_ISA",
    "SG2_BUILD_CPU", "SG2_BUILD_CUDA", "SG2_JIT_BUILD", "SG2_KERNEL_CACHE",
    "SG2_TORCH_INDEX_URL", "SG2_CUDA_ARCH_LIST",
)

HELP = """\
usage: sg2-sagemaker serve

Runs a SageMaker endpoint: HTTP on 0.0.0.0:$SAGEMAKER_BIND_TO_PORT (default 8080), GET /ping
and POST /invocations. The model is the network file in <base>/model (our .pt, a reference
.pkl, or the extracted model.tar.gz contents; $SG2_MODEL_FILE names it when several qualify).
Settings from the environment: {settings}.
SIGTERM: stop accepting, finish in-flight requests, exit 0; requests still running after
SG2_DRAIN_TIMEOUT_S are answered 503 and the exit is 130. See docs/serving.md.
"""


def env_variables() -> dict[str, str]:
    """SG2_<FIELD> -> field name, for every server setting the environment may set."""
    from sg2_container.options.schema import fields
    from sg2_container.serving.options import ServeOptions

    return {ENV_PREFIX + name.upper(): name for name in fields(ServeOptions)
            if name not in NOT_FROM_ENV}


def find_model_file(model_dir: Path, env: Mapping[str, str]) -> Path:
    """The network file in `model_dir`: named by $SG2_MODEL_FILE, else found by content as the
    batch jobs find theirs (models.source.find_model_file)."""
    from sg2_container.models.source import find_model_file as find_by_content
    from sg2_container.models.files import sniff_kind

    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: no model folder (the endpoint's model_data extracts here)")
    named = env.get(MODEL_FILE_VARIABLE)
    if named:
        path = model_dir / named
        sniff_kind(path)  # a clear error if missing or not a model
        return path
    path = find_by_content(model_dir, f"set {MODEL_FILE_VARIABLE} to the one to serve")
    if path is None:
        raise UserError(f"{model_dir} holds no model file (our .pt or a reference .pkl); "
                        "model_data must be a model.tar.gz with one inside")
    return path


def warn_unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for each SG2_* variable nobody reads (a misspelled setting would otherwise be
    ignored in silence), naming the closest known name; returns those variables."""
    from sg2_container.options.schema import closest

    settings = list(env_variables())
    known = settings + list(OTHER_VARIABLES)
    unknown = sorted(v for v in env if v.startswith(ENV_PREFIX) and v not in known)
    for variable in unknown:
        log.warning("%s is not a variable this container reads: ignored%s; the server settings "
                    "are %s", variable, closest(variable, known), ", ".join(settings))
    return unknown


def serve_options(env: Mapping[str, str]):
    """ServeOptions for the container from the environment."""
    from sg2_container.options.schema import coerce, fields
    from sg2_container.serving.options import ServeOptions

    warn_unknown_variables(env)
    schema = fields(ServeOptions)
    values = {}
    for variable, name in env_variables().items():
        if variable in env:
            try:
                values[name] = coerce(schema[name], env[variable])
            except UserError as error:
                raise UserError(f"{variable}: {error}") from None
    port = env.get(PORT_VARIABLE, str(DEFAULT_PORT))
    try:
        values["port"] = coerce(schema["port"], port)
    except UserError:
        raise UserError(f"{PORT_VARIABLE}={port!r} is not a port number") from None
    values["network"] = str(find_model_file(paths.model_dir(), env))
    try:
        return ServeOptions(host="0.0.0.0", **values)
    except UserError as error:  # name the variable the user set, not only the field
        for variable, name in env_variables().items():
            if variable in env and str(error).startswith(f"{name}="):
                raise UserError(f"{variable}: {error}") from None
        raise


def run_serve(args: list[str]) -> int:
    """The hosting mode; exit code from the one job runner (0 after a clean drain, 130 when
    the drain cut requests off)."""
    import sys

    from sg2_container.sagemaker.jobs import run_job

    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(HELP.format(settings=", ".join(env_variables())))
        return 0
    if args:
        log.warning("serve: ignoring arguments %s; settings come from the environment", args)

    ended = []

    def body(stop) -> None:
        from sg2_container.errors import Stopped
        from sg2_container.serving.server import run_server

        options = serve_options(os.environ)
        ended.append(run_server(options, stop))
        if ended[0].cut_off:
            raise Stopped(f"{ended[0].cut_off} in-flight request(s) were still running after "
                          f"drain_timeout_s={options.drain_timeout_s:g} s and got 503")

    code = run_job("serve", body, paths.failure_path(),
                   doing_on_stop="finishing in-flight requests")
    if ended:
        from sg2_container.serving.server import end_process

        end_process(code, ended[0])  # the failure file is written: nothing else to wait for
    return code
